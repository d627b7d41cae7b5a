package cluster_test

import (
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

func TestSelectSidecar(t *testing.T) {
	sc := func(ns, name string, sec int, sel map[string]string) cluster.SidecarResource {
		return cluster.SidecarResource{Namespace: ns, Name: name, Selector: sel, CreatedAt: t0.Add(time.Duration(sec) * time.Second)}
	}
	all := []cluster.SidecarResource{
		sc("istio-system", "mesh", 0, nil),
		sc("istio-system", "mesh-selected", 0, map[string]string{"app": "db"}), // selectors in the root apply to its own pods only
		sc("shop", "ns-young", 5, nil),
		sc("shop", "ns-old", 1, nil),
		sc("shop", "db-young", 9, map[string]string{"app": "db"}),
		sc("shop", "db-old", 2, map[string]string{"app": "db"}),
		sc("shop", "other", 0, map[string]string{"app": "other"}),
	}
	for _, c := range []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"shop", map[string]string{"app": "db"}, "shop/db-old"},
		{"shop", map[string]string{"app": "web"}, "shop/ns-old"},
		{"web", map[string]string{"app": "db"}, "istio-system/mesh"},
	} {
		got, ok := cluster.SelectSidecar(all, "istio-system", &cluster.Pod{Namespace: c.ns, Labels: c.labels})
		if !ok || got.Namespace+"/"+got.Name != c.want {
			t.Errorf("%s %v: got %s/%s (%v), want %s", c.ns, c.labels, got.Namespace, got.Name, ok, c.want)
		}
	}
	if _, ok := cluster.SelectSidecar(all[2:], "istio-system", &cluster.Pod{Namespace: "web"}); ok {
		t.Error("a Sidecar applied to a namespace without one and no root default")
	}
}

