package world

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
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
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
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
func TestIstiodWorld(t *testing.T) { runIstiodDemo(t, false) }

// TestIstioProxyWorld is TestIstiodWorld with the sidecars configured by
// istiod (WorldOptions.IstioProxy): the same paths behave the same, and
// each sidecar's Envoy admin /config_dump (127.0.0.1:15000 in the pod)
// holds the real listeners and follows a port rename.
func TestIstioProxyWorld(t *testing.T) { runIstiodDemo(t, true) }

func runIstiodDemo(t *testing.T, istioProxy bool) {
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
	w, err := StartWorld(ctx, WorldOptions{Env: env, Binaries: bins, Istio: ib, IstioProxy: istioProxy, Logf: t.Logf})
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

	// The demo's MariaDB has no readiness probe: Ready before it listens.
	// Wait for its greeting from inside its own pod (to its own IP: not
	// captured), as the old model's sync wait happened to.
	waitGreeting(t, ctx, w, DemoShop, "orders-db", net.JoinHostPort(db.Status.PodIP, "3306"))
	if istioProxy {
		// Ready pods reach the sidecars' EDS a push later: wait until
		// web's sidecar holds an endpoint for each demo Service.
		waitEndpoints(t, ctx, w, DemoShop, "web",
			"outbound|3307||orders-db.shop.svc.cluster.local", "outbound|3306||orders-db-tcp.shop.svc.cluster.local",
			"outbound|6380||cache.shop.svc.cluster.local", "outbound|2222||ssh.legacy.svc.cluster.local")
	} else if err := w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	dbAddr := checkDemoPaths(t, ctx, w)
	dbVIP, _, _ := net.SplitHostPort(dbAddr)
	dbTCPVIP := clusterIPOf(t, ctx, w, DemoShop, "orders-db-tcp")
	if istioProxy {
		// The paths went through the xDS-configured sidecars: web's
		// decision log shows the declared-TCP path relayed to orders-db
		// over the TLS stand-in (auto mTLS), orders-db's the inbound
		// side accepting it.
		webLog := containerLog(t, w, DemoShop, "web", "istio-proxy")
		if !strings.Contains(webLog, dbTCPVIP+":3306: listener "+dbTCPVIP+"_3306") || !strings.Contains(webLog, "TLS (stand-in)") {
			t.Errorf("web's sidecar log has no TLS relay to %s_3306:\n%s", dbTCPVIP, webLog)
		}
		if dbLog := containerLog(t, w, DemoShop, "orders-db", "istio-proxy"); !strings.Contains(dbLog, "listener virtualInbound") {
			t.Errorf("orders-db's sidecar log has no inbound decision:\n%s", dbLog)
		}
	}

	// The real listeners, as web's pilot-agent would receive them (or as
	// web's sidecar received them).
	configDump := func(ns, name string) map[string]any {
		if istioProxy {
			return adminConfigDump(t, ctx, w, ns, name)
		}
		return istioConfigDump(t, ctx, w, ib, ns, name)
	}
	dump := configDump(DemoShop, "web")
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
	inbound := dumpListener(t, configDump(DemoShop, "orders-db"), "virtualInbound")
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
		l := dumpListener(t, configDump(DemoShop, "web"), dbVIP+"_3307")
		if !slices.Contains(listenerFilterNames(l), "envoy.filters.listener.http_inspector") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the rename never reached istiod's listeners: %v", ctx.Err())
		}
	}
	t.Logf("port rename in the listeners %v after the update (sidecar's own config: %v)", time.Since(applied).Round(time.Millisecond), istioProxy)
	if !istioProxy {
		if err := w.WaitSidecarsSynced(ctx, applied); err != nil {
			t.Fatal(err)
		}
	}
	if got := wtFirstBytes(t, ctx, w, DemoShop, "web", dbAddr, "", demoWait); !strings.Contains(strings.ToLower(got), "mariadb") {
		t.Errorf("after the fix, web -> orders-db: %q", got)
	}
}

// waitGreeting dials addr from inside pod ns/name until a MariaDB greeting
// arrives.
func waitGreeting(t *testing.T, ctx context.Context, w *World, ns, name, addr string) {
	t.Helper()
	for {
		if got := wtFirstBytes(t, ctx, w, ns, name, addr, "", time.Second); strings.Contains(strings.ToLower(got), "mariadb") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no MariaDB greeting at %s from %s/%s", addr, ns, name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// containerLog is the log of a pod's container (all restarts).
func containerLog(t *testing.T, w *World, ns, name, container string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(w.StateDir, "node", "pods", ns+"_"+name+"_*", "logs", container+"-*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
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

// adminConfigDump reads Envoy's admin /config_dump from inside the pod
// (127.0.0.1:15000, not captured), as `kubectl port-forward` + curl would.
func adminConfigDump(t *testing.T, ctx context.Context, w *World, ns, name string) map[string]any {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return w.DialFrom(ctx, ns, name, addr)
		},
		DisableKeepAlives: true,
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:15000/config_dump?include_eds", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s/%s /config_dump: %v", ns, name, err)
	}
	defer resp.Body.Close()
	var dump map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/%s /config_dump: HTTP %d, %v", ns, name, resp.StatusCode, err)
	}
	return dump
}

// waitEndpoints polls the pod's sidecar until each cluster has a healthy
// endpoint in its EndpointsConfigDump.
func waitEndpoints(t *testing.T, ctx context.Context, w *World, ns, name string, clusters ...string) {
	t.Helper()
	for {
		var missing []string
		have := map[string]bool{}
		configs, _ := adminConfigDump(t, ctx, w, ns, name)["configs"].([]any)
		for _, c := range configs {
			cm, _ := c.(map[string]any)
			eps, _ := cm["dynamic_endpoint_configs"].([]any)
			for _, e := range eps {
				cfg, _ := e.(map[string]any)["endpoint_config"].(map[string]any)
				groups, _ := cfg["endpoints"].([]any)
				for _, g := range groups {
					lbs, _ := g.(map[string]any)["lb_endpoints"].([]any)
					for _, lb := range lbs {
						// Not-ready pods come as UNHEALTHY endpoints,
						// which Envoy does not pick.
						switch lb.(map[string]any)["health_status"] {
						case nil, "HEALTHY", "UNKNOWN":
							have[fmt.Sprint(cfg["cluster_name"])] = true
						}
					}
				}
			}
		}
		for _, c := range clusters {
			if !have[c] {
				missing = append(missing, c)
			}
		}
		if len(missing) == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s/%s's sidecar has no endpoints for %v", ns, name, missing)
		case <-time.After(100 * time.Millisecond):
		}
	}
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
