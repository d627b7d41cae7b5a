package report

import (
	"fmt"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

// RulesMarkdown is the README's table of codes, generated from the
// registry (a test keeps the README in step).
func RulesMarkdown() string {
	var b strings.Builder
	b.WriteString("| code | verdict | reason given | where Istio decides it |\n|---|---|---|---|\n")
	for _, r := range Rules() {
		if r.Retired {
			fmt.Fprintf(&b, "| `%s` | retired | %s | |\n", r.Code, safetext.Markdown(r.Explain))
			continue
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", r.Code, r.Verdict, safetext.Markdown(r.Message()), safetext.Markdown(r.Source))
	}
	return b.String()
}
