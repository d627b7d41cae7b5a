package world

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

var updateConfigDumps = flag.Bool("update-configdumps", false,
	"regenerate cluster/proxyconfig/testdata from real istiod (needs root and Istio's test binaries)")

// Golden /config_dump files: what real istiod sends the demo's sidecars,
// plus the objects below, as Envoy's admin would print it. The client
// dump (web) covers a Service port declared TCP (orders-db-tcp:3306), an
// auto-detected one (orders-db:3307), a 0.0.0.0 wildcard collision (the
// HTTP Service api:10000) and a DestinationRule DISABLE cluster
// (orders-db-plain:3308); the server dumps cover PERMISSIVE inbound
// (orders-db, the mesh-wide default) and STRICT inbound (cache).
const (
	goldenClient     = "client-web.json"
	goldenPermissive = "server-orders-db-permissive.json"
	goldenStrict     = "server-cache-strict.json"
	goldenAddresses  = "addresses.json"
)

// GoldenAddresses is what the parser's tests need to know about the world
// the dumps came from: the ClusterIPs and pod IPs they name.
type GoldenAddresses struct {
	ServiceIPs map[string]string `json:"serviceIPs"` // "ns/name" -> ClusterIP
	PodIPs     map[string]string `json:"podIPs"`     // "ns/name" -> pod IP
}

// TestConfigDumpGoldens regenerates the golden dumps (-update-configdumps).
func TestConfigDumpGoldens(t *testing.T) {
	if !*updateConfigDumps {
		t.Skip("regenerates cluster/proxyconfig/testdata from real istiod: run with -update-configdumps")
	}
	ctx, w, _, _ := worldForTest(t, 6*time.Minute)
	ib := requireIstio(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := SeedDemo(ctx, w.Kube, w.Istio); err != nil {
		t.Fatal(err)
	}
	for _, svc := range [](struct {
		name, app, port string
		number, target  int32
	}){
		{"api", "web", "http-api", 10000, 8080},
		{"orders-db-plain", "orders-db", "tcp-plain", 3308, 3306},
	} {
		if _, err := w.Kube.CoreV1().Services(DemoShop).Create(ctx, demoService(DemoShop, svc.name, svc.app, svc.port, svc.number, svc.target), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "orders-db-plain", Namespace: DemoShop}}
	dr.Spec.Host = "orders-db-plain.shop.svc.cluster.local"
	dr.Spec.TrafficPolicy = &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_DISABLE}}
	if _, err := w.Istio.NetworkingV1().DestinationRules(DemoShop).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "cache-strict", Namespace: DemoShop}}
	pa.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "cache"}}
	pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}
	if _, err := w.Istio.SecurityV1().PeerAuthentications(DemoShop).Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := WaitPodsReady(ctx, w.Kube, "shop/web", "shop/orders-db", "shop/cache"); err != nil {
		t.Fatal(err)
	}

	addrs := GoldenAddresses{ServiceIPs: map[string]string{}, PodIPs: map[string]string{}}
	for _, name := range []string{"orders-db", "orders-db-tcp", "orders-db-plain", "cache", "api"} {
		addrs.ServiceIPs[DemoShop+"/"+name] = clusterIPOf(t, ctx, w, DemoShop, name)
	}
	for _, name := range []string{"web", "orders-db", "cache"} {
		p, err := w.Kube.CoreV1().Pods(DemoShop).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		addrs.PodIPs[DemoShop+"/"+name] = p.Status.PodIP
	}
	vip := func(name string) string { return addrs.ServiceIPs[DemoShop+"/"+name] }

	// istiod pushes what it has; poll until each dump shows every object
	// above (the listeners and the DISABLE cluster), so a regenerated
	// golden never catches istiod half-way.
	dumps := map[string][]byte{}
	for file, want := range map[string]struct {
		pod  string
		test func(d *proxyconfig.Dump) bool
	}{
		goldenClient: {"web", func(d *proxyconfig.Dump) bool {
			c := d.Clusters["outbound|3308||orders-db-plain.shop.svc.cluster.local"]
			return d.ListenerByName(vip("orders-db")+"_3307") != nil && d.ListenerByName(vip("orders-db-tcp")+"_3306") != nil &&
				d.ListenerByName(vip("orders-db-plain")+"_3308") != nil && d.ListenerByName("0.0.0.0_10000") != nil &&
				c != nil && c.UpstreamTLS() == proxyconfig.UpstreamPlaintext
		}},
		goldenPermissive: {"orders-db", func(d *proxyconfig.Dump) bool {
			ip := netip.MustParseAddr(addrs.PodIPs["shop/orders-db"])
			return !d.Inbound(netip.AddrPortFrom(ip, 3306), netip.AddrPort{}, false).NoChain
		}},
		goldenStrict: {"cache", func(d *proxyconfig.Dump) bool {
			ip := netip.MustParseAddr(addrs.PodIPs["shop/cache"])
			plain := d.Inbound(netip.AddrPortFrom(ip, 6379), netip.AddrPort{}, false)
			return (plain.NoChain || plain.ChainTLS) && !d.Inbound(netip.AddrPortFrom(ip, 6379), netip.AddrPort{}, true).NoChain
		}},
	} {
		for {
			raw := istioConfigDumpBytes(t, ctx, w, ib, DemoShop, want.pod)
			d, err := proxyconfig.Parse(raw)
			if err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			if want.test(d) {
				dumps[file] = raw
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s: istiod never sent shop/%s the expected config", file, want.pod)
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	dir := filepath.Join(root, "cluster", "proxyconfig", "testdata")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := json.MarshalIndent(addrs, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dumps[goldenAddresses] = a
	for file, data := range dumps {
		if err := os.WriteFile(filepath.Join(dir, file), append(bytes.TrimSpace(data), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", filepath.Join(dir, file), len(data))
	}
}

// istioConfigDumpBytes is istioConfigDump's document as istio-world
// printed it.
func istioConfigDumpBytes(t *testing.T, ctx context.Context, w *World, ib IstioBinaries, ns, name string) []byte {
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
	return out
}
