package cluster

import (
	"cmp"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// DefaultDomainSuffix is the cluster domain istiod appends to short host
// names (its --domain flag; no mesh config field carries it).
const DefaultDomainSuffix = "cluster.local"

// ClientTLSMode is a DestinationRule's tls.mode, or what a client sidecar
// ends up sending to a destination.
type ClientTLSMode string

const (
	TLSDisable     ClientTLSMode = "DISABLE"      // plaintext
	TLSSimple      ClientTLSMode = "SIMPLE"       // TLS origination, no client certificate
	TLSMutual      ClientTLSMode = "MUTUAL"       // TLS origination with a user certificate
	TLSIstioMutual ClientTLSMode = "ISTIO_MUTUAL" // the mesh's mutual TLS
	TLSUnset       ClientTLSMode = ""             // no tls block: auto mTLS decides
)

// TLSPolicy is the part of a trafficPolicy that decides TLS.
type TLSPolicy struct {
	// Present: the trafficPolicy block exists. Istio merges rules for
	// one host by keeping the first present policy whole, so an empty
	// block still counts.
	Present bool
	// TLS is tls.mode; a tls block without a mode is DISABLE (the enum's
	// zero value). TLSUnset when there is no tls block.
	TLS ClientTLSMode
	// PortLevel maps a port number of portLevelSettings to its tls mode.
	// Port-level settings replace the destination-level ones wholesale,
	// so an entry without tls (TLSUnset) sends the port back to auto mTLS.
	PortLevel map[uint32]ClientTLSMode
}

// ForPort is the tls mode a cluster for port gets from this policy (pilot
// networking/util GetPortLevelTrafficPolicy): the port-level entry when
// one exists, else the destination level; portLevel says which.
func (p TLSPolicy) ForPort(port uint32) (mode ClientTLSMode, portLevel bool) {
	if m, ok := p.PortLevel[port]; ok {
		return m, true
	}
	return p.TLS, false
}

// DestinationRuleSubset is one subsets[] entry.
type DestinationRuleSubset struct {
	Name   string
	Policy TLSPolicy
}

// DestinationRule is a networking.istio.io DestinationRule reduced to what
// decides a client's TLS.
type DestinationRule struct {
	Namespace string
	Name      string
	Host      string // as written
	ExportTo  []string
	// Selector is workloadSelector.matchLabels; nil applies to every
	// client (a rule with a selector only to clients in its namespace).
	Selector  map[string]string
	Policy    TLSPolicy
	Subsets   []DestinationRuleSubset
	CreatedAt time.Time
}

// ConvertDestinationRule reads a DestinationRule's TLS settings.
func ConvertDestinationRule(dr *networkingv1.DestinationRule) DestinationRule {
	out := DestinationRule{
		Namespace: dr.Namespace,
		Name:      dr.Name,
		Host:      dr.Spec.GetHost(),
		ExportTo:  dr.Spec.GetExportTo(),
		Policy:    convertTLSPolicy(dr.Spec.GetTrafficPolicy()),
		CreatedAt: dr.CreationTimestamp.Time,
	}
	if ws := dr.Spec.GetWorkloadSelector(); ws != nil {
		// An empty matchLabels selects every workload but is still a
		// selector: the rule stays private to its namespace.
		out.Selector = map[string]string{}
		maps.Copy(out.Selector, ws.GetMatchLabels())
	}
	for _, s := range dr.Spec.GetSubsets() {
		out.Subsets = append(out.Subsets, DestinationRuleSubset{Name: s.GetName(), Policy: convertTLSPolicy(s.GetTrafficPolicy())})
	}
	return out
}

func convertTLSPolicy(tp *networkingapi.TrafficPolicy) TLSPolicy {
	if tp == nil {
		return TLSPolicy{}
	}
	out := TLSPolicy{Present: true}
	if t := tp.GetTls(); t != nil {
		out.TLS = ClientTLSMode(t.GetMode().String())
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort() == nil {
			continue
		}
		if _, dup := out.PortLevel[pl.GetPort().GetNumber()]; dup {
			continue // Istio takes the first entry for a port
		}
		if out.PortLevel == nil {
			out.PortLevel = map[uint32]ClientTLSMode{}
		}
		mode := TLSUnset
		if t := pl.GetTls(); t != nil {
			mode = ClientTLSMode(t.GetMode().String())
		}
		out.PortLevel[pl.GetPort().GetNumber()] = mode
	}
	return out
}

// ResolveShortName turns a host written in a config of namespace ns into
// the name Istio matches (pilot model.ResolveShortnameToFQDN): a name
// without a dot gets ".ns.svc.<domain>"; "*", IP addresses and anything
// with a dot (even "db.shop", which then matches nothing) stay as written.
func ResolveShortName(h, ns string) string {
	if h == "" || h == "*" || strings.Contains(h, ".") {
		return h
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return h
	}
	out := h
	if ns != "" {
		out += "." + ns
	}
	return out + ".svc." + DefaultDomainSuffix
}

// ServiceHostname is a Kubernetes Service's name in the mesh.
func ServiceHostname(namespace, name string) string {
	return name + "." + namespace + ".svc." + DefaultDomainSuffix
}

// moreSpecificHost is pkg/config/host MoreSpecific: exact names before
// wildcards, then longer first, then alphabetical.
func moreSpecificHost(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	if aw != bw {
		return !aw
	}
	if len(a) == len(b) {
		return a < b
	}
	return len(a) > len(b)
}

// mostSpecificMatch is pilot model.MostSpecificHostMatch for a concrete
// (non-wildcard) needle: the exact name, else the most specific wildcard
// whose suffix it has ("*" matches everything).
func mostSpecificMatch[V any](needle string, specific, wildcard map[string]V) (V, bool) {
	if v, ok := specific[needle]; ok {
		return v, true
	}
	var (
		best  string
		value V
		found bool
	)
	for h, v := range wildcard {
		if strings.HasSuffix(needle, h[1:]) && (!found || moreSpecificHost(h, best)) {
			best, value, found = h, v, true
		}
	}
	return value, found
}

// consolidatedRule is what pilot's mergeDestinationRule keeps per host:
// rules of one namespace merged (first trafficPolicy wins, subsets
// appended), kept apart when their exportTo or selectors differ.
type consolidatedRule struct {
	rule     DestinationRule
	exportTo map[string]bool
	from     []string
}

type hostRules struct {
	specific map[string][]*consolidatedRule
	wildcard map[string][]*consolidatedRule
}

func newHostRules() *hostRules {
	return &hostRules{specific: map[string][]*consolidatedRule{}, wildcard: map[string][]*consolidatedRule{}}
}

// DestinationRuleIndex finds the DestinationRule that applies to a client
// and a destination host, as istiod does. Build it once per inventory.
type DestinationRuleIndex struct {
	root           string
	namespaceLocal map[string]*hostRules
	exported       map[string]*hostRules
	rootLocal      *hostRules
}

// NewDestinationRuleIndex indexes rules as pilot's setDestinationRules
// does: sorted with workload-selector rules first, then oldest first;
// each rule goes into its namespace's local pool when visible there, into
// the exported pool unless it is private, and a private rule of the root
// namespace into the root's own pool. A rule with a workload selector is
// never exported.
func NewDestinationRuleIndex(rules []DestinationRule, rootNamespace string) *DestinationRuleIndex {
	return NewDestinationRuleIndexFor(rules, MeshConfig{RootNamespace: rootNamespace})
}

// NewDestinationRuleIndexFor is NewDestinationRuleIndex under a mesh
// config: its root namespace, and its defaultDestinationRuleExportTo for
// rules without exportTo, of which Istio honours only "." (such rules are
// then private) and otherwise exports them everywhere
// (PushContext.setDestinationRules: "We only honor . and *").
func NewDestinationRuleIndexFor(rules []DestinationRule, mesh MeshConfig) *DestinationRuleIndex {
	rootNamespace := mesh.RootNamespace
	privateByDefault := slices.Contains(mesh.DefaultDestinationRuleExportTo.Values(), exportPrivate)
	sorted := slices.Clone(rules)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if (a.Selector != nil) != (b.Selector != nil) {
			return a.Selector != nil
		}
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Name, b.Name), strings.Compare(a.Namespace, b.Namespace)) < 0
	})
	idx := &DestinationRuleIndex{root: rootNamespace, namespaceLocal: map[string]*hostRules{}, exported: map[string]*hostRules{}, rootLocal: newHostRules()}
	for _, r := range sorted {
		r.Host = ResolveShortName(r.Host, r.Namespace)
		exportTo := map[string]bool{}
		if r.Selector == nil {
			for _, e := range r.ExportTo {
				exportTo[e] = true
			}
		} else {
			exportTo["."] = true
		}
		if len(exportTo) == 0 || exportTo["*"] || exportTo["."] || exportTo[r.Namespace] {
			if idx.namespaceLocal[r.Namespace] == nil {
				idx.namespaceLocal[r.Namespace] = newHostRules()
			}
			mergeDestinationRule(idx.namespaceLocal[r.Namespace], r, exportTo)
		}
		private := len(exportTo) == 0 && privateByDefault || len(exportTo) == 1 && (exportTo["."] || exportTo[r.Namespace])
		switch {
		case !private:
			if idx.exported[r.Namespace] == nil {
				idx.exported[r.Namespace] = newHostRules()
			}
			mergeDestinationRule(idx.exported[r.Namespace], r, exportTo)
		case r.Namespace == rootNamespace:
			mergeDestinationRule(idx.rootLocal, r, exportTo)
		}
	}
	return idx
}

