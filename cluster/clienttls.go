package cluster

import "fmt"

// labelTLSMode is the endpoint label auto mTLS keys on; the injector sets
// it to "istio" on every pod it gives a sidecar.
const labelTLSMode = "security.istio.io/tlsMode"

// TLSDestination is one destination port as a client sidecar sees it.
type TLSDestination struct {
	// Host is the Service's FQDN (ServiceHostname) or a ServiceEntry host.
	Host string
	// Namespace owns the Service or ServiceEntry.
	Namespace string
	// Port is the Service (or ServiceEntry) port: DestinationRule
	// portLevelSettings name it, not the container port.
	Port uint32
	// MeshExternal: a MESH_EXTERNAL ServiceEntry (auto mTLS never applies).
	MeshExternal bool
	// Headless: a Service without a ClusterIP, reached by pod IP through
	// an original-destination cluster.
	Headless bool
	// Endpoints are the server pods behind the port; TargetPort is the
	// container port they receive on (0 when unknown).
	Endpoints  []*Pod
	TargetPort uint32
}

// ClientTLS is what a client sidecar sends to a destination port.
type ClientTLS struct {
	// Mode is ISTIO_MUTUAL (the mesh's mTLS), DISABLE (plaintext), SIMPLE
	// or MUTUAL (TLS originated towards the server application).
	Mode ClientTLSMode
	// Auto: auto mTLS chose Mode; no DestinationRule set tls for the port.
	Auto bool
	// Rule names the DestinationRule that applies ("namespace/name", the
	// oldest of merged rules), whether or not it set the TLS; "" for none.
	Rule string
	// RuleSetsTLS: Rule's tls decided Mode (top level or PortLevel).
	RuleSetsTLS bool
	PortLevel   bool
	// Mixed: auto mTLS sends mTLS to some endpoints and plaintext to
	// others; Mode is then what the first endpoint gets.
	Mixed bool
	// Subsets lists the rule's subsets whose TLS differs from Mode; they
	// apply where a VirtualService routes to the subset.
	Subsets []SubsetTLS
	// Reason says why, in one line.
	Reason string
}

// SubsetTLS is the TLS mode traffic routed to one subset gets.
type SubsetTLS struct {
	Name string
	Mode ClientTLSMode // TLSUnset: auto mTLS, as for the default route
}

