package world

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
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

// TestWorldDemo runs the whole world (API server, istiod per revision,
// node agent, sidecars configured by istiod, real daemons) with the demo
// seed: the pods are injected by Istio's own injector (istio-init running
// pilot-agent's istio-iptables, istio-proxy as Istio's template writes
// it), the demo's paths behave as the demo says from inside the pods, each
// sidecar's Envoy admin /config_dump (127.0.0.1:15000 in its pod) holds
// the real listeners for the Service port names, and after a port rename
// WaitSidecarsSynced returns only once the sidecars hold the new listener
// and the greeting arrives. Stop leaves nothing behind.
func TestWorldDemo(t *testing.T) {
	requireWorld(t)
	requireIstio(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()

	began := time.Now()
	bins, err := BuildBinaries(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("binaries built in %v", time.Since(began).Round(time.Millisecond))
	env := testenv.StartForTest(t, testenv.Options{})

	w, err := StartWorld(ctx, WorldOptions{Env: env, Binaries: bins, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			if t.Failed() {
				wtDumpLogs(t, w.StateDir)
				for _, d := range w.Istiods {
					t.Logf("--- %s\n%s", d.LogPath, tailLines(d.LogPath, 40))
				}
			}
			w.Stop()
		}
	}()
	t.Logf("world with %d istiods started in %v; state in %s", len(w.Istiods), w.StartupTime.Round(time.Millisecond), w.StateDir)
	if len(w.Istiods) != 2 {
		t.Fatalf("istiods %d, want default + canary", len(w.Istiods))
	}

	began = time.Now()
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatal(err)
	}
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatalf("seeding twice: %v", err)
	}
	readyCtx, cancelReady := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelReady()
	if err := WaitPodsReady(readyCtx, w.Kube, DemoPods...); err != nil {
		t.Fatal(err)
	}
	t.Logf("demo pods ready in %v", time.Since(began).Round(time.Millisecond))

	for _, ref := range DemoPods {
		ns, name, _ := strings.Cut(ref, "/")
		p, err := w.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cluster.HasSidecar(p), ns == DemoShop; got != want {
			t.Errorf("%s: sidecar %v, want %v", ref, got, want)
		}
	}
	// Istio's injector: istio-init with istio-iptables' arguments,
	// istio-proxy running `proxy sidecar`, the status annotation naming
	// both.
	db, err := w.Kube.CoreV1().Pods(DemoShop).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
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

	// The demo's MariaDB has no readiness probe: Ready before it listens.
	// Wait for its greeting from inside its own pod (to its own IP: not
	// captured).
	waitGreeting(t, ctx, w, DemoShop, "orders-db", net.JoinHostPort(db.Status.PodIP, "3306"))
	began = time.Now()
	if err := w.WaitSidecarsSynced(ctx, began); err != nil {
		t.Fatal(err)
	}
	t.Logf("sidecars synced in %v", time.Since(began).Round(time.Millisecond))
	states, err := w.Sidecars(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range states {
		names = append(names, s.Namespace+"/"+s.Name)
		if ok, why := s.syncedSince(w.syncGen); !ok {
			t.Errorf("sidecar %s/%s after WaitSidecarsSynced: %s", s.Namespace, s.Name, why)
		}
	}
	if strings.Join(names, " ") != "shop/cache shop/orders-db shop/web" {
		t.Errorf("running sidecars = %v", names)
	}

	dbAddr := checkDemoPaths(t, ctx, w)
	dbVIP, _, _ := net.SplitHostPort(dbAddr)
	dbTCPVIP := clusterIPOf(t, ctx, w, DemoShop, "orders-db-tcp")
	// The paths went through the xDS-configured sidecars: web's decision
	// log shows the declared-TCP path relayed to orders-db over the TLS
	// stand-in (auto mTLS), orders-db's the inbound side accepting it.
	webLog := containerLog(t, w, DemoShop, "web", "istio-proxy")
	if !strings.Contains(webLog, dbTCPVIP+":3306: listener "+dbTCPVIP+"_3306") || !strings.Contains(webLog, "TLS (stand-in)") {
		t.Errorf("web's sidecar log has no TLS relay to %s_3306:\n%s", dbTCPVIP, webLog)
	}
	if dbLog := containerLog(t, w, DemoShop, "orders-db", "istio-proxy"); !strings.Contains(dbLog, "listener virtualInbound") {
		t.Errorf("orders-db's sidecar log has no inbound decision:\n%s", dbLog)
	}

	// The real listeners, as web's sidecar received them.
	dump := adminConfigDump(t, ctx, w, DemoShop, "web")
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
	inbound := dumpListener(t, adminConfigDump(t, ctx, w, DemoShop, "orders-db"), "virtualInbound")
	if names := listenerFilterNames(inbound); !slices.Contains(names, "envoy.filters.listener.tls_inspector") {
		t.Errorf("virtualInbound listener filters %v, want tls_inspector", names)
	}

	// The fix for mesh clients: declare the port TCP. Once
	// WaitSidecarsSynced returns, web's sidecar has the listener without
	// the HTTP inspector (read once, no polling) and the greeting arrives.
	svc, err := w.Kube.CoreV1().Services(DemoShop).Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Spec.Ports[0].Name = "tcp-db"
	applied := time.Now()
	if _, err := w.Kube.CoreV1().Services(DemoShop).Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitSidecarsSynced(ctx, applied); err != nil {
		t.Fatal(err)
	}
	t.Logf("fix in force in every sidecar %v after the update", time.Since(applied).Round(time.Millisecond))
	if names := listenerFilterNames(dumpListener(t, adminConfigDump(t, ctx, w, DemoShop, "web"), dbVIP+"_3307")); slices.Contains(names, "envoy.filters.listener.http_inspector") {
		t.Errorf("after WaitSidecarsSynced, %s_3307 (now tcp-db) still has listener filters %v", dbVIP, names)
	}
	if got := wtFirstBytes(t, ctx, w, DemoShop, "web", dbAddr, "", demoWait); !strings.Contains(strings.ToLower(got), "mariadb") {
		t.Errorf("after the fix, web -> orders-db: %q", got)
	}

	if t.Failed() {
		wtDumpLogs(t, w.StateDir)
	}

	// Stop takes everything down.
	nodeNetns := w.Node.NodeNetns()
	var configs []string
	for _, d := range w.Istiods {
		configs = append(configs, d.ConfigNames...)
	}
	stopped = true
	if err := w.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", nodeNetns)); !os.IsNotExist(err) {
		t.Errorf("node netns %s still there: %v", nodeNetns, err)
	}
	for _, name := range append(configs, saDefaultingName) {
		if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("webhook configuration %s left behind", name)
		}
	}
	if _, err := w.Istio.NetworkingV1alpha3().EnvoyFilters(IstioSystem).Get(ctx, SyncMarkerName, metav1.GetOptions{}); err == nil {
		t.Errorf("sync marker EnvoyFilter left behind")
	}
	if _, err := os.Stat(w.StateDir); !os.IsNotExist(err) {
		t.Errorf("state dir %s left behind", w.StateDir)
	}
}

