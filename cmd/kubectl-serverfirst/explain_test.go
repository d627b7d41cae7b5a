package main

import (
	"strings"
	"testing"
)

// explain takes a rule code beside the verbs and scenarios: the code a
// finding carries in -o json leads to its rule.
func TestExplainRuleCode(t *testing.T) {
	for _, c := range []struct{ arg, firstLine string }{
		{"SF0401", "SF0401 DEADLOCK (ServerFirstSilentThroughMesh): "},
		{"sf0109", "SF0109 OK (DeclaredProtocol): "},
		{"DEADLOCK", "DEADLOCK: "},
	} {
		out, _, err := runCLI(t, t.Context(), "", "explain", c.arg)
		if err != nil {
			t.Fatalf("explain %s: %v", c.arg, err)
		}
		if !strings.HasPrefix(out, c.firstLine) {
			t.Errorf("explain %s starts %q, want %q", c.arg, strings.SplitN(out, "\n", 2)[0], c.firstLine)
		}
	}
}