func supersetOf(a, b map[string]bool) bool {
	for k := range b {
		if !a[k] {
			return false
		}
	}
	return true
}

// mergeDestinationRule is pilot's mergeDestinationRule with the enhanced
// merge (ENABLE_ENHANCED_DESTINATIONRULE_MERGE, on by default) for user
// rules.
func mergeDestinationRule(pool *hostRules, r DestinationRule, exportTo map[string]bool) {
	rules := pool.specific
	if strings.HasPrefix(r.Host, "*") {
		rules = pool.wildcard
	}
	list, exists := rules[r.Host]
	if !exists {
		rules[r.Host] = []*consolidatedRule{{rule: r, exportTo: exportTo, from: []string{r.Namespace + "/" + r.Name}}}
		return
	}
	appendSeparately := true
	for _, m := range list {
		switch {
		case maps.Equal(exportTo, m.exportTo): // only true values are stored
			appendSeparately = false
		case len(m.exportTo) > 0 && supersetOf(exportTo, m.exportTo):
			appendSeparately = true
		default:
			appendSeparately = true
			continue
		}
		bothWithout := r.Selector == nil && m.rule.Selector == nil
		bothWith := r.Selector != nil && m.rule.Selector != nil
		if bothWith && !maps.Equal(r.Selector, m.rule.Selector) {
			appendSeparately = true
			continue
		}
		if bothWithout || bothWith {
			appendSeparately = false
		}
		merged := m.rule
		merged.Subsets = slices.Clone(merged.Subsets)
		have := map[string]bool{}
		for _, s := range merged.Subsets {
			have[s.Name] = true
		}
		for _, s := range r.Subsets {
			if !have[s.Name] {
				merged.Subsets = append(merged.Subsets, s)
			}
		}
		if !merged.Policy.Present && r.Policy.Present {
			merged.Policy = r.Policy
		}
		m.rule = merged
		m.from = append(slices.Clone(m.from), r.Namespace+"/"+r.Name)
	}
	if appendSeparately {
		rules[r.Host] = append(rules[r.Host], &consolidatedRule{rule: r, exportTo: exportTo, from: []string{r.Namespace + "/" + r.Name}})
	}
}

