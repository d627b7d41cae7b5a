package sidecar

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestOutboundListenerSelection(t *testing.T) {
	withSE := func(se cluster.ServiceEntry) func(*cluster.Inventory) {
		return func(inv *cluster.Inventory) { inv.ServiceEntries = append(inv.ServiceEntries, se) }
	}
	tcpSE := func(addrs []string, port uint32, proto string) cluster.ServiceEntry {
		return cluster.ServiceEntry{Namespace: "app", Name: "ext", Hosts: []string{"ext.example"}, Addresses: addrs,
			Ports: []cluster.ServiceEntryPort{{Number: port, Name: "p", Protocol: proto}}, Location: "MESH_EXTERNAL", Resolution: "NONE"}
	}
	headless := func(inv *cluster.Inventory) {
		inv.Services = append(inv.Services, cluster.Service{Namespace: "app", Name: "nats", ClusterIP: "None",
			Backends: []cluster.PodRef{{Namespace: "app", Name: "server"}},
			Ports:    []cluster.ServicePort{port("client", 4222, "4222", auto()), port("tcp-route", 6222, "6222", tcpByName())}})
	}
	udp := func(inv *cluster.Inventory) {
		inv.Services = append(inv.Services, cluster.Service{Namespace: "app", Name: "dns", ClusterIP: "10.96.0.53",
			Ports: []cluster.ServicePort{{Name: "dns", Port: 5353, Protocol: "UDP", Resolved: cluster.ResolvedProtocol{Protocol: cluster.ProtocolUDP}}}})
	}
	tests := []struct {
		name     string
		mutate   func(*cluster.Inventory)
		dst      string
		listener string
		sniff    bool
		service  string // "" = original destination
		hole     bool
	}{
		{name: "auto Service port sniffs on its ClusterIP", dst: vipDB + ":3307", listener: vipDB + "_3307", sniff: true, service: "db"},
		{name: "tcp- Service port relays", dst: vipDBTCP + ":3308", listener: vipDBTCP + "_3308", service: "db-tcp"},
		{name: "unknown IP on an HTTP Service's port: 0.0.0.0 listener sniffs", dst: ipExt + ":10000", listener: "0.0.0.0_10000", sniff: true},
		{name: "HTTP Service's own ClusterIP is only a route on the wildcard", dst: vipWeb + ":10000", listener: "0.0.0.0_10000", sniff: true},
		// An auto Service binds its ClusterIP, not 0.0.0.0 (listener.go,
		// ListenerProtocolAuto takes the TCP branch): no collision.
		{name: "unknown IP on an auto Service's port: passthrough", dst: ipExt + ":3307", listener: "virtualOutbound"},
		{name: "pod IP of a ClusterIP Service: passthrough", dst: ipServer + ":3307", listener: "virtualOutbound"},
		{name: "unknown port: passthrough", dst: ipExt + ":3310", listener: "virtualOutbound"},
		{name: "ServiceEntry address with TCP wins over the wildcard", mutate: withSE(tcpSE([]string{ipExt}, 10000, "TCP")),
			dst: ipExt + ":10000", listener: ipExt + "_10000"},
		{name: "ServiceEntry /32 is an address", mutate: withSE(tcpSE([]string{ipExt + "/32"}, 10000, "TCP")),
			dst: ipExt + ":10000", listener: ipExt + "_10000"},
		{name: "ServiceEntry CIDR shares the sniffing wildcard", mutate: withSE(tcpSE([]string{"10.77.0.0/24"}, 10000, "TCP")),
			dst: ipExt + ":10000", listener: "0.0.0.0_10000", sniff: true},
		{name: "ServiceEntry address without protocol sniffs", mutate: withSE(tcpSE([]string{ipExt}, 4222, "")),
			dst: ipExt + ":4222", listener: ipExt + "_4222", sniff: true},
		{name: "ServiceEntry without addresses, TCP alone: wildcard TCP", mutate: withSE(tcpSE(nil, 5555, "TCP")),
			dst: ipExt + ":5555", listener: "0.0.0.0_5555"},
		{name: "ServiceEntry without addresses merges with HTTP into sniffing", mutate: withSE(tcpSE(nil, 10000, "TCP")),
			dst: ipExt + ":10000", listener: "0.0.0.0_10000", sniff: true},
		{name: "headless auto port: per-endpoint listener sniffs", mutate: headless, dst: ipServer + ":4222", listener: ipServer + "_4222", sniff: true, service: "nats"},
		{name: "headless tcp port: per-endpoint listener relays", mutate: headless, dst: ipServer + ":6222", listener: ipServer + "_6222", service: "nats"},
		{name: "UDP port builds no TCP listener", mutate: udp, dst: "10.96.0.53:5353", listener: "virtualOutbound"},
		{name: "the capture port itself is a black hole", dst: ipExt + ":15001", listener: "virtualOutbound", hole: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := testInventory()
			if tc.mutate != nil {
				tc.mutate(&inv)
			}
			v := buildView(&inv, Identity{Namespace: "app", Name: "client"}, nil)
			p := v.outbound(ap(tc.dst))
			if p.Listener != tc.listener || p.Sniff != tc.sniff || p.Blackhole != tc.hole {
				t.Fatalf("outbound(%s) = listener %q sniff %v blackhole %v (%s); want %q sniff %v blackhole %v",
					tc.dst, p.Listener, p.Sniff, p.Blackhole, p.Why, tc.listener, tc.sniff, tc.hole)
			}
			got := ""
			if p.Service != nil {
				got = p.Service.svc.Name
			}
			if got != tc.service {
				t.Fatalf("outbound(%s) cluster = %q, want %q", tc.dst, got, tc.service)
			}
		})
	}
}

