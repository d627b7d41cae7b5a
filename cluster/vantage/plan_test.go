package vantage

import (
	"slices"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// Probe pods stand for client classes: namespaces with the same injection
// revision and no client configuration of their own share one pair.
func TestPlanProbesByClass(t *testing.T) {
	inv := &cluster.Inventory{}
	addNS := func(ns cluster.Namespace, ip string) {
		inv.Namespaces = append(inv.Namespaces, ns)
		inv.Services = append(inv.Services, cluster.Service{Namespace: ns.Name, Name: "db", ClusterIP: ip,
			Ports: []cluster.ServicePort{{Port: 3306, Protocol: "TCP", TargetPort: "3306",
				Resolved: cluster.ResolvedProtocol{Protocol: cluster.ProtocolAuto}}}})
	}
	addNS(cluster.Namespace{Name: "a", InjectionEnabled: true}, "10.0.0.1")
	addNS(cluster.Namespace{Name: "b"}, "10.0.0.2")
	addNS(cluster.Namespace{Name: "c", InjectionEnabled: true, Revision: "canary"}, "10.0.0.3")
	addNS(cluster.Namespace{Name: "d", InjectionEnabled: true}, "10.0.0.4")
	addNS(cluster.Namespace{Name: "e", Labels: map[string]string{"istio-injection": "disabled"}}, "10.0.0.5")
	addNS(cluster.Namespace{Name: "f", InjectionEnabled: true, Revision: "canary"}, "10.0.0.6")
	addNS(cluster.Namespace{Name: "g", Ambient: true}, "10.0.0.7")
	ownConfig := func(ns string) bool { return ns == "d" } // say, a Sidecar resource in d

	tests := []struct {
		name string
		own  OwnClientConfig
		want []string // namespace: targets' namespaces, one pair of pods each
	}{
		{"no facts: every namespace apart", nil,
			[]string{"a: a", "b: b", "c: c", "d: d", "e: e", "f: f", "g: g"}},
		{"classes", ownConfig,
			[]string{"a: a b", "c: c f", "d: d", "e: e", "g: g"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			plan := PlanProbesByClass(inv, nil, true, tc.own)
			var got []string
			for i, p := range plan.Pods {
				if p.InMesh != (i%2 == 0) {
					t.Fatalf("pod %d: in mesh %v; want a mesh-client then an outside-client pod per class", i, p.InMesh)
				}
				if i%2 == 1 {
					if prev := plan.Pods[i-1]; prev.Namespace != p.Namespace || !slices.Equal(prev.Targets, p.Targets) {
						t.Errorf("the outside-client pod in %s differs from its mesh-client pod", p.Namespace)
					}
					continue
				}
				line := p.Namespace + ":"
				for _, target := range p.Targets {
					line += " " + target.Key[len("Service/"):len("Service/")+1]
				}
				got = append(got, line)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("pods (namespace: targets' namespaces)\n got %q\nwant %q", got, tc.want)
			}
			if want := 2 * len(tc.want); len(plan.Pods) != want {
				t.Errorf("%d probe pods, want %d", len(plan.Pods), want)
			}
		})
	}
}

func TestClientClass(t *testing.T) {
	none := func(string) bool { return false }
	tests := []struct {
		ns   cluster.Namespace
		want string
	}{
		{cluster.Namespace{Name: "x"}, "default revision"},
		{cluster.Namespace{Name: "x", InjectionEnabled: true}, "default revision"},
		{cluster.Namespace{Name: "x", InjectionEnabled: true, Revision: "1-24"}, "revision 1-24"},
		{cluster.Namespace{Name: "x", Labels: map[string]string{"istio-injection": "disabled"}}, "injection disabled"},
		{cluster.Namespace{Name: "x", Ambient: true}, "namespace x"},
	}
	for _, tc := range tests {
		if got := ClientClass(tc.ns, none); got != tc.want {
			t.Errorf("ClientClass(%+v) = %q, want %q", tc.ns, got, tc.want)
		}
	}
	if got := ClientClass(cluster.Namespace{Name: "x"}, nil); got != "namespace x" {
		t.Errorf("without facts: %q, want a class of its own", got)
	}
	if got := ClientClass(cluster.Namespace{Name: "x"}, func(ns string) bool { return ns == "x" }); got != "namespace x" {
		t.Errorf("with config of its own: %q", got)
	}
}

// A Sidecar or DestinationRule in a namespace gives its clients config of
// their own; the root namespace's mesh-wide defaults split nothing.
func TestOwnConfigIn(t *testing.T) {
	inv := &cluster.Inventory{
		Mesh:             cluster.MeshConfig{RootNamespace: "istio-system"},
		Sidecars:         []cluster.SidecarResource{{Namespace: "d", Name: "default"}, {Namespace: "istio-system", Name: "default"}},
		DestinationRules: []cluster.DestinationRule{{Namespace: "x", Name: "db", Host: "db.shop.svc.cluster.local"}, {Namespace: "istio-system", Name: "mesh"}},
	}
	own := OwnConfigIn(inv)
	for ns, want := range map[string]bool{"d": true, "x": true, "istio-system": false, "a": false} {
		if got := own(ns); got != want {
			t.Errorf("OwnConfigIn(%s) = %v, want %v", ns, got, want)
		}
	}
}
