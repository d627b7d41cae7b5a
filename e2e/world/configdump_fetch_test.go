package world

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/e2e/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// TestProxyConfigFromTheWorld reads the xDS-configured sidecars'
// /config_dump the way a scan does (port-forward through the API server to
// the pod's admin port 15000) and proves the demo's DEADLOCKs from that
// config and the direct probe alone, with no probe pod, naming the
// listener.
func TestProxyConfigFromTheWorld(t *testing.T) {
	requireWorld(t)
	ib := requireIstio(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	bins, err := BuildBinaries(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.StartForTest(t, testenv.Options{})
	w, err := StartWorld(ctx, WorldOptions{Env: env, Binaries: bins, Istio: ib, IstioProxy: true, Revisions: []string{}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			wtDumpLogs(t, w.StateDir)
		}
		if err := w.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatal(err)
	}
	if err := WaitPodsReady(ctx, w.Kube, DemoPods...); err != nil {
		t.Fatal(err)
	}
	db, err := w.Kube.CoreV1().Pods(DemoShop).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitGreeting(t, ctx, w, DemoShop, "orders-db", db.Status.PodIP+":3306")
	waitEndpoints(t, ctx, w, DemoShop, "web",
		"outbound|3307||orders-db.shop.svc.cluster.local", "outbound|3306||orders-db-tcp.shop.svc.cluster.local")

	inv, err := cluster.Load(ctx, cluster.Clients{Kube: w.Kube, Istio: w.Istio}, cluster.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dumps := vantage.NewConfigDumps(w.Config, w.Kube)
	began := time.Now()
	paths, warnings := vantage.ConfigPaths(ctx, dumps, inv, nil, vantage.ConfigOptions{Outside: true, Keep: func(k report.TargetKey) bool { return k.Namespace == DemoShop }})
	t.Logf("read %d dump(s), %d bytes, in %v; %d config path(s)", dumps.Fetches(), dumps.Bytes(), time.Since(began).Round(time.Millisecond), len(paths))
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	plan := vantage.PlanProbes(inv, nil, false)
	plan.Pods = nil
	obs, w2 := vantage.Run(ctx, w.Config, w.Kube, plan, vantage.RunOptions{Probe: probe.Options{BannerTimeout: 2 * time.Second, ConnectTimeout: 2 * time.Second}})
	if len(w2) > 0 {
		t.Logf("direct probe warnings: %v", w2)
	}
	r := report.Build(report.Input{Inventory: inv, Observations: obs, ConfigPaths: paths, BannerWait: 2 * time.Second})
	want := map[string]struct {
		code     report.Code
		listener string
	}{
		"orders-db":     {"SF1001", clusterIPOf(t, ctx, w, DemoShop, "orders-db") + "_3307"},
		"orders-db-tcp": {"SF1001", "virtualInbound"},
	}
	for _, f := range r.Findings {
		wf, ok := want[f.Name]
		if !ok || f.Namespace != DemoShop {
			continue
		}
		delete(want, f.Name)
		t.Logf("%s/%s:%d %s %s: %s", f.Namespace, f.Name, f.Port, f.Verdict, f.Code, f.Reason)
		if f.Code != wf.code || !strings.Contains(f.Reason, "listener "+wf.listener) {
			t.Errorf("%s: %s %q, want %s naming listener %s", f.Name, f.Code, f.Reason, wf.code, wf.listener)
		}
	}
	for name := range want {
		t.Errorf("no finding for shop/%s", name)
	}
}
