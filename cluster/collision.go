package cluster

import (
	"cmp"
	"slices"
	"sort"
	"strconv"
)

// Collision is an outbound port shared between something outside the
// mesh's address-matched services (a ServiceEntry port, or any external
// destination) and in-mesh Services whose port makes Istio build a
// wildcard 0.0.0.0:PORT listener that sniffs. A client sidecar sends
// traffic for an address it does not know through that listener, so an
// external server-first server on the same port hangs.
type Collision struct {
	Port uint32
	// Services are the in-mesh Service ports that put a sniffing listener
	// on 0.0.0.0:Port, as "namespace/name:port-name (PROTOCOL)".
	Services []string
}

// SniffingListenerPorts returns, per port number, the in-mesh Service
// ports that give every client sidecar a sniffing 0.0.0.0:PORT listener.
// That is the HTTP-family ports only (pilot's buildSidecarOutboundListener
// binds ListenerProtocolHTTP to the wildcard, and a wildcard HTTP listener
// gets a TCP fall-through chain behind the HTTP inspector). An
// auto-detected (sniffed) port of a ClusterIP Service binds its VIP:PORT,
// and of a headless Service each endpoint's IP:PORT, so it never catches
// traffic for unknown addresses. ExternalName Services get no listener and
// UDP is never sniffed. Istio registers every Kubernetes Service, sidecar
// or not, so all of them count.
func SniffingListenerPorts(services []Service) map[uint32][]string {
	out := map[uint32][]string{}
	for _, s := range services {
		if s.Type == "ExternalName" {
			continue
		}
		for _, p := range s.Ports {
			if p.Protocol == "UDP" || !p.Resolved.Protocol.HTTPFamily() {
				continue
			}
			name := cmp.Or(p.Name, "(unnamed)")
			out[uint32(p.Port)] = append(out[uint32(p.Port)], s.Namespace+"/"+s.Name+":"+name+" ("+string(p.Resolved.Protocol)+")")
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// OutboundCollision tells whether traffic to an external destination on
// port shares a sniffing listener with in-mesh Services; ok is false when
// the port is free of them.
func OutboundCollision(listeners map[uint32][]string, port uint32) (Collision, bool) {
	svcs, ok := listeners[port]
	if !ok {
		return Collision{}, false
	}
	return Collision{Port: port, Services: svcs}, true
}

// WildcardListenerPorts is SniffingListenerPorts plus the ServiceEntries
// that bind 0.0.0.0:PORT themselves: an entry without addresses listens
// on the wildcard with its own protocol, which sniffs when the protocol
// is unset or HTTP-family. Entries are named "ServiceEntry ns/name:port
// (PROTOCOL)" so a caller can leave an entry's own listener out.
//
// An object whose exportTo (or the mesh's defaultServiceExportTo) keeps it
// from every namespace with a sidecar pod puts its listener in no client
// (PushContext.initServiceRegistry: a sidecar only gets listeners for the
// services exported to its namespace), so it is left out.
func WildcardListenerPorts(inv *Inventory) map[uint32][]string {
	var clientNamespaces []string
	for i := range inv.Pods {
		if p := &inv.Pods[i]; p.HasSidecar && !slices.Contains(clientNamespaces, p.Namespace) {
			clientNamespaces = append(clientNamespaces, p.Namespace)
		}
	}
	seen := func(exportTo []string, ns string) bool {
		if !ExportRestricted(exportTo, inv.Mesh.DefaultServiceExportTo) {
			return true
		}
		return slices.ContainsFunc(clientNamespaces, func(c string) bool { return ServiceVisible(exportTo, inv.Mesh.DefaultServiceExportTo, ns, c) })
	}
	services := inv.Services
	if slices.ContainsFunc(services, func(s Service) bool { return !seen(s.ExportTo, s.Namespace) }) {
		services = slices.DeleteFunc(slices.Clone(services), func(s Service) bool { return !seen(s.ExportTo, s.Namespace) })
	}
	out := SniffingListenerPorts(services)
	for _, se := range inv.ServiceEntries {
		if len(se.Addresses) > 0 || !seen(se.ExportTo, se.Namespace) {
			continue
		}
		for _, p := range se.Ports {
			if p.Resolved.Sniffed() || p.Resolved.Protocol.HTTPFamily() {
				out[p.Number] = append(out[p.Number], ServiceEntryListenerName(se, p))
			}
		}
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// ServiceEntryListenerName names a ServiceEntry port in listener lists.
func ServiceEntryListenerName(se ServiceEntry, p ServiceEntryPort) string {
	return "ServiceEntry " + se.Namespace + "/" + se.Name + ":" + strconv.FormatUint(uint64(p.Number), 10) + " (" + string(p.Resolved.Protocol) + ")"
}
