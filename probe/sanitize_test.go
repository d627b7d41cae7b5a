package probe

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestSanitize(t *testing.T) {
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
			if got := SanitizeN([]byte(tc.in), tc.max); got != tc.want {
				t.Errorf("SanitizeN(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
			}
		})
	}
	long := strings.Repeat("x", 1000)
	if got := Sanitize([]byte(long)); utf8.RuneCountInString(got) != SanitizeLimit || !strings.HasSuffix(got, "...") {
		t.Errorf("Sanitize(1000 x) has %d runes, want %d ending in ...", utf8.RuneCountInString(got), SanitizeLimit)
	}
}

// FuzzSanitize: whatever arrives from the network, the output is valid UTF-8
// with no control characters (so no ESC, no CSI), no format characters, and
// never longer than the cap.
func FuzzSanitize(f *testing.F) {
	for _, seed := range []string{"220 ok\r\n", "\x1b[31mred", "\xff\xfe", "a\u009b\u202e", "\\x1b", ""} {
		f.Add([]byte(seed), 40)
	}
	f.Fuzz(func(t *testing.T, b []byte, max int) {
		if max < 0 || max > 1<<16 {
			max = SanitizeLimit
		}
		got := SanitizeN(b, max)
		if !utf8.ValidString(got) {
			t.Fatalf("SanitizeN(%q) = %q: invalid UTF-8", b, got)
		}
		if n := utf8.RuneCountInString(got); n > max {
			t.Fatalf("SanitizeN(%q, %d) has %d runes", b, max, n)
		}
		for _, r := range got {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == 0x1b {
				t.Fatalf("SanitizeN(%q) = %q contains %U", b, got, r)
			}
		}
		if utf8.RuneCountInString(got) < max-3 && !strings.HasSuffix(got, "...") {
			// Not truncated: the rendering must account for every input byte,
			// and plain printable ASCII input must come back unchanged.
			if isPrintableASCII(b) && !strings.Contains(string(b), `\`) && got != string(b) {
				t.Fatalf("SanitizeN(%q) = %q changed printable ASCII", b, got)
			}
		}
	})
}
