package cluster

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// SidecarResource is a networking.istio.io Sidecar reduced to what decides
// listeners and their protocols. (The Sidecar name is taken by the proxy
// detection in sidecar.go.)
type SidecarResource struct {
	Namespace string
	Name      string
	// Selector is workloadSelector.labels; nil for a namespace-wide
	// Sidecar (or, in the root namespace, the mesh-wide default).
	Selector map[string]string
	Ingress  []SidecarIngress
	Egress   []SidecarEgress
	// OutboundTrafficPolicy is ALLOW_ANY or REGISTRY_ONLY; "" inherits
	// the mesh config's.
	OutboundTrafficPolicy string
	CreatedAt             time.Time
}

// SidecarIngress is one ingress[] listener: it declares the protocol of a
// workload port (the port the pod receives on).
type SidecarIngress struct {
	Port     uint32
	Name     string
	Protocol string // as written
	Resolved ResolvedProtocol
}

// SidecarEgress is one egress[] listener; Port 0 is the catch-all.
type SidecarEgress struct {
	Port     uint32
	Name     string
	Protocol string // as written
	Resolved ResolvedProtocol
	Hosts    []string // "namespace/dnsName"
}

// ConvertSidecar reads a Sidecar resource.
func ConvertSidecar(sc *networkingv1.Sidecar) SidecarResource {
	out := SidecarResource{Namespace: sc.Namespace, Name: sc.Name, CreatedAt: sc.CreationTimestamp.Time}
	if ws := sc.Spec.GetWorkloadSelector(); ws != nil {
		out.Selector = map[string]string{}
		maps.Copy(out.Selector, ws.GetLabels())
	}
	if otp := sc.Spec.GetOutboundTrafficPolicy(); otp != nil {
		out.OutboundTrafficPolicy = otp.GetMode().String()
	}
	for _, in := range sc.Spec.GetIngress() {
		if in.GetPort() == nil {
			continue // the API requires a port; nothing to model without one
		}
		out.Ingress = append(out.Ingress, SidecarIngress{
			Port: in.GetPort().GetNumber(), Name: in.GetPort().GetName(), Protocol: in.GetPort().GetProtocol(),
			Resolved: ServiceEntryPortProtocol(in.GetPort().GetProtocol()),
		})
	}
	for _, eg := range sc.Spec.GetEgress() {
		e := SidecarEgress{Hosts: eg.GetHosts()}
		if p := eg.GetPort(); p != nil {
			e.Port, e.Name, e.Protocol, e.Resolved = p.GetNumber(), p.GetName(), p.GetProtocol(), ServiceEntryPortProtocol(p.GetProtocol())
		}
		out.Egress = append(out.Egress, e)
	}
	return out
}

// SelectSidecar returns the Sidecar resource that configures a pod's proxy
// (pilot PushContext.getSidecarScope): in the pod's namespace the oldest
// one whose selector matches its labels, else the oldest namespace-wide
// one, else the root namespace's oldest one without a selector; ok is
// false when none applies (Istio's default scope: every visible service).
func SelectSidecar(sidecars []SidecarResource, rootNamespace string, pod *Pod) (SidecarResource, bool) {
	older := func(a, b *SidecarResource) bool {
		return b == nil || cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Name, b.Name), strings.Compare(a.Namespace, b.Namespace)) < 0
	}
	var selected, namespaceWide, root *SidecarResource
	for i := range sidecars {
		s := &sidecars[i]
		switch {
		case s.Namespace == pod.Namespace && s.Selector != nil:
			if labels.ValidatedSetSelector(s.Selector).Matches(labels.Set(pod.Labels)) && older(s, selected) {
				selected = s
			}
		case s.Namespace == pod.Namespace:
			if older(s, namespaceWide) {
				namespaceWide = s
			}
		case s.Namespace == rootNamespace && s.Selector == nil:
			if older(s, root) {
				root = s
			}
		}
	}
	for _, s := range []*SidecarResource{selected, namespaceWide, root} {
		if s != nil {
			return *s, true
		}
	}
	return SidecarResource{}, false
}

