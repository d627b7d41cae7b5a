package report

import (
	"cmp"
	"fmt"
	"io"
	"strings"
)

// One file per format: render_json.go, render_yaml.go, render_table.go
// (table and wide), render_markdown.go, html.go and sarif.go; the cells and
// the next-step line that table and markdown share are in render_cells.go
// and render_advice.go.

// Formats the report renders to.
var Formats = []string{"table", "wide", "json", "yaml", "markdown", "html", "sarif"}

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
	o.Command = cmp.Or(o.Command, "kubectl serverfirst")
	switch format {
	case "json":
		return writeJSON(w, r)
	case "yaml":
		return renderYAML(w, r)
	case "table", "":
		return renderTable(w, r, o, false)
	case "wide":
		return renderTable(w, r, o, true)
	case "markdown", "md":
		return renderMarkdown(w, r, o)
	case "html":
		return renderHTML(w, r, o)
	case "sarif":
		return renderSARIF(w, r, o)
	}
	return fmt.Errorf("unknown output format %q: want one of %s", format, strings.Join(Formats, ", "))
}