func TestUpstream(t *testing.T) {
	inv := testInventory()
	v := buildView(&inv, Identity{Namespace: "app", Name: "client"}, nil)
	tests := []struct {
		name     string
		dst      string
		http     bool
		addr     string
		preamble bool
		alpn     string
	}{
		{name: "named targetPort resolves, sidecar gets mTLS", dst: vipDB + ":3307", addr: ipServer + ":3307", preamble: true, alpn: "istio-peer-exchange"},
		{name: "HTTP detected: istio-http ALPN", dst: vipDB + ":4307", http: true, addr: ipServer + ":4307", preamble: true, alpn: "istio-http/1.1"},
		{name: "DISABLE port: auto mTLS sends plaintext", dst: vipDBOff + ":3309", addr: ipServer + ":3309"},
		{name: "pod without sidecar: plaintext", dst: vipPlain + ":3308", addr: ipPlain + ":3308"},
		{name: "passthrough to a ClusterIP: kube-proxy endpoint, plaintext", dst: vipWeb + ":10000", addr: ipServer + ":8080"},
		{name: "HTTP route to an HTTP Service: mTLS", dst: vipWeb + ":10000", http: true, addr: ipServer + ":8080", preamble: true, alpn: "istio-http/1.1"},
		{name: "external: original destination", dst: ipExt + ":10000", addr: ipExt + ":10000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dst := ap(tc.dst)
			u, err := v.upstream(v.outbound(dst), dst, tc.http)
			if err != nil {
				t.Fatal(err)
			}
			if u.Addr != ap(tc.addr) || u.Preamble != tc.preamble || (tc.preamble && u.ALPN != tc.alpn) {
				t.Fatalf("upstream(%s) = %s preamble %v alpn %q (%s); want %s preamble %v alpn %q",
					tc.dst, u.Addr, u.Preamble, u.ALPN, u.Why, tc.addr, tc.preamble, tc.alpn)
			}
		})
	}

	t.Run("no endpoints is an error, not a panic", func(t *testing.T) {
		inv := testInventory()
		inv.Services[0].Backends = nil
		v := buildView(&inv, Identity{Namespace: "app", Name: "client"}, nil)
		dst := ap(vipDB + ":3307")
		if _, err := v.upstream(v.outbound(dst), dst, false); err == nil || !strings.Contains(err.Error(), "no healthy upstream") {
			t.Fatalf("err = %v, want no healthy upstream", err)
		}
	})
}

