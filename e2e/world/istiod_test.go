package world

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/e2e/testenv"
)

// requireIstio finds Istio's binaries or skips (fails under CI=true).
func requireIstio(t *testing.T) IstioBinaries {
	t.Helper()
	b, err := LocateIstioBinaries("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skip(err)
	}
	return b
}

// TestIstiodWorld runs the demo on the world with real istiod: the pods
// are injected by Istio's own injector (istio-init running pilot-agent's
// istio-iptables, istio-proxy as Istio's template writes it), the demo's
// paths behave as in TestWorldDemo, and an xDS client identifying as a
// pod's pilot-agent gets the real listeners, whose listener filters match
// the Service port names, also after a port is renamed.
func TestIstiodWorld(t *testing.T) {
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
	w, err := StartWorld(ctx, WorldOptions{Env: env, Binaries: bins, Istio: ib, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			wtDumpLogs(t, w.StateDir)
			for _, d := range w.Istiods {
				t.Logf("--- %s\n%s", d.LogPath, tailLines(d.LogPath, 40))
			}
		}
		if err := w.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}()
	t.Logf("world with %d istiod(s) started in %v", len(w.Istiods), w.StartupTime.Round(time.Millisecond))
	if len(w.Istiods) != 2 || w.Injector != nil {
		t.Fatalf("istiods %d (want default + canary), own injector %v", len(w.Istiods), w.Injector != nil)
	}

	began := time.Now()
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatal(err)
	}
	readyCtx, cancelReady := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelReady()
	if err := WaitPodsReady(readyCtx, w.Kube, DemoPods...); err != nil {
		t.Fatal(err)
	}
	t.Logf("demo pods ready in %v", time.Since(began).Round(time.Millisecond))

	// Istio's injector, not ours: istio-init with istio-iptables'
	// arguments, istio-proxy running `proxy sidecar`, the status
	// annotation naming both.
	db, err := w.Kube.CoreV1().Pods(DemoShop).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !cluster.HasSidecar(db) {
		t.Fatalf("orders-db has no sidecar: %+v", db.Spec)
	}
	initC := findContainer(db.Spec.InitContainers, "istio-init")
	proxyC := findContainer(append(append([]corev1.Container{}, db.Spec.InitContainers...), db.Spec.Containers...), "istio-proxy")
	if initC == nil || len(initC.Args) == 0 || initC.Args[0] != "istio-iptables" {
		t.Errorf("istio-init = %+v, want Istio's istio-iptables init container", initC)
	}
	if proxyC == nil || len(proxyC.Args) < 2 || proxyC.Args[0] != "proxy" || proxyC.Args[1] != "sidecar" {
		t.Errorf("istio-proxy = %+v, want pilot-agent's `proxy sidecar`", proxyC)
	}
	if st := db.Annotations["sidecar.istio.io/status"]; !strings.Contains(st, `"istio-init"`) {
		t.Errorf("sidecar.istio.io/status = %q, want istio-init listed", st)
	}
	for _, ref := range []string{"legacy/ssh", "batch/report"} {
		ns, name, _ := strings.Cut(ref, "/")
		p, err := w.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cluster.HasSidecar(p) {
			t.Errorf("%s got a sidecar", ref)
		}
	}

	if err := w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	dbAddr := checkDemoPaths(t, ctx, w)
	dbVIP, _, _ := net.SplitHostPort(dbAddr)
	dbTCPVIP := clusterIPOf(t, ctx, w, DemoShop, "orders-db-tcp")

	// The real listeners, as web's pilot-agent would receive them.
	dump := istioConfigDump(t, ctx, w, ib, DemoShop, "web")
	sniffed := dumpListener(t, dump, dbVIP+"_3307")
	if names := listenerFilterNames(sniffed); !slices.Contains(names, "envoy.filters.listener.http_inspector") {
		t.Errorf("%s_3307 (port name db: auto-detected) listener filters %v, want http_inspector", dbVIP, names)
	}
	if got := sniffed["listener_filters_timeout"]; got != "0s" {
		t.Errorf("%s_3307 listener_filters_timeout = %v, want 0s (protocolDetectionTimeout's default)", dbVIP, got)
	}
	declared := dumpListener(t, dump, dbTCPVIP+"_3306")
	if names := listenerFilterNames(declared); slices.Contains(names, "envoy.filters.listener.http_inspector") {
		t.Errorf("%s_3306 (port name tcp-mysql) listener filters %v, want no http_inspector", dbTCPVIP, names)
	}
	// The server's inbound: TLS and HTTP inspectors with Istio's
	// filter_disabled port predicates (PERMISSIVE mTLS).
	inbound := dumpListener(t, istioConfigDump(t, ctx, w, ib, DemoShop, "orders-db"), "virtualInbound")
	for _, f := range inbound["listener_filters"].([]any) {
		m := f.(map[string]any)
		t.Logf("virtualInbound listener filter %v filter_disabled=%v", m["name"], m["filter_disabled"])
	}
	if names := listenerFilterNames(inbound); !slices.Contains(names, "envoy.filters.listener.tls_inspector") {
		t.Errorf("virtualInbound listener filters %v, want tls_inspector", names)
	}

	// A config change reaches the xDS config: rename the sniffed port.
	svc, err := w.Kube.CoreV1().Services(DemoShop).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports[0].Name = "tcp-db"
	applied := time.Now()
	if _, err := w.Kube.CoreV1().Services(DemoShop).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		l := dumpListener(t, istioConfigDump(t, ctx, w, ib, DemoShop, "web"), dbVIP+"_3307")
		if !slices.Contains(listenerFilterNames(l), "envoy.filters.listener.http_inspector") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the rename never reached istiod's listeners: %v", ctx.Err())
		}
	}
	t.Logf("port rename in istiod's listeners %v after the update", time.Since(applied).Round(time.Millisecond))
	if err := w.WaitSidecarsSynced(ctx, applied); err != nil {
		t.Fatal(err)
	}
	if got := wtFirstBytes(t, ctx, w, DemoShop, "web", dbAddr, "", demoWait); !strings.Contains(strings.ToLower(got), "mariadb") {
		t.Errorf("after the fix, web -> orders-db: %q", got)
	}
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func clusterIPOf(t *testing.T, ctx context.Context, w *World, ns, name string) string {
	t.Helper()
	svc, err := w.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// istioConfigDump asks the default istiod for pod ns/name's config with
// `istio-world config-dump` and returns the Envoy-style dump.
func istioConfigDump(t *testing.T, ctx context.Context, w *World, ib IstioBinaries, ns, name string) map[string]any {
	t.Helper()
	pod, err := w.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	podFile := filepath.Join(t.TempDir(), "pod.json")
	if err := os.WriteFile(podFile, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, ib.IstioWorld, "config-dump", "--xds", w.Istiods[0].XDSAddr, "--pod", podFile).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("config-dump %s/%s: %v\n%s", ns, name, err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var dump map[string]any
	if err := json.Unmarshal(out, &dump); err != nil {
		t.Fatalf("config-dump %s/%s: %v", ns, name, err)
	}
	return dump
}

// dumpListener finds a listener by name in a /config_dump document
// (configs[] -> ListenersConfigDump -> dynamic_listeners[].active_state.listener).
func dumpListener(t *testing.T, dump map[string]any, name string) map[string]any {
	t.Helper()
	var names []string
	configs, _ := dump["configs"].([]any)
	for _, c := range configs {
		cm, _ := c.(map[string]any)
		if cm["@type"] != "type.googleapis.com/envoy.admin.v3.ListenersConfigDump" {
			continue
		}
		dl, _ := cm["dynamic_listeners"].([]any)
		for _, l := range dl {
			lm, _ := l.(map[string]any)
			as, _ := lm["active_state"].(map[string]any)
			lis, _ := as["listener"].(map[string]any)
			if lis["name"] == name {
				return lis
			}
			names = append(names, fmt.Sprint(lis["name"]))
		}
	}
	t.Fatalf("no listener %s in the dump; listeners: %v", name, names)
	return nil
}

func listenerFilterNames(l map[string]any) []string {
	var out []string
	fs, _ := l["listener_filters"].([]any)
	for _, f := range fs {
		m, _ := f.(map[string]any)
		out = append(out, fmt.Sprint(m["name"]))
	}
	return out
}
