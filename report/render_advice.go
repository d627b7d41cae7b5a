package report

import (
	"fmt"
	"strings"
)

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
	switch {
	case !firstAffected(r).Affected():
		b.WriteString("Nothing to fix.\n")
	case fromFiles(r):
		fmt.Fprintf(&b, "Next: change the manifests as each finding's fix says (-o yaml lists the fix manifests; %s explain %s)\n", o.Command, firstAffected(r))
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
