package report

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// bigInventory has enough Services and ServiceEntries for Build to judge
// them on several goroutines, with every kind of port, evidence on some
// targets, duplicate keys (a TCP and a UDP port with one number) and
// PeerAuthentications.
func bigInventory() (*cluster.Inventory, []target.Observation) {
	var pods []cluster.Pod
	var svcs []cluster.Service
	var obs []target.Observation
	for i := range 400 {
		ns := fmt.Sprintf("ns-%02d", i%7)
		name := fmt.Sprintf("svc-%03d", i)
		p := pod(ns, name+"-0", name, i%3 != 0, []string{"mariadb:11", "nginx", "exim4", "redis"}[i%4])
		p.ContainerPorts = map[string]int32{"main": 8000}
		pods = append(pods, p)
		ports := []cluster.ServicePort{
			tport([]string{"mysql", "tcp-db", "http-web", "client", ""}[i%5], 3306+int32(i%3), "main", []string{"", "", "nats.io/client"}[i%3]),
			tport("http-metrics", 9090, "", ""),
		}
		if i%11 == 0 {
			ports = append(ports, uport("dns", 3306+int32(i%3)))
		}
		svcs = append(svcs, svc(ns, name, name, []cluster.Pod{p}, ports...))
		key := target.TargetKey{Kind: target.KindService, Namespace: ns, Name: name, Port: ports[0].Port}
		switch i % 6 {
		case 1:
			obs = append(obs, target.Observation{Target: key, Vantage: target.VantageDirect, Result: banner(2, "5.5.5-MariaDB", "mysql")},
				target.Observation{Target: key, Vantage: target.VantageMeshClient, Result: outcome(probe.OutcomeSilent)})
		case 2:
			obs = append(obs, target.Observation{Target: key, Vantage: target.VantageSelf, InMesh: true, Result: banner(4000, "220 mail", "smtp")})
		}
	}
	inv := meshInv(pods, svcs...)
	inv.Mesh.ProtocolDetectionTimeout = 5 * time.Second
	for i := range 150 {
		se := cluster.ServiceEntry{Namespace: fmt.Sprintf("ns-%02d", i%7), Name: fmt.Sprintf("ext-%03d", i),
			Hosts: []string{fmt.Sprintf("db-%d.example.com", i)}, Location: "MESH_EXTERNAL", Resolution: "DNS",
			Ports: []cluster.ServiceEntryPort{sePort(3306+uint32(i%3), "db", []string{"TCP", "", "HTTP", "MySQL"}[i%4])}}
		if i%5 == 0 {
			se.Addresses = []string{"192.0.2.1"}
		}
		inv.ServiceEntries = append(inv.ServiceEntries, se)
	}
	inv.PeerAuthentications = []cluster.PeerAuthentication{
		{Namespace: "istio-system", Name: "default", Mode: cluster.MTLSPermissive},
		{Namespace: "ns-03", Name: "default", Mode: cluster.MTLSStrict},
		{Namespace: "ns-04", Name: "db", Mode: cluster.MTLSUnset, Selector: map[string]string{"app": "svc-004"},
			PortModes: map[uint32]cluster.MTLSMode{8000: cluster.MTLSDisable}},
	}
	return inv, obs
}

// TestBuildParallelSameAsSequential: judging on several goroutines (run
// it with -race) gives the report one goroutine gives.
func TestBuildParallelSameAsSequential(t *testing.T) {
	inv, obs := bigInventory()
	ext := []target.ExternalTarget{{Host: "mail.example.com", Port: 25}, {Host: "203.0.113.7", Port: 3306}}
	in := Input{Inventory: inv, Observations: obs, External: ext}

	prev := runtime.GOMAXPROCS(1)
	sequential := Build(in)
	runtime.GOMAXPROCS(max(prev, 4))
	parallel := Build(in)
	runtime.GOMAXPROCS(prev)

	if n := len(inv.Services)*2 + len(inv.ServiceEntries); len(parallel.Findings) < n {
		t.Fatalf("%d findings, want at least %d", len(parallel.Findings), n)
	}
	if !reflect.DeepEqual(parallel, sequential) {
		for i := range parallel.Findings {
			if !reflect.DeepEqual(parallel.Findings[i], sequential.Findings[i]) {
				t.Fatalf("finding %d differs:\nparallel   %+v\nsequential %+v", i, parallel.Findings[i], sequential.Findings[i])
			}
		}
		t.Fatal("reports differ")
	}
	affected := 0
	for _, f := range parallel.Findings {
		if f.Verdict.Affected() && len(f.Fixes) > 0 {
			affected++
		}
	}
	if affected < 100 {
		t.Errorf("only %d affected findings with fixes: the inventory should exercise the fix generation", affected)
	}
}
