package vantage_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// The demo's verdicts from the sidecars' real config (the golden dumps of
// cluster/proxyconfig, istiod's output for the e2e world) and the direct
// probe's banner alone: no probe pod.
func TestConfigPathsFromRealDumps(t *testing.T) {
	dir := filepath.Join("..", "proxyconfig", "testdata")
	var addrs struct {
		ServiceIPs map[string]string `json:"serviceIPs"`
		PodIPs     map[string]string `json:"podIPs"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "addresses.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &addrs); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"web": "client-web.json", "orders-db": "server-orders-db-permissive.json", "cache": "server-cache-strict.json"}
	var fetched []string
	var mu sync.Mutex
	dumps := &vantage.ConfigDumps{Fetch: func(_ context.Context, p vantage.Proxy) ([]byte, error) {
		mu.Lock()
		fetched = append(fetched, p.String())
		mu.Unlock()
		return os.ReadFile(filepath.Join(dir, files[p.Pod]))
	}}
	mkPod := func(name, image string) cluster.Pod {
		return cluster.Pod{Namespace: "shop", Name: name, Labels: map[string]string{"app": name}, IPs: []string{addrs.PodIPs["shop/"+name]},
			Phase: "Running", HasSidecar: true, Images: []string{image}}
	}
	db, cache, web := mkPod("orders-db", "docker.io/library/mariadb:11"), mkPod("cache", "docker.io/library/redis:7"), mkPod("web", "busybox")
	mkSvc := func(name string, backend cluster.Pod, portName string, port, target int32) cluster.Service {
		ap := (*string)(nil)
		return cluster.Service{Namespace: "shop", Name: name, Type: "ClusterIP", ClusterIP: addrs.ServiceIPs["shop/"+name],
			Selector: backend.Labels, Backends: []cluster.PodRef{{Namespace: "shop", Name: backend.Name}},
			Ports: []cluster.ServicePort{{Name: portName, Port: port, TargetPort: itoa(target), Protocol: "TCP", Resolved: cluster.ConvertProtocol(port, portName, "TCP", ap)}}}
	}
	inv := &cluster.Inventory{
		IstioInstalled: true,
		Pods:           []cluster.Pod{db, cache, web},
		Services: []cluster.Service{
			mkSvc("orders-db", db, "db", 3307, 3306), mkSvc("orders-db-tcp", db, "tcp-mysql", 3306, 3306),
			mkSvc("orders-db-plain", db, "tcp-plain", 3308, 3306), mkSvc("cache", cache, "cache", 6380, 6379),
		},
		Mesh: cluster.MeshConfig{Found: true, RootNamespace: "istio-system"},
	}
	paths, warnings := vantage.ConfigPaths(context.Background(), dumps, inv, nil, vantage.ConfigOptions{Outside: true})
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	if len(fetched) != 3 {
		t.Errorf("fetched %v, want each of the 3 proxies once", fetched)
	}
	if got := vantage.ConfigProxies(inv, nil, vantage.ConfigOptions{}); len(got) != 3 {
		t.Errorf("ConfigProxies = %v, want web, orders-db and cache", got)
	}
	if none, _ := vantage.ConfigPaths(context.Background(), dumps, inv, nil, vantage.ConfigOptions{Outside: true, Readable: func(string) bool { return false }}); len(none) != 0 {
		t.Errorf("no namespace readable, yet %d config paths", len(none))
	}
	// Interception annotations take a side off the path: an uncaptured
	// server port is a stage that says so (its proxy decides nothing; a
	// false wait would be a false DEADLOCK), and a client whose own
	// connections skip its sidecar has no client stage: it meets the
	// server's side as a client outside the mesh would.
	excluded := *inv
	excluded.Pods = []cluster.Pod{db, cache, web}
	excluded.Pods[0].Interception.InboundExcluded = []uint32{3306}
	excluded.Pods[2].Interception.OutboundExcludedPorts = []uint32{6380}
	exPaths, _ := vantage.ConfigPaths(context.Background(), dumps, &excluded, nil, vantage.ConfigOptions{Outside: true})
	var bypassed bool
	for _, cp := range exPaths {
		for _, st := range cp.Stages {
			if st.Side == "server" && st.Proxy == "shop/orders-db" && (st.Uncaptured == "" || st.Decision.Listener != "") {
				t.Errorf("%v: orders-db's inbound stage decided by its config although it does not capture 3306: %+v", cp.Target, st)
			}
		}
		if cp.Target.Name == "cache" && !cp.Unmeshed {
			bypassed = true
			if len(cp.Stages) != 1 || cp.Stages[0].Side != "server" || cp.Stages[0].ClientTLS || !strings.Contains(cp.Clients, "skip the sidecar") {
				t.Errorf("cache: web's connections skip its sidecar, want only the server's plaintext stage: %+v", cp)
			}
		}
	}
	if !bypassed {
		t.Errorf("cache: no path for web, whose connections skip its sidecar: %+v", exPaths)
	}
	key := func(name string, port int32) target.TargetKey {
		return target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: name, Port: port}
	}
	mariadb := probe.Result{Outcome: probe.OutcomeBanner, ConnectMs: 0.3, FirstByteMs: new(1.4), Banner: "5.5.5-10.11.6-MariaDB", Protocol: "mysql"}
	var observations []target.Observation
	for _, k := range []target.TargetKey{key("orders-db", 3307), key("orders-db-tcp", 3306), key("orders-db-plain", 3308)} {
		observations = append(observations, target.Observation{Target: k, Vantage: target.VantageDirect, Result: mariadb})
	}
	r := report.Build(report.Input{Inventory: inv, Observations: observations, ConfigPaths: paths})
	for _, tc := range []struct {
		key      target.TargetKey
		verdict  report.Verdict
		code     report.Code
		listener string // the reason names it
		paths    map[report.Scenario]report.Code
	}{
		{key("orders-db", 3307), report.Deadlock, "SF1001", addrs.ServiceIPs["shop/orders-db"] + "_3307",
			map[report.Scenario]report.Code{report.MeshToMesh: "SF1001", report.ExternalToMesh: "SF1001"}},
		// Declared TCP: mesh clients pass (mTLS into the server's
		// sidecar); clients without a sidecar meet the PERMISSIVE TLS
		// inspector.
		{key("orders-db-tcp", 3306), report.Deadlock, "SF1001", "virtualInbound",
			map[report.Scenario]report.Code{report.MeshToMesh: "SF1003", report.ExternalToMesh: "SF1001"}},
		// DestinationRule DISABLE: plaintext from the client's sidecar
		// into the PERMISSIVE inbound (Istio's truth table: fails).
		{key("orders-db-plain", 3308), report.Deadlock, "SF1001", "virtualInbound",
			map[report.Scenario]report.Code{report.MeshToMesh: "SF1001", report.ExternalToMesh: "SF1001"}},
		// No direct banner (redis is client-first): config alone, and
		// STRICT for clients without a sidecar.
		{key("cache", 6380), report.MTLSRejected, "SF1007", "virtualInbound",
			map[report.Scenario]report.Code{report.MeshToMesh: "SF1002", report.ExternalToMesh: "SF1007"}},
	} {
		var f *report.Finding
		for i := range r.Findings {
			if r.Findings[i].Key() == tc.key {
				f = &r.Findings[i]
			}
		}
		if f == nil {
			t.Fatalf("no finding for %v", tc.key)
		}
		if f.Verdict != tc.verdict || f.Code != tc.code || !strings.Contains(f.Reason, "listener "+tc.listener) {
			t.Errorf("%v: %s %s %q, want %s %s naming listener %s", tc.key, f.Verdict, f.Code, f.Reason, tc.verdict, tc.code, tc.listener)
		}
		got := map[report.Scenario]report.Code{}
		for _, p := range f.Paths {
			got[p.Scenario] = p.Code
		}
		for sc, c := range tc.paths {
			if got[sc] != c {
				t.Errorf("%v: path %s has %s, want %s (paths %+v)", tc.key, sc, got[sc], c, f.Paths)
			}
		}
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }
