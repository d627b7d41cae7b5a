package conformance

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	meshconfig "istio.io/api/mesh/v1alpha1"
	networking "istio.io/api/networking/v1alpha3"
	typeapi "istio.io/api/type/v1beta1"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/host"
	"istio.io/istio/pkg/kube/inject"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

const rootNamespace = "istio-system"

// drWorld is one random set of DestinationRules.
type drWorld struct {
	ours  []cluster.DestinationRule
	istio []config.Config
}

var (
	drNamespaces = []string{"a", "b", rootNamespace}
	// services are what clients call: host and owning namespace.
	drServices = []struct{ host, ns string }{
		{"db.a.svc.cluster.local", "a"},
		{"db.b.svc.cluster.local", "b"},
		{"web.a.svc.cluster.local", "a"},
		{"ext.example.com", "a"},
	}
	drHosts = []string{
		"db", "web", "ext", "db.a.svc.cluster.local", "db.b.svc.cluster.local", "*.a.svc.cluster.local",
		"*.svc.cluster.local", "*.cluster.local", "*.local", "*", "db.a", "*.example.com", "ext.example.com",
	}
	drExportTos = [][]string{nil, {"."}, {"*"}, {"a"}, {"b"}, {".", "b"}, {"~"}, {rootNamespace}, {"a", "b"}, {"b", "*"}}
	drSelectors = []map[string]string{nil, nil, {"app": "x"}, {"app": "y"}, {}}
	drModes     = []networking.ClientTLSSettings_TLSmode{
		networking.ClientTLSSettings_DISABLE, networking.ClientTLSSettings_SIMPLE,
		networking.ClientTLSSettings_MUTUAL, networking.ClientTLSSettings_ISTIO_MUTUAL,
	}
	drClientLabels = []map[string]string{nil, {"app": "x"}, {"app": "y"}}
)

func randomDRWorld(rng *rand.Rand) drWorld {
	var w drWorld
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 1 + rng.IntN(5) {
		ns := drNamespaces[rng.IntN(len(drNamespaces))]
		name := fmt.Sprintf("r%d", i)
		created := base.Add(time.Duration(rng.IntN(3)) * time.Second) // ties happen: names break them
		spec := &networking.DestinationRule{Host: drHosts[rng.IntN(len(drHosts))], ExportTo: drExportTos[rng.IntN(len(drExportTos))]}
		if sel := drSelectors[rng.IntN(len(drSelectors))]; sel != nil {
			spec.WorkloadSelector = &typeapi.WorkloadSelector{MatchLabels: sel}
		}
		switch rng.IntN(4) {
		case 0: // no trafficPolicy
		case 1:
			spec.TrafficPolicy = &networking.TrafficPolicy{} // present, no tls
		default:
			spec.TrafficPolicy = &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: drModes[rng.IntN(len(drModes))]}}
		}
		for s := range rng.IntN(3) {
			spec.Subsets = append(spec.Subsets, &networking.Subset{Name: fmt.Sprintf("v%d", s+rng.IntN(2))})
		}
		w.istio = append(w.istio, config.Config{
			Meta: config.Meta{Name: name, Namespace: ns, Domain: cluster.DefaultDomainSuffix, CreationTimestamp: created},
			Spec: spec,
		})
		ours := cluster.DestinationRule{Namespace: ns, Name: name, Host: spec.Host, ExportTo: spec.ExportTo, CreatedAt: created}
		if spec.WorkloadSelector != nil {
			ours.Selector = map[string]string{}
			for k, v := range spec.WorkloadSelector.MatchLabels {
				ours.Selector[k] = v
			}
		}
		if tp := spec.TrafficPolicy; tp != nil {
			ours.Policy.Present = true
			if tp.Tls != nil {
				ours.Policy.TLS = cluster.ClientTLSMode(tp.Tls.Mode.String())
			}
		}
		for _, s := range spec.Subsets {
			ours.Subsets = append(ours.Subsets, cluster.DestinationRuleSubset{Name: s.Name})
		}
		w.ours = append(w.ours, ours)
	}
	return w
}

// istioLookup asks Istio's PushContext and SidecarScope which rule a client
// gets, as CDS does (SidecarScope.DestinationRule, outbound).
func istioLookup(w drWorld, clientNS string, labels map[string]string, svcHost string) (from []string, present bool, tls string, ok bool) {
	ps := model.NewPushContext()
	ps.Mesh = &meshconfig.MeshConfig{RootNamespace: rootNamespace}
	var services []*model.Service
	for _, s := range drServices {
		services = append(services, &model.Service{Hostname: host.Name(s.host), Attributes: model.ServiceAttributes{Namespace: s.ns}})
	}
	ps.AddPublicServices(services)
	configs := make([]config.Config, len(w.istio))
	for i, c := range w.istio {
		c.Spec = c.Spec.(*networking.DestinationRule).DeepCopy() // Istio rewrites Host in place
		configs[i] = c
	}
	ps.SetDestinationRulesForTesting(configs)
	sc := model.DefaultSidecarScopeForGateway(ps, clientNS)
	cdr := sc.DestinationRule(model.TrafficDirectionOutbound, &model.Proxy{Labels: labels, ConfigNamespace: clientNS}, host.Name(svcHost))
	if cdr == nil {
		return nil, false, "", false
	}
	for _, f := range cdr.GetFrom() {
		from = append(from, f.Namespace+"/"+f.Name)
	}
	spec := cdr.GetRule().Spec.(*networking.DestinationRule)
	if tp := spec.GetTrafficPolicy(); tp != nil {
		present = true
		if tp.Tls != nil {
			tls = tp.Tls.Mode.String()
		}
	}
	return from, present, tls, true
}

