package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/e2e/testenv"
	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
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

// staticFixtures are every seed the static scan tests use, here and in
// e2e: each is seeded into its own API server.
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
	{"world demo (e2e)", func(t *testing.T, env *testenv.Env) {
		ic, err := env.IstioClient()
		if err != nil {
			t.Fatal(err)
		}
		if err := world.SeedDemo(context.Background(), env.Client, ic); err != nil {
			t.Fatal(err)
		}
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
