package report

import (
	"cmp"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// The HTML report is one self-contained page: CSS, script and the chart
// (an SVG computed here) are inline, nothing is fetched. Every string from
// the cluster or the wire (names, banners, reasons) goes through
// html/template's contextual escaping; nothing here is template.HTML.

//go:embed html.tmpl
var htmlTemplateText string

var htmlTemplate = template.Must(template.New("report.html").Funcs(template.FuncMap{
	"verdictClass": verdictClass,
	"target":       TargetName,
	"protocol":     protocolCell,
	"server":       serverCell,
	"dash":         dash,
	"ms":           ms,
	"msf":          func(v float64) string { return ms(&v) },
	"join":         strings.Join,
	"inc":          func(i int) int { return i + 1 },
}).Parse(htmlTemplateText))

// htmlScript wires the Copy buttons and the unaffected-ports filter, then
// marks the body ready (the headless browser test looks for that mark).
// It is a fixed file: no data reaches it.
//
//go:embed html.js
var htmlScript string

var htmlCSP = func() string {
	sum := sha256.Sum256([]byte(htmlScript))
	return "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" +
		base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'"
}()

// htmlPage is what the template sees.
type htmlPage struct {
	// CSP allows only the page's own style and its one script (by hash):
	// no network, and no injected script could run.
	CSP      string
	Script   template.JS
	Command  string
	Report   Report
	Counts   []htmlCount
	Total    int
	Affected int
	Summary  []string
	Mesh     htmlMesh
	Cards    []htmlCard
	Chart    htmlChart
}

type htmlCount struct {
	Verdict Verdict
	N       int
	// Anchor is the id of the first card with this verdict ("" if none).
	Anchor string
}

type htmlMesh struct {
	Installed string
	Source    string
	Root      string
	Detection string
}

type htmlCard struct {
	ID string
	Finding
	Fixes []htmlFix
}

type htmlFix struct {
	Fix
	ID          string
	Recommended bool
	// Text is what the Copy button copies: the manifest or the command.
	Text string
	Lang string
}

// verdictClasses are the CSS classes of the verdicts' badges.
var verdictClasses = map[Verdict]string{
	Deadlock: "v-deadlock", MTLSRejected: "v-mtls", Delayed: "v-amber", AtRisk: "v-amber",
	Unreachable: "v-unreachable", ClientFirst: "v-ok", OK: "v-ok",
}

func verdictClass(v Verdict) string { return cmp.Or(verdictClasses[v], "v-unknown") }

func renderHTML(w io.Writer, r Report, o RenderOptions) error {
	p := htmlPage{CSP: htmlCSP, Script: template.JS(htmlScript), Command: o.Command, Report: r, Total: len(r.Findings), Summary: strings.Split(strings.TrimSpace(summaryLine(r, 0, o)), "\n")}
	first := map[Verdict]string{}
	for i, f := range r.Findings {
		id := "f" + strconv.Itoa(i+1)
		if _, ok := first[f.Verdict]; !ok {
			first[f.Verdict] = id
		}
		if f.Verdict.Affected() {
			p.Affected++
		}
		c := htmlCard{ID: id, Finding: f}
		for j, fix := range f.Fixes {
			hf := htmlFix{Fix: fix, ID: id + "-fix" + strconv.Itoa(j+1), Recommended: j == 0, Text: fix.Manifest, Lang: "yaml"}
			if hf.Text == "" {
				hf.Text, hf.Lang = fix.Command, "sh"
			}
			c.Fixes = append(c.Fixes, hf)
		}
		p.Cards = append(p.Cards, c)
	}
	for _, v := range Verdicts {
		p.Counts = append(p.Counts, htmlCount{Verdict: v, N: r.Summary[v], Anchor: first[v]})
	}
	p.Mesh = htmlMesh{Installed: "no", Source: dash(r.Mesh.Source), Root: dash(r.Mesh.RootNamespace)}
	if r.Mesh.IstioInstalled {
		p.Mesh.Installed = "yes"
	}
	if t := r.Mesh.ProtocolDetectionTimeoutMs; t > 0 {
		p.Mesh.Detection = (time.Duration(t) * time.Millisecond).String() + " (a server-first port answers only after it)"
	} else {
		p.Mesh.Detection = "0, disabled (a server-first port waits forever)"
	}
	p.Chart = buildChart(r)
	return htmlTemplate.Execute(w, p)
}

// Chart: time to first byte per target, one horizontal bar per probe,
// grouped by target and coloured by path.

// Chart series: where the probing client sat.
const (
	seriesDirect  = "direct"
	seriesMesh    = "mesh"
	seriesOutside = "outside"
	seriesSelf    = "self"
)

var seriesOrder = []string{seriesDirect, seriesMesh, seriesOutside, seriesSelf}

var seriesLabel = map[string]string{
	seriesDirect:  "direct (bypasses the sidecar)",
	seriesMesh:    "through the mesh (mesh-client)",
	seriesOutside: "outside the mesh (outside-client)",
	seriesSelf:    "self (where the tool ran)",
}

func seriesOf(e Evidence) string {
	switch {
	case e.Vantage == target.VantageProxyConfig:
		return "" // config, not a connection: nothing to chart
	case e.Vantage == target.VantageDirect:
		return seriesDirect
	case e.throughMesh():
		return seriesMesh
	case e.Vantage == target.VantageOutsideClient:
		return seriesOutside
	}
	// "self" without a sidecar (a laptop, a non-injected Job): its own
	// series, since whether it is "direct" depends on the server.
	return seriesSelf
}

// Chart geometry, in SVG user units.
const (
	chartWidth  = 960.0
	chartLeft   = 250.0 // room for target names
	chartRight  = 150.0 // room for value labels after the longest bar
	chartTop    = 56.0  // legend
	barHeight   = 14.0
	barGap      = 4.0
	groupGap    = 16.0
	axisSpace   = 48.0 // tick labels and axis title under the plot
	labelRunes  = 34   // target names longer than this are shortened
	minLogValue = 0.1  // ms; the log axis starts no lower
)

type htmlChart struct {
	Empty      bool
	Width      float64
	Height     float64
	PlotLeft   float64
	PlotRight  float64
	PlotTop    float64
	PlotBottom float64
	AxisTitle  string
	Ticks      []chartTick
	Groups     []chartGroup
	Legend     []chartLegend
	// Timeout marks the mesh's protocolDetectionTimeout on the axis.
	Timeout *chartTick
	Summary string
}

type chartTick struct {
	X     float64
	Label string
}

type chartLegend struct {
	Series string
	Label  string
	X      float64
}

type chartGroup struct {
	Label    string
	Full     string
	Verdict  Verdict
	LabelY   float64
	Y        float64
	Height   float64
	Bars     []chartBar
	Separate bool
}

type chartBar struct {
	Series string
	// Kind is "banner" (a solid bar to the first byte), "silent" (a
	// hatched bar to the end of the axis: no byte before the probe gave
	// up) or "none" (no connection: a marker at the start).
	Kind   string
	Y      float64
	Width  float64
	LabelX float64
	TextY  float64
	Label  string
	Title  string
}

// chartScale maps milliseconds to x.
type chartScale struct {
	log      bool
	min, max float64
	x0, x1   float64
}

func (s chartScale) x(v float64) float64 {
	if s.log {
		v = math.Max(v, s.min)
		return s.x0 + (math.Log10(v)-math.Log10(s.min))/(math.Log10(s.max)-math.Log10(s.min))*(s.x1-s.x0)
	}
	return s.x0 + math.Max(v, 0)/s.max*(s.x1-s.x0)
}

func buildChart(r Report) htmlChart {
	c := htmlChart{Width: chartWidth, PlotLeft: chartLeft, PlotRight: chartWidth - chartRight, PlotTop: chartTop}
	lo, hi := math.Inf(1), 0.0
	type row struct {
		f  Finding
		es []Evidence
	}
	var rows []row
	for _, f := range r.Findings {
		if len(f.Evidence) == 0 {
			continue
		}
		var es []Evidence
		for _, s := range seriesOrder {
			for _, e := range f.Evidence {
				if seriesOf(e) == s {
					es = append(es, e)
				}
			}
		}
		for _, e := range es {
			if e.Outcome == "banner" && e.FirstByteMs != nil {
				lo, hi = math.Min(lo, *e.FirstByteMs), math.Max(hi, *e.FirstByteMs)
			}
		}
		rows = append(rows, row{f, es})
	}
	timeout := float64(r.Mesh.ProtocolDetectionTimeoutMs)
	if timeout > 0 {
		hi = math.Max(hi, timeout)
	}
	if hi <= 0 {
		hi = 1000 // only silence and failures: a one-second axis
	}
	if math.IsInf(lo, 1) {
		lo = hi
	}
	lo = math.Max(lo, minLogValue)
	sc := chartScale{x0: c.PlotLeft, x1: c.PlotRight}
	// Probe times span orders of magnitude (a local banner in 0.3 ms, a
	// mesh fallback in 5 s): a log axis when they do, else a linear one.
	if hi/lo > 20 {
		sc.log = true
		sc.min = math.Pow(10, math.Floor(math.Log10(lo)))
		sc.max = math.Pow(10, math.Ceil(math.Log10(hi*1.05)))
		for v := sc.min; v <= sc.max*1.0001; v *= 10 {
			c.Ticks = append(c.Ticks, chartTick{X: round1(sc.x(v)), Label: axisLabel(v)})
		}
		c.AxisTitle = "time to first byte (ms, log scale)"
	} else {
		step := niceStep(hi * 1.1 / 5)
		sc.max = math.Ceil(hi*1.1/step) * step
		for v := 0.0; v <= sc.max*1.0001; v += step {
			c.Ticks = append(c.Ticks, chartTick{X: round1(sc.x(v)), Label: axisLabel(v)})
		}
		c.AxisTitle = "time to first byte (ms, linear scale)"
	}
	if timeout > 0 {
		c.Timeout = &chartTick{X: round1(sc.x(timeout)), Label: "protocolDetectionTimeout " + (time.Duration(timeout) * time.Millisecond).String()}
	}
	x := c.PlotLeft
	seen := map[string]bool{}
	for _, rw := range rows {
		for _, e := range rw.es {
			seen[seriesOf(e)] = true
		}
	}
	for _, s := range seriesOrder {
		if seen[s] || len(rows) == 0 && s != seriesSelf {
			c.Legend = append(c.Legend, chartLegend{Series: s, Label: seriesLabel[s], X: x})
			x += 16 + 7*float64(len(seriesLabel[s])) + 20
		}
	}
	y := chartTop
	for i, rw := range rows {
		g := chartGroup{Full: rw.f.Namespace + "/" + TargetName(rw.f), Verdict: rw.f.Verdict, Y: y, Separate: i > 0}
		if rw.f.Namespace == "" {
			g.Full = TargetName(rw.f)
		}
		g.Label = shorten(g.Full, labelRunes)
		for _, e := range rw.es {
			b := chartBar{Series: seriesOf(e), Kind: "none", Y: y, TextY: round1(y + barHeight - 3)}
			who := string(e.Vantage)
			switch {
			case e.Outcome == "banner" && e.FirstByteMs != nil:
				b.Kind = "banner"
				b.Width = round1(math.Max(sc.x(*e.FirstByteMs)-c.PlotLeft, 2))
				b.Label = ms(e.FirstByteMs)
				b.Title = fmt.Sprintf("%s: first byte after %s", who, ms(e.FirstByteMs))
			case e.Outcome == "silent":
				b.Kind = "silent"
				b.Width = round1(c.PlotRight - c.PlotLeft)
				b.Label = "silent until timeout"
				b.Title = who + ": no byte before the probe's timeout"
			default:
				b.Width = 0
				b.Label = "no connection: " + e.Outcome
				b.Title = who + ": " + e.Outcome
				if e.Error != "" {
					b.Title += " (" + e.Error + ")"
				}
			}
			b.LabelX = round1(c.PlotLeft + b.Width + 6)
			g.Bars = append(g.Bars, b)
			y += barHeight + barGap
		}
		g.Height = y - barGap - g.Y
		g.LabelY = round1(g.Y + g.Height/2 + 4)
		g.Y = round1(g.Y)
		g.Height = round1(g.Height)
		c.Groups = append(c.Groups, g)
		y += groupGap
	}
	if len(rows) == 0 {
		c.Empty = true
		y += 70
		if r.Static {
			c.Summary = "No probe evidence: the verdicts are static. An active scan from inside the mesh measures the time to the first byte on each path."
		} else {
			c.Summary = "No probe evidence for any target."
		}
	}
	c.PlotBottom = round1(y - groupGap + 8)
	if len(rows) == 0 {
		c.PlotBottom = round1(y)
	}
	c.Height = round1(c.PlotBottom + axisSpace)
	return c
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func axisLabel(v float64) string {
	switch {
	case v >= 1000:
		return strconv.FormatFloat(v/1000, 'f', -1, 64) + "s"
	case v == 0:
		return "0"
	}
	return strconv.FormatFloat(v, 'f', -1, 64) + "ms"
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// shorten cuts s to n runes, marking the cut.
func shorten(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n-1]) + "…"
}
