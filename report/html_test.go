package report

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"image"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// The HTML golden file (testdata/report.html.golden) is written by
// TestRenderGolden, which renders every entry of Formats; -update rewrites it.

// htmlTag matches every tag the page holds once the bodies of its one
// <style> and one <script> are cut out: any other "<" would be markup that
// escaped the template's escaping.
var (
	htmlTag    = regexp.MustCompile(`<(/?)([A-Za-z][A-Za-z0-9-]*)([^<>]*)>`)
	htmlOnAttr = regexp.MustCompile(`(?i)\son[a-z]+\s*=`)
	// htmlURL is a scheme, a CSS url() to anything but a fragment, or a
	// scheme-relative address.
	htmlURL = regexp.MustCompile(`(?i)([a-z]+:|url\(\s*["']?[^#\s"')]|="//)`)
	// htmlCSSURL is a stylesheet reaching out: url() to anything but a
	// fragment, @import, a scheme-relative address.
	htmlCSSURL = regexp.MustCompile(`(?i)(url\(\s*["']?[^#\s"')]|@import|//)`)
	htmlTagsOK = map[string]bool{}
	htmlBodies = regexp.MustCompile(`(?s)(<style>).*?(</style>)|(<script>).*?(</script>)`)
	// In a serialised DOM, text never holds a raw "<" or ">": this only
	// matches inside tags.
	htmlDOMOnAttr = regexp.MustCompile(`(?i)<[^>]*\son[a-z]+=`)
	htmlBarRect   = regexp.MustCompile(`<rect class="bar (banner|silent) s-(direct|mesh|outside|self)"`)
)

func init() {
	for _, t := range strings.Fields(`html head meta title style body main header h1 h2 h3 p strong ul li a span div section dl dt dd
		figure svg desc defs pattern line g rect text path figcaption label input article table thead tbody tr th td button pre footer script`) {
		htmlTagsOK[t] = true
	}
}

// checkHTMLMarkup: only the template's own elements, no event-handler
// attributes, no external resources, one script (the pinned one).
func checkHTMLMarkup(t *testing.T, out string) {
	t.Helper()
	if n := strings.Count(out, "<script"); n != 1 {
		t.Errorf("%d <script tags, want 1", n)
	}
	if n := strings.Count(out, "</script"); n != 1 {
		t.Errorf("%d </script tags, want 1", n)
	}
	if n := strings.Count(out, "<style"); n != 1 {
		t.Errorf("%d <style tags, want 1", n)
	}
	stripped := htmlBodies.ReplaceAllString(strings.TrimPrefix(out, "<!DOCTYPE html>"), "$1$2$3$4")
	for _, m := range htmlTag.FindAllStringSubmatch(stripped, -1) {
		if !htmlTagsOK[strings.ToLower(m[2])] {
			t.Errorf("unexpected element %q in %s", m[2], m[0])
		}
		if htmlOnAttr.MatchString(m[3]) {
			t.Errorf("event-handler attribute in %s", m[0])
		}
		if strings.Contains(m[3], "src=") {
			t.Errorf("a resource is loaded: %s", m[0])
		}
		// Offline: no attribute points anywhere but the SVG namespace.
		if u := htmlURL.FindString(strings.Replace(m[3], `xmlns="http://www.w3.org/2000/svg"`, "", 1)); u != "" {
			t.Errorf("external reference %q in %s", u, m[0])
		}
	}
	// Outside the tags, the text holds no raw "<": every one was escaped.
	if rest := htmlTag.ReplaceAllString(stripped, ""); strings.Contains(rest, "<") {
		i := strings.Index(rest, "<")
		t.Errorf("raw < outside a tag: %q", rest[max(0, i-60):min(len(rest), i+60)])
	}
	if style := out[strings.Index(out, "<style>"):strings.Index(out, "</style>")]; htmlCSSURL.MatchString(style) {
		t.Error("the stylesheet refers to something outside the page")
	}
	// The CSP pins the script by its hash, and the script is there verbatim.
	csp := regexp.MustCompile(`<meta http-equiv="Content-Security-Policy" content="([^"]*)">`).FindStringSubmatch(out)
	sum := sha256.Sum256([]byte(htmlScript))
	want := "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'"
	if csp == nil || html.UnescapeString(csp[1]) != want {
		t.Errorf("CSP is %q, want %q", csp, want)
	}
	if !strings.Contains(out, "<script>"+htmlScript+"</script>") {
		t.Error("the script is not the pinned constant")
	}
}

