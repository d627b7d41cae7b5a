package proxyconfig

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// The golden dumps are real istiod output for the e2e world's demo
// (regenerate: go test ./e2e/world/ -run TestConfigDumpGoldens
// -update-configdumps; see that test for what each one holds). The
// decisions below are what Envoy does with a client that sends nothing.

type goldenAddresses struct {
	ServiceIPs map[string]string `json:"serviceIPs"`
	PodIPs     map[string]string `json:"podIPs"`
}

func loadGolden(t testing.TB, name string) *Dump {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(b)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

func goldenAddrs(t testing.TB) goldenAddresses {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "addresses.json"))
	if err != nil {
		t.Fatal(err)
	}
	var a goldenAddresses
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

func TestGoldenDecisions(t *testing.T) {
	a := goldenAddrs(t)
	at := func(ip string, port uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(ip), port) }
	vip := func(name string, port uint16) netip.AddrPort { return at(a.ServiceIPs["shop/"+name], port) }
	web, db, cache := loadGolden(t, "client-web.json"), loadGolden(t, "server-orders-db-permissive.json"), loadGolden(t, "server-cache-strict.json")
	src := at(a.PodIPs["shop/web"], 40000)
	dbPod, cachePod := a.PodIPs["shop/orders-db"], a.PodIPs["shop/cache"]

	for _, tc := range []struct {
		name string
		got  Decision
		want Decision
		// forever/passes: the summary the report rests on.
		forever, passes bool
	}{
		{name: "auto-detected Service port: the VIP listener's http_inspector waits forever",
			got: web.Outbound(vip("orders-db", 3307), src),
			want: Decision{Listener: a.ServiceIPs["shop/orders-db"] + "_3307", ListenerAddress: vip("orders-db", 3307).String(), Via: "exact",
				Inspectors: []string{"http_inspector"}, Waits: true, Filter: "tcp_proxy",
				Cluster: "outbound|3307||orders-db.shop.svc.cluster.local", UpstreamTLS: UpstreamAutoMTLS},
			forever: true},
		{name: "Service port declared TCP: no inspector, auto mTLS to the server's sidecar",
			got: web.Outbound(vip("orders-db-tcp", 3306), src),
			want: Decision{Listener: a.ServiceIPs["shop/orders-db-tcp"] + "_3306", ListenerAddress: vip("orders-db-tcp", 3306).String(), Via: "exact",
				Filter: "tcp_proxy", Cluster: "outbound|3306||orders-db-tcp.shop.svc.cluster.local", UpstreamTLS: UpstreamAutoMTLS},
			passes: true},
		{name: "DestinationRule tls DISABLE: the cluster sends plaintext",
			got: web.Outbound(vip("orders-db-plain", 3308), src),
			want: Decision{Listener: a.ServiceIPs["shop/orders-db-plain"] + "_3308", ListenerAddress: vip("orders-db-plain", 3308).String(), Via: "exact",
				Filter: "tcp_proxy", Cluster: "outbound|3308||orders-db-plain.shop.svc.cluster.local", UpstreamTLS: UpstreamPlaintext},
			passes: true},
		{name: "an external IP on the HTTP Service's port rides 0.0.0.0_10000 and is sniffed forever",
			got: web.Outbound(at("203.0.113.7", 10000), src),
			want: Decision{Listener: "0.0.0.0_10000", ListenerAddress: "0.0.0.0:10000", Via: "wildcard",
				Inspectors: []string{"http_inspector"}, Waits: true, Chain: "PassthroughFilterChain", Filter: "tcp_proxy",
				Cluster: "PassthroughCluster", UpstreamTLS: UpstreamPlaintext},
			forever: true},
		{name: "an external IP on a port no Service uses passes through virtualOutbound",
			got: web.Outbound(at("203.0.113.7", 25), src),
			want: Decision{Listener: "virtualOutbound", ListenerAddress: "0.0.0.0:15001", Via: "accepting",
				Chain: "virtualOutbound-catchall-tcp", Filter: "tcp_proxy", Cluster: "PassthroughCluster", UpstreamTLS: UpstreamPlaintext},
			passes: true},
		{name: "PERMISSIVE inbound, plaintext client: tls_inspector waits forever (http_inspector off: the port is declared TCP)",
			got: db.Inbound(at(dbPod, 3306), src, false),
			want: Decision{Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
				Inspectors: []string{"tls_inspector"}, Skipped: []string{"http_inspector"}, Waits: true,
				Chain: "0.0.0.0_3306", Filter: "tcp_proxy", Cluster: "inbound|3306||"},
			forever: true},
		{name: "PERMISSIVE inbound, a sidecar's mTLS: no wait, the TLS chain",
			got: db.Inbound(at(dbPod, 3306), src, true),
			want: Decision{Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
				Skipped: []string{"http_inspector"}, Chain: "0.0.0.0_3306", ChainTLS: true, Filter: "tcp_proxy", Cluster: "inbound|3306||"},
			passes: true},
		{name: "PERMISSIVE inbound, a port no Service declares: both inspectors, the passthrough chain",
			got: db.Inbound(at(dbPod, 9999), src, false),
			want: Decision{Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
				Inspectors: []string{"tls_inspector", "http_inspector"}, Waits: true,
				Chain: "virtualInbound", Filter: "tcp_proxy", Cluster: "InboundPassthroughCluster"},
			forever: true},
		{name: "STRICT inbound, plaintext client: tls_inspector waits, and no chain takes plaintext",
			got: cache.Inbound(at(cachePod, 6379), src, false),
			want: Decision{Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
				Inspectors: []string{"tls_inspector"}, Waits: true, NoChain: true},
			forever: true},
		{name: "STRICT inbound, a sidecar's mTLS",
			got: cache.Inbound(at(cachePod, 6379), src, true),
			want: Decision{Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
				Chain: "0.0.0.0_6379", ChainTLS: true, Filter: "tcp_proxy", Cluster: "inbound|6379||"},
			passes: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !equalDecision(tc.got, tc.want) {
				g, _ := json.Marshal(tc.got)
				w, _ := json.Marshal(tc.want)
				t.Errorf("\n got %s\nwant %s", g, w)
			}
			if tc.got.Forever() != tc.forever || tc.got.Passes() != tc.passes {
				t.Errorf("Forever %v Passes %v, want %v %v", tc.got.Forever(), tc.got.Passes(), tc.forever, tc.passes)
			}
		})
	}
}

// BenchmarkParseConfigDump: the largest golden (a real istiod dump).
func BenchmarkParseConfigDump(b *testing.B) {
	data, err := os.ReadFile(filepath.Join("testdata", "client-web.json"))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOutbound: one decision on a parsed dump.
func BenchmarkOutbound(b *testing.B) {
	d := loadGolden(b, "client-web.json")
	a := goldenAddrs(b)
	dst := netip.AddrPortFrom(netip.MustParseAddr(a.ServiceIPs["shop/orders-db"]), 3307)
	for b.Loop() {
		_ = d.Outbound(dst, netip.AddrPort{})
	}
}
