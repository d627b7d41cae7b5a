package main

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// A banner with DEL or U+FFFF made -o yaml fail ("control characters are
// not allowed"), and one with a format character above U+FFFF (a tag
// character) came out of -o json as \ue0041, which reads back as U+E004
// and "1".
func TestProbeOutputEscapesEveryRune(t *testing.T) {
	banner := "a\x7fb\uffffc\U000E0041d"
	results := []probe.Result{{Target: "127.0.0.1:2323", Outcome: probe.OutcomeBanner, Banner: banner, Address: "127.0.0.1:2323"}}
	for _, format := range []string{"json", "yaml"} {
		var out bytes.Buffer
		if err := renderProbeResults(&out, format, results); err != nil {
			t.Fatalf("-o %s: %v", format, err)
		}
		if bytes.ContainsAny(out.Bytes(), "\x7f\uffff\U000E0041") {
			t.Errorf("-o %s leaves a raw DEL, U+FFFF or tag character: %q", format, out.String())
		}
		if format != "json" {
			continue
		}
		var doc struct{ Results []probe.Result }
		if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Results) != 1 || doc.Results[0].Banner != banner {
			t.Errorf("-o json reads back as %+v (%v), want the banner %q", doc.Results, err, banner)
		}
	}
}