func TestOutboundListenerFor(t *testing.T) {
	tcp := cluster.ServiceEntryPortProtocol("TCP")
	auto := cluster.ResolvedProtocol{Protocol: cluster.ProtocolAuto, Source: cluster.SourceNone}
	db := cluster.OutboundDestination{Host: cluster.ServiceHostname("shop", "db"), Namespace: "shop", Port: 3306, Protocol: auto, Ports: []uint32{3306, 9104}}
	client := &cluster.Pod{Namespace: "web", Name: "c", HasSidecar: true, Labels: map[string]string{"app": "web"}}
	side := func(egress ...cluster.SidecarEgress) []cluster.SidecarResource {
		return []cluster.SidecarResource{{Namespace: "web", Name: "s", Egress: egress}}
	}
	cases := []struct {
		name     string
		sidecars []cluster.SidecarResource
		mesh     string
		exported bool
		exists   bool
		protocol cluster.Protocol
		policy   string
	}{
		{"no Sidecar", nil, "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"not exported", nil, "", false, false, "", "ALLOW_ANY"},
		{"Sidecar without egress: everything", side(), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"own namespace only", side(cluster.SidecarEgress{Hosts: []string{"./*"}}), "REGISTRY_ONLY", true, false, "", "REGISTRY_ONLY"},
		{"the service's namespace", side(cluster.SidecarEgress{Hosts: []string{"shop/*"}}), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"any namespace, exact host", side(cluster.SidecarEgress{Hosts: []string{"*/db.shop.svc.cluster.local"}}), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"wildcard host", side(cluster.SidecarEgress{Hosts: []string{"*/*.shop.svc.cluster.local"}}), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"short host does not match", side(cluster.SidecarEgress{Hosts: []string{"shop/db"}}), "", true, false, "", "ALLOW_ANY"},
		{"host without namespace is ignored", side(cluster.SidecarEgress{Hosts: []string{"db.shop.svc.cluster.local"}}), "", true, false, "", "ALLOW_ANY"},
		{"excluded", side(cluster.SidecarEgress{Hosts: []string{"~/db.shop.svc.cluster.local", "*/*"}}), "", true, false, "", "ALLOW_ANY"},
		{"egress port declares TCP", side(cluster.SidecarEgress{Port: 3306, Protocol: "TCP", Resolved: tcp, Hosts: []string{"shop/*"}}, cluster.SidecarEgress{Hosts: []string{"*/*"}}), "", true, true, cluster.ProtocolTCP, "ALLOW_ANY"},
		{"egress port of another port: the catch-all", side(cluster.SidecarEgress{Port: 3307, Protocol: "TCP", Resolved: tcp, Hosts: []string{"shop/*"}}, cluster.SidecarEgress{Hosts: []string{"*/*"}}), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
		{"egress port without protocol sniffs", side(cluster.SidecarEgress{Port: 3306, Resolved: auto, Hosts: []string{"shop/*"}}), "", true, true, cluster.ProtocolAuto, "ALLOW_ANY"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := &cluster.Inventory{Sidecars: c.sidecars, Mesh: cluster.MeshConfig{RootNamespace: "istio-system", OutboundTrafficPolicy: c.mesh}}
			got := cluster.OutboundListenerFor(inv, client, db, c.exported)
			if got.Exists != c.exists || (c.exists && got.Protocol.Protocol != c.protocol) || got.OutboundTrafficPolicy != c.policy || got.Reason == "" {
				t.Errorf("OutboundListenerFor = %+v, want exists %v protocol %q policy %s", got, c.exists, c.protocol, c.policy)
			}
		})
	}
	t.Run("the root Sidecar's ./* is the client's namespace", func(t *testing.T) {
		inv := &cluster.Inventory{Sidecars: []cluster.SidecarResource{{Namespace: "istio-system", Name: "default", Egress: []cluster.SidecarEgress{{Hosts: []string{"./*"}}}}},
			Mesh: cluster.MeshConfig{RootNamespace: "istio-system"}}
		shopClient := &cluster.Pod{Namespace: "shop", Name: "c", HasSidecar: true}
		if got := cluster.OutboundListenerFor(inv, shopClient, db, true); !got.Exists {
			t.Errorf("a shop client of the root Sidecar ./* does not import shop's db: %+v", got)
		}
		if got := cluster.OutboundListenerFor(inv, client, db, true); got.Exists {
			t.Errorf("a web client of the root Sidecar ./* imports shop's db: %+v", got)
		}
	})
	t.Run("the Sidecar's outboundTrafficPolicy wins", func(t *testing.T) {
		inv := &cluster.Inventory{Sidecars: []cluster.SidecarResource{{Namespace: "web", Name: "s", OutboundTrafficPolicy: "REGISTRY_ONLY", Egress: []cluster.SidecarEgress{{Hosts: []string{"./*"}}}}},
			Mesh: cluster.MeshConfig{RootNamespace: "istio-system", OutboundTrafficPolicy: "ALLOW_ANY"}}
		if got := cluster.OutboundListenerFor(inv, client, db, true); got.OutboundTrafficPolicy != "REGISTRY_ONLY" || got.Exists {
			t.Errorf("got %+v", got)
		}
	})
}

func TestInboundProtocolFor(t *testing.T) {
	tcp := cluster.ServiceEntryPortProtocol("TCP")
	http := cluster.ServiceEntryPortProtocol("HTTP")
	server := &cluster.Pod{Namespace: "shop", Name: "db-0", HasSidecar: true, Labels: map[string]string{"app": "db"}}
	withIngress := []cluster.SidecarResource{{Namespace: "shop", Name: "db", Selector: map[string]string{"app": "db"}, Ingress: []cluster.SidecarIngress{{Port: 3306, Protocol: "TCP", Resolved: tcp}}}}
	for _, c := range []struct {
		name        string
		sidecars    []cluster.SidecarResource
		port        uint32
		services    []cluster.ResolvedProtocol
		want        cluster.Protocol
		passthrough bool
	}{
		{"Service declares it", nil, 3306, []cluster.ResolvedProtocol{http}, cluster.ProtocolHTTP, false},
		{"no Service: passthrough", nil, 3306, nil, cluster.ProtocolAuto, true},
		{"Sidecar ingress declares TCP over the Service", withIngress, 3306, []cluster.ResolvedProtocol{http}, cluster.ProtocolTCP, false},
		{"Sidecar ingress replaces the Service chains", withIngress, 9104, []cluster.ResolvedProtocol{http}, cluster.ProtocolAuto, true},
	} {
		inv := &cluster.Inventory{Sidecars: c.sidecars, Mesh: cluster.MeshConfig{RootNamespace: "istio-system"}}
		got := cluster.InboundProtocolFor(inv, server, c.port, c.services)
		if got.Protocol.Protocol != c.want || got.Passthrough != c.passthrough || got.Reason == "" {
			t.Errorf("%s: %+v, want %s passthrough %v", c.name, got, c.want, c.passthrough)
		}
	}
}

func TestUncoveredPodPorts(t *testing.T) {
	pod := func(name string, sidecar bool, ports ...cluster.ContainerPort) cluster.Pod {
		named := map[string]int32{}
		for _, p := range ports {
			if p.Name != "" {
				named[p.Name] = p.Number
			}
		}
		return cluster.Pod{Namespace: "shop", Name: name, HasSidecar: sidecar, Ports: ports, ContainerPorts: named}
	}
	mysql := cluster.ContainerPort{Name: "mysql", Number: 3306, Protocol: "TCP", Image: "mariadb:11"}
	peer := cluster.ContainerPort{Name: "galera", Number: 4567, Protocol: "TCP", Image: "mariadb:11"}
	metrics := cluster.ContainerPort{Number: 9104, Protocol: "TCP", Image: "exporter"}
	dns := cluster.ContainerPort{Number: 53, Protocol: "UDP"}
	inv := &cluster.Inventory{
		Mesh: cluster.MeshConfig{RootNamespace: "istio-system"},
		Pods: []cluster.Pod{
			pod("db-0", true, mysql, peer, metrics, dns),
			pod("plain", false, mysql),
		},
		Services: []cluster.Service{{Namespace: "shop", Name: "db", Backends: []cluster.PodRef{{Namespace: "shop", Name: "db-0"}, {Namespace: "shop", Name: "plain"}},
			Ports: []cluster.ServicePort{{Port: 3306, TargetPort: "mysql"}, {Port: 9104, TargetPort: "9104"}, {Port: 1, TargetPort: "nosuchname"}}}},
	}
	got := cluster.UncoveredPodPorts(inv)
	if len(got) != 1 || got[0].Pod.Name != "db-0" || got[0].Port != peer || !got[0].Captured || !got[0].Inbound.Passthrough {
		t.Fatalf("UncoveredPodPorts = %+v, want db-0's galera port only", got)
	}
	inv.Pods[0].Interception = cluster.ParseInterception(map[string]string{cluster.AnnotationExcludeInboundPorts: "4567"})
	if got := cluster.UncoveredPodPorts(inv); len(got) != 1 || got[0].Captured {
		t.Fatalf("with excludeInboundPorts: %+v, want the port listed as not captured", got)
	}
}
