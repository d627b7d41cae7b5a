package world

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// serverFirstCases are the cases of Istio's own integration suite
// (tests/integration/pilot/common/routing.go, serverFirstTestCases) for a
// mesh client calling a server-first TCP server: the port (auto-detected
// or declared TCP), the DestinationRule TLS mode and the PeerAuthentication
// mode, and whether the server's first bytes arrive. Istio's comments,
// condensed: an auto port is sniffed on outbound whatever the config; a
// declared TCP port is still sniffed on inbound for plaintext unless mTLS
// is DISABLE (no TLS to "upgrade" server-first to client-first); TLS modes
// that disagree fail; mTLS on a TCP port succeeds (the inbound sees TLS,
// which is client-first). Istio lists tcp-server DISABLE/DISABLE twice;
// it is run once here.
var serverFirstCases = []struct {
	port, dest, auth string
	ok               bool
}{
	{"auto-tcp-server", "DISABLE", "DISABLE", false},
	{"auto-tcp-server", "DISABLE", "PERMISSIVE", false},
	{"auto-tcp-server", "DISABLE", "STRICT", false},
	{"auto-tcp-server", "ISTIO_MUTUAL", "DISABLE", false},
	{"auto-tcp-server", "ISTIO_MUTUAL", "PERMISSIVE", false},
	{"auto-tcp-server", "ISTIO_MUTUAL", "STRICT", false},
	{"tcp-server", "DISABLE", "DISABLE", true},
	{"tcp-server", "DISABLE", "PERMISSIVE", false},
	{"tcp-server", "DISABLE", "STRICT", false},
	{"tcp-server", "ISTIO_MUTUAL", "DISABLE", false},
	{"tcp-server", "ISTIO_MUTUAL", "PERMISSIVE", true},
	{"tcp-server", "ISTIO_MUTUAL", "STRICT", true},
}

// outsideOK is the same server called by a client without a sidecar
// (DestinationRules do not apply to it): not part of Istio's table, it
// follows from the inbound rules the table's comments name: only a
// declared TCP port with mTLS DISABLE has no inspector waiting for the
// client's first bytes.
func outsideOK(port, auth string) bool { return port == "tcp-server" && auth == "DISABLE" }

