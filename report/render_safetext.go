package report

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// safeText renders untrusted text (names, hosts, reasons, errors from the
// wire) as one line that can act on neither a terminal nor a parser: CR,
// LF and TAB become `\r`, `\n`, `\t`; other control bytes, DEL and
// invalid UTF-8 bytes become `\xNN`; runes that are not printable (C1
// controls such as NEL, the Unicode line and paragraph separators, bidi
// overrides, zero-width and other format characters) become `\u{NNNN}`.
// Backslashes are kept as they are: the text may already be sanitized.
func safeText(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || r < 0x20 || r == 0x7F || r >= 0x80 && !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
			size = 1
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7F:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r < 0x80 || unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			fmt.Fprintf(&b, `\u{%04x}`, r)
		}
		i += size
	}
	return b.String()
}
