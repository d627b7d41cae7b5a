// Package safetext renders untrusted text (banners from servers, names,
// hosts and messages from the cluster or a manifest) so that it can act
// on neither a terminal nor the format it is written into: one line for a
// table or a log, raw network bytes escaped unambiguously, a Markdown
// cell or code fence, and JSON text whose invisible runes are escaped for
// a terminal or a YAML reader. It imports nothing of this module, so any
// package may use it.
package safetext

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Line renders untrusted text (names, hosts, reasons, errors from the
// wire) as one line that can act on neither a terminal nor a parser: CR,
// LF and TAB become `\r`, `\n`, `\t`; other control bytes, DEL and
// invalid UTF-8 bytes become `\xNN`; runes that are not printable (C1
// controls such as NEL, the Unicode line and paragraph separators, bidi
// overrides, zero-width and other format characters) become `\u{NNNN}`.
// Backslashes are kept as they are: the text may already be escaped (by
// Escape), and Line(Line(s)) == Line(s).
func Line(s string) string {
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
		piece, size := escapeRune(s[i:])
		b.WriteString(piece)
		i += size
	}
	return b.String()
}

// Escape renders bytes from the network so that nothing in them can act
// on a terminal, as Line does, but unambiguously: '\\' becomes `\\`, so
// every escape in the result stands for exactly one input byte or rune.
// ESC can therefore never start a terminal sequence. The result is cut to
// max runes as Cut does.
func Escape(b []byte, max int) string {
	s := string(b)
	var sb strings.Builder
	for i := 0; i < len(s); {
		piece, size := `\\`, 1
		if s[i] != '\\' {
			piece, size = escapeRune(s[i:])
		}
		i += size
		sb.WriteString(piece)
	}
	return Cut(sb.String(), max)
}

// Cut shortens text that Escape wrote to at most max runes without
// splitting an escape: when it is longer, it is cut after the last whole
// escape or rune that leaves room for "..." and "..." is appended (for
// max < 3, "" is returned). A cut `\x1b` would read as other bytes than
// the server sent.
func Cut(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	if max < 3 {
		return ""
	}
	runes := 0
	for i := 0; i < len(s); {
		n := escapedLen(s[i:])
		if runes += utf8.RuneCountInString(s[i : i+n]); runes > max-3 {
			return s[:i] + "..."
		}
		i += n
	}
	return s
}

// escapedLen is the length in bytes of the first piece of Escape's
// output: an escape (`\\`, `\r`, `\xNN`, `\u{NNNN}`) or one rune.
func escapedLen(s string) int {
	if len(s) < 2 || s[0] != '\\' {
		_, n := utf8.DecodeRuneInString(s)
		return n
	}
	switch s[1] {
	case 'x':
		return min(4, len(s))
	case 'u':
		if end := strings.IndexByte(s, '}'); end > 0 {
			return end + 1
		}
	}
	return 2
}

// escapeRune is how Line and Escape write the first rune of s, and how
// many bytes of s it took.
func escapeRune(s string) (piece string, size int) {
	r, size := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && size <= 1:
		return fmt.Sprintf(`\x%02x`, s[0]), 1
	case r == '\r':
		return `\r`, size
	case r == '\n':
		return `\n`, size
	case r == '\t':
		return `\t`, size
	case r < 0x20 || r == 0x7F:
		return fmt.Sprintf(`\x%02x`, r), size
	case r < 0x80 || unicode.IsPrint(r):
		return s[:size], size
	}
	return fmt.Sprintf(`\u{%04x}`, r), size
}

var (
	markdownInline = strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;", "`", "'")
	// A backslash before a pipe would escape the backslash that escapes
	// the pipe (GFM reads `\\` as one backslash, then `|` ends the cell),
	// so a run of them before a pipe is doubled.
	backslashesBeforePipe = regexp.MustCompile(`\\+\|`)
)

// Markdown is Line for a Markdown table cell or paragraph: a '|' cannot
// end the cell, '<' and '>' cannot open HTML, and a backtick (as ') cannot
// open or close code.
func Markdown(s string) string {
	s = Line(s)
	if strings.Contains(s, `\|`) {
		s = backslashesBeforePipe.ReplaceAllStringFunc(s, func(run string) string {
			return strings.Repeat(`\`, 2*(len(run)-1)) + "|"
		})
	}
	return markdownInline.Replace(s)
}

// MarkdownFence is a code fence longer than any run of backticks in s, so
// that nothing inside can close it (CommonMark: a closing fence is at
// least as long as the opening one).
func MarkdownFence(s string) string {
	longest, run := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// JSONForYAML writes as \uXXXX every character of JSON text that a YAML
// reader would fold as a line break (NEL, U+2028, U+2029) or refuse (DEL,
// C1 controls, BOM, non-characters): encoding/json leaves them raw in
// strings. Such characters only occur inside JSON strings, where the
// escape means the same, so the text reads back as the same JSON and as
// YAML.
func JSONForYAML(js string) string {
	if YAMLSafe(js) {
		return js
	}
	return string(escapeJSON([]byte(js), func(r rune) bool { return r != '\n' && !yamlPrintable(r) }))
}

// JSONForTerminal is JSONForYAML that also escapes the format characters a
// terminal may act on or hide (bidi overrides, zero-width characters): the
// document means the same and `cat out.json` shows what is in it. Its
// output is JSON, not YAML: a format character above U+FFFF becomes a
// surrogate pair, which YAML's \u does not read (YAML spells it \U).
func JSONForTerminal(js []byte) []byte {
	invisible := func(r rune) bool { return r != '\n' && !yamlPrintable(r) || unicode.Is(unicode.Cf, r) }
	if !bytes.ContainsFunc(js, invisible) {
		return js
	}
	return escapeJSON(js, invisible)
}

// escapeJSON writes the runes of js for which escape is true as JSON
// \uXXXX escapes, those above U+FFFF as a UTF-16 surrogate pair (the only
// way JSON spells them).
func escapeJSON(js []byte, escape func(rune) bool) []byte {
	out := make([]byte, 0, len(js)+16)
	for _, r := range string(js) {
		if !escape(r) {
			out = utf8.AppendRune(out, r)
			continue
		}
		if hi, lo := utf16.EncodeRune(r); hi != utf8.RuneError {
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
			continue
		}
		out = fmt.Appendf(out, `\u%04x`, r)
	}
	return out
}

// YAMLSafe: s holds only line feeds and characters YAML prints as they
// are (no CR, NEL, U+2028/U+2029, controls, BOM or non-characters).
func YAMLSafe(s string) bool {
	for _, r := range s {
		if r != '\n' && !yamlPrintable(r) {
			return false
		}
	}
	return true
}

func yamlPrintable(r rune) bool {
	switch {
	case r >= 0x20 && r <= 0x7E:
		return true
	case r >= 0xA0 && r <= 0xD7FF:
		return r != 0x2028 && r != 0x2029
	case r >= 0xE000 && r <= 0xFFFD:
		return r != 0xFEFF
	}
	return r >= 0x10000 && r <= 0x10FFFF
}
