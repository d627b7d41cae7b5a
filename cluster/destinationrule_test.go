package cluster_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func dr(ns, name, host string, mode cluster.ClientTLSMode, opts ...func(*cluster.DestinationRule)) cluster.DestinationRule {
	d := cluster.DestinationRule{Namespace: ns, Name: name, Host: host, CreatedAt: t0}
	if mode != cluster.TLSUnset {
		d.Policy = cluster.TLSPolicy{Present: true, TLS: mode}
	}
	for _, o := range opts {
		o(&d)
	}
	return d
}

func exportTo(e ...string) func(*cluster.DestinationRule) {
	return func(d *cluster.DestinationRule) { d.ExportTo = e }
}

func created(sec int) func(*cluster.DestinationRule) {
	return func(d *cluster.DestinationRule) { d.CreatedAt = t0.Add(time.Duration(sec) * time.Second) }
}

func selector(kv ...string) func(*cluster.DestinationRule) {
	return func(d *cluster.DestinationRule) {
		d.Selector = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			d.Selector[kv[i]] = kv[i+1]
		}
	}
}

func portTLS(port uint32, mode cluster.ClientTLSMode) func(*cluster.DestinationRule) {
	return func(d *cluster.DestinationRule) {
		d.Policy.Present = true
		if d.Policy.PortLevel == nil {
			d.Policy.PortLevel = map[uint32]cluster.ClientTLSMode{}
		}
		d.Policy.PortLevel[port] = mode
	}
}

func TestResolveShortName(t *testing.T) {
	for _, c := range []struct{ host, ns, want string }{
		{"db", "shop", "db.shop.svc.cluster.local"},
		{"db.shop", "shop", "db.shop"}, // a dot makes it "fully qualified": it matches nothing
		{"db.shop.svc.cluster.local", "other", "db.shop.svc.cluster.local"},
		{"*", "shop", "*"},
		{"*.shop.svc.cluster.local", "x", "*.shop.svc.cluster.local"},
		{"10.0.0.1", "shop", "10.0.0.1"},
		{"::1", "shop", "::1"},
		{"", "shop", ""},
	} {
		if got := cluster.ResolveShortName(c.host, c.ns); got != c.want {
			t.Errorf("ResolveShortName(%q, %q) = %q, want %q", c.host, c.ns, got, c.want)
		}
	}
}

