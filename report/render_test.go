package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
	goyaml "sigs.k8s.io/yaml/goyaml.v3"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	file := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (run go test ./report/ -run %s -update)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (go test ./report/ -run %s -update rewrites it)\n--- got\n%s\n--- want\n%s", file, t.Name(), got, want)
	}
}

func render(t testing.TB, format string, r Report, o RenderOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, format, r, o); err != nil {
		t.Fatalf("Render %s: %v", format, err)
	}
	return b.String()
}

func renderPlan(t testing.TB, p FixPlan, alternatives bool) string {
	t.Helper()
	var b bytes.Buffer
	if err := RenderPlan(&b, p, alternatives); err != nil {
		t.Fatalf("RenderPlan: %v", err)
	}
	return b.String()
}

func TestRenderGolden(t *testing.T) {
	r := Build(representativeInput())
	for _, format := range Formats {
		t.Run(format, func(t *testing.T) {
			golden(t, "report."+format+".golden", []byte(render(t, format, r, RenderOptions{})))
		})
	}
	t.Run("table-show-all", func(t *testing.T) {
		golden(t, "report.table-all.golden", []byte(render(t, "table", r, RenderOptions{ShowAll: true, Command: "kubectl-serverfirst"})))
	})
	t.Run("plan", func(t *testing.T) {
		golden(t, "plan.golden", []byte(renderPlan(t, Plan(r), false)))
	})
	t.Run("plan-alternatives", func(t *testing.T) {
		golden(t, "plan-alternatives.golden", []byte(renderPlan(t, Plan(r), true)))
	})
}

func TestRenderFormats(t *testing.T) {
	r := Build(representativeInput())
	if err := Render(io.Discard, "xml", r, RenderOptions{}); err == nil || !strings.Contains(err.Error(), "table") {
		t.Errorf("unknown format: %v", err)
	}
	if render(t, "", r, RenderOptions{}) != render(t, "table", r, RenderOptions{}) {
		t.Error(`"" is not the table`)
	}
	if render(t, "md", r, RenderOptions{}) != render(t, "markdown", r, RenderOptions{}) {
		t.Error(`"md" is not markdown`)
	}
	// JSON and YAML carry the same report, which reads back whole.
	var fromJSON, fromYAML Report
	if err := json.Unmarshal([]byte(render(t, "json", r, RenderOptions{})), &fromJSON); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(render(t, "yaml", r, RenderOptions{})), &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(fromJSON, fromYAML) {
		t.Error("JSON and YAML differ")
	}
	if len(fromJSON.Findings) != len(r.Findings) || fromJSON.Findings[0].Verdict != Deadlock || fromJSON.Summary[OK] != r.Summary[OK] {
		t.Errorf("JSON round trip: %+v", fromJSON.Summary)
	}
	// Empty lists are [] in JSON, never null.
	js := render(t, "json", Report{Summary: map[Verdict]int{}}, RenderOptions{})
	for _, want := range []string{`"findings": []`, `"warnings": []`} {
		if !strings.Contains(js, want) {
			t.Errorf("empty report JSON lacks %s:\n%s", want, js)
		}
	}
	js = render(t, "json", Report{Findings: []Finding{{Verdict: OK}}}, RenderOptions{})
	for _, want := range []string{`"hints": []`, `"evidence": []`, `"fixes": []`} {
		if !strings.Contains(js, want) {
			t.Errorf("finding JSON lacks %s:\n%s", want, js)
		}
	}
	if got := render(t, "table", Report{}, RenderOptions{}); got != "No Service or ServiceEntry ports found in scope.\n" {
		t.Errorf("empty table: %q", got)
	}
}

func TestRenderColor(t *testing.T) {
	r := Build(representativeInput())
	for _, format := range []string{"table", "wide"} {
		plain := render(t, format, r, RenderOptions{})
		if strings.Contains(plain, "\x1b") {
			t.Errorf("%s without Color has escape codes", format)
		}
		colored := render(t, format, r, RenderOptions{Color: true})
		for _, want := range []string{"\x1b[1;31mDEADLOCK\x1b[0m", "\x1b[33mAT-RISK\x1b[0m", "\x1b[31mMTLS-REJECTED\x1b[0m"} {
			if !strings.Contains(colored, want) {
				t.Errorf("%s with Color lacks %q", format, want)
			}
		}
		if stripColor(colored) != plain {
			t.Errorf("%s: colour changed more than the verdicts:\n%s", format, colored)
		}
	}
	for _, format := range []string{"json", "yaml", "markdown"} {
		if out := render(t, format, r, RenderOptions{Color: true}); strings.Contains(out, "\x1b") {
			t.Errorf("%s has escape codes with Color", format)
		}
	}
}

var colorCode = regexp.MustCompile("\x1b\\[[0-9;]*m")

