package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"
	"sigs.k8s.io/yaml"
)

// Formats the report renders to.
var Formats = []string{"table", "wide", "json", "yaml", "markdown", "html"}

// RenderOptions tune human-readable output.
type RenderOptions struct {
	// Color verdicts with ANSI codes (only on a terminal, never with NO_COLOR).
	Color bool
	// ShowAll lists every finding in table/markdown, not only the
	// affected ones (wide always does).
	ShowAll bool
	// Command is how the user invoked the tool ("kubectl serverfirst"),
	// for the next-step line.
	Command string
}

// Render writes the report in one of Formats.
func Render(w io.Writer, format string, r Report, o RenderOptions) error {
	if o.Command == "" {
		o.Command = "kubectl serverfirst"
	}
	switch format {
	case "json":
		return writeJSON(w, r)
	case "yaml":
		js, err := json.Marshal(r)
		if err != nil {
			return err
		}
		// Text from the cluster or the wire may hold characters the YAML
		// emitter writes raw although a reader takes them for line breaks
		// (U+2028) or refuses them (DEL): then the report is written as
		// JSON with those escaped, which reads back as the same YAML.
		out, err := yaml.JSONToYAML([]byte(escapeJSONForYAML(string(js))))
		if err != nil || !yamlSafe(string(out)) {
			_, err = io.WriteString(w, yamlSafeJSON(js))
			return err
		}
		_, err = w.Write(out)
		return err
	case "table", "":
		return renderTable(w, r, o, false)
	case "wide":
		return renderTable(w, r, o, true)
	case "markdown", "md":
		return renderMarkdown(w, r, o)
	case "html":
		return renderHTML(w, r, o)
	}
	return fmt.Errorf("unknown output format %q: want one of %s", format, strings.Join(Formats, ", "))
}