// TestDestinationRuleLookup follows pilot's order: the client's namespace,
// then what the service's namespace exports, then what the root exports.
func TestDestinationRuleLookup(t *testing.T) {
	const root = "istio-system"
	dbShop := cluster.ServiceHostname("shop", "db")
	cases := []struct {
		name     string
		rules    []cluster.DestinationRule
		clientNS string
		labels   map[string]string
		host     string
		svcNS    string
		want     []string // From; nil = no rule
	}{
		{"none", nil, "shop", nil, dbShop, "shop", nil},
		{"short name in the service namespace", []cluster.DestinationRule{dr("shop", "a", "db", cluster.TLSDisable)}, "web", nil, dbShop, "shop", []string{"shop/a"}},
		{"short name elsewhere names another host", []cluster.DestinationRule{dr("web", "a", "db", cluster.TLSDisable)}, "web", nil, dbShop, "shop", nil},
		{"dotted short name matches nothing", []cluster.DestinationRule{dr("shop", "a", "db.shop", cluster.TLSDisable)}, "shop", nil, dbShop, "shop", nil},
		{"client namespace wins over service namespace", []cluster.DestinationRule{
			dr("shop", "svc", "db", cluster.TLSDisable),
			dr("web", "client", dbShop, cluster.TLSIstioMutual),
		}, "web", nil, dbShop, "shop", []string{"web/client"}},
		{"service namespace wins over root", []cluster.DestinationRule{
			dr(root, "mesh", "*.svc.cluster.local", cluster.TLSIstioMutual),
			dr("shop", "svc", "db", cluster.TLSDisable),
		}, "web", nil, dbShop, "shop", []string{"shop/svc"}},
		{"root wildcard as a last resort", []cluster.DestinationRule{dr(root, "mesh", "*", cluster.TLSIstioMutual)}, "web", nil, dbShop, "shop", []string{root + "/mesh"}},
		{"exact before wildcard in one namespace", []cluster.DestinationRule{
			dr("web", "wild", "*.shop.svc.cluster.local", cluster.TLSIstioMutual),
			dr("web", "exact", dbShop, cluster.TLSDisable),
		}, "web", nil, dbShop, "shop", []string{"web/exact"}},
		{"longest wildcard wins", []cluster.DestinationRule{
			dr("web", "short", "*.cluster.local", cluster.TLSIstioMutual),
			dr("web", "long", "*.shop.svc.cluster.local", cluster.TLSDisable),
		}, "web", nil, dbShop, "shop", []string{"web/long"}},
		{"a private rule of the service namespace is not for other clients", []cluster.DestinationRule{dr("shop", "p", "db", cluster.TLSDisable, exportTo("."))}, "web", nil, dbShop, "shop", nil},
		{"a private rule applies in its own namespace", []cluster.DestinationRule{dr("shop", "p", "db", cluster.TLSDisable, exportTo("."))}, "shop", nil, dbShop, "shop", []string{"shop/p"}},
		{"exported to the client by name", []cluster.DestinationRule{dr("shop", "p", "db", cluster.TLSDisable, exportTo("web"))}, "web", nil, dbShop, "shop", []string{"shop/p"}},
		{"exported to someone else", []cluster.DestinationRule{dr("shop", "p", "db", cluster.TLSDisable, exportTo("other"))}, "web", nil, dbShop, "shop", nil},
		{"exported to nobody", []cluster.DestinationRule{dr("shop", "p", "db", cluster.TLSDisable, exportTo("~"))}, "shop", nil, dbShop, "shop", nil},
		{"a rule elsewhere is not consulted", []cluster.DestinationRule{dr("other", "x", dbShop, cluster.TLSDisable)}, "web", nil, dbShop, "shop", nil},
		{"a private root rule applies to root clients only", []cluster.DestinationRule{dr(root, "p", "*", cluster.TLSDisable, exportTo("."))}, root, nil, dbShop, "shop", []string{root + "/p"}},
		{"a private root rule is not for others", []cluster.DestinationRule{dr(root, "p", "*", cluster.TLSDisable, exportTo("."))}, "web", nil, dbShop, "shop", nil},
		{"workload selector matching the client", []cluster.DestinationRule{
			dr("web", "all", dbShop, cluster.TLSIstioMutual),
			dr("web", "some", dbShop, cluster.TLSDisable, selector("app", "legacy")),
		}, "web", map[string]string{"app": "legacy"}, dbShop, "shop", []string{"web/some"}},
		{"workload selector not matching", []cluster.DestinationRule{
			dr("web", "all", dbShop, cluster.TLSIstioMutual),
			dr("web", "some", dbShop, cluster.TLSDisable, selector("app", "legacy")),
		}, "web", map[string]string{"app": "new"}, dbShop, "shop", []string{"web/all"}},
		{"a workload selector is never exported", []cluster.DestinationRule{dr("shop", "some", "db", cluster.TLSDisable, selector("app", "legacy"))}, "web", map[string]string{"app": "legacy"}, dbShop, "shop", nil},
		{"merged rules: the oldest policy wins", []cluster.DestinationRule{
			dr("web", "young", dbShop, cluster.TLSDisable, created(10)),
			dr("web", "old", dbShop, cluster.TLSIstioMutual, created(1)),
		}, "web", nil, dbShop, "shop", []string{"web/old", "web/young"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idx := cluster.NewDestinationRuleIndex(c.rules, root)
			got, ok := idx.Lookup(c.clientNS, c.labels, c.host, c.svcNS)
			if !ok {
				if c.want != nil {
					t.Fatalf("no rule, want %v", c.want)
				}
				return
			}
			if !slices.Equal(got.From, c.want) {
				t.Fatalf("rule from %v, want %v", got.From, c.want)
			}
		})
	}
}