// demoWait is how long a demo path may stay silent to count as a hang.
const demoWait = 3 * time.Second

// checkDemoPaths dials the demo's paths from inside its pods and checks
// what arrives; it returns shop/orders-db's sniffed ClusterIP:3307.
func checkDemoPaths(t *testing.T, ctx context.Context, w *World) (db string) {
	t.Helper()
	clusterIP := func(ns, name string) string {
		svc, err := w.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return svc.Spec.ClusterIP
	}
	db = net.JoinHostPort(clusterIP(DemoShop, "orders-db"), "3307")
	dbTCP := net.JoinHostPort(clusterIP(DemoShop, "orders-db-tcp"), "3306")
	cache := net.JoinHostPort(clusterIP(DemoShop, "cache"), "6380")
	ssh := net.JoinHostPort(clusterIP(DemoLegacy, "ssh"), "2222")
	for _, tc := range []struct {
		from, addr, send, want string // want "" = nothing before the wait
	}{
		{"shop/web", dbTCP, "", "mariadb"},       // declared TCP: the greeting
		{"shop/web", db, "", ""},                 // sniffed: deadlock
		{"shop/web", cache, "PING\r\n", "+PONG"}, // client-first: sniffing harmless
		{"shop/web", ssh, "", ""},                // sniffed, server outside the mesh: deadlock
		{"batch/report", ssh, "", "SSH-2.0"},     // no sidecar anywhere: the banner
		{"batch/report", dbTCP, "", ""},          // PERMISSIVE inbound waits for a plaintext client
		{"legacy/ssh", dbTCP, "", ""},            // likewise
	} {
		ns, name, _ := strings.Cut(tc.from, "/")
		got := wtFirstBytes(t, ctx, w, ns, name, tc.addr, tc.send, demoWait)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(strings.ToLower(got), strings.ToLower(tc.want)) {
			t.Errorf("%s -> %s: first bytes %q, want %q", tc.from, tc.addr, got, tc.want)
		}
	}
	return db
}

// wtFirstBytes dials addr from inside pod ns/name, optionally sends a
// request, and returns what arrives within wait ("" if nothing does).
func wtFirstBytes(t *testing.T, ctx context.Context, w *World, ns, name, addr, send string, wait time.Duration) string {
	t.Helper()
	conn, err := w.DialFrom(ctx, ns, name, addr)
	if err != nil {
		return fmt.Sprintf("dial error: %v", err)
	}
	defer conn.Close()
	if send != "" {
		if _, err := conn.Write([]byte(send)); err != nil {
			return fmt.Sprintf("write error: %v", err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var buf bytes.Buffer
	b := make([]byte, 512)
	for buf.Len() < 16 {
		n, err := conn.Read(b)
		buf.Write(b[:n])
		if err != nil {
			break
		}
	}
	return strings.ToValidUTF8(buf.String(), "?")
}

// wtDumpLogs logs the tail of every container log under dir.
func wtDumpLogs(t *testing.T, dir string) {
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".log") || strings.Contains(p, "/daemons/") {
			return nil
		}
		b, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		t.Logf("--- %s\n%s", p, strings.Join(lines, "\n"))
		return nil
	})
}
