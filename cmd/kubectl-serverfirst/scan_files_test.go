package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// judged is what a static scan concludes about one port: everything but
// where the objects were read from.
type judged struct {
	Verdict, Scenario, Protocol, ProtocolSource, MTLSMode, TargetPort, Reason string
	ServerInMesh, AppProtocolTrap                                             bool
	Hints, CollidesWith, Fixes, Notes                                         string
}

func judgements(r report.Report) map[string]judged {
	out := map[string]judged{}
	for _, f := range r.Findings {
		var fixes []string
		for _, fix := range f.Fixes {
			fixes = append(fixes, fix.Type+"="+fix.Manifest)
		}
		out[f.Key().String()] = judged{
			Verdict: string(f.Verdict), Scenario: string(f.Scenario), Protocol: f.Protocol, ProtocolSource: f.ProtocolSource,
			MTLSMode: f.MTLSMode, TargetPort: f.TargetPort, Reason: f.Reason, ServerInMesh: f.ServerInMesh, AppProtocolTrap: f.AppProtocolTrap,
			Hints: strings.Join(f.Hints, ","), CollidesWith: strings.Join(f.CollidesWith, ","), Fixes: strings.Join(fixes, "\n"), Notes: strings.Join(f.Notes, ";"),
		}
	}
	return out
}

// staticFixtures are the seeds of this package's static scan tests, each
// seeded into its own API server. The e2e seeds have the same check in
// their own packages (e2e/world TestSeedDemoManifestsJudgedAsLive, e2e/rbac
// TestManifestsInventoryEqualsLive), so this package need not import them.
var staticFixtures = []struct {
	name string
	seed func(t *testing.T, env *testenv.Env)
}{
	{"shop (scan goldens)", seedShop},
	{"loopback (publish)", seedLoopback},
	{"sidecars (direct)", func(t *testing.T, env *testenv.Env) {
		for _, ns := range []string{"istio-system", "serverfirst"} {
			if _, err := env.CreateNamespace(context.Background(), ns, nil); err != nil {
				t.Fatal(err)
			}
		}
		seedSidecars(t, env, "app", map[string]func(net.Conn){
			"postfix": greet("220 mail.example ESMTP\r\n"), "mariadb": greet("J\x00\x00\x00\x0a8.0.36\x00"), "orders": greet("J\x00\x00\x00\x0a8.0.36\x00"),
			"cache": waitForClient,
		})
		seedSidecars(t, env, "other", map[string]func(net.Conn){"imap": greet("* OK IMAP4rev1 ready\r\n")})
	}},
}