func TestHTMLRepresentative(t *testing.T) {
	r := Build(representativeInput())
	out := render(t, "html", r, RenderOptions{})
	checkHTMLMarkup(t, out)
	if !strings.HasPrefix(out, "<!DOCTYPE html>") || !strings.HasSuffix(out, "</html>\n") {
		t.Error("not a whole HTML document")
	}
	for _, v := range Verdicts {
		want := `<span class="n">` + strconv.Itoa(r.Summary[v]) + `</span><span class="badge ` + verdictClass(v) + `">` + string(v) + `</span>`
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %s", want)
		}
	}
	for v, class := range map[Verdict]string{Deadlock: "v-deadlock", MTLSRejected: "v-mtls", Delayed: "v-amber", AtRisk: "v-amber",
		Unreachable: "v-unreachable", ClientFirst: "v-ok", OK: "v-ok"} {
		if verdictClass(v) != class {
			t.Errorf("%s is %s, want %s", v, verdictClass(v), class)
		}
	}
	// One card per finding, worst first, each fix with a Copy button.
	cards := regexp.MustCompile(`<article class="card c-v-[a-z]+[^"]*" id="f(\d+)">\n<header>\n<span class="badge [a-z-]+">([A-Z-]+)</span>`).FindAllStringSubmatch(out, -1)
	if len(cards) != len(r.Findings) {
		t.Fatalf("%d cards, want %d", len(cards), len(r.Findings))
	}
	fixes := 0
	for i, c := range cards {
		if c[1] != strconv.Itoa(i+1) || c[2] != string(r.Findings[i].Verdict) {
			t.Errorf("card %d is %s %s, want %s", i+1, c[1], c[2], r.Findings[i].Verdict)
		}
		for _, fx := range r.Findings[i].Fixes {
			if fx.Manifest != "" || fx.Command != "" {
				fixes++
			}
		}
	}
	if n := strings.Count(out, `<button type="button" class="copy"`); n != fixes || fixes == 0 {
		t.Errorf("%d Copy buttons for %d fixes", n, fixes)
	}
	// The manifests are there verbatim (escaped), ready to copy.
	var plan string
	for _, f := range r.Findings {
		for _, fx := range f.Fixes {
			if fx.Manifest != "" && plan == "" {
				plan = fx.Manifest
			}
		}
	}
	if !strings.Contains(out, htmlEscape(plan)) {
		t.Errorf("first manifest missing:\n%s", plan)
	}
	// The chart: every kind of bar, the timeout line, the axis.
	for _, want := range []string{`<svg id="ttfb-chart"`, `class="bar banner s-direct"`, `class="bar banner s-mesh"`, `class="bar silent s-mesh"`,
		`class="bar silent s-outside"`, `class="bar none-mark s-direct"`, `class="timeout"`, "protocolDetectionTimeout 5s",
		"time to first byte (ms, log scale)", ">silent until timeout<", ">no connection: refused<", `<pattern id="hatch-mesh"`} {
		if !strings.Contains(out, want) {
			t.Errorf("chart lacks %s", want)
		}
	}
	if n := len(htmlBarRect.FindAllString(out, -1)); n < 10 {
		t.Errorf("%d bars", n)
	}
	if strings.Contains(out, "No probe evidence to chart") {
		t.Error("empty state shown with evidence")
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

func TestHTMLChartScale(t *testing.T) {
	// Close times: a linear axis from 0.
	mk := func(vals ...float64) Report {
		f := Finding{Kind: target.KindService, Namespace: "ns", Name: "a", Port: 1, Verdict: OK}
		for _, v := range vals {
			f.Evidence = append(f.Evidence, Evidence{Vantage: target.VantageDirect, Outcome: "banner", FirstByteMs: &v})
		}
		return Report{Findings: []Finding{f}}
	}
	c := buildChart(mk(10, 40))
	if c.AxisTitle != "time to first byte (ms, linear scale)" || c.Ticks[0].Label != "0" || c.Ticks[len(c.Ticks)-1].Label != "50ms" {
		t.Errorf("linear axis: %s %+v", c.AxisTitle, c.Ticks)
	}
	if b := c.Groups[0].Bars[1]; b.Width != round1((40.0/50)*(c.PlotRight-c.PlotLeft)) {
		t.Errorf("40 ms of 50 is %v wide", b.Width)
	}
	// Orders of magnitude apart: decades.
	c = buildChart(mk(0.4, 5003))
	var labels []string
	for _, tk := range c.Ticks {
		labels = append(labels, tk.Label)
	}
	if got := strings.Join(labels, " "); got != "0.1ms 1ms 10ms 100ms 1s 10s" || !strings.Contains(c.AxisTitle, "log") {
		t.Errorf("log axis: %s (%s)", got, c.AxisTitle)
	}
	for i := 1; i < len(c.Ticks); i++ {
		if c.Ticks[i].X <= c.Ticks[i-1].X {
			t.Errorf("ticks not increasing: %+v", c.Ticks)
		}
	}
	// Long names are shortened, with the full name in the tooltip.
	r := mk(1)
	r.Findings[0].Name = strings.Repeat("x", 80)
	c = buildChart(r)
	if g := c.Groups[0]; len([]rune(g.Label)) != labelRunes || !strings.HasSuffix(g.Label, "…") || !strings.Contains(g.Full, r.Findings[0].Name) {
		t.Errorf("label %q", g.Label)
	}
}

func TestHTMLEmptyChart(t *testing.T) {
	p := pod("shop", "db-0", "db", true, "mysql:8")
	static := Build(Input{Inventory: meshInv([]cluster.Pod{p}, svc("shop", "db", "db", []cluster.Pod{p}, tport("db", 3307, "3306", ""))), Static: true})
	for name, r := range map[string]Report{"static": static, "empty": Build(Input{}), "zero": {}} {
		t.Run(name, func(t *testing.T) {
			out := render(t, "html", r, RenderOptions{})
			checkHTMLMarkup(t, out)
			for _, want := range []string{`<svg id="ttfb-chart"`, "No probe evidence to chart.", `class="axis"`} {
				if !strings.Contains(out, want) {
					t.Errorf("empty chart lacks %s", want)
				}
			}
			if strings.Contains(out, `class="bar`) {
				t.Error("bars without evidence")
			}
		})
	}
	if out := render(t, "html", static, RenderOptions{}); !strings.Contains(out, "the verdicts are static") || !strings.Contains(out, "Static verdicts.") {
		t.Error("a static report does not say so")
	}
}

// htmlHostile tries to break out of text, attributes, the script and the SVG.
const htmlHostile = `</script><script>alert(1)</script><img src=x onerror="alert(2)">'"&amp;</title></text></svg><svg onload=alert(3)>`

func TestHTMLHostileInput(t *testing.T) {
	for _, s := range []string{htmlHostile, hostile, "</style><style>body{display:none}", "javascript:alert(1)", "{{.Report}}"} {
		r := Build(hostileInput(s))
		out := render(t, "html", r, RenderOptions{ShowAll: true})
		checkHTMLMarkup(t, out)
		if s != htmlHostile {
			continue
		}
		if strings.Contains(out, "<img") || strings.Contains(out, "alert(1)</script>") || strings.Contains(out, "<svg onload") {
			t.Error("hostile markup appears raw")
		}
		esc := `&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=&#34;alert(2)&#34;&gt;&#39;&#34;&amp;amp;&lt;/title&gt;`
		for _, where := range []string{
			`<li>` + esc,                     // warning
			`<span class="chip mono">` + esc, // hint or host
			`<td class="banner mono">` + esc, // banner
			`ns-` + esc,                      // namespace in a card
		} {
			if !strings.Contains(out, where) {
				t.Errorf("escaped text missing: %s", where)
			}
		}
	}
}

// FuzzRenderHTML puts arbitrary names, hosts and banners through the page:
// whatever they hold, it stays text.
func FuzzRenderHTML(f *testing.F) {
	fuzzSeeds(f)
	f.Add(htmlHostile, htmlHostile, htmlHostile)
	f.Add("{{.}}", "</title><script>", "]]><!--")
	f.Fuzz(func(t *testing.T, name, label, wire string) {
		checkHTMLMarkup(t, render(t, "html", Build(fuzzInput(name, label, wire)), RenderOptions{ShowAll: true}))
	})
}

// chromium runs the page in headless Chromium: no network (a file:// URL,
// no proxy, background services off), its own profile and HOME, a deadline.
func chromium(t *testing.T, bin, dir string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--no-proxy-server", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
		"--disable-extensions", "--user-data-dir=" + filepath.Join(dir, "profile"), "--enable-logging=stderr", "--v=0"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("chromium %v: timed out after 60s\n%s", args, errb.String())
	}
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.String(), errb.String()
}

