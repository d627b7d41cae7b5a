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

// The table's DETAIL cell is cut to detailWidth runes of the sanitised
// banner; the cut used to fall inside an escape (`\x1` of ESC's `\x1b`),
// which reads as other bytes than the server sent.
func TestProbeDetailNeverSplitsAnEscape(t *testing.T) {
	pad := func(n int) string { return string(bytes.Repeat([]byte("a"), n)) }
	tests := []struct {
		name, banner, want string
	}{
		{"short banner", "220 ok\r\n", `220 ok\r\n`},
		{"escape across the cut is dropped", pad(55) + "\x1bbbbbbb", pad(55) + "..."},
		{"escape before the cut is kept", pad(53) + "\x1bbbbbbb", pad(53) + `\x1b...`},
		{"escaped backslash across the cut", pad(56) + `\bbbbbb`, pad(56) + "..."},
		{"unicode escape across the cut", pad(50) + "\u202ebbbbbbbbbb", pad(50) + "..."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			row := probeRow(probe.Result{Target: "127.0.0.1:25", Outcome: probe.OutcomeBanner, Banner: tc.banner, Address: "127.0.0.1:25"})
			if got := row[len(row)-1]; got != tc.want {
				t.Errorf("DETAIL = %q, want %q", got, tc.want)
			}
		})
	}
}