func stripColor(s string) string { return colorCode.ReplaceAllString(s, "") }

// hostile is text from the cluster or the wire that tries to break out of
// every format: line breaks of all kinds, table separators, code fences,
// terminal escapes, HTML, YAML documents and comments, invalid UTF-8.
const hostile = "ev|l`\x1b[2J\x1b]0;owned\x07<script>alert(1)</script>\r\n---\nkind: Secret\n# INJECTED\n```\n| a | b |\u2028kind: Secret\u0085# NEL\u2029x: y\xff\x00 \\"

func hostileInput(s string) Input {
	ns := "ns-" + s
	p := pod(ns, "db-0", "db", true, "docker.io/library/mysql:8.4")
	out := pod(ns, "relay-0", "relay", false, s)
	inv := meshInv([]cluster.Pod{p, out},
		svc(ns, "db-"+s, "db", []cluster.Pod{p}, tport(s, 3307, "", ""), tport("tcp-"+s, 2525, "", ""), tport("http-"+s, 10000, "", "")),
		svc(ns, "relay", "relay", []cluster.Pod{out}, tport("smtp", 2526, "", s)),
	)
	inv.PeerAuthentications = []cluster.PeerAuthentication{{Namespace: ns, Name: "pa-" + s, Selector: map[string]string{"app": "db"},
		Mode: cluster.MTLSPermissive, PortModes: map[uint32]cluster.MTLSMode{9: cluster.MTLSMode(s)}, CreatedAt: time.Unix(0, 0)}}
	inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "se-" + s, Hosts: []string{"smtp." + s, s},
		Addresses: []string{s}, Endpoints: []string{s}, Ports: []cluster.ServiceEntryPort{sePort(25, s, ""), sePort(26, "", s)}}}
	inv.Mesh.Source = s
	inv.Mesh.RootNamespace = "root-" + s
	inv.Warnings = []string{s}
	inv.Namespaces = []cluster.Namespace{{Name: ns, Ambient: true}}
	wire := probe.Result{Outcome: probe.OutcomeBanner, FirstByteMs: f64(1), Banner: s, Protocol: s, Error: s, Address: s, Target: s}
	dk := func(port int32) target.TargetKey { return svcKey(ns, "db-"+s, port) }
	return Input{
		Inventory: inv,
		External:  []target.ExternalTarget{{Host: s, Port: 10000}, {Host: "mail." + s, Port: 25}},
		Observations: []target.Observation{
			obs(dk(3307), target.VantageDirect, wire),
			obs(dk(3307), target.VantageMeshClient, silent()),
			obs(dk(2525), target.VantageDirect, wire),
			obs(dk(2525), target.VantageOutsideClient, silent()),
			obs(dk(10000), target.VantageMeshClient, probe.Result{Outcome: probe.OutcomeError, Error: s}),
			obs(target.TargetKey{Kind: target.KindExternal, Name: s, Port: 10000}, target.VantageOutsideClient, wire),
			obs(target.TargetKey{Kind: target.KindExternal, Name: s, Port: 10000}, target.VantageMeshClient, probe.Result{Outcome: probe.OutcomeSilent, Protocol: s}),
		},
	}
}

// checkTerminal: no raw control bytes (ESC above all) unless colouring,
// and exactly one line per row, warning and summary line.
func checkTerminal(t testing.TB, format string, r Report, o RenderOptions, out string) {
	t.Helper()
	plain := out
	if o.Color {
		plain = stripColor(out)
	}
	for i, c := range []byte(plain) {
		if c < 0x20 && c != '\n' || c == 0x7f {
			t.Fatalf("%s: raw control byte %#x at %d:\n%q", format, c, i, out)
		}
	}
	for _, bad := range []string{"\u2028", "\u2029", "\u0085"} {
		if strings.Contains(plain, bad) {
			t.Fatalf("%s: raw %q", format, bad)
		}
	}
	list, hidden := shown(r, o.ShowAll || format == "wide")
	want := len(r.Warnings) + strings.Count(summaryLine(r, hidden, o), "\n")
	if len(list) > 0 {
		want += 1 + len(list)
	}
	if got := strings.Count(plain, "\n"); got != want {
		t.Fatalf("%s: %d lines, want %d:\n%s", format, got, want, plain)
	}
	lines := strings.Split(plain, "\n")
	if len(list) > 0 {
		for i, f := range list {
			if !strings.HasPrefix(lines[i+1], string(f.Verdict)+" ") {
				t.Fatalf("%s: row %d does not start with its verdict:\n%s", format, i, plain)
			}
		}
	}
}

var mdFenceLine = regexp.MustCompile("^ {0,3}(`{3,}|~{3,})(.*)$")