func TestInboundChain(t *testing.T) {
	tests := []struct {
		pod  string
		port uint16
		fam  family
		mode cluster.MTLSMode
		hole bool
	}{
		{pod: "server", port: 3307, fam: famAuto, mode: cluster.MTLSPermissive},
		{pod: "server", port: 3308, fam: famTCP, mode: cluster.MTLSPermissive},
		{pod: "server", port: 3309, fam: famTCP, mode: cluster.MTLSDisable},
		{pod: "server", port: 8080, fam: famHTTP, mode: cluster.MTLSPermissive},
		{pod: "server", port: 9999, fam: famAuto, mode: cluster.MTLSPermissive}, // passthrough chain
		{pod: "strict", port: 3308, fam: famTCP, mode: cluster.MTLSStrict},
		{pod: "unknown", port: 3308, fam: famAuto, mode: cluster.MTLSPermissive},
		{pod: "server", port: 15006, hole: true},
	}
	for _, tc := range tests {
		inv := testInventory()
		v := buildView(&inv, Identity{Namespace: "app", Name: tc.pod}, nil)
		p := v.inbound(tc.port)
		if p.Blackhole != tc.hole || (!tc.hole && (p.Fam != tc.fam || p.Mode != tc.mode)) {
			t.Errorf("%s:%d inbound = %s %s blackhole %v (%s); want %s %s blackhole %v",
				tc.pod, tc.port, p.Fam, p.Mode, p.Blackhole, p.Why, tc.fam, tc.mode, tc.hole)
		}
	}
}

