package world

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestWorldDemo runs the whole world (API server, injector, inventory
// writer, node agent, sidecar models, real daemons) with the demo seed and
// checks the sniffing behaviour from inside pods, then a fix taking effect
// after WaitSidecarsSynced.
func TestWorldDemo(t *testing.T) {
	if err := requireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skip(err)
	}
	if testing.Short() {
		t.Skip("starts an API server, a node and daemons; skipped with -short")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
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
			}
			w.Stop()
		}
	}()
	t.Logf("world started in %v; state in %s", w.StartupTime.Round(time.Millisecond), w.StateDir)

	began = time.Now()
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatal(err)
	}
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatalf("seeding twice: %v", err)
	}
	readyCtx, cancelReady := context.WithTimeout(ctx, 2*time.Minute)
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
		if s.Err != nil || !s.Status.Ready || !s.Status.PodKnown || s.Status.Generation == 0 {
			t.Errorf("sidecar %s/%s: %+v (err %v)", s.Namespace, s.Name, s.Status, s.Err)
		}
	}
	if strings.Join(names, " ") != "shop/cache shop/orders-db shop/web" {
		t.Errorf("running sidecars = %v", names)
	}

	db := checkDemoPaths(t, ctx, w)

	// The fix for mesh clients: declare the port TCP. After
	// WaitSidecarsSynced every sidecar has it.
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
	if got := wtFirstBytes(t, ctx, w, DemoShop, "web", db, "", demoWait); !strings.Contains(strings.ToLower(got), "mariadb") {
		t.Errorf("after the fix, web -> orders-db: %q", got)
	}

	if t.Failed() {
		wtDumpLogs(t, w.StateDir)
	}

	// Stop takes everything down.
	nodeNetns := w.Node.NodeNetns()
	var configs []string
	if w.Injector != nil {
		configs = w.Injector.ConfigNames
	}
	for _, d := range w.Istiods { // SERVERFIRST_WORLD_ISTIO
		configs = append(configs, d.ConfigNames...)
	}
	stopped = true
	if err := w.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", nodeNetns)); !os.IsNotExist(err) {
		t.Errorf("node netns %s still there: %v", nodeNetns, err)
	}
	for _, name := range configs {
		if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{}); err == nil {
			t.Errorf("webhook configuration %s left behind", name)
		}
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
