package safetext

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

func TestEscape(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"plain", "220 mail ESMTP", 100, "220 mail ESMTP"},
		{"line ends and tab", "a\tb\r\n", 100, `a\tb\r\n`},
		{"backslash is escaped so escapes stay unambiguous", `C:\x41`, 100, `C:\\x41`},
		{"terminal escape", "\x1b[2J\x1b]0;owned\x07", 100, `\x1b[2J\x1b]0;owned\x07`},
		{"NUL and DEL", "\x00\x7f", 100, `\x00\x7f`},
		{"invalid utf-8", "ok\xff\xfe", 100, `ok\xff\xfe`},
		{"printable unicode passes", "Grüße 你好", 100, "Grüße 你好"},
		{"C1 control CSI", "a\u009b31mb", 100, `a\u{009b}31mb`},
		{"bidi override", "abc\u202edcba", 100, `abc\u{202e}dcba`},
		{"zero width space", "a\u200bb", 100, `a\u{200b}b`},
		{"real U+FFFD differs from an invalid byte", "\ufffd\xff", 100, "\ufffd" + `\xff`},
		{"fits exactly", "abcdef", 6, "abcdef"},
		{"cut with ellipsis", "abcdefg", 6, "abc..."},
		{"escape never split", "ab\x1bcdef", 6, "ab..."},
		{"tiny cap", "abcdef", 2, ""},
		{"empty", "", 10, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Escape([]byte(tc.in), tc.max); got != tc.want {
				t.Errorf("Escape(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
}

// TestCut: escaped text is cut between escapes, never inside one, and
// Cut of the whole rendering is what Escape gives with the same cap.
func TestCut(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"fits", `ab\x1b`, 6, `ab\x1b`},
		{"plain cut", "abcdefgh", 6, "abc..."},
		{"hex escape not split", `abc\x1bdef`, 8, "abc..."},
		{"hex escape kept whole", `ab\x1bdefgh`, 9, `ab\x1b...`},
		{"unicode escape not split", `a\u{202e}bcdef`, 8, "a..."},
		{"escaped backslash not split", `ab\\xyz`, 6, "ab..."},
		{"line escapes", `\r\n\r\n\r\n`, 7, `\r\n...`},
		{"runes, not bytes", "Grüße aus Köln", 8, "Grüße..."},
		{"tiny cap", "abcdef", 2, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Cut(tc.in, tc.max); got != tc.want {
				t.Errorf("Cut(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
	for _, in := range []string{"\x1b[2J\x1b]0;owned\x07", `C:\x41\r`, "a\u009b31m\u202eb\xff", "Grüße\t你好"} {
		full := Escape([]byte(in), 1<<20)
		for max := 0; max <= utf8.RuneCountInString(full)+1; max++ {
			if got, want := Cut(full, max), Escape([]byte(in), max); got != want {
				t.Errorf("Cut(Escape(%q), %d) = %q, Escape with that cap = %q", in, max, got, want)
			}
		}
	}
}

func TestLine(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "svc/orders-db:3307", "svc/orders-db:3307"},
		{"line breaks and tab", "a\r\nb\tc", `a\r\nb\tc`},
		{"backslash kept: the text may be escaped already", `C:\x41 \\`, `C:\x41 \\`},
		{"terminal escape", "\x1b[31mred\x07", `\x1b[31mred\x07`},
		{"DEL and invalid utf-8", "\x7f\xff", `\x7f\xff`},
		{"NEL, line separator, bidi, zero width", "a\u0085b\u2028c\u202ed\u200be", `a\u{0085}b\u{2028}c\u{202e}d\u{200b}e`},
		{"printable unicode and a real U+FFFD pass", "Grüße 你好 \ufffd", "Grüße 你好 \ufffd"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Line(tc.in); got != tc.want {
				t.Errorf("Line(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "orders-db", "orders-db"},
		{"pipe cannot end the cell", "a|b", `a\|b`},
		{"no HTML", "<script>", "&lt;script&gt;"},
		{"no code span", "`x`", "'x'"},
		{"line first", "a\nb|\x1b", `a\nb\|\x1b`},
		// A backslash before the pipe used to escape the escaping one:
		// `\\|` is a literal backslash and a cell delimiter in GFM.
		{"backslash before a pipe", `a\|b`, `a\\\|b`},
		{"two before a pipe", `a\\|b`, `a\\\\\|b`},
		{"backslash elsewhere kept", `C:\x41`, `C:\x41`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Markdown(tc.in); got != tc.want {
				t.Errorf("Markdown(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestMarkdownFence(t *testing.T) {
	tests := []struct{ in, want string }{
		{"kind: Service\n", "```"},
		{"a ``` b", "````"},
		{"`````", "``````"},
		{"``x`", "```"},
	}
	for _, tc := range tests {
		if got := MarkdownFence(tc.in); got != tc.want {
			t.Errorf("MarkdownFence(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestJSONEscapes(t *testing.T) {
	tests := []struct {
		name                 string
		in                   string // a string value, marshalled to JSON
		forYAML, forTerminal string // the JSON text each writes
	}{
		{"plain", "220 ok", `"220 ok"`, `"220 ok"`},
		{"C0 controls are already escaped by encoding/json", "\x1b\a", `"\u001b\u0007"`, `"\u001b\u0007"`},
		{"C1 CSI and NEL", "\u009b\u0085", `"\u009b\u0085"`, `"\u009b\u0085"`},
		{"BOM", "\ufeff", `"\ufeff"`, `"\ufeff"`},
		{"bidi override: raw for YAML (its emitter writes it raw anyway)", "\u202e", "\"\u202e\"", `"\u202e"`},
		// The terminal copy in cmd left these three raw or broken: DEL and
		// U+FFFF made `probe -o yaml` fail ("control characters are not
		// allowed"), and a format character above U+FFFF came out as
		// \ue0041, which reads back as U+E004 followed by "1".
		{"DEL", "a\x7fb", `"a\u007fb"`, `"a\u007fb"`},
		{"non-character", "\uffff", `"\uffff"`, `"\uffff"`},
		{"format character above U+FFFF: a surrogate pair", "\U000E0041", "\"\U000E0041\"", `"\udb40\udc41"`},
		{"printable above U+FFFF stays", "😀", `"😀"`, `"😀"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			js, err := json.Marshal(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := JSONForYAML(string(js)); got != tc.forYAML {
				t.Errorf("JSONForYAML(%s) = %s, want %s", js, got, tc.forYAML)
			}
			if got := string(JSONForTerminal(js)); got != tc.forTerminal {
				t.Errorf("JSONForTerminal(%s) = %s, want %s", js, got, tc.forTerminal)
			}
		})
	}
}

// unescape reverses Escape (when it did not cut), to show that the
// rendering stands for exactly the input bytes.
func unescape(t *testing.T, s string) []byte {
	var out []byte
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			r, size := utf8.DecodeRuneInString(s[i:])
			out = utf8.AppendRune(out, r)
			i += size
			continue
		}
		switch {
		case strings.HasPrefix(s[i:], `\\`):
			out, i = append(out, '\\'), i+2
		case strings.HasPrefix(s[i:], `\r`):
			out, i = append(out, '\r'), i+2
		case strings.HasPrefix(s[i:], `\n`):
			out, i = append(out, '\n'), i+2
		case strings.HasPrefix(s[i:], `\t`):
			out, i = append(out, '\t'), i+2
		case strings.HasPrefix(s[i:], `\x`) && i+4 <= len(s):
			v, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("bad \\x escape in %q", s)
			}
			out, i = append(out, byte(v)), i+4
		case strings.HasPrefix(s[i:], `\u{`):
			end := strings.IndexByte(s[i:], '}')
			v, err := strconv.ParseUint(s[i+3:i+end], 16, 32)
			if end < 0 || err != nil {
				t.Fatalf("bad \\u{} escape in %q", s)
			}
			out, i = utf8.AppendRune(out, rune(v)), i+end+1
		default:
			t.Fatalf("lone backslash in %q", s)
		}
	}
	return out
}

// visible: no rune that a terminal acts on or hides (C0, DEL, C1, format
// characters, line separators, anything unprintable).
func visible(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError && !strings.Contains(s, "\ufffd") || r >= 0x80 && !unicode.IsPrint(r) || r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// FuzzEscape: whatever arrives from the network, the output is valid
// UTF-8 with nothing a terminal acts on or hides, never longer than the
// cap, and, when not cut, stands for exactly the input.
func FuzzEscape(f *testing.F) {
	for _, seed := range []string{"220 ok\r\n", "\x1b[31mred", "\xff\xfe", "a\u009b\u202e", "\\x1b", ""} {
		f.Add([]byte(seed), 40)
	}
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<16 {
			max = 200
		}
		got := Escape(b, max)
		if !utf8.ValidString(got) || !visible(got) {
			t.Fatalf("Escape(%q) = %q: invalid UTF-8 or a control character", b, got)
		}
		if n := utf8.RuneCountInString(got); n > max {
			t.Fatalf("Escape(%q, %d) has %d runes", b, max, n)
		}
		if all := Escape(b, 1<<30); all == got && string(unescape(t, got)) != string(b) {
			t.Fatalf("Escape(%q) = %q does not stand for the input", b, got)
		}
	})
}

// FuzzLine: one visible line, unchanged when already visible, and stable
// (a second Line changes nothing).
func FuzzLine(f *testing.F) {
	for _, seed := range []string{"svc/a:80", "a\nb", "\x1b[2J", "\u2028\u202e\u200b", `\x41`, "\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := Line(s)
		if !utf8.ValidString(got) || !visible(got) {
			t.Fatalf("Line(%q) = %q: invalid UTF-8 or a control character", s, got)
		}
		if Line(got) != got {
			t.Fatalf("Line(Line(%q)) != Line(%q)", s, s)
		}
		if utf8.ValidString(s) && visible(s) && got != s {
			t.Fatalf("Line(%q) = %q changed visible text", s, got)
		}
		md := Markdown(s)
		if strings.ContainsAny(md, "<>`") || !pipesEscaped(md) {
			t.Fatalf("Markdown(%q) = %q leaves markup", s, md)
		}
	})
}

// pipesEscaped: every '|' follows an odd run of backslashes, so GFM reads
// it as text, not as the end of a table cell.
func pipesEscaped(md string) bool {
	run := 0
	for i := 0; i < len(md); i++ {
		switch md[i] {
		case '\\':
			run++
			continue
		case '|':
			if run%2 == 0 {
				return false
			}
		}
		run = 0
	}
	return true
}

// FuzzJSON: both escapes keep the document's meaning and are YAML-safe;
// JSONForYAML's output reads as YAML, JSONForTerminal's has no format
// characters.
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{"ok", "\x7f", "\u0085\u2028", "\u202e", "\U000E0041", "\uffff\ufeff", "\xff"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		js, err := json.MarshalIndent(map[string]string{"banner": s}, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]string
		if err := json.Unmarshal(js, &want); err != nil {
			t.Fatal(err)
		}
		forYAML := JSONForYAML(string(js))
		forTerminal := JSONForTerminal(js)
		for name, out := range map[string]string{"JSONForYAML": forYAML, "JSONForTerminal": string(forTerminal)} {
			var got map[string]string
			if err := json.Unmarshal([]byte(out), &got); err != nil || got["banner"] != want["banner"] {
				t.Fatalf("%s(%s) = %s: means %q, want %q (%v)", name, js, out, got["banner"], want["banner"], err)
			}
			if !YAMLSafe(out) {
				t.Fatalf("%s(%s) = %s: not YAML-safe", name, js, out)
			}
		}
		if strings.ContainsFunc(string(forTerminal), func(r rune) bool { return unicode.Is(unicode.Cf, r) }) {
			t.Fatalf("JSONForTerminal(%s) = %s holds a format character", js, forTerminal)
		}
		if _, err := yaml.JSONToYAML([]byte(forYAML)); err != nil {
			t.Fatalf("JSONForYAML(%s) = %s does not read as YAML: %v", js, forYAML, err)
		}
	})
}
