package cluster_test

import (
	"reflect"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

func TestClientTLSFor(t *testing.T) {
	meshed := &cluster.Pod{Namespace: "shop", Name: "db-0", HasSidecar: true, Labels: map[string]string{"app": "db", "security.istio.io/tlsMode": "istio"}}
	plain := &cluster.Pod{Namespace: "shop", Name: "db-1", Labels: map[string]string{"app": "db"}}
	dbHost := cluster.ServiceHostname("shop", "db")
	dest := cluster.TLSDestination{Host: dbHost, Namespace: "shop", Port: 3306, Endpoints: []*cluster.Pod{meshed}, TargetPort: 3307}
	with := func(f func(*cluster.TLSDestination)) cluster.TLSDestination { d := dest; f(&d); return d }
	pa := func(ns string, mode cluster.MTLSMode, sel map[string]string, ports map[uint32]cluster.MTLSMode) cluster.PeerAuthentication {
		return cluster.PeerAuthentication{Namespace: ns, Name: "pa", Mode: mode, Selector: sel, PortModes: ports}
	}
	subset := func(name string, mode cluster.ClientTLSMode) func(*cluster.DestinationRule) {
		return func(d *cluster.DestinationRule) {
			d.Subsets = append(d.Subsets, cluster.DestinationRuleSubset{Name: name, Policy: cluster.TLSPolicy{Present: true, TLS: mode}})
		}
	}
	cases := []struct {
		name    string
		rules   []cluster.DestinationRule
		pas     []cluster.PeerAuthentication
		noAuto  bool
		d       cluster.TLSDestination
		want    cluster.ClientTLSMode
		auto    bool
		rule    string
		subsets []cluster.SubsetTLS
	}{
		{name: "auto mTLS to a sidecar", d: dest, want: cluster.TLSIstioMutual, auto: true},
		{name: "auto mTLS off", noAuto: true, d: dest, want: cluster.TLSDisable, auto: true},
		{name: "auto: no sidecar, plaintext", d: with(func(d *cluster.TLSDestination) { d.Endpoints = []*cluster.Pod{plain} }), want: cluster.TLSDisable, auto: true},
		{name: "auto: namespace PA DISABLE", pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSDisable, nil, nil)}, d: dest, want: cluster.TLSDisable, auto: true},
		{name: "auto: mesh PA DISABLE", pas: []cluster.PeerAuthentication{pa("istio-system", cluster.MTLSDisable, nil, nil)}, d: dest, want: cluster.TLSDisable, auto: true},
		{name: "auto: workload port-level DISABLE on the container port", pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSUnset, map[string]string{"app": "db"}, map[uint32]cluster.MTLSMode{3307: cluster.MTLSDisable})}, d: dest, want: cluster.TLSDisable, auto: true},
		{name: "auto: port-level DISABLE on the Service port number is another port", pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSUnset, map[string]string{"app": "db"}, map[uint32]cluster.MTLSMode{3306: cluster.MTLSDisable})}, d: dest, want: cluster.TLSIstioMutual, auto: true},
		{name: "auto: STRICT still mTLS", pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSStrict, nil, nil)}, d: dest, want: cluster.TLSIstioMutual, auto: true},
		{name: "DR DISABLE", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSDisable)}, d: dest, want: cluster.TLSDisable, rule: "shop/db"},
		{name: "DR ISTIO_MUTUAL into PA DISABLE", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSIstioMutual)}, pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSDisable, nil, nil)}, d: dest, want: cluster.TLSIstioMutual, rule: "shop/db"},
		{name: "DR ISTIO_MUTUAL to a server without sidecar", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSIstioMutual)}, d: with(func(d *cluster.TLSDestination) { d.Endpoints = []*cluster.Pod{plain} }), want: cluster.TLSIstioMutual, rule: "shop/db"},
		{name: "DR SIMPLE", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSSimple)}, d: dest, want: cluster.TLSSimple, rule: "shop/db"},
		{name: "DR port-level DISABLE on the Service port", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSUnset, portTLS(3306, cluster.TLSDisable))}, d: dest, want: cluster.TLSDisable, rule: "shop/db"},
		{name: "DR port-level on the container port number does not apply", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSUnset, portTLS(3307, cluster.TLSDisable))}, d: dest, want: cluster.TLSIstioMutual, auto: true, rule: "shop/db"},
		{name: "DR port-level ISTIO_MUTUAL over top-level DISABLE", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSDisable, portTLS(3306, cluster.TLSIstioMutual))}, d: dest, want: cluster.TLSIstioMutual, rule: "shop/db"},
		{name: "DR port-level entry without tls: auto, endpoints follow the top level", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSDisable, portTLS(3306, cluster.TLSUnset))}, d: dest, want: cluster.TLSDisable, auto: true, rule: "shop/db"},
		{name: "DR without tls: auto", rules: []cluster.DestinationRule{{Namespace: "shop", Name: "db", Host: "db", Policy: cluster.TLSPolicy{Present: true}}}, d: dest, want: cluster.TLSIstioMutual, auto: true, rule: "shop/db"},
		{name: "mesh-external", d: with(func(d *cluster.TLSDestination) { d.MeshExternal = true; d.Endpoints = nil }), want: cluster.TLSDisable, auto: true},
		{name: "headless: all sidecars, port-level DISABLE not consulted", pas: []cluster.PeerAuthentication{pa("shop", cluster.MTLSUnset, map[string]string{"app": "db"}, map[uint32]cluster.MTLSMode{3307: cluster.MTLSDisable})}, d: with(func(d *cluster.TLSDestination) { d.Headless = true }), want: cluster.TLSIstioMutual, auto: true},
		{name: "headless: one endpoint without sidecar", d: with(func(d *cluster.TLSDestination) { d.Headless = true; d.Endpoints = []*cluster.Pod{meshed, plain} }), want: cluster.TLSDisable, auto: true},
		{name: "subset sets DISABLE", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSUnset, subset("v1", cluster.TLSIstioMutual), subset("v2", cluster.TLSDisable))}, d: dest, want: cluster.TLSIstioMutual, auto: true, rule: "shop/db", subsets: []cluster.SubsetTLS{{Name: "v2", Mode: cluster.TLSDisable}}},
		// A subset policy without tls inherits the rule's (MergeTrafficPolicy
		// only replaces what the subset sets).
		{name: "subset without tls inherits", rules: []cluster.DestinationRule{dr("shop", "db", "db", cluster.TLSDisable, subset("v2", cluster.TLSUnset))}, d: dest, want: cluster.TLSDisable, rule: "shop/db"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := &cluster.Inventory{PeerAuthentications: c.pas, DestinationRules: c.rules, Mesh: cluster.MeshConfig{RootNamespace: "istio-system", EnableAutoMTLS: !c.noAuto}}
			got := cluster.ClientTLSFor(inv, cluster.NewDestinationRuleIndex(inv.DestinationRules, "istio-system"), "web", nil, c.d)
			if got.Mode != c.want || got.Auto != c.auto || got.Rule != c.rule || !reflect.DeepEqual(got.Subsets, c.subsets) {
				t.Fatalf("ClientTLSFor = %+v, want mode %s auto %v rule %q subsets %v", got, c.want, c.auto, c.rule, c.subsets)
			}
			if got.Reason == "" {
				t.Error("no reason")
			}
		})
	}
}

func TestClientTLSForMixedEndpoints(t *testing.T) {
	a := &cluster.Pod{Namespace: "shop", Name: "a", HasSidecar: true}
	b := &cluster.Pod{Namespace: "shop", Name: "b"}
	inv := &cluster.Inventory{Mesh: cluster.MeshConfig{RootNamespace: "istio-system", EnableAutoMTLS: true}}
	got := cluster.ClientTLSFor(inv, cluster.NewDestinationRuleIndex(nil, "istio-system"), "web", nil,
		cluster.TLSDestination{Host: cluster.ServiceHostname("shop", "db"), Namespace: "shop", Port: 1, Endpoints: []*cluster.Pod{a, b}, TargetPort: 1})
	if !got.Mixed || got.Mode != cluster.TLSIstioMutual {
		t.Errorf("ClientTLSFor = %+v, want mixed, first endpoint mTLS", got)
	}
}