// TestScanFilesMatchesLiveStatic: every static fixture, exported from the
// API server as `kubectl get -o yaml` would (pods as a List), judged by
// scan -f with no API server, gets the same verdict, reason, evidence and
// fixes per port as the live static scan of the same objects; and each
// finding names the document it came from.
func TestScanFilesMatchesLiveStatic(t *testing.T) {
	for _, fx := range staticFixtures {
		t.Run(fx.name, func(t *testing.T) {
			env := testenv.StartForTest(t, testenv.Options{})
			fx.seed(t, env)
			out, errOut, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", env.Kubeconfig, "-o", "json")
			if err != nil {
				t.Fatalf("live scan: %v\n%s", err, errOut)
			}
			live := decodeReport(t, out)
			manifest, err := env.ExportManifests(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			file := filepath.Join(t.TempDir(), "cluster.yaml")
			if err := os.WriteFile(file, manifest, 0o644); err != nil {
				t.Fatal(err)
			}
			env.Stop() // nothing below may need it
			out, errOut, err = run(t, "", "scan", "-f", file, "-o", "json")
			if err != nil {
				t.Fatalf("scan -f: %v\n%s", err, errOut)
			}
			offline := decodeReport(t, out)

			want, got := judgements(live), judgements(offline)
			if len(want) == 0 {
				t.Fatal("the live scan found no ports: the fixture tests nothing")
			}
			for k, w := range want {
				g, ok := got[k]
				switch {
				case !ok:
					t.Errorf("%s: live %s, missing from scan -f", k, w.Verdict)
				case g != w:
					t.Errorf("%s differs:\n  live    %+v\n  scan -f %+v", k, w, g)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("%s: only scan -f found it", k)
				}
			}
			if live.Mesh.ProtocolDetectionTimeoutMs != offline.Mesh.ProtocolDetectionTimeoutMs || live.Mesh.RootNamespace != offline.Mesh.RootNamespace || live.Mesh.IstioInstalled != offline.Mesh.IstioInstalled {
				t.Errorf("mesh: live %+v, scan -f %+v", live.Mesh, offline.Mesh)
			}
			for _, f := range offline.Findings {
				if !strings.HasPrefix(f.Source, filepath.ToSlash(file)+"#") || f.SourceLine <= 0 {
					t.Errorf("%s: source %q line %d, want %s#N and a line", f.Key(), f.Source, f.SourceLine, file)
				}
			}
			for _, w := range offline.Warnings {
				if strings.Contains(w, "unknown kind") || strings.Contains(w, "does not parse") {
					t.Errorf("warning on an exported cluster: %s", w)
				}
			}
			t.Logf("%d ports agree; warnings: %s", len(want), strings.Join(offline.Warnings, " | "))
		})
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
}

// helmBinary finds helm: $SERVERFIRST_HELM, the one hack/test-deps.sh
// builds into .cache/bin, or PATH. Missing, the test skips (fails under
// CI=true, where test-deps has built it).
func helmBinary(t *testing.T) string {
	t.Helper()
	candidates := []string{os.Getenv("SERVERFIRST_HELM")}
	if root, err := testenv.RepoRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".cache", "bin", "helm"))
	}
	if p, err := exec.LookPath("helm"); err == nil {
		candidates = append(candidates, p)
	}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if st, err := os.Stat(c); err == nil && !st.IsDir() {
			return c
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("helm not found (hack/test-deps.sh builds it into .cache/bin)")
	}
	t.Skip("helm not found: run hack/test-deps.sh (builds it into .cache/bin) or set SERVERFIRST_HELM")
	return ""
}

func helmTemplate(t *testing.T, helm string, args ...string) string {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "orders", filepath.Join("testdata", "charts", "orders-db"), "--namespace", "shop"}, args...)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("helm template: %v\n%s", err, stderr)
	}
	return string(out)
}