// checkMarkdown: every table row has its nine cells, nothing raw that a
// renderer would act on, and every fenced block holds exactly one fix's
// manifest or command.
func checkMarkdown(t testing.TB, r Report, o RenderOptions, out string) {
	t.Helper()
	if strings.ContainsAny(out, "\x1b\x00\r\u2028\u2029\u0085") {
		t.Fatalf("markdown: raw control characters:\n%q", out)
	}
	list, _ := shown(r, o.ShowAll)
	var blocks []string
	var block []string
	fence := ""
	rows := 0
	for _, line := range strings.Split(out, "\n") {
		if fence != "" {
			if m := mdFenceLine.FindStringSubmatch(line); m != nil && strings.TrimSpace(m[2]) == "" && m[1][0] == fence[0] && len(m[1]) >= len(fence) {
				blocks = append(blocks, strings.Join(block, "\n"))
				fence, block = "", nil
				continue
			}
			block = append(block, line)
			continue
		}
		if m := mdFenceLine.FindStringSubmatch(line); m != nil {
			fence = m[1]
			continue
		}
		if strings.Contains(strings.ToLower(line), "<script") {
			t.Fatalf("markdown: raw HTML outside code: %q", line)
		}
		for _, bad := range []string{"kind:", "# INJECTED", "---", "x: y", "| a"} {
			if strings.HasPrefix(line, bad) {
				t.Fatalf("markdown: injected line %q", line)
			}
		}
		if strings.HasPrefix(line, "| **") {
			rows++
			cells := regexp.MustCompile(`(^|[^\\])\|`).FindAllStringIndex(line, -1)
			if len(cells) != 10 {
				t.Fatalf("markdown: row with %d cell separators, want 10: %q", len(cells), line)
			}
		}
	}
	if fence != "" {
		t.Fatalf("markdown: unclosed fence %q", fence)
	}
	if rows != len(list) {
		t.Fatalf("markdown: %d table rows, want %d", rows, len(list))
	}
	var want []string
	for _, f := range list {
		for _, fix := range f.Fixes {
			if fix.Manifest != "" {
				want = append(want, strings.TrimSuffix(fix.Manifest, "\n"))
			}
			if fix.Command != "" {
				want = append(want, fix.Command)
			}
		}
	}
	if !reflect.DeepEqual(blocks, want) {
		t.Fatalf("markdown: fenced blocks\n%q\nwant\n%q", blocks, want)
	}
}

// checkPlan: the plan is a YAML stream of exactly the planned objects;
// every other line is a comment.
func checkPlan(t testing.TB, plan FixPlan, out string) {
	t.Helper()
	dec := goyaml.NewDecoder(strings.NewReader(out))
	var docs []map[string]any
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("plan does not parse as YAML: %v\n%s", err, out)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
	if len(docs) != len(plan.Objects) {
		t.Fatalf("plan has %d YAML documents, want %d:\n%s", len(docs), len(plan.Objects), out)
	}
	for i, o := range plan.Objects {
		var obj any
		if err := yaml.Unmarshal([]byte(o.Manifest()), &obj); err != nil {
			t.Fatalf("manifest of %s does not read: %v", o.Ref(), err)
		}
		want, _ := json.Marshal(obj)
		got, _ := json.Marshal(docs[i])
		var a, b any
		_ = json.Unmarshal(want, &a)
		_ = json.Unmarshal(got, &b)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("document %d:\n%s\nwant\n%s", i, got, want)
		}
	}
	rest := out
	for _, o := range plan.Objects {
		m := o.Manifest()
		i := strings.Index(rest, m)
		if i < 0 {
			t.Fatalf("manifest of %s not in the plan", o.Ref())
		}
		rest = rest[:i] + rest[i+len(m):]
	}
	for _, line := range strings.Split(strings.TrimSuffix(rest, "\n"), "\n") {
		if line != "---" && !strings.HasPrefix(line, "#") {
			t.Fatalf("plan line outside a manifest is not a comment: %q\n%s", line, out)
		}
	}
}