// egressHostMatches is one egress[].hosts entry against a service of
// serviceNamespace named host, for a Sidecar of sidecarNamespace (pilot
// convertIstioListenerToWrapper and hostClassification): "ns/dnsName",
// where ns "." is the Sidecar's namespace and "*" any namespace, dnsName
// an exact name or a "*"-prefixed wildcard; a "~" namespace prefix
// excludes instead. An entry without exactly one "/" is ignored.
func egressHostMatches(entry, sidecarNamespace, serviceNamespace, host string) (match, exclude bool) {
	if strings.Count(entry, "/") != 1 {
		return false, false
	}
	ns, name, _ := strings.Cut(entry, "/")
	excluded := strings.HasPrefix(ns, "~")
	if excluded {
		ns = cmp.Or(strings.TrimPrefix(ns, "~"), "*")
	}
	if ns == "." {
		ns = sidecarNamespace
	}
	if ns != "*" && ns != serviceNamespace {
		return false, false
	}
	if !hostSubsetOf(host, name) {
		return false, false
	}
	return !excluded, excluded
}

// hostSubsetOf is pkg/config/host Name.SubsetOf for a concrete host.
func hostSubsetOf(host, of string) bool {
	if strings.HasPrefix(host, "*") {
		if !strings.HasPrefix(of, "*") || len(host) < len(of) {
			return false
		}
		return strings.HasSuffix(host[1:], of[1:])
	}
	if strings.HasPrefix(of, "*") {
		return strings.HasSuffix(host, of[1:])
	}
	return host == of
}

// egressSelects: the egress listener imports the service. Exclusions in
// the service's namespace or "*" win; then an import from the service's
// namespace, then from "*".
func egressSelects(e SidecarEgress, sidecarNamespace, serviceNamespace, host string) bool {
	matched := false
	for _, h := range e.Hosts {
		m, x := egressHostMatches(h, sidecarNamespace, serviceNamespace, host)
		if x {
			return false
		}
		matched = matched || m
	}
	return matched
}

// OutboundDestination is one Service or ServiceEntry port as a client
// proxy's listeners see it.
type OutboundDestination struct {
	Host      string // ServiceHostname or the ServiceEntry host
	Namespace string
	Port      uint32
	Protocol  ResolvedProtocol // the port's own protocol
	// Ports are all the destination's port numbers: an egress listener
	// with a port only imports a service that has that port.
	Ports []uint32
}

// OutboundListener says how a client proxy handles traffic for a
// destination port.
type OutboundListener struct {
	// Exists: the client's proxy has a listener (or filter chain) for
	// the destination; without one the traffic falls to the
	// 15001 catch-all (Passthrough with ALLOW_ANY, BlackHole with
	// REGISTRY_ONLY), unless a 0.0.0.0:PORT listener catches it first.
	Exists bool
	// Protocol is the listener's protocol: the egress port's when a
	// Sidecar egress listener on that port imports the service, else the
	// service's. Meaningless when !Exists.
	Protocol ResolvedProtocol
	// Sidecar names the Sidecar resource that decided ("" for none).
	Sidecar string
	// EgressPort: a Sidecar egress listener with a port set the protocol.
	EgressPort bool
	// OutboundTrafficPolicy is the client's: the Sidecar's, else the mesh's.
	OutboundTrafficPolicy string
	Reason                string
}