// TestScanFilesHelmChart: `helm template` of the test chart (a MariaDB
// Deployment behind a Service port named "db") is judged as the cluster
// would judge it once installed: the database port AT-RISK inside the mesh
// (the pod template's sidecar.istio.io/inject label gives it a sidecar),
// the HTTP metrics port OK, each finding pointing at the port's line.
// The rendered output is committed beside the chart; with helm at hand
// the chart is rendered again and must match it (-update rewrites it),
// and a values change that declares the port makes it OK.
func TestScanFilesHelmChart(t *testing.T) {
	rendered := filepath.Join("testdata", "charts", "orders-db.rendered.yaml")
	t.Run("rendered output", func(t *testing.T) {
		out, errOut, err := run(t, "", "scan", "-f", rendered, "-n", "shop", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var r report.Report
		decodeJSON(t, out, &r)
		got := map[string]report.Finding{}
		for _, f := range r.Findings {
			got[f.Key().String()] = f
		}
		db, metrics := got["Service/shop/orders-db:3307"], got["Service/shop/orders-db:9104"]
		if len(r.Findings) != 2 || db.Verdict != report.AtRisk || metrics.Verdict != report.OK {
			t.Fatalf("want the db port AT-RISK and the metrics port OK, got %s", out)
		}
		if !db.ServerInMesh || db.MTLSMode != "PERMISSIVE" || db.Scenario != report.MeshToMesh || db.TargetPort != "3306" {
			t.Errorf("db port: in mesh %v, mTLS %q, scenario %s, targetPort %s; want a sidecar from the template's label, PERMISSIVE, mesh-to-mesh, 3306", db.ServerInMesh, db.MTLSMode, db.Scenario, db.TargetPort)
		}
		if !slices.Contains(db.Hints, "image:mariadb") || len(db.Fixes) == 0 || db.Fixes[0].Type != "appProtocol" {
			t.Errorf("db port: hints %v, fixes %+v", db.Hints, db.Fixes)
		}
		want := filepath.ToSlash(rendered) + "#1"
		if db.Source != want || db.SourceLine != lineOf(t, rendered, "- name: db") {
			t.Errorf("db port: source %s line %d, want %s line %d", db.Source, db.SourceLine, want, lineOf(t, rendered, "- name: db"))
		}
		if !strings.Contains(r.Mesh.Source, "Istio defaults") {
			t.Errorf("mesh source %q: the report must say it assumed Istio's defaults", r.Mesh.Source)
		}
		// The table's next step is the manifests, not `fix` (which reads a cluster).
		if table, _, err := run(t, "", "scan", "-f", rendered, "-n", "shop"); err != nil || !strings.Contains(table, "Next: change the manifests") || strings.Contains(table, "fix | kubectl apply") {
			t.Errorf("table (err %v):\n%s", err, table)
		}
		// The CI gate works on files as on a cluster.
		if _, _, err := run(t, "", "scan", "-f", rendered, "-n", "shop", "--fail-on", "at-risk"); exitCode(err) != 3 {
			t.Errorf("--fail-on at-risk: exit %d (%v), want 3", exitCode(err), err)
		}
	})
	t.Run("helm template", func(t *testing.T) {
		helm := helmBinary(t)
		assertGolden(t, rendered, []byte(helmTemplate(t, helm)))
		// Piped, as in CI: the source is stdin's document.
		out, errOut, err := run(t, helmTemplate(t, helm), "scan", "-f", "-", "-n", "shop", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var r report.Report
		decodeJSON(t, out, &r)
		for _, f := range r.Findings {
			if f.Port == 3307 && (f.Verdict != report.AtRisk || f.Source != "stdin#1" || f.SourceTemplate != "orders-db/templates/service.yaml") {
				t.Errorf("piped: %s %s from %q (template %q), want AT-RISK from stdin#1, orders-db/templates/service.yaml", f.Key(), f.Verdict, f.Source, f.SourceTemplate)
			}
		}
		// Declared by its name, the port is fine.
		if out, errOut, err := run(t, helmTemplate(t, helm, "--set", "portName=tcp-db"), "scan", "-f", "-", "-n", "shop", "-o", "json", "--fail-on", "at-risk"); err != nil {
			t.Errorf("--set portName=tcp-db: %v\n%s\n%s", err, errOut, out)
		}
		// Without a sidecar the server is outside the mesh, and mesh
		// clients' sidecars still sniff the port on the way out.
		out, errOut, err = run(t, helmTemplate(t, helm, "--set", "inject=false"), "scan", "-f", "-", "-n", "shop", "-o", "json")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		decodeJSON(t, out, &r)
		if f := r.Findings[0]; f.Port != 3307 || f.Verdict != report.AtRisk || f.ServerInMesh || f.Scenario != report.MeshToExternal {
			t.Errorf("--set inject=false: %s %s in mesh %v %s, want AT-RISK mesh-to-external without a sidecar", f.Key(), f.Verdict, f.ServerInMesh, f.Scenario)
		}
	})
}

// lineOf is the 1-based line of the first line of a file containing s.
func lineOf(t *testing.T, file, s string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, s) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", file, s)
	return 0
}

// TestScanFilesBadInput: a path that does not exist, or a flag that asks
// for probes, is one line and exit 1; a broken manifest is a warning with
// its file and line in a report that still judges the rest; and -f alone
// needs no kubeconfig (the tests' KUBECONFIG points nowhere).
func TestScanFilesBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: mail, namespace: shop}\nspec: {ports: [{name: smtp, port: 2525}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badMesh := filepath.Join(dir, "mesh.yaml")
	if err := os.WriteFile(badMesh, []byte("protocolDetectionTimeout: soon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nope")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"scan", "-f", missing}, "-f " + missing + ": no such file or directory"},
		{[]string{"scan", "-f", good, "-f", missing}, "-f " + missing + ": no such file or directory"},
		{[]string{"scan", "-f", good, "--vantage", "self"}, "-f judges manifests statically: --vantage self"},
		{[]string{"scan", "-f", good, "--from-pod", "a/b"}, "--from-pod probes live targets"},
		{[]string{"scan", "-f", good, "--mesh-config", missing}, "--mesh-config: open " + missing},
		{[]string{"scan", "-f", good, "--mesh-config", badMesh}, "--mesh-config " + badMesh + ": parsing mesh config"},
		{[]string{"scan", "-f", good, "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"scan", "-f", good, "--report-configmap", "ns/name"}, "writing the ConfigMap needs one"},
	}
	for _, c := range cases {
		out, _, err := run(t, "", c.args...)
		if err == nil || exitCode(err) != 1 || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v (exit %d, stdout %q), want one line with %q, exit 1", c.args, err, exitCode(err), out, c.want)
		}
	}

	help, _, err := run(t, "", "scan", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-f, --filename stringArray", "--mesh-config", "--injected-namespaces", "contacts no API server", "scan -f new/ --context prod"} {
		if !strings.Contains(help, want) {
			t.Errorf("scan --help lacks %q", want)
		}
	}

	broken := filepath.Join(dir, "broken.yaml")
	if err := os.WriteFile(broken, []byte("apiVersion: v1\nkind: Service\nmetadata: {name: [\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "", "scan", "-f", broken, "-f", good, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var r report.Report
	decodeJSON(t, out, &r)
	warnings := strings.Join(r.Warnings, "\n")
	for _, want := range []string{filepath.ToSlash(broken) + ":3: document 1 does not parse", filepath.ToSlash(broken) + ":5: unknown kind Widget (example.com/v1)"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings %q lack %q", r.Warnings, want)
		}
	}
	if len(r.Findings) != 1 || r.Findings[0].Verdict != report.AtRisk {
		t.Errorf("the good file's port: %+v", r.Findings)
	}

	// An explicit --kubeconfig makes it an overlay on that cluster: here
	// one that does not exist, so the scan says it cannot reach it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://"+addr+"\"}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "", "scan", "-f", good, "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "cannot reach the API server at https://"+addr) {
		t.Errorf("-f with --kubeconfig: %v, want it to read that cluster", err)
	}
}

