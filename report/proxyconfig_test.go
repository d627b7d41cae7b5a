package report

import (
	"strings"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

func TestProxyConfigVerdicts(t *testing.T) {
	db := pod("shop", "orders-db", "orders-db", true, "mariadb:11")
	web := pod("shop", "web", "web", true, "busybox")
	inv := meshInv([]cluster.Pod{db, web}, svc("shop", "orders-db", "orders-db", []cluster.Pod{db}, tport("db", 3307, "3306", "")))
	key := svcKey("shop", "orders-db", 3307)

	sniffed := proxyconfig.Decision{Listener: "10.96.0.10_3307", ListenerAddress: "10.96.0.10:3307", Via: "exact",
		Inspectors: []string{"http_inspector"}, Waits: true, Chain: "", Filter: "tcp_proxy", Cluster: "outbound|3307||orders-db.shop.svc.cluster.local", UpstreamTLS: proxyconfig.UpstreamAutoMTLS}
	declared := proxyconfig.Decision{Listener: "10.96.0.10_3307", Via: "exact", Filter: "tcp_proxy", Cluster: "outbound|3307||orders-db.shop.svc.cluster.local", UpstreamTLS: proxyconfig.UpstreamAutoMTLS}
	inboundTLS := proxyconfig.Decision{Listener: "virtualInbound", Via: "accepting", Chain: "0.0.0.0_3306", Filter: "tcp_proxy", Cluster: "inbound|3306||"}
	delayed := sniffed
	delayed.Timeout, delayed.OnTimeout, delayed.Chain = 5*time.Second, "continue", "tcp"
	closes := sniffed
	closes.Timeout, closes.TimeoutDefault, closes.OnTimeout = 15*time.Second, true, "close"
	http := proxyconfig.Decision{Listener: "0.0.0.0_3307", Via: "wildcard", Chain: "0.0.0.0_3307", Filter: "http_connection_manager", WaitsForRequest: true}
	strictPlain := proxyconfig.Decision{Listener: "virtualInbound", Via: "accepting", Inspectors: []string{"tls_inspector"}, Waits: true, Chain: "0.0.0.0_3306", ChainTLS: true, Filter: "tcp_proxy", Cluster: "inbound|3306||"}

	client := func(d proxyconfig.Decision) target.ConfigStage {
		return target.ConfigStage{Side: "client", Proxy: "shop/web", Port: 3307, Decision: d}
	}
	server := func(d proxyconfig.Decision, tls bool) target.ConfigStage {
		return target.ConfigStage{Side: "server", Proxy: "shop/orders-db", Port: 3306, Decision: d, ClientTLS: tls}
	}
	uncaptured := func(tls bool) target.ConfigStage {
		return target.ConfigStage{Side: "server", Proxy: "shop/orders-db", Port: 3306, ClientTLS: tls, Uncaptured: "excludeInboundPorts lists port 3306"}
	}
	declaredPlain := declared
	declaredPlain.UpstreamTLS = proxyconfig.UpstreamPlaintext
	noTLSChain := proxyconfig.Decision{Listener: "virtualInbound", Via: "accepting", NoChain: true}
	mesh := func(stages ...target.ConfigStage) target.ConfigPath {
		return target.ConfigPath{Target: key, ServerInMesh: true, Stages: stages, Clients: "clients like shop/web"}
	}
	direct := obs(key, target.VantageDirect, banner(1.2, "5.5.5-10.11.6-MariaDB", "mysql"))

	for _, tc := range []struct {
		name      string
		obs       []target.Observation
		paths     []target.ConfigPath
		code      Code
		pathCodes []Code
		reason    string // a part of the reason
		note      string
	}{
		{name: "direct banner + client listener waits forever: deadlock without a probe pod",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(sniffed), server(inboundTLS, true))},
			code: "SF1001", pathCodes: []Code{"SF1001"}, reason: "listener 10.96.0.10_3307 runs http_inspector"},
		{name: "config alone: at risk, the listener named",
			paths: []target.ConfigPath{mesh(client(sniffed), server(inboundTLS, true))},
			code:  "SF1002", pathCodes: []Code{"SF1002"}, reason: "the client sidecar of shop/web waits forever"},
		{name: "config that does not wait: OK where no probe pod ran",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(declared), server(inboundTLS, true))},
			code: "SF1003", pathCodes: []Code{"SF1003"}, reason: "mutual TLS from the client's sidecar"},
		{name: "finite timeout then continue: delayed, never deadlock",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(delayed), server(inboundTLS, true))},
			code: "SF1004", pathCodes: []Code{"SF1004"}, reason: "waits 5s"},
		{name: "Envoy's default timeout then close",
			paths: []target.ConfigPath{mesh(client(closes))},
			code:  "SF1005", pathCodes: []Code{"SF1005"}, reason: "15s (Envoy's default)"},
		{name: "HTTP connection manager on the path",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(http))},
			code: "SF1006", pathCodes: []Code{"SF1006"}, reason: "an HTTP connection manager"},
		{name: "STRICT inbound for a client without a sidecar",
			paths: []target.ConfigPath{mesh(client(declared), server(inboundTLS, true)),
				{Target: key, Unmeshed: true, ServerInMesh: true, Stages: []target.ConfigStage{server(strictPlain, false)}, Clients: "clients without a sidecar"}},
			code: "SF1007", pathCodes: []Code{"SF1007", "SF1003"}, reason: "no plaintext filter chain for port 3306"},
		{name: "mutual TLS into a port the server does not capture: rejected (the verdict grid)",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(declared), uncaptured(true))},
			code: "SF1009", pathCodes: []Code{"SF1009"}, reason: "does not get port 3306 (excludeInboundPorts lists port 3306)"},
		{name: "plaintext into a port the server does not capture: passes",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(declaredPlain), uncaptured(false))},
			code: "SF1003", pathCodes: []Code{"SF1003"}, reason: "tcp_proxy to outbound|3307"},
		{name: "mutual TLS into a port with no TLS chain (PeerAuthentication DISABLE): rejected",
			obs: []target.Observation{direct}, paths: []target.ConfigPath{mesh(client(declared), server(noTLSChain, true))},
			code: "SF1009", pathCodes: []Code{"SF1009"}, reason: "no TLS filter chain for port 3306 on virtualInbound"},
		{name: "a probe says deadlock, config passes: the weaker claim",
			obs:   []target.Observation{direct, obs(key, target.VantageMeshClient, silent())},
			paths: []target.ConfigPath{mesh(client(declared), server(inboundTLS, true))},
			code:  "SF1008", pathCodes: []Code{"SF1008"}, reason: "probes and proxy config disagree"},
		{name: "a probe gets the banner, config waits forever: the probe's OK stands, with a note",
			obs:   []target.Observation{direct, obs(key, target.VantageMeshClient, banner(2.1, "5.5.5-10.11.6-MariaDB", "mysql"))},
			paths: []target.ConfigPath{mesh(client(sniffed), server(inboundTLS, true))},
			code:  "SF0402", pathCodes: []Code{"SF0402"}, note: "probes and proxy config disagree on the mesh-to-mesh path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Build(Input{Inventory: inv, Observations: tc.obs, ConfigPaths: tc.paths, BannerWait: 3 * time.Second})
			var f *Finding
			for i := range r.Findings {
				if r.Findings[i].Key() == key {
					f = &r.Findings[i]
				}
			}
			if f == nil {
				t.Fatalf("no finding for %v", key)
			}
			assertCode(t, *f, tc.code)
			assertPathCodes(t, *f, tc.pathCodes...)
			if !strings.Contains(f.Reason, tc.reason) {
				t.Errorf("reason %q, want it to contain %q", f.Reason, tc.reason)
			}
			if tc.note != "" && !strings.Contains(strings.Join(f.Notes, "\n"), tc.note) {
				t.Errorf("notes %q, want %q", f.Notes, tc.note)
			}
			var cfg []Evidence
			for _, e := range f.Evidence {
				if e.Vantage == target.VantageProxyConfig {
					cfg = append(cfg, e)
				}
			}
			stages := 0
			for _, p := range tc.paths {
				stages += len(p.Stages)
			}
			if len(cfg) != stages {
				t.Errorf("%d proxy-config evidence entries, want one per stage (%d): %+v", len(cfg), stages, cfg)
			}
			if len(cfg) > 0 && (cfg[0].Listener == "" || cfg[0].Proxy == "" || cfg[0].Side == "") {
				t.Errorf("evidence does not name the proxy, side and listener: %+v", cfg[0])
			}
		})
	}
}

