package report

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

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