func TestEffectiveMTLS(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pa := func(ns, name string, sel map[string]string, mode cluster.MTLSMode, age int, ports map[uint32]cluster.MTLSMode) cluster.PeerAuthentication {
		return cluster.PeerAuthentication{Namespace: ns, Name: name, Selector: sel, Mode: mode, PortModes: ports,
			CreatedAt: t0.Add(time.Duration(age) * time.Hour)}
	}
	sel := map[string]string{"app": "server"}
	tests := []struct {
		name string
		pas  []cluster.PeerAuthentication
		port uint32
		want cluster.MTLSMode
	}{
		{name: "nothing: PERMISSIVE", want: cluster.MTLSPermissive},
		{name: "mesh STRICT", pas: []cluster.PeerAuthentication{pa("istio-system", "m", nil, cluster.MTLSStrict, 0, nil)}, want: cluster.MTLSStrict},
		{name: "namespace overrides mesh", pas: []cluster.PeerAuthentication{
			pa("istio-system", "m", nil, cluster.MTLSStrict, 0, nil), pa("app", "n", nil, cluster.MTLSDisable, 0, nil)}, want: cluster.MTLSDisable},
		{name: "workload UNSET inherits namespace", pas: []cluster.PeerAuthentication{
			pa("app", "n", nil, cluster.MTLSStrict, 0, nil), pa("app", "w", sel, cluster.MTLSUnset, 0, nil)}, want: cluster.MTLSStrict},
		{name: "workload overrides namespace", pas: []cluster.PeerAuthentication{
			pa("app", "n", nil, cluster.MTLSStrict, 0, nil), pa("app", "w", sel, cluster.MTLSPermissive, 0, nil)}, want: cluster.MTLSPermissive},
		{name: "port-level DISABLE", port: 3309, pas: []cluster.PeerAuthentication{
			pa("app", "w", sel, cluster.MTLSStrict, 0, map[uint32]cluster.MTLSMode{3309: cluster.MTLSDisable})}, want: cluster.MTLSDisable},
		{name: "port-level UNSET inherits workload", port: 3309, pas: []cluster.PeerAuthentication{
			pa("app", "w", sel, cluster.MTLSStrict, 0, map[uint32]cluster.MTLSMode{3309: cluster.MTLSUnset})}, want: cluster.MTLSStrict},
		{name: "port-level on another port does not apply", port: 3308, pas: []cluster.PeerAuthentication{
			pa("app", "w", sel, cluster.MTLSStrict, 0, map[uint32]cluster.MTLSMode{3309: cluster.MTLSDisable})}, want: cluster.MTLSStrict},
		{name: "oldest workload policy wins", pas: []cluster.PeerAuthentication{
			pa("app", "young", sel, cluster.MTLSDisable, 2, nil), pa("app", "old", sel, cluster.MTLSStrict, 1, nil)}, want: cluster.MTLSStrict},
		{name: "selector must match", pas: []cluster.PeerAuthentication{
			pa("app", "w", map[string]string{"app": "other"}, cluster.MTLSStrict, 0, nil)}, want: cluster.MTLSPermissive},
		{name: "root-namespace policy with a selector is not mesh-wide", pas: []cluster.PeerAuthentication{
			pa("istio-system", "w", sel, cluster.MTLSStrict, 0, nil)}, want: cluster.MTLSPermissive},
		{name: "another namespace's policy does not apply", pas: []cluster.PeerAuthentication{
			pa("other", "n", nil, cluster.MTLSStrict, 0, nil)}, want: cluster.MTLSPermissive},
	}
	for _, tc := range tests {
		inv := testInventory()
		inv.PeerAuthentications = tc.pas
		v := buildView(&inv, Identity{Namespace: "app", Name: "server"}, nil)
		if got := v.effectiveMTLS(v.self, tc.port); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestFamilyOf(t *testing.T) {
	for p, want := range map[cluster.Protocol]family{
		cluster.ProtocolTCP: famTCP, cluster.ProtocolMySQL: famTCP, cluster.ProtocolTLS: famTCP, cluster.ProtocolHTTPS: famTCP,
		cluster.ProtocolMongo: famTCP, cluster.ProtocolRedis: famTCP, cluster.ProtocolHTTP: famHTTP, cluster.ProtocolHTTP2: famHTTP,
		cluster.ProtocolGRPC: famHTTP, cluster.ProtocolGRPCWeb: famHTTP, cluster.ProtocolUDP: famUDP, cluster.ProtocolAuto: famAuto,
		"": famAuto, "nats.io/client": famAuto,
	} {
		if got := familyOf(p); got != want {
			t.Errorf("familyOf(%q) = %s, want %s", p, got, want)
		}
	}
}

func TestDNSAutoAllocateMatchesResolvedHosts(t *testing.T) {
	inv := testInventory()
	inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "app", Name: "ext", Hosts: []string{"db.example"},
		Ports: []cluster.ServiceEntryPort{{Number: 10000, Protocol: "TCP"}}, Resolution: "DNS"}}
	resolve := func(h string) []netip.Addr {
		if h == "db.example" {
			return []netip.Addr{netip.MustParseAddr(ipExt)}
		}
		return nil
	}
	dst := ap(ipExt + ":10000")
	if p := buildView(&inv, Identity{Namespace: "app", Name: "client"}, nil).outbound(dst); !p.Sniff {
		t.Fatalf("without DNS auto-allocation an address-less ServiceEntry cannot match by IP; got %+v", p)
	}
	if p := buildView(&inv, Identity{Namespace: "app", Name: "client"}, resolve).outbound(dst); p.Sniff || p.Listener != ipExt+"_10000" {
		t.Fatalf("with DNS auto-allocation the resolved address has its own TCP listener; got %+v", p)
	}
}

func TestLooksHTTP(t *testing.T) {
	for in, want := range map[string]bool{
		"GET / HTTP/1.1\r\n": true, "PRI * HTTP/2.0\r\n": true, "POST /x HTTP/1.0\r\n": true,
		"PING\r\n": false, "\x16\x03\x01": false, "": false, "GETX": false,
	} {
		if got := looksHTTP([]byte(in)); got != want {
			t.Errorf("looksHTTP(%q) = %v", in, got)
		}
	}
}

// A pod created from generateName may reach the sidecar without its name:
// the model then finds itself by IP.
func TestSelfByIP(t *testing.T) {
	inv := testInventory()
	v := buildView(&inv, Identity{Namespace: "app", IP: ipStrict}, nil)
	if v.self == nil || v.self.Name != "strict" {
		t.Fatalf("self = %+v", v.self)
	}
	if p := v.inbound(3308); p.Mode != cluster.MTLSStrict {
		t.Fatalf("inbound 3308 = %s, want STRICT", p.Mode)
	}
}