// The evidence of a wait says how long: 0 is forever.
func TestConfigEvidenceTimeout(t *testing.T) {
	e := configEvidence(target.ConfigPath{ServerInMesh: true}, target.ConfigStage{Side: "client", Proxy: "shop/web",
		Decision: proxyconfig.Decision{Listener: "l", Inspectors: []string{"http_inspector"}, Waits: true}})
	if e.Outcome != "waits-forever" || e.TimeoutMs == nil || *e.TimeoutMs != 0 {
		t.Errorf("forever: %+v", e)
	}
	e = configEvidence(target.ConfigPath{}, target.ConfigStage{Side: "server", Proxy: "shop/db", ClientTLS: true,
		Decision: proxyconfig.Decision{Listener: "virtualInbound", Inspectors: []string{"tls_inspector"}, Waits: true}})
	if e.Outcome != "passes" || e.TimeoutMs != nil || len(e.Inspectors) != 0 {
		t.Errorf("mTLS from a sidecar does not wait: %+v", e)
	}
}

// An external IP on a port an in-mesh HTTP Service also uses: the client
// sidecar's 0.0.0.0 listener sniffs forever; the tool's own unmeshed probe
// got the banner.
func TestProxyConfigExternalWildcard(t *testing.T) {
	web := pod("shop", "web", "web", true, "busybox")
	api := svc("shop", "api", "web", []cluster.Pod{web}, tport("http-api", 10000, "8080", ""))
	inv := meshInv([]cluster.Pod{web}, api)
	key := target.TargetKey{Kind: target.KindExternal, Name: "203.0.113.7", Port: 10000}
	wild := proxyconfig.Decision{Listener: "0.0.0.0_10000", ListenerAddress: "0.0.0.0:10000", Via: "wildcard",
		Inspectors: []string{"http_inspector"}, Waits: true, Chain: "PassthroughFilterChain", Filter: "tcp_proxy", Cluster: "PassthroughCluster"}
	r := Build(Input{Inventory: inv, External: []target.ExternalTarget{{Host: "203.0.113.7", Port: 10000}},
		Observations: []target.Observation{{Target: key, Vantage: target.VantageSelf, InMesh: false, Result: banner(3, mysqlGreeting, "mysql")}},
		ConfigPaths:  []target.ConfigPath{{Target: key, Clients: "clients like shop/web", Stages: []target.ConfigStage{{Side: "client", Proxy: "shop/web", Port: 10000, Decision: wild}}}}})
	for _, f := range r.Findings {
		if f.Key() == key {
			assertCode(t, f, "SF1001")
			if !strings.Contains(f.Reason, "listener 0.0.0.0_10000") {
				t.Errorf("reason %q does not name the wildcard listener", f.Reason)
			}
			return
		}
	}
	t.Fatal("no finding for the external target")
}

func TestConfigText(t *testing.T) {
	zero, five := int64(0), int64(5000)
	for _, tc := range []struct {
		e    Evidence
		want string
	}{
		{Evidence{Vantage: target.VantageProxyConfig, Side: "client", Proxy: "shop/web", Listener: "10.96.0.7_3307", Inspectors: []string{"http_inspector"}, TimeoutMs: &zero, Cluster: "outbound|3307||db.shop.svc.cluster.local"},
			"client sidecar shop/web, listener 10.96.0.7_3307: http_inspector waits forever, then tcp_proxy to outbound|3307||db.shop.svc.cluster.local"},
		{Evidence{Vantage: target.VantageProxyConfig, Side: "client", Proxy: "self", Listener: "0.0.0.0_8080", Inspectors: []string{"http_inspector"}, TimeoutMs: &five, OnTimeout: "continue", Chain: "PassthroughFilterChain"},
			"client sidecar self, listener 0.0.0.0_8080: http_inspector waits 5s then continue, chain PassthroughFilterChain"},
		{Evidence{Vantage: target.VantageDirect}, ""},
	} {
		if got := tc.e.ConfigText(); got != tc.want {
			t.Errorf("ConfigText = %q, want %q", got, tc.want)
		}
	}
}
