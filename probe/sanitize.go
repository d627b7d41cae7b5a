package probe

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// SanitizeLimit is the longest string Sanitize returns, in runes.
const SanitizeLimit = 200

// Sanitize renders bytes from the network for a terminal, capped at
// SanitizeLimit runes. See SanitizeN.
func Sanitize(b []byte) string { return SanitizeN(b, SanitizeLimit) }

// SanitizeN renders b so that nothing in it can act on a terminal: printable
// ASCII and printable Unicode letters, marks, digits, punctuation and symbols
// pass through; '\\' becomes `\\`; CR, LF and TAB become `\r`, `\n`, `\t`;
// other control bytes, DEL and invalid UTF-8 bytes become `\xNN`; valid but
// unprintable runes (C1 controls, bidi overrides, zero-width and other
// format characters) become `\u{NNNN}`. ESC can therefore never start a
// terminal sequence. Escapes are never split: when the rendering of b is
// longer than max runes, it is cut after the last whole piece that leaves
// room for "..." and "..." is appended (for max < 3, "" is returned).
func SanitizeN(b []byte, max int) string {
	var sb strings.Builder
	runes, cut := 0, 0
	for i := 0; i < len(b); {
		var piece string
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			piece = fmt.Sprintf(`\x%02x`, b[i])
			size = 1
		case r == '\\':
			piece = `\\`
		case r == '\r':
			piece = `\r`
		case r == '\n':
			piece = `\n`
		case r == '\t':
			piece = `\t`
		case r < 0x20 || r == 0x7F:
			piece = fmt.Sprintf(`\x%02x`, r)
		case r < 0x80 || unicode.IsPrint(r):
			piece = string(r)
		default:
			piece = fmt.Sprintf(`\u{%04x}`, r)
		}
		i += size
		sb.WriteString(piece)
		runes += utf8.RuneCountInString(piece)
		if runes > max {
			if max < 3 {
				return ""
			}
			return sb.String()[:cut] + "..."
		}
		if runes <= max-3 {
			cut = sb.Len()
		}
	}
	return sb.String()
}