// TestServerFirstTruthTable runs Istio's server-first truth table in the
// world with real istiod and sidecars configured by it, against a real
// MariaDB behind each port, from a mesh client and from a client without
// a sidecar.
func TestServerFirstTruthTable(t *testing.T) {
	ctx, w, _, env := worldForTest(t, 8*time.Minute)

	const ns, outNS = "truth", "truth-out"
	for name, labels := range map[string]map[string]string{ns: {"istio-injection": "enabled"}, outNS: nil} {
		if _, err := env.CreateNamespace(ctx, name, labels); err != nil {
			t.Fatal(err)
		}
	}
	ports := map[string]int32{"auto-tcp-server": 13306, "tcp-server": 13307}
	for port, number := range ports {
		app := "server-" + strings.TrimSuffix(port, "-tcp-server")
		if port == "tcp-server" {
			app = "server-tcp"
		}
		if _, err := w.Kube.CoreV1().Services(ns).Create(ctx, demoService(ns, app, app, port, number, 3306), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Kube.CoreV1().Pods(ns).Create(ctx, demoPod(ns, app, corev1.Container{
			Name: "mariadb", Image: "docker.io/library/mariadb:11",
			Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306}},
			Env:   []corev1.EnvVar{{Name: "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", Value: "1"}},
		}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	sleeper := corev1.Container{Name: "app", Image: "docker.io/library/busybox:1.36", Command: []string{"sleep", "infinity"}}
	for _, p := range []*corev1.Pod{demoPod(ns, "client", sleeper), demoPod(outNS, "outside", sleeper)} {
		if _, err := w.Kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := WaitPodsReady(ctx, w.Kube, ns+"/server-auto", ns+"/server-tcp", ns+"/client", outNS+"/outside"); err != nil {
		t.Fatal(err)
	}
	for _, app := range []string{"server-auto", "server-tcp"} {
		p, err := w.Kube.CoreV1().Pods(ns).Get(ctx, app, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitGreeting(t, ctx, w, ns, app, net.JoinHostPort(p.Status.PodIP, "3306"))
	}
	clusterName := func(port string) string {
		return fmt.Sprintf("outbound|%d||%s.%s.svc.cluster.local", ports[port], serverOf(port), ns)
	}

	// Each case's config is in force once WaitSidecarsSynced returns: the
	// sidecars' dumps are read once to prove it, never polled.
	for _, c := range serverFirstCases {
		name := fmt.Sprintf("%s:%s/%s", c.port, c.dest, c.auth)
		app := serverOf(c.port)
		applied := time.Now()
		applyDestinationRule(t, ctx, w, ns, app, c.dest)
		applyPeerAuthentication(t, ctx, w, ns, app, c.auth)
		if err := w.WaitSidecarsSynced(ctx, applied); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: in force in every sidecar %v after the writes", name, time.Since(applied).Round(time.Millisecond))
		checkClusterTLS(t, ctx, w, ns, "client", clusterName(c.port), c.dest == "ISTIO_MUTUAL")
		checkInboundModes(t, ctx, w, ns, app, 3306, c.auth)
		addr := net.JoinHostPort(clusterIPOf(t, ctx, w, ns, app), fmt.Sprint(ports[c.port]))
		for _, from := range []struct {
			ns, pod string
			ok      bool
		}{{ns, "client", c.ok}, {outNS, "outside", outsideOK(c.port, c.auth)}} {
			got := wtFirstBytes(t, ctx, w, from.ns, from.pod, addr, "", 1500*time.Millisecond)
			if ok := strings.Contains(strings.ToLower(got), "mariadb"); ok != from.ok {
				t.Errorf("%s from %s/%s: greeting %v (first bytes %q), Istio's table says %v", name, from.ns, from.pod, ok, got, from.ok)
			}
		}
	}
}

func serverOf(port string) string {
	if port == "tcp-server" {
		return "server-tcp"
	}
	return "server-auto"
}

func applyDestinationRule(t *testing.T, ctx context.Context, w *World, ns, app, mode string) {
	t.Helper()
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns}}
	dr.Spec.Host = app + "." + ns + ".svc.cluster.local"
	dr.Spec.TrafficPolicy = &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{
		Mode: networkingapi.ClientTLSSettings_TLSmode(networkingapi.ClientTLSSettings_TLSmode_value[mode]),
	}}
	api := w.Istio.NetworkingV1().DestinationRules(ns)
	old, err := api.Get(ctx, app, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, dr, metav1.CreateOptions{})
	case err == nil:
		dr.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, dr, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func applyPeerAuthentication(t *testing.T, ctx context.Context, w *World, ns, app, mode string) {
	t.Helper()
	pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns}}
	pa.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{
		Mode: securityapi.PeerAuthentication_MutualTLS_Mode(securityapi.PeerAuthentication_MutualTLS_Mode_value[mode]),
	}
	api := w.Istio.SecurityV1().PeerAuthentications(ns)
	old, err := api.Get(ctx, app, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, pa, metav1.CreateOptions{})
	case err == nil:
		pa.ResourceVersion = old.ResourceVersion
		_, err = api.Update(ctx, pa, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

// dumpClusters returns the clusters of a /config_dump by name.
func dumpClusters(dump map[string]any) map[string]map[string]any {
	out := map[string]map[string]any{}
	configs, _ := dump["configs"].([]any)
	for _, c := range configs {
		cm, _ := c.(map[string]any)
		dc, _ := cm["dynamic_active_clusters"].([]any)
		for _, x := range dc {
			cl, _ := x.(map[string]any)["cluster"].(map[string]any)
			out[fmt.Sprint(cl["name"])] = cl
		}
	}
	return out
}

// checkClusterTLS checks that the pod's sidecar holds the cluster, with an
// endpoint, and the DestinationRule's TLS mode in force: ISTIO_MUTUAL is a
// TLS transport socket, DISABLE none (and no auto-mTLS matches).
func checkClusterTLS(t *testing.T, ctx context.Context, w *World, ns, pod, cluster string, tls bool) {
	t.Helper()
	dump := adminConfigDump(t, ctx, w, ns, pod)
	cl := dumpClusters(dump)[cluster]
	ts, _ := cl["transport_socket"].(map[string]any)
	_, matches := cl["transport_socket_matches"]
	if cl == nil || !(tls && ts["name"] == "envoy.transport_sockets.tls" || !tls && ts == nil && !matches) {
		t.Errorf("%s/%s: cluster %s has not TLS=%v: %v", ns, pod, cluster, tls, cl)
	}
	if !dumpHasEndpoint(dump, cluster) {
		t.Errorf("%s/%s: cluster %s has no healthy endpoint", ns, pod, cluster)
	}
}

// dumpHasEndpoint says whether the dump's EndpointsConfigDump has an
// endpoint Envoy would pick for the cluster (not-ready pods come as
// UNHEALTHY).
func dumpHasEndpoint(dump map[string]any, cluster string) bool {
	configs, _ := dump["configs"].([]any)
	for _, c := range configs {
		cm, _ := c.(map[string]any)
		eps, _ := cm["dynamic_endpoint_configs"].([]any)
		for _, e := range eps {
			cfg, _ := e.(map[string]any)["endpoint_config"].(map[string]any)
			if cfg["cluster_name"] != cluster {
				continue
			}
			groups, _ := cfg["endpoints"].([]any)
			for _, g := range groups {
				lbs, _ := g.(map[string]any)["lb_endpoints"].([]any)
				for _, lb := range lbs {
					switch lb.(map[string]any)["health_status"] {
					case nil, "HEALTHY", "UNKNOWN":
						return true
					}
				}
			}
		}
	}
	return false
}

// checkInboundModes checks that the pod's virtualInbound has, for port,
// the chains the PeerAuthentication mode makes: a TLS chain unless
// DISABLE, a plaintext one unless STRICT.
func checkInboundModes(t *testing.T, ctx context.Context, w *World, ns, pod string, port int, mode string) {
	t.Helper()
	var tlsChain, plainChain bool
	l := dumpListener(t, adminConfigDump(t, ctx, w, ns, pod), "virtualInbound")
	chains, _ := l["filter_chains"].([]any)
	for _, c := range chains {
		m, _ := c.(map[string]any)["filter_chain_match"].(map[string]any)
		if fmt.Sprint(m["destination_port"]) != fmt.Sprint(port) {
			continue
		}
		if m["transport_protocol"] == "tls" {
			tlsChain = true
		} else {
			plainChain = true
		}
	}
	if tlsChain != (mode != "DISABLE") || plainChain != (mode != "STRICT") {
		t.Errorf("%s/%s: virtualInbound port %d does not match %s (tls chain %v, plaintext chain %v)", ns, pod, port, mode, tlsChain, plainChain)
	}
}

// worldForTest starts a world on real istiod (the default revision only)
// with kubectl-serverfirst built from this checkout, stops it when the test
// ends (dumping the world's logs first if it failed), and returns a
// context that ends after timeout.
func worldForTest(t *testing.T, timeout time.Duration) (context.Context, *World, Binaries, *testenv.Env) {
	t.Helper()
	requireWorld(t)
	ib := requireIstio(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	bins, err := BuildBinaries(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.StartForTest(t, testenv.Options{})
	w, err := StartWorld(ctx, WorldOptions{Env: env, Binaries: bins, Istio: ib, Revisions: []string{}, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			wtDumpLogs(t, w.StateDir)
		}
		if err := w.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return ctx, w, bins, env
}