// ClientTLSFor decides what a sidecar client in clientNamespace with
// clientLabels sends to d, from the DestinationRule that applies (idx over
// inv.DestinationRules), auto mTLS (meshConfig enableAutoMtls) and the
// server side's PeerAuthentications. It follows pilot: the cluster's
// tls comes from the rule's port-level settings for d.Port, else its top
// level (cluster_builder buildUpstreamTLSSettings); without one, auto mTLS
// sends plaintext to mesh-external hosts, when it is off, and when the
// service namespace's (or mesh) PeerAuthentication is DISABLE; otherwise
// mTLS to endpoints labelled security.istio.io/tlsMode=istio whose own
// PeerAuthentication for the container port is not DISABLE, plaintext to
// the rest (xds endpoints mtlsChecker). A headless Service is all or
// nothing: mTLS only when every endpoint has a sidecar.
func ClientTLSFor(inv *Inventory, idx *DestinationRuleIndex, clientNamespace string, clientLabels map[string]string, d TLSDestination) (out ClientTLS) {
	dr, found := idx.Lookup(clientNamespace, clientLabels, d.Host, d.Namespace)
	var ruleMode ClientTLSMode
	if found {
		out.Rule = dr.From[0]
		ruleMode, out.PortLevel = dr.Policy.ForPort(d.Port)
		defer func() { out.Subsets = subsetModes(dr.DestinationRule, d.Port, out) }()
	}
	if ruleMode != TLSUnset {
		out.Mode, out.RuleSetsTLS = ruleMode, true
		where := "trafficPolicy.tls"
		if out.PortLevel {
			where = fmt.Sprintf("portLevelSettings[port %d].tls", d.Port)
		}
		out.Reason = fmt.Sprintf("DestinationRule %s sets %s mode %s", out.Rule, where, ruleMode)
		return out
	}
	out.Auto = true
	switch {
	case d.MeshExternal:
		out.Mode, out.Reason = TLSDisable, "mesh-external destination: auto mTLS does not apply, the client sends plaintext"
		return out
	case !inv.Mesh.EnableAutoMTLS:
		out.Mode, out.Reason = TLSDisable, "enableAutoMtls is false and no DestinationRule sets tls: the client sends plaintext"
		return out
	}
	if nsMode := EffectiveMTLSMode(inv.PeerAuthentications, inv.Mesh.RootNamespace, d.Namespace, nil, 0); nsMode == MTLSDisable {
		out.Mode, out.Reason = TLSDisable, "auto mTLS: the namespace (or mesh) PeerAuthentication of "+d.Namespace+" is DISABLE, so the client sends plaintext"
		return out
	}
	if d.Headless {
		out.Mode, out.Reason = TLSIstioMutual, "auto mTLS: every endpoint of the headless Service has a sidecar, so the client sends mTLS (workload port-level PeerAuthentications are not consulted for headless Services)"
		for _, ep := range d.Endpoints {
			if !endpointIstioTLS(ep) {
				out.Mode, out.Reason = TLSDisable, "auto mTLS: an endpoint of the headless Service ("+ep.Namespace+"/"+ep.Name+") has no sidecar, so the client sends plaintext to all of them"
				break
			}
		}
		return out
	}
	// The endpoint checker reads the rule's tls the other way round: a
	// port-level entry without tls falls back to the top level.
	if found && dr.Policy.TLS != TLSUnset {
		out.Mode = TLSDisable
		if dr.Policy.TLS == TLSIstioMutual {
			out.Mode = TLSIstioMutual
		}
		out.Reason = fmt.Sprintf("auto mTLS (portLevelSettings for port %d reset tls), but endpoints follow DestinationRule %s's top-level mode %s", d.Port, out.Rule, dr.Policy.TLS)
		return out
	}
	if len(d.Endpoints) == 0 {
		out.Mode, out.Reason = TLSIstioMutual, "auto mTLS: no endpoint known; a server with a sidecar gets mTLS"
		return out
	}
	for i, ep := range d.Endpoints {
		mode, why := TLSDisable, "auto mTLS: "+ep.Namespace+"/"+ep.Name+" has no sidecar, so the client sends plaintext"
		if endpointIstioTLS(ep) {
			if EffectiveMTLSMode(inv.PeerAuthentications, inv.Mesh.RootNamespace, ep.Namespace, ep.Labels, d.TargetPort) == MTLSDisable {
				why = fmt.Sprintf("auto mTLS: the PeerAuthentication of %s/%s is DISABLE on port %d, so the client sends plaintext", ep.Namespace, ep.Name, d.TargetPort)
			} else {
				mode, why = TLSIstioMutual, "auto mTLS: the server has a sidecar, so the client sends mTLS"
			}
		}
		if i == 0 {
			out.Mode, out.Reason = mode, why
		} else if mode != out.Mode {
			out.Mixed = true
		}
	}
	if out.Mixed {
		out.Reason += " (other endpoints get the other mode)"
	}
	return out
}

// endpointIstioTLS: the endpoint carries the tlsMode label auto mTLS keys
// on. A pod without the label but with a sidecar counts (the injector
// always sets it; its absence means a hand-made inventory, not a choice).
func endpointIstioTLS(p *Pod) bool {
	if v, ok := p.Labels[labelTLSMode]; ok {
		return v == "istio"
	}
	return p.HasSidecar
}

// subsetModes lists the subsets whose TLS for port differs from the
// default route's (an explicit mode equal to what auto mTLS chose does
// not count) (pilot util.MergeSubsetTrafficPolicy: the subset's
// port-level entry replaces everything, else its tls overrides the
// rule's).
func subsetModes(dr DestinationRule, port uint32, def ClientTLS) []SubsetTLS {
	var out []SubsetTLS
	base, _ := dr.Policy.ForPort(port)
	for _, s := range dr.Subsets {
		m := base
		if s.Policy.Present {
			if pm, ok := s.Policy.PortLevel[port]; ok {
				m = pm
			} else if s.Policy.TLS != TLSUnset {
				m = s.Policy.TLS
			}
		}
		if m == base || (m != TLSUnset && m == def.Mode && !def.Mixed) {
			continue
		}
		out = append(out, SubsetTLS{Name: s.Name, Mode: m})
	}
	return out
}
