package report

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

func renderMarkdown(w io.Writer, r Report, o RenderOptions) error {
	list, hidden := shown(r, o.ShowAll)
	var b strings.Builder
	b.WriteString("# Server-first scan\n\n")
	if len(list) > 0 {
		b.WriteString("| Verdict | Namespace | Target | Protocol | Server | mTLS | Scenario | Proof | Fix |\n")
		b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
		for _, f := range list {
			fmt.Fprintf(&b, "| **%s** | %s | `%s` | %s | %s | %s | %s | %s | %s |\n", f.Verdict, safetext.Markdown(dash(f.Namespace)), safetext.Markdown(TargetName(f)),
				safetext.Markdown(protocolCell(f)), serverCell(f), safetext.Markdown(dash(f.MTLSMode)), dash(string(f.Scenario)), safetext.Markdown(proofCell(f)), fixCell(f))
		}
		b.WriteString("\n")
	}
	for _, f := range list {
		if len(f.Fixes) == 0 {
			continue
		}
		fmt.Fprintf(&b, "## %s %s/%s\n\n%s.\n\n", f.Verdict, safetext.Markdown(dash(f.Namespace)), safetext.Markdown(TargetName(f)), safetext.Markdown(f.Reason))
		for i, fix := range f.Fixes {
			label := "Alternative"
			if i == 0 {
				label = "Fix"
			}
			fmt.Fprintf(&b, "**%s: %s.** %s.\n\n", label, safetext.Markdown(fix.Title), safetext.Markdown(fix.Why))
			for _, n := range fix.Notes {
				fmt.Fprintf(&b, "- %s\n", safetext.Markdown(n))
			}
			if len(fix.Notes) > 0 {
				b.WriteString("\n")
			}
			if fix.Manifest != "" {
				fence := safetext.MarkdownFence(fix.Manifest)
				fmt.Fprintf(&b, "%syaml\n%s%s\n\n", fence, fix.Manifest, fence)
			}
			if fix.Command != "" {
				fence := safetext.MarkdownFence(fix.Command)
				fmt.Fprintf(&b, "%ssh\n%s\n%s\n\n", fence, fix.Command, fence)
			}
		}
	}
	if len(r.Warnings) > 0 {
		b.WriteString("## Warnings\n\n")
		for _, w := range slices.Sorted(slices.Values(r.Warnings)) {
			fmt.Fprintf(&b, "- %s\n", safetext.Markdown(w))
		}
		b.WriteString("\n")
	}
	b.WriteString(summaryLine(r, hidden, o))
	_, err := io.WriteString(w, b.String())
	return err
}