// writeJSON writes indented JSON; slices are never null.
func writeJSON(w io.Writer, r Report) error {
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	for i := range r.Findings {
		if r.Findings[i].Hints == nil {
			r.Findings[i].Hints = []string{}
		}
		if r.Findings[i].Evidence == nil {
			r.Findings[i].Evidence = []Evidence{}
		}
		if r.Findings[i].Fixes == nil {
			r.Findings[i].Fixes = []Fix{}
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// NewPlainTable is a kubectl-style table: no borders, left aligned, three
// spaces between columns.
func NewPlainTable(w io.Writer) *tablewriter.Table {
	return tablewriter.NewTable(w,
		tablewriter.WithRenderer(renderer.NewBlueprint(tw.Rendition{
			Borders: tw.BorderNone,
			Symbols: tw.NewSymbols(tw.StyleNone),
			Settings: tw.Settings{
				Separators: tw.Separators{BetweenColumns: tw.Off, BetweenRows: tw.Off, ShowHeader: tw.Off},
				Lines:      tw.Lines{ShowTop: tw.Off, ShowBottom: tw.Off, ShowHeaderLine: tw.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tw.Off),
		tablewriter.WithHeaderAlignment(tw.AlignLeft),
		tablewriter.WithRowAlignment(tw.AlignLeft),
		tablewriter.WithRowAutoWrap(tw.WrapNone),
		tablewriter.WithHeaderAutoWrap(tw.WrapNone),
		tablewriter.WithTrimSpace(tw.Off),
		tablewriter.WithPadding(tw.Padding{Left: "", Right: "   ", Overwrite: true}),
	)
}

var verdictColor = map[Verdict]string{
	Deadlock: "\x1b[1;31m", MTLSRejected: "\x1b[31m", Delayed: "\x1b[33m", AtRisk: "\x1b[33m",
	Unreachable: "\x1b[35m", ClientFirst: "\x1b[32m", OK: "\x1b[32m",
}

// shown returns the findings a table lists.
func shown(r Report, all bool) (list []Finding, hidden int) {
	for _, f := range r.Findings {
		if all || f.Verdict.Affected() || f.Verdict == Unreachable {
			list = append(list, f)
		} else {
			hidden++
		}
	}
	return list, hidden
}

// TargetName is the short kubectl-style name of a finding's target.
func TargetName(f Finding) string {
	switch f.Kind {
	case KindService:
		return "svc/" + f.Name + ":" + strconv.Itoa(int(f.Port))
	case KindServiceEntry:
		return "se/" + f.Name + ":" + strconv.Itoa(int(f.Port))
	}
	return f.Name + ":" + strconv.Itoa(int(f.Port))
}

func protocolCell(f Finding) string {
	if f.Protocol == "auto" {
		if f.AppProtocolTrap {
			return "auto (appProtocol trap)"
		}
		return "auto (sniffed)"
	}
	return f.Protocol + " (" + f.ProtocolSource + ")"
}

func serverCell(f Finding) string {
	switch {
	case f.Kind != KindService:
		return "external"
	case f.ServerInMesh:
		return "sidecar"
	}
	return "no sidecar"
}

func fixCell(f Finding) string {
	if len(f.Fixes) == 0 {
		return "-"
	}
	return f.Fixes[0].Type
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// proofCell summarises the evidence in a few words: "direct 2ms, mesh -".
func proofCell(f Finding) string {
	if len(f.Evidence) == 0 {
		return "static"
	}
	var parts []string
	for _, e := range f.Evidence {
		v := string(e.Vantage)
		if e.Vantage == VantageSelf && e.throughMesh() {
			v = "self(mesh)"
		}
		switch e.Outcome {
		case "banner":
			parts = append(parts, v+" "+ms(e.FirstByteMs))
		case "silent":
			parts = append(parts, v+" silent")
		default:
			parts = append(parts, v+" "+e.Outcome)
		}
	}
	return strings.Join(parts, ", ")
}

func renderTable(w io.Writer, r Report, o RenderOptions, wide bool) error {
	list, hidden := shown(r, o.ShowAll || wide)
	var buf bytes.Buffer
	if len(list) > 0 {
		t := NewPlainTable(&buf)
		header := []string{"VERDICT", "NAMESPACE", "TARGET", "PROTOCOL", "SERVER", "MTLS", "SCENARIO", "PROOF", "FIX"}
		if wide {
			header = append(header, "HINTS", "REASON")
		}
		t.Header(header)
		for _, f := range list {
			row := []string{string(f.Verdict), dash(f.Namespace), TargetName(f), protocolCell(f), serverCell(f), dash(f.MTLSMode), dash(string(f.Scenario)), proofCell(f), fixCell(f)}
			if wide {
				row = append(row, dash(strings.Join(f.Hints, ",")), f.Reason)
			}
			for i := range row {
				row[i] = safeText(row[i])
			}
			if err := t.Append(row); err != nil {
				return err
			}
		}
		if err := t.Render(); err != nil {
			return err
		}
	}
	out := buf.String()
	if o.Color {
		out = colorVerdicts(out)
	}
	if _, err := io.WriteString(w, out); err != nil {
		return err
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(w, "warning: %s\n", safeText(warn))
	}
	_, err := io.WriteString(w, summaryLine(r, hidden, o))
	return err
}

// colorVerdicts colours the first word of each table row (the verdict).
func colorVerdicts(table string) string {
	lines := strings.SplitAfter(table, "\n")
	for i, l := range lines {
		word, rest, _ := strings.Cut(l, " ")
		if c, ok := verdictColor[Verdict(word)]; ok {
			lines[i] = c + word + "\x1b[0m " + rest
		}
	}
	return strings.Join(lines, "")
}

// summaryLine counts verdicts and says what to run next.
func summaryLine(r Report, hidden int, o RenderOptions) string {
	var counts []string
	for _, v := range Verdicts {
		if n := r.Summary[v]; n > 0 {
			counts = append(counts, fmt.Sprintf("%d %s", n, v))
		}
	}
	if len(counts) == 0 {
		return "No Service or ServiceEntry ports found in scope.\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d ports: %s.", len(r.Findings), strings.Join(counts, ", "))
	if hidden > 0 {
		fmt.Fprintf(&b, " %d unaffected not listed (-o wide or --show-ok lists them).", hidden)
	}
	b.WriteString("\n")
	affected := 0
	proven := 0
	for _, f := range r.Findings {
		if f.Verdict.Affected() {
			affected++
		}
		if f.Verdict == Deadlock || f.Verdict == Delayed {
			proven++
		}
	}
	switch {
	case affected == 0:
		b.WriteString("Nothing to fix.\n")
	case r.Static:
		fmt.Fprintf(&b, "Next: %s fix | kubectl apply -f -   (verdicts are static; prove them with an active scan from inside the mesh; %s explain AT-RISK)\n", o.Command, o.Command)
	default:
		fmt.Fprintf(&b, "Next: %s fix | kubectl apply -f -   (or %s fix --apply; %s explain %s)\n", o.Command, o.Command, o.Command, firstAffected(r))
	}
	return b.String()
}

func firstAffected(r Report) Verdict {
	for _, f := range r.Findings {
		if f.Verdict.Affected() {
			return f.Verdict
		}
	}
	return OK
}

func renderMarkdown(w io.Writer, r Report, o RenderOptions) error {
	list, hidden := shown(r, o.ShowAll)
	var b strings.Builder
	b.WriteString("# Server-first scan\n\n")
	if len(list) > 0 {
		b.WriteString("| Verdict | Namespace | Target | Protocol | Server | mTLS | Scenario | Proof | Fix |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range list {
			fmt.Fprintf(&b, "| **%s** | %s | `%s` | %s | %s | %s | %s | %s | %s |\n", f.Verdict, mdCell(dash(f.Namespace)), mdCell(TargetName(f)),
				mdCell(protocolCell(f)), serverCell(f), mdCell(dash(f.MTLSMode)), dash(string(f.Scenario)), mdCell(proofCell(f)), fixCell(f))
		}
		b.WriteString("\n")
	}
	for _, f := range list {
		if len(f.Fixes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s %s/%s\n\n%s.\n\n", f.Verdict, mdCell(dash(f.Namespace)), mdCell(TargetName(f)), mdCell(f.Reason))
		for i, fix := range f.Fixes {
			label := "Alternative"
			if i == 0 {
				label = "Fix"
			}
			fmt.Fprintf(&b, "**%s: %s.** %s.\n\n", label, mdCell(fix.Title), mdCell(fix.Why))
			for _, n := range fix.Notes {
				fmt.Fprintf(&b, "- %s\n", mdCell(n))
			}
			if len(fix.Notes) > 0 {
				b.WriteString("\n")
			}
			if fix.Manifest != "" {
				fence := mdFence(fix.Manifest)
				fmt.Fprintf(&b, "%syaml\n%s%s\n\n", fence, fix.Manifest, fence)
			}
			if fix.Command != "" {
				fence := mdFence(fix.Command)
				fmt.Fprintf(&b, "%ssh\n%s\n%s\n\n", fence, fix.Command, fence)
			}
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("## Warnings\n\n")
		ws := append([]string{}, r.Warnings...)
		sort.Strings(ws)
		for _, w := range ws {
			fmt.Fprintf(&b, "- %s\n", mdCell(w))
		}
		b.WriteString("\n")
	}
	b.WriteString(summaryLine(r, hidden, o))
	_, err := io.WriteString(w, b.String())
	return err
}

// mdCell keeps untrusted text (names, banners) from breaking the table or
// injecting markup.
func mdCell(s string) string {
	r := strings.NewReplacer("|", "\\|", "<", "&lt;", ">", "&gt;", "`", "'")
	return r.Replace(safeText(s))
}

// mdFence is a code fence longer than any run of backticks in s, so that
// nothing inside can close it (CommonMark: a closing fence is at least as
// long as the opening one).
func mdFence(s string) string {
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