// consoleLines are Chromium's log lines for console messages the page
// caused: console.*, uncaught exceptions, CSP violations. Chromium logs
// every level as INFO, so the page must log nothing at all.
func consoleLines(stderr, url string) []string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, ":CONSOLE") && (strings.Contains(l, url) || !strings.Contains(l, "source: ")) ||
			strings.Contains(l, "Uncaught") {
			lines = append(lines, l)
		}
	}
	return lines
}

func findChromium() string {
	for _, p := range []string{"/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	return ""
}

// TestHTMLInChromium loads pages in headless Chromium, one at a time (each
// browser wants the CPUs): --dump-dom gives the DOM after the script ran,
// --enable-logging=stderr the console, --screenshot the rendering.
func TestHTMLInChromium(t *testing.T) {
	bin := findChromium()
	if bin == "" {
		t.Skip("no /usr/bin/chromium: hack/test-deps.sh installs it (apt-get install chromium chromium-driver)")
	}
	for _, page := range []struct {
		name string
		r    Report
		shot bool
	}{
		{"representative", Build(representativeInput()), true},
		{"hostile", Build(hostileInput(htmlHostile)), false},
		{"empty", Build(Input{}), false},
	} {
		t.Run(page.name, func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, page.name+".html")
			if err := os.WriteFile(file, []byte(render(t, "html", page.r, RenderOptions{ShowAll: true})), 0o644); err != nil {
				t.Fatal(err)
			}
			url := "file://" + file
			args := []string{"--dump-dom"}
			shot := filepath.Join(dir, "page.png")
			if page.shot {
				args = append(args, "--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars")
			}
			start := time.Now()
			dom, stderr := chromium(t, bin, dir, append(args, url)...)
			t.Logf("chromium %s took %s", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
			if l := consoleLines(stderr, url); len(l) > 0 {
				t.Errorf("the page logged to the console (script error, CSP violation…):\n%s", strings.Join(l, "\n"))
			}
			// The script ran to its end: it marks the body.
			fixes := 0
			for _, f := range page.r.Findings {
				for _, fx := range f.Fixes {
					if fx.Manifest != "" || fx.Command != "" {
						fixes++
					}
				}
			}
			for _, want := range []string{`data-ready="1"`, `data-copy-buttons="` + strconv.Itoa(fixes) + `"`, `<svg id="ttfb-chart"`} {
				if !strings.Contains(dom, want) {
					t.Errorf("rendered DOM lacks %s", want)
				}
			}
			if len(page.r.Findings) == 0 {
				if !strings.Contains(dom, "No probe evidence to chart.") {
					t.Error("empty chart has no explanation")
				}
			} else if !htmlBarRect.MatchString(dom) {
				t.Error("rendered chart has no bar")
			}
			// Nothing hostile became an element.
			if strings.Count(dom, "<script") != 1 || strings.Contains(dom, "<img") || htmlDOMOnAttr.MatchString(dom) ||
				strings.Count(dom, "<svg") != 1 || strings.Count(dom, "<style") != 1 {
				t.Error("the browser built elements from untrusted text")
			}
			if page.shot {
				checkScreenshot(t, shot)
			}
		})
	}
}