// TestScanFilesOverlay: -f with a live cluster judges it as it would be
// after applying the files: the fix plan of the shop fixture, overlaid,
// leaves nothing to fix, and a changed Service turns only its own port.
func TestScanFilesOverlay(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedShop(t, env)
	kc := env.Kubeconfig
	plan, errOut, err := run(t, "", "fix", "-A", "--static", "--kubeconfig", kc)
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	planFile := filepath.Join(t.TempDir(), "fix.yaml")
	if err := os.WriteFile(planFile, []byte(plan), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err := run(t, "", "scan", "-A", "-f", planFile, "--kubeconfig", kc, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var after report.Report
	decodeJSON(t, out, &after)
	out, _, err = run(t, "", "scan", "-A", "--static", "--kubeconfig", kc, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	before := decodeReport(t, out)
	fixed := 0
	beforeV := map[string]report.Verdict{}
	for _, f := range before.Findings {
		beforeV[f.Key().String()] = f.Verdict
	}
	for _, f := range after.Findings {
		k := f.Key().String()
		switch {
		case f.Source != "":
			if f.Verdict != report.OK {
				t.Errorf("%s from %s: %s after its fix, want OK: %s", k, f.Source, f.Verdict, f.Reason)
			}
			if beforeV[k].Affected() {
				fixed++
			}
		case f.Verdict != beforeV[k] && f.Kind == target.KindService:
			// A fix to another object (the PeerAuthentication of the
			// same pods) may repair it: the plan says which it repairs.
			if !strings.Contains(plan, fmt.Sprintf(" %s/svc/%s:%d", f.Namespace, f.Name, f.Port)) {
				t.Errorf("%s: %s before, %s with the fix plan overlaid, though no fix in the plan names it", k, beforeV[k], f.Verdict)
			} else if f.Verdict != report.OK {
				t.Errorf("%s: %s after the plan that fixes it, want OK", k, f.Verdict)
			}
		}
	}
	t.Logf("%d fixed; after: %v", fixed, verdicts(after))
	if fixed < 4 {
		t.Errorf("only %d affected ports were fixed by the overlaid plan", fixed)
	}
	if !strings.Contains(strings.Join(after.Warnings, "\n"), "as it would be after applying") {
		t.Errorf("warnings %q do not say the cluster was judged with the files applied", after.Warnings)
	}
}
