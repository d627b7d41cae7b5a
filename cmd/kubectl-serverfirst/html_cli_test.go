package main

import (
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestScanHTMLOutput: -o html through the CLI is the self-contained page
// (the page itself is tested in report/, in headless Chromium too): one
// document, the findings in it, nothing fetched from elsewhere, and
// --fail-on still decides the exit code.
func TestScanHTMLOutput(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedShop(t, env)
	out, errOut, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", env.Kubeconfig, "-o", "html")
	if err != nil {
		t.Fatalf("scan -o html: %v\n%s", err, errOut)
	}
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || strings.Count(out, "</html>") != 1 {
		t.Errorf("not one HTML document: starts %q", out[:min(len(out), 40)])
	}
	for _, want := range []string{"orders-db", "AT-RISK", "Content-Security-Policy"} {
		if !strings.Contains(out, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	for _, external := range []string{`src="http`, `href="http`, `@import`, `url(http`} {
		if strings.Contains(out, external) {
			t.Errorf("the page loads something from elsewhere (%s)", external)
		}
	}
	if _, _, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", env.Kubeconfig, "-o", "html", "--fail-on", "at-risk"); exitCode(err) != 3 {
		t.Errorf("-o html --fail-on at-risk: exit %d, want 3", exitCode(err))
	}
}
