package report

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	"github.com/olekukonko/tablewriter/tw"

	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

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
				row[i] = safetext.Line(row[i])
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
		fmt.Fprintf(w, "warning: %s\n", safetext.Line(warn))
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