func (h *hostRules) match(host string) ([]*consolidatedRule, bool) {
	if h == nil {
		return nil, false
	}
	return mostSpecificMatch(host, h.specific, h.wildcard)
}

func (idx *DestinationRuleIndex) exportedFrom(ns, host, clientNamespace string) []*consolidatedRule {
	drs, ok := idx.exported[ns].match(host)
	if !ok {
		return nil
	}
	var out []*consolidatedRule
	for _, d := range drs {
		if len(d.exportTo) == 0 || d.exportTo["*"] || d.exportTo[clientNamespace] {
			out = append(out, d)
		}
	}
	return out
}

// candidates is pilot PushContext.destinationRule: the client's own
// namespace first (the root namespace's private rules for a client in the
// root namespace), then rules the service's namespace exports to the
// client, then rules the root namespace exports.
func (idx *DestinationRuleIndex) candidates(clientNamespace, host, serviceNamespace string) []*consolidatedRule {
	if clientNamespace != idx.root {
		if drs, ok := idx.namespaceLocal[clientNamespace].match(host); ok {
			return drs
		}
	} else if drs, ok := idx.rootLocal.match(host); ok {
		return drs
	}
	if serviceNamespace != "" {
		if out := idx.exportedFrom(serviceNamespace, host, clientNamespace); len(out) > 0 {
			return out
		}
	}
	return idx.exportedFrom(idx.root, host, clientNamespace)
}

// AppliedDestinationRule is the (possibly merged) rule a client uses.
type AppliedDestinationRule struct {
	DestinationRule
	// From names the rules merged into it, "namespace/name", oldest first.
	From []string
}

// Lookup returns the DestinationRule a sidecar client in clientNamespace
// with clientLabels applies to traffic for host (a Service's FQDN or a
// ServiceEntry host) owned by serviceNamespace, or ok false when none
// does. It follows pilot's SidecarScope.DestinationRule: a rule with a
// workload selector applies only to matching clients of its own
// namespace and wins over the catch-all.
func (idx *DestinationRuleIndex) Lookup(clientNamespace string, clientLabels map[string]string, host, serviceNamespace string) (AppliedDestinationRule, bool) {
	var catchAll *consolidatedRule
	for _, d := range idx.candidates(clientNamespace, host, serviceNamespace) {
		if d.rule.Selector == nil {
			catchAll = d
		}
		if d.rule.Selector != nil && d.rule.Namespace == clientNamespace && labels.ValidatedSetSelector(d.rule.Selector).Matches(labels.Set(clientLabels)) {
			return AppliedDestinationRule{DestinationRule: d.rule, From: d.from}, true
		}
	}
	if catchAll == nil {
		return AppliedDestinationRule{}, false
	}
	return AppliedDestinationRule{DestinationRule: catchAll.rule, From: catchAll.from}, true
}