// defaultDestinationRuleExportTo: only "." changes anything
// (PushContext.setDestinationRules), and only for rules without exportTo.
func TestDestinationRuleMeshDefaultExportTo(t *testing.T) {
	const dbShop, root = "db.shop.svc.cluster.local", "istio-system"
	cases := []struct {
		name     string
		def      cluster.ExportToList
		rule     cluster.DestinationRule
		clientNS string
		found    bool
	}{
		{"unset: exported", "", dr("shop", "p", "db", cluster.TLSDisable), "web", true},
		{"\".\": private to its namespace", ".", dr("shop", "p", "db", cluster.TLSDisable), "web", false},
		{"\".\": still applies in its namespace", ".", dr("shop", "p", "db", cluster.TLSDisable), "shop", true},
		{"\".\": the rule's own exportTo wins", ".", dr("shop", "p", "db", cluster.TLSDisable, exportTo("*")), "web", true},
		{"a namespace name is not honoured: exported", "other", dr("shop", "p", "db", cluster.TLSDisable), "web", true},
		{"\".\": a root rule is private to root clients", ".", dr(root, "p", "*", cluster.TLSDisable), "web", false},
		{"\".\": a root rule still applies to root clients", ".", dr(root, "p", "*", cluster.TLSDisable), root, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idx := cluster.NewDestinationRuleIndexFor([]cluster.DestinationRule{c.rule}, cluster.MeshConfig{RootNamespace: root, DefaultDestinationRuleExportTo: c.def})
			if _, ok := idx.Lookup(c.clientNS, nil, dbShop, "shop"); ok != c.found {
				t.Errorf("rule found %v, want %v", ok, c.found)
			}
		})
	}
}

func TestDestinationRuleMergeKeepsOldestPolicy(t *testing.T) {
	idx := cluster.NewDestinationRuleIndex([]cluster.DestinationRule{
		dr("web", "young", "db.shop.svc.cluster.local", cluster.TLSDisable, created(10)),
		dr("web", "old", "db.shop.svc.cluster.local", cluster.TLSIstioMutual, created(1)),
	}, "istio-system")
	got, _ := idx.Lookup("web", nil, "db.shop.svc.cluster.local", "shop")
	if got.Policy.TLS != cluster.TLSIstioMutual {
		t.Errorf("merged tls = %s, want the oldest rule's ISTIO_MUTUAL", got.Policy.TLS)
	}
}

func TestConvertDestinationRule(t *testing.T) {
	in := &networkingv1.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", CreationTimestamp: metav1.NewTime(t0)},
		Spec: networkingapi.DestinationRule{
			Host:             "db",
			ExportTo:         []string{"."},
			WorkloadSelector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "x"}},
			TrafficPolicy: &networkingapi.TrafficPolicy{
				Tls: &networkingapi.ClientTLSSettings{}, // no mode: DISABLE, the enum's zero
				PortLevelSettings: []*networkingapi.TrafficPolicy_PortTrafficPolicy{
					{Port: &networkingapi.PortSelector{Number: 3306}, Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}},
					{Port: &networkingapi.PortSelector{Number: 3306}, Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_SIMPLE}},
					{Port: &networkingapi.PortSelector{Number: 8080}},
					{},
				},
			},
			Subsets: []*networkingapi.Subset{
				{Name: "v1"},
				{Name: "v2", TrafficPolicy: &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_MUTUAL}}},
			},
		},
	}
	got := cluster.ConvertDestinationRule(in)
	want := cluster.DestinationRule{
		Namespace: "shop", Name: "db", Host: "db", ExportTo: []string{"."}, Selector: map[string]string{"app": "x"}, CreatedAt: t0,
		Policy: cluster.TLSPolicy{Present: true, TLS: cluster.TLSDisable, PortLevel: map[uint32]cluster.ClientTLSMode{3306: cluster.TLSIstioMutual, 8080: cluster.TLSUnset}},
		Subsets: []cluster.DestinationRuleSubset{
			{Name: "v1"},
			{Name: "v2", Policy: cluster.TLSPolicy{Present: true, TLS: cluster.TLSMutual}},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ConvertDestinationRule = %+v, want %+v", got, want)
	}
}