// OutboundListenerFor decides, for a client sidecar pod, whether its proxy
// has a listener for d and with which protocol (pilot
// buildSidecarOutboundListeners): with no Sidecar resource every
// destination exported to the client's namespace gets one with its own
// protocol; with one, egress listeners are tried in order, a listener with
// a port importing the destination when the destination has that port and
// its hosts match, with the listener's protocol (protocol.Parse of the
// egress port: empty means sniffed); the catch-all (no port) imports with
// the destination's own protocol. exported says whether the destination
// is visible in the client's namespace at all (ServiceVisible): a
// Sidecar only imports what is exported to the namespace
// (convertIstioListenerToWrapper selects from servicesExportedToNamespace).
func OutboundListenerFor(inv *Inventory, client *Pod, d OutboundDestination, exported bool) OutboundListener {
	out := OutboundListener{OutboundTrafficPolicy: cmp.Or(inv.Mesh.OutboundTrafficPolicy, OutboundAllowAny)}
	if !exported {
		out.Reason = fmt.Sprintf("%s is not exported to namespace %s: the client's proxy has no listener for it", d.Host, client.Namespace)
		return out
	}
	sc, ok := SelectSidecar(inv.Sidecars, inv.Mesh.RootNamespace, client)
	if !ok {
		out.Exists, out.Protocol = true, d.Protocol
		out.Reason = "no Sidecar resource: the client's proxy has a listener for every visible service"
		return out
	}
	out.Sidecar = sc.Namespace + "/" + sc.Name
	out.OutboundTrafficPolicy = cmp.Or(sc.OutboundTrafficPolicy, out.OutboundTrafficPolicy)
	// The scope is built for the client's namespace: a namespace's own
	// Sidecar lives there, and the root namespace's default is converted
	// per proxy namespace, so its "./*" means the client's namespace
	// (PushContext.getSidecarScope: convertToSidecarScope(ps,
	// meshRootSidecarConfig, proxy.ConfigNamespace)).
	configNamespace := client.Namespace
	egress := sc.Egress
	if len(egress) == 0 {
		egress = []SidecarEgress{{Hosts: []string{"*/*"}}}
	}
	for _, e := range egress {
		if e.Port != 0 && e.Resolved.Protocol != ProtocolHTTPProxy {
			if e.Port != d.Port || !slices.Contains(d.Ports, e.Port) || !egressSelects(e, configNamespace, d.Namespace, d.Host) {
				continue
			}
			out.Exists, out.Protocol, out.EgressPort = true, e.Resolved, true
			out.Reason = fmt.Sprintf("Sidecar %s egress listener on port %d (protocol %s) imports %s", out.Sidecar, e.Port, protocolWord(e.Resolved), d.Host)
			return out
		}
		if e.Port == 0 && egressSelects(e, configNamespace, d.Namespace, d.Host) {
			out.Exists, out.Protocol = true, d.Protocol
			out.Reason = fmt.Sprintf("Sidecar %s imports %s through its catch-all egress listener", out.Sidecar, d.Host)
			return out
		}
	}
	out.Reason = fmt.Sprintf("Sidecar %s egress hosts do not import %s: the client's proxy has no listener for it (%s)", out.Sidecar, d.Host, out.OutboundTrafficPolicy)
	return out
}

func protocolWord(r ResolvedProtocol) string {
	if r.Sniffed() {
		return "unset, so sniffed"
	}
	return string(r.Protocol)
}

// InboundProtocol is how a server proxy treats a workload port.
type InboundProtocol struct {
	// Protocol is the inbound chain's protocol: the Service's, the
	// Sidecar ingress port's, or auto for the passthrough chain.
	Protocol ResolvedProtocol
	// Passthrough: no Service (or, with Sidecar ingress listeners, no
	// ingress listener) covers the port, so Istio's inbound passthrough
	// chain handles it, built as auto: sniffed.
	Passthrough bool
	// Sidecar names the Sidecar resource whose ingress decided ("").
	Sidecar string
	Reason  string
}

// InboundProtocolFor is the protocol the server pod's proxy applies to
// traffic arriving on container port port, given what the Services
// targeting it declare (services: the ResolvedProtocol of each Service
// port whose targetPort is this port, oldest Service first; empty when
// none). A Sidecar with ingress listeners replaces the Service-derived
// chains (PILOT_ALLOW_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE is off by
// default): only its ports get chains, with their declared protocol.
func InboundProtocolFor(inv *Inventory, server *Pod, port uint32, services []ResolvedProtocol) InboundProtocol {
	if sc, ok := SelectSidecar(inv.Sidecars, inv.Mesh.RootNamespace, server); ok && len(sc.Ingress) > 0 {
		name := sc.Namespace + "/" + sc.Name
		for _, in := range sc.Ingress {
			if in.Port == port {
				return InboundProtocol{Protocol: in.Resolved, Sidecar: name,
					Reason: fmt.Sprintf("Sidecar %s ingress listener on port %d declares protocol %s", name, port, protocolWord(in.Resolved))}
			}
		}
		return InboundProtocol{Protocol: ResolvedProtocol{Protocol: ProtocolAuto, Source: SourceNone}, Passthrough: true, Sidecar: name,
			Reason: fmt.Sprintf("Sidecar %s has ingress listeners but none on port %d: the inbound passthrough chain sniffs it", name, port)}
	}
	if len(services) == 0 {
		return InboundProtocol{Protocol: ResolvedProtocol{Protocol: ProtocolAuto, Source: SourceNone}, Passthrough: true,
			Reason: fmt.Sprintf("no Service targets port %d: the inbound passthrough chain sniffs it", port)}
	}
	return InboundProtocol{Protocol: services[0], Reason: "the Service port declares it"}
}

// sortSidecars orders Sidecar resources by namespace and name.
func sortSidecars(s []SidecarResource) {
	sortByName(s, func(sc *SidecarResource) (string, string) { return sc.Namespace, sc.Name })
}
