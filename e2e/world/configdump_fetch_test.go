package world

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// TestProxyConfigFromTheWorld reads the xDS-configured sidecars'
// /config_dump the way a scan does (port-forward through the API server to
// the pod's admin port 15000) and proves the demo's DEADLOCKs from that
// config and the direct probe alone, with no probe pod, naming the
// listener.
func TestProxyConfigFromTheWorld(t *testing.T) {
	ctx, w, bins, env := worldForTest(t, 6*time.Minute)
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
	// The pods are Ready: once the sidecars have synced after now, they hold
	// the demo's listeners and endpoints.
	if err := w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}

	inv, err := cluster.Load(ctx, cluster.Clients{Kube: w.Kube, Istio: w.Istio}, cluster.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dumps := vantage.NewConfigDumps(w.Config, w.Kube)
	began := time.Now()
	paths, warnings := vantage.ConfigPaths(ctx, dumps, inv, nil, vantage.ConfigOptions{Outside: true, Keep: func(k target.TargetKey) bool { return k.Namespace == DemoShop }})
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

	// The CLI, as a user who may read and port-forward but not create
	// pods: scan --vantage config proves the same from config and the
	// direct banner, names the listener, and creates nothing.
	scanVantageConfig(t, ctx, w, env, bins.Serverfirst)

	// fix --apply verifies from config too: rounds until the sidecars'
	// listeners no longer wait (istiod's push reached them).
	kc, err := env.KubeconfigFor(DemoShop, "fixer")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "fixer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: DemoShop, Name: "fixer"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bins.Serverfirst, "fix", "-n", DemoShop, "--apply", "--yes", "--vantage", "config", "--timeout", "2s", "--connect-timeout", "2s", "--kubeconfig", kc)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	t.Logf("fix --apply --vantage config: %v\n%s", err, out)
	if err != nil {
		t.Errorf("fix --apply --vantage config: %v (want exit 0: every applied fix verified)", err)
	}
	if !strings.Contains(string(out), "proxy-config waits-forever -> passes") {
		t.Errorf("fix --apply's verification does not show the config taking: %s", out)
	}
}

func scanVantageConfig(t *testing.T, ctx context.Context, w *World, env *testenv.Env, bin string) {
	t.Helper()
	read := []string{"get", "list"}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scanner-no-pods"}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods", "configmaps"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "destinationrules", "sidecars"}, Verbs: read},
		{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create"}},
	}}
	if _, err := w.Kube.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "scanner-no-pods"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: DemoShop, Name: "scanner"}}}
	if _, err := w.Kube.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kc, err := env.KubeconfigFor(DemoShop, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	before, err := w.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// No --vantage: outside a pod the default reads the proxies' config
	// and creates no pod (the user could not create one anyway).
	cmd := exec.CommandContext(ctx, bin, "scan", "-n", DemoShop, "-o", "json", "--timeout", "2s", "--connect-timeout", "2s", "--kubeconfig", kc)
	// (KUBERNETES_SERVICE_HOST would make it "inside a pod" if the tests
	// themselves run in one.)
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "KUBERNETES_SERVICE_HOST=") }), "XDG_STATE_HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	runErr := cmd.Run()
	t.Logf("scan (default vantage: config) in %v:\n%s", time.Since(began).Round(time.Millisecond), stderr.String())
	var ee *exec.ExitError
	if runErr != nil && !errors.As(runErr, &ee) {
		t.Fatal(runErr)
	}
	var r report.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("scan JSON: %v\n%s", err, stdout.String())
	}
	if len(r.Warnings) > 0 {
		t.Logf("warnings: %v", r.Warnings)
	}
	vip := clusterIPOf(t, ctx, w, DemoShop, "orders-db")
	for _, tc := range []struct {
		name     string
		port     int32
		listener string
	}{{"orders-db", 3307, vip + "_3307"}, {"orders-db-tcp", 3306, "virtualInbound"}} {
		var f *report.Finding
		for i := range r.Findings {
			if r.Findings[i].Kind == target.KindService && r.Findings[i].Namespace == DemoShop && r.Findings[i].Name == tc.name && r.Findings[i].Port == tc.port {
				f = &r.Findings[i]
			}
		}
		if f == nil {
			t.Errorf("no finding for shop/%s:%d", tc.name, tc.port)
			continue
		}
		t.Logf("shop/%s:%d %s %s: %s", tc.name, tc.port, f.Verdict, f.Code, f.Reason)
		if f.Verdict != report.Deadlock || f.Code != "SF1001" || !strings.Contains(f.Reason, "listener "+tc.listener) {
			t.Errorf("shop/%s:%d: %s %s %q, want DEADLOCK SF1001 naming listener %s", tc.name, tc.port, f.Verdict, f.Code, f.Reason, tc.listener)
		}
		var config, direct bool
		for _, e := range f.Evidence {
			config = config || e.Vantage == target.VantageProxyConfig && e.Listener != ""
			direct = direct || e.Vantage == target.VantageDirect && e.Outcome == "banner"
			if e.Vantage == target.VantageMeshClient || e.Vantage == target.VantageOutsideClient {
				t.Errorf("shop/%s: probe-pod evidence %+v from a scan that creates no pods", tc.name, e)
			}
		}
		if !config || !direct {
			t.Errorf("shop/%s: evidence %+v, want proxy-config and a direct banner", tc.name, f.Evidence)
		}
	}
	after, err := w.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Items) != len(before.Items) {
		t.Errorf("%d pods before the scan, %d after: --vantage config created some", len(before.Items), len(after.Items))
	}
}