// TestDestinationRuleLookupConformance compares cluster's rule index with
// Istio's PushContext on random sets of rules (hosts short, qualified and
// wildcard; exportTo; workload selectors; creation ties), for every client
// namespace, client labels and service.
func TestDestinationRuleLookupConformance(t *testing.T) {
	rng := rand.New(rand.NewPCG(seed, 3))
	const worlds = 600
	compared, matched := 0, 0
	for range worlds {
		w := randomDRWorld(rng)
		idx := cluster.NewDestinationRuleIndex(w.ours, rootNamespace)
		for _, clientNS := range drNamespaces {
			for _, labels := range drClientLabels {
				for _, s := range drServices {
					wantFrom, wantPresent, wantTLS, wantOK := istioLookup(w, clientNS, labels, s.host)
					got, gotOK := idx.Lookup(clientNS, labels, s.host, s.ns)
					compared++
					if gotOK != wantOK || !slices.Equal(got.From, wantFrom) || got.Policy.Present != wantPresent || string(got.Policy.TLS) != wantTLS {
						t.Fatalf("client %s %v -> %s with rules\n%s\nours: ok %v from %v policy %v tls %q\nIstio: ok %v from %v policy %v tls %q",
							clientNS, labels, s.host, describeWorld(w), gotOK, got.From, got.Policy.Present, got.Policy.TLS, wantOK, wantFrom, wantPresent, wantTLS)
					}
					if gotOK {
						matched++
					}
				}
			}
		}
	}
	t.Logf("compared %d lookups over %d random rule sets; %d found a rule", compared, worlds, matched)
	if matched == 0 || matched == compared {
		t.Fatalf("the corpus is degenerate: %d of %d lookups found a rule", matched, compared)
	}
}

func describeWorld(w drWorld) string {
	var s string
	for _, c := range w.istio {
		spec := c.Spec.(*networking.DestinationRule)
		s += fmt.Sprintf("  %s/%s created %s host %q exportTo %v selector %v policy %v\n", c.Namespace, c.Name, c.CreationTimestamp.Format(time.TimeOnly),
			spec.Host, spec.ExportTo, spec.GetWorkloadSelector().GetMatchLabels(), spec.GetTrafficPolicy())
	}
	return s
}

func TestResolveShortNameConformance(t *testing.T) {
	for _, h := range append(slices.Clone(drHosts), "", "10.0.0.1", "::1", "fe80::1%eth0", "db.", ".db", "DB", "*db", "1.2.3") {
		for _, ns := range []string{"a", ""} {
			want := string(model.ResolveShortnameToFQDN(h, config.Meta{Namespace: ns, Domain: cluster.DefaultDomainSuffix}))
			if got := cluster.ResolveShortName(h, ns); got != want {
				t.Errorf("ResolveShortName(%q, %q) = %q, Istio says %q", h, ns, got, want)
			}
		}
	}
}

// interceptionValues is the corpus of annotation values.
var interceptionValues = []string{
	"", "*", " *", "* ", "*,80", "80", " 80", "80 ", "80,443", "80, 443", "80,,443", ",80", "80,",
	"0", "65535", "65536", "-1", "+80", "0x50", "80-90", "http", "１２３",
	"10.0.0.0/8", "10.0.0.1", "10.0.0.1/32", "10.0.0.0/8,192.168.0.0/16", "10.0.0.0/8, 192.168.0.0/16",
	"::/0", "fd00::/8", "::1/128", "10.0.0.0/33", "10.0.0.0/8,", "0.0.0.0/0", "*,10.0.0.0/8",
	"REDIRECT", "TPROXY", "NONE", "redirect", "15020", "15999",
}

// TestInterceptionValidationConformance: an annotation value is Invalid
// exactly when the injector's validator (pkg/kube/inject
// AnnotationValidation) refuses it.
func TestInterceptionValidationConformance(t *testing.T) {
	names := []string{
		cluster.AnnotationIncludeInboundPorts, cluster.AnnotationExcludeInboundPorts, cluster.AnnotationExcludeOutboundPorts,
		cluster.AnnotationIncludeOutboundIPRanges, cluster.AnnotationExcludeOutboundIPRanges,
		"sidecar.istio.io/interceptionMode", "status.sidecar.istio.io/port",
	}
	n := 0
	for _, name := range names {
		validate, ok := inject.AnnotationValidation[name]
		if !ok {
			t.Fatalf("Istio no longer validates %s", name)
		}
		for _, v := range interceptionValues {
			checkInterception(t, name, v, validate)
			n++
		}
	}
	t.Logf("compared %d annotation values", n)
}

func checkInterception(t *testing.T, name, value string, validate func(string) error) {
	t.Helper()
	ic := cluster.ParseInterception(map[string]string{name: value})
	istioErr := validate(value)
	if (len(ic.Invalid) > 0) != (istioErr != nil) {
		t.Fatalf("%s=%q: ours invalid %q, Istio's validator says %v", name, value, ic.Invalid, istioErr)
	}
}

func FuzzInterceptionValidation(f *testing.F) {
	for _, v := range interceptionValues {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, name := range []string{
			cluster.AnnotationIncludeInboundPorts, cluster.AnnotationExcludeInboundPorts, cluster.AnnotationExcludeOutboundPorts,
			cluster.AnnotationIncludeOutboundIPRanges, cluster.AnnotationExcludeOutboundIPRanges,
		} {
			checkInterception(t, name, v, inject.AnnotationValidation[name])
		}
	})
}