func TestRenderHostileInput(t *testing.T) {
	for _, s := range []string{hostile, "a\nb", "`", "|", "---", "# x", "\x1b[31m", "<script>", "\u2028", "\xff", "\x7f", "\u0085", "\ufeff", "\u009b"} {
		r := Build(hostileInput(s))
		if len(r.Findings) < 6 {
			t.Fatalf("%d findings", len(r.Findings))
		}
		for _, o := range []RenderOptions{{}, {ShowAll: true}, {Color: true, ShowAll: true}} {
			for _, format := range []string{"table", "wide"} {
				checkTerminal(t, format, r, o, render(t, format, r, o))
			}
			checkMarkdown(t, r, o, render(t, "markdown", r, o))
		}
		var back Report
		if err := json.Unmarshal([]byte(render(t, "json", r, RenderOptions{})), &back); err != nil {
			t.Fatalf("json: %v", err)
		}
		if back.Warnings[0] != strings.ToValidUTF8(s, "\uFFFD") {
			t.Errorf("json lost the warning text: %q", back.Warnings[0])
		}
		var fromYAML Report
		if err := yaml.Unmarshal([]byte(render(t, "yaml", r, RenderOptions{})), &fromYAML); err != nil {
			t.Fatalf("yaml: %v", err)
		}
		if !reflect.DeepEqual(back, fromYAML) {
			t.Fatalf("yaml reads back differently from json")
		}
		plan := Plan(r)
		if len(plan.Objects) < 3 {
			t.Fatalf("%d planned objects", len(plan.Objects))
		}
		checkPlan(t, plan, renderPlan(t, plan, false))
		checkPlan(t, plan, renderPlan(t, plan, true))
	}
}

func TestCommandsQuoteNames(t *testing.T) {
	ns, name := "ns; rm -rf / #", "db'$(id)"
	p := pod(ns, "db-0", "db", true, "mysql")
	r := Build(Input{Inventory: meshInv([]cluster.Pod{p}, svc(ns, name, "db", []cluster.Pod{p}, tport("db", 3307, "", "")))})
	var cmd string
	for _, fix := range r.Findings[0].Fixes {
		if fix.Command != "" {
			cmd = fix.Command
		}
	}
	if !strings.Contains(cmd, `-n 'ns; rm -rf / #'`) || !strings.Contains(cmd, `service 'db'\''$(id)'`) {
		t.Errorf("names are not shell-quoted: %s", cmd)
	}
}

func TestShellQuoteRoundTrip(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	for _, s := range []string{"plain", "", "a b", "it's", `back\slash`, "$(id)`id`", "new\nline", "\x1b[31m", hostile, "\xff\xfe", "ünï", "'\\'"} {
		q := shellQuote(s)
		if strings.ContainsAny(q, "\x1b\n\r\x00") {
			t.Errorf("shellQuote(%q) = %q holds raw control characters", s, q)
		}
		out, err := exec.Command(bash, "-c", "printf %s "+q).Output()
		want, _, _ := strings.Cut(s, "\x00") // no shell word can hold NUL
		if err != nil || string(out) != want {
			t.Errorf("bash reads shellQuote(%q) = %s as %q (%v)", s, q, out, err)
		}
	}
}

func fuzzSeeds(f *testing.F) {
	for _, s := range []string{"", "x", hostile, "a\nb", "\u2028", "\xff\xfe", "---\n", "# c", "`|`", "\x1b[31m", "&<>\"'"} {
		f.Add(s, s, s)
	}
}

// fuzzInput puts three arbitrary strings into names, hosts and banners.
func fuzzInput(name, label, wire string) Input {
	in := hostileInput(name)
	inv := in.Inventory
	inv.Services[0].Ports[0].Name = label
	inv.ServiceEntries[0].Hosts = []string{label, wire}
	inv.Warnings = append(inv.Warnings, wire)
	r := probe.Result{Outcome: probe.OutcomeBanner, FirstByteMs: f64(1), Banner: wire, Protocol: label, Error: wire}
	in.Observations[0].Result = r
	in.Observations[2].Result = r
	in.External = append(in.External, target.ExternalTarget{Host: wire, Port: 4222})
	return in
}

func FuzzRender(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, name, label, wire string) {
		r := Build(fuzzInput(name, label, wire))
		var back Report
		if err := json.Unmarshal([]byte(render(t, "json", r, RenderOptions{})), &back); err != nil {
			t.Fatalf("json does not parse: %v", err)
		}
		if len(back.Findings) != len(r.Findings) {
			t.Fatalf("json has %d findings, want %d", len(back.Findings), len(r.Findings))
		}
		var fromYAML Report
		if err := yaml.Unmarshal([]byte(render(t, "yaml", r, RenderOptions{})), &fromYAML); err != nil {
			t.Fatalf("yaml does not parse: %v", err)
		}
		if !reflect.DeepEqual(back, fromYAML) {
			t.Fatalf("yaml reads back differently from json")
		}
		for _, o := range []RenderOptions{{}, {ShowAll: true, Color: true}} {
			checkTerminal(t, "table", r, o, render(t, "table", r, o))
			checkTerminal(t, "wide", r, o, render(t, "wide", r, o))
			checkMarkdown(t, r, o, render(t, "markdown", r, o))
		}
	})
}

func FuzzRenderPlan(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, name, label, wire string) {
		plan := Plan(Build(fuzzInput(name, label, wire)))
		checkPlan(t, plan, renderPlan(t, plan, false))
		checkPlan(t, plan, renderPlan(t, plan, true))
	})
}
