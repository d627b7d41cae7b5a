package sidecar

import (
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// The test mesh, shared by the rule tests and the network-namespace tests.
// Addresses live only inside namespaces the tests create.
const (
	ipClient = "10.77.0.10" // sidecar
	ipPlain  = "10.77.0.11" // no sidecar: the outside client
	ipServer = "10.77.0.20" // sidecar, PERMISSIVE, ports 3309/4309 DISABLE
	ipStrict = "10.77.0.21" // sidecar, STRICT
	ipExt    = "10.77.0.30" // not in the mesh, not in the inventory

	vipDB     = "10.96.0.20" // app/db: 3307 "db" (auto, named targetPort), 4307 "cf" (auto)
	vipDBTCP  = "10.96.0.21" // app/db-tcp: 3308 tcp-db, 4308 tcp-cf
	vipDBOff  = "10.96.0.22" // app/db-off: 3309 tcp-db, 4309 tcp-cf (ports DISABLE)
	vipWeb    = "10.96.0.30" // app/web: 10000 http-web, 11000 http-web2: the collision
	vipStrict = "10.96.0.24" // app/strict: 3308 tcp-db, 4308 tcp-cf
	vipPlain  = "10.96.0.40" // app/plain-svc: 3308 tcp-db on the sidecar-less pod
)

// Banner ports (the server speaks first) and client-first ports (redis-like:
// the client sends PING, the server answers +PONG).
var (
	serverBannerPorts      = []int{3307, 3308, 3309}
	serverClientFirstPorts = []int{4307, 4308, 4309}
	extBannerPorts         = []int{10000, 3310}
	extClientFirstPorts    = []int{11000}
)

func auto() cluster.ResolvedProtocol {
	return cluster.ResolvedProtocol{Protocol: cluster.ProtocolAuto, Source: cluster.SourceNone}
}
func tcpByName() cluster.ResolvedProtocol {
	return cluster.ResolvedProtocol{Protocol: cluster.ProtocolTCP, Source: cluster.SourceName}
}
func httpByName() cluster.ResolvedProtocol {
	return cluster.ResolvedProtocol{Protocol: cluster.ProtocolHTTP, Source: cluster.SourceName}
}

func port(name string, n int32, target string, r cluster.ResolvedProtocol) cluster.ServicePort {
	return cluster.ServicePort{Name: name, Port: n, TargetPort: target, Protocol: "TCP", Resolved: r}
}

func testInventory() cluster.Inventory {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	server := cluster.PodRef{Namespace: "app", Name: "server"}
	strict := cluster.PodRef{Namespace: "app", Name: "strict"}
	return cluster.Inventory{
		IstioInstalled: true,
		Namespaces:     []cluster.Namespace{{Name: "app", InjectionEnabled: true}, {Name: "istio-system"}},
		Pods: []cluster.Pod{
			{Namespace: "app", Name: "client", IPs: []string{ipClient}, Phase: "Running", HasSidecar: true,
				Labels: map[string]string{"app": "client"}},
			{Namespace: "app", Name: "plain", IPs: []string{ipPlain}, Phase: "Running",
				Labels: map[string]string{"app": "plain"}},
			{Namespace: "app", Name: "server", IPs: []string{ipServer}, Phase: "Running", HasSidecar: true,
				Labels: map[string]string{"app": "server"}, ContainerPorts: map[string]int32{"db": 3307}},
			{Namespace: "app", Name: "strict", IPs: []string{ipStrict}, Phase: "Running", HasSidecar: true,
				Labels: map[string]string{"app": "strict"}},
		},
		Services: []cluster.Service{
			{Namespace: "app", Name: "db", ClusterIP: vipDB, Backends: []cluster.PodRef{server},
				Ports: []cluster.ServicePort{port("db", 3307, "db", auto()), port("cf", 4307, "4307", auto())}},
			{Namespace: "app", Name: "db-tcp", ClusterIP: vipDBTCP, Backends: []cluster.PodRef{server},
				Ports: []cluster.ServicePort{port("tcp-db", 3308, "3308", tcpByName()), port("tcp-cf", 4308, "", tcpByName())}},
			{Namespace: "app", Name: "db-off", ClusterIP: vipDBOff, Backends: []cluster.PodRef{server},
				Ports: []cluster.ServicePort{port("tcp-db", 3309, "3309", tcpByName()), port("tcp-cf", 4309, "4309", tcpByName())}},
			{Namespace: "app", Name: "web", ClusterIP: vipWeb, Backends: []cluster.PodRef{server},
				Ports: []cluster.ServicePort{port("http-web", 10000, "8080", httpByName()), port("http-web2", 11000, "8080", httpByName())}},
			{Namespace: "app", Name: "strict", ClusterIP: vipStrict, Backends: []cluster.PodRef{strict},
				Ports: []cluster.ServicePort{port("tcp-db", 3308, "3308", tcpByName()), port("tcp-cf", 4308, "4308", tcpByName())}},
			{Namespace: "app", Name: "plain-svc", ClusterIP: vipPlain, Backends: []cluster.PodRef{{Namespace: "app", Name: "plain"}},
				Ports: []cluster.ServicePort{port("tcp-db", 3308, "3308", tcpByName())}},
		},
		PeerAuthentications: []cluster.PeerAuthentication{
			{Namespace: "istio-system", Name: "default", Mode: cluster.MTLSPermissive, CreatedAt: t0},
			{Namespace: "app", Name: "server-plaintext-ports", Selector: map[string]string{"app": "server"},
				Mode: cluster.MTLSUnset, PortModes: map[uint32]cluster.MTLSMode{3309: cluster.MTLSDisable, 4309: cluster.MTLSDisable},
				CreatedAt: t0},
			{Namespace: "app", Name: "strict", Selector: map[string]string{"app": "strict"}, Mode: cluster.MTLSStrict, CreatedAt: t0},
		},
		Mesh: cluster.MeshConfig{Found: true, Source: "istio-system/istio", RootNamespace: "istio-system"},
	}
}