// checkScreenshot: a 1280x2000 PNG with many colours (badges, bars, text),
// not a blank or an error page.
func checkScreenshot(t *testing.T, file string) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1280 || b.Dy() != 2000 {
		t.Errorf("screenshot is %v", b)
	}
	colors := map[[3]uint32]bool{}
	sampleColors(img, colors)
	if len(colors) < 50 {
		t.Errorf("screenshot has %d colours: blank?", len(colors))
	}
	for _, c := range [][3]uint32{{0xd1, 0x24, 0x2f}, {0x2f, 0x8a, 0x3e}} { // DEADLOCK red, OK green (light scheme)
		if !colors[c] {
			t.Errorf("screenshot lacks colour #%02x%02x%02x", c[0], c[1], c[2])
		}
	}
}

func sampleColors(img image.Image, into map[[3]uint32]bool) {
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			into[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
}

// TestHTMLCopyButtonInChromium clicks (a real, trusted click through
// chromedriver) the first Copy button and the unaffected-ports filter.
func TestHTMLCopyButtonInChromium(t *testing.T) {
	bin := findChromium()
	driver, err := exec.LookPath("chromedriver")
	if bin == "" || err != nil {
		t.Skip("no chromium or chromedriver: hack/test-deps.sh installs them (apt-get install chromium chromium-driver)")
	}
	start := time.Now()
	dir := t.TempDir()
	file := filepath.Join(dir, "report.html")
	r := Build(representativeInput())
	if err := os.WriteFile(file, []byte(render(t, "html", r, RenderOptions{})), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.CommandContext(ctx, driver, "--port="+strconv.Itoa(port), "--allowed-ips=127.0.0.1")
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	// Ready when it says so; the rest of its output is drained.
	lines := bufio.NewScanner(out)
	ready := false
	for !ready && lines.Scan() {
		ready = strings.Contains(lines.Text(), "started successfully")
	}
	if !ready {
		t.Fatalf("chromedriver did not start (%v)", ctx.Err())
	}
	go func() {
		for lines.Scan() {
		}
	}()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	wd := func(method, path string, body any) any {
		t.Helper()
		var rd *bytes.Reader
		if body != nil {
			js, _ := json.Marshal(body)
			rd = bytes.NewReader(js)
		} else {
			rd = bytes.NewReader(nil)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		var v struct{ Value any }
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s: %s %v %v", method, path, resp.Status, err, v.Value)
		}
		return v.Value
	}
	caps := map[string]any{"capabilities": map[string]any{"alwaysMatch": map[string]any{"goog:chromeOptions": map[string]any{
		"binary": bin,
		"args": []string{"--headless=new", "--no-sandbox", "--disable-gpu", "--no-proxy-server", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
			"--user-data-dir=" + filepath.Join(dir, "profile")},
	}}}}
	session := wd("POST", "/session", caps).(map[string]any)["sessionId"].(string)
	s := "/session/" + session
	defer wd("DELETE", s, nil)
	wd("POST", s+"/url", map[string]any{"url": "file://" + file})
	element := func(css string) string {
		for _, id := range wd("POST", s+"/element", map[string]any{"using": "css selector", "value": css}).(map[string]any) {
			return id.(string)
		}
		t.Fatalf("no %s", css)
		return ""
	}
	script := func(js string, args ...any) any {
		if args == nil {
			args = []any{}
		}
		return wd("POST", s+"/execute/async", map[string]any{"script": js, "args": args})
	}
	btn := element("button.copy")
	wd("POST", s+"/element/"+btn+"/click", map[string]any{})
	// The label changes once the copy settles (a promise): wait for it
	// with a MutationObserver, not a sleep.
	label := script(`var done = arguments[arguments.length - 1], b = document.querySelector("button.copy");
		if (b.textContent !== "Copy") { done(b.textContent); return; }
		new MutationObserver(function () { done(b.textContent); }).observe(b, {childList: true, characterData: true, subtree: true});`)
	if label != "Copied" {
		t.Errorf("after a click the Copy button says %q", label)
	}
	wd("POST", s+"/element/"+element("#show-unaffected")+"/click", map[string]any{})
	visible := script(`arguments[arguments.length - 1](Array.prototype.filter.call(document.querySelectorAll("article.card"),
		function (c) { return c.offsetParent !== null; }).length)`)
	unaffected := 0
	for _, f := range r.Findings {
		if !f.Verdict.Affected() && f.Verdict != Unreachable {
			unaffected++
		}
	}
	if fmt.Sprint(visible) != strconv.Itoa(len(r.Findings)-unaffected) {
		t.Errorf("with unaffected ports hidden, %v cards show; want %d", visible, len(r.Findings)-unaffected)
	}
	t.Logf("chromedriver check took %s", time.Since(start).Round(time.Millisecond))
}
