package report

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// SF11xx: service visibility (exportTo). A client namespace that a Service
// or ServiceEntry is not exported to has no listener and no cluster for it
// (PushContext.initServiceRegistry leaves it out of
// servicesExportedToNamespace, which both the default SidecarScope and
// every Sidecar egress listener select from), so its sidecar handles the
// traffic as an unknown destination: the virtualOutbound (15001)
// catch-all, which under ALLOW_ANY has no listener filter at all and a
// tcp_proxy to PassthroughCluster (ORIGINAL_DST, no TLS), and under
// REGISTRY_ONLY a tcp_proxy to BlackHoleCluster (listener_builder.go
// buildVirtualOutboundListener, buildOutboundCatchAllNetworkFilterChains,
// buildOutboundCatchAllNetworkFiltersOnly) — unless a 0.0.0.0:PORT
// listener the client does see takes the connection first.
var (
	ruleNotExportedPermissive = rule(Rule{
		Code: "SF1101", Name: "ServiceNotExportedServerFirst", Verdict: AtRisk,
		Template: "%s, so their sidecars pass the connection through as plaintext (PassthroughCluster): the server's PERMISSIVE sidecar waits for their first bytes, and %s suggest a server-first protocol",
		Args:     []string{"why", "hints"},
		Explain: "The Service's exportTo (the networking.istio.io/exportTo annotation, or the mesh config's\n" +
			"defaultServiceExportTo) leaves these clients' namespace out, so their proxies have no\n" +
			"listener or cluster for it: the connection rides the 15001 catch-all, which under ALLOW_ANY\n" +
			"does not sniff but sends plaintext to PassthroughCluster. The server's PERMISSIVE sidecar\n" +
			"then waits for the first bytes to tell TLS from plaintext, as for a client outside the mesh.\n" +
			"A Sidecar resource cannot import what is not exported to its namespace.",
		Source: "pilot/pkg/model/push_context.go initServiceRegistry, serviceExportTo; pilot/pkg/serviceregistry/kube/conversion.go ConvertService (annotation networking.istio.io/exportTo); pilot/pkg/networking/core/listener_builder.go buildOutboundCatchAllNetworkFiltersOnly (PassthroughCluster)",
	})
	ruleNotExportedStrict = rule(Rule{
		Code: "SF1102", Name: "ServiceNotExportedStrict", Verdict: MTLSRejected,
		Template: "%s, so their sidecars pass the connection through as plaintext (PassthroughCluster): the server's STRICT sidecar rejects it",
		Args:     []string{"why"},
		Explain:  "As SF1101, into a STRICT port: the passthrough sends plaintext, which STRICT refuses.",
		Source:   "pilot/pkg/model/push_context.go initServiceRegistry; pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts (STRICT builds only the TLS chain)",
	})
	ruleNotExportedUncaptured = rule(Rule{
		Code: "SF1106", Name: "ServiceNotExportedUncapturedPort", Verdict: OK,
		Template: "%s, so their sidecars pass the connection through as plaintext (PassthroughCluster), and %s does not capture port %d (%s): nothing sniffs it",
		Args:     []string{"why", "server", "port", "capture"},
		Explain:  "As SF1101, but the server's interception annotations keep the port away from its sidecar: the passthrough's plaintext reaches the application directly.",
		Source:   "pilot/pkg/model/push_context.go initServiceRegistry; tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude",
	})
	ruleNotExportedBlackHole = rule(Rule{
		Code: "SF1103", Name: "ServiceNotExportedBlackHole", Verdict: Unreachable,
		Template: "%s, and their outboundTrafficPolicy is REGISTRY_ONLY: the connection goes to BlackHoleCluster and is closed at once",
		Args:     []string{"why"},
		Explain: "As SF1101, under REGISTRY_ONLY: a destination the client's proxy does not know is refused\n" +
			"(BlackHoleCluster), not hung.",
		Source: "pilot/pkg/model/push_context.go initServiceRegistry; pilot/pkg/networking/core/listener_builder.go buildOutboundCatchAllNetworkFiltersOnly (BlackHoleCluster)",
	})
	ruleNotExportedWildcard = rule(Rule{
		Code: "SF1104", Name: "ServiceNotExportedRidesWildcardListener", Verdict: AtRisk,
		Template: "%s, but %s put a sniffing 0.0.0.0:%d listener in their sidecars, which takes the connection and waits for the client's first bytes, and %s suggest a server-first protocol",
		Args:     []string{"why", "listeners", "port", "hints"},
		Explain: "The clients cannot see the Service, but they do see an HTTP Service (or an address-less\n" +
			"sniffed ServiceEntry) on the same port number, whose 0.0.0.0:PORT listener catches traffic for\n" +
			"addresses it does not know, with an HTTP inspector in front.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners (wildcard bind for HTTP ports), buildListenerFromEntry",
	})
	ruleSENotExportedBlackHole = rule(Rule{
		Code: "SF1105", Name: "ServiceEntryNotExportedBlackHole", Verdict: Unreachable,
		Template: "%s: clients in %s do not see it, and under outboundTrafficPolicy REGISTRY_ONLY their sidecars send it to BlackHoleCluster, which closes the connection at once",
		Args:     []string{"exportTo", "clients"},
		Explain: "A ServiceEntry's exportTo leaves these clients' namespace out: to their proxies the host is\n" +
			"unknown, and REGISTRY_ONLY refuses unknown destinations (BlackHoleCluster). The finding's\n" +
			"verdict still speaks for the namespaces that see the entry.",
		Source: "pilot/pkg/serviceregistry/serviceentry/conversion.go convertServices (exportTo); pilot/pkg/model/push_context.go initServiceRegistry; listener_builder.go buildOutboundCatchAllNetworkFiltersOnly",
	})
)

// FixExportTo adds the clients' namespace to a Service's exportTo.
const FixExportTo = "export-to"

// visibilityMatters: some Service or ServiceEntry is hidden from some
// namespace, so a client's namespace decides what its proxy sees.
func visibilityMatters(inv *cluster.Inventory) bool {
	restricted := func(exportTo []string) bool {
		return cluster.ExportRestricted(exportTo, inv.Mesh.DefaultServiceExportTo)
	}
	return slices.ContainsFunc(inv.Services, func(s cluster.Service) bool { return restricted(s.ExportTo) }) ||
		slices.ContainsFunc(inv.ServiceEntries, func(se cluster.ServiceEntry) bool { return restricted(se.ExportTo) })
}

// notExportedWhy says why a Service is not in the clients' registry; the
// %%s left in it takes the clients.
func notExportedWhy(svc cluster.Service, mesh cluster.MeshConfig) string {
	return fmt.Sprintf("%s is not exported to the namespace of clients in %%s (%s)", cluster.ServiceHostname(svc.Namespace, svc.Name),
		cluster.DescribeExportTo(svc.ExportTo, mesh.DefaultServiceExportTo, "exportTo"))
}

// wildcardListenersSeenBy lists the 0.0.0.0:port listeners a sidecar of
// clientNamespace has (cluster.WildcardListenerPorts, less the objects not
// exported to that namespace).
func (j *judge) wildcardListenersSeenBy(clientNamespace string, port uint32) []string {
	var out []string
	def := j.inv.Mesh.DefaultServiceExportTo
	for _, s := range j.inv.Services {
		if s.Type == "ExternalName" || !cluster.ServiceVisible(s.ExportTo, def, s.Namespace, clientNamespace) {
			continue
		}
		for _, p := range s.Ports {
			if uint32(p.Port) == port && p.Protocol != "UDP" && p.Resolved.Protocol.HTTPFamily() {
				out = append(out, s.Namespace+"/"+s.Name+":"+p.Name+" ("+string(p.Resolved.Protocol)+")")
			}
		}
	}
	for _, se := range j.inv.ServiceEntries {
		if len(se.Addresses) > 0 || !cluster.ServiceVisible(se.ExportTo, def, se.Namespace, clientNamespace) {
			continue
		}
		for _, p := range se.Ports {
			if p.Number == port && (p.Resolved.Sniffed() || p.Resolved.Protocol.HTTPFamily()) {
				out = append(out, cluster.ServiceEntryListenerName(se, p))
			}
		}
	}
	slices.Sort(out)
	return out
}

// serviceEntryExportPaths adds, for a ServiceEntry port whose exportTo
// leaves out namespaces with mesh clients, the path of those clients
// where it differs from the entry's own: under REGISTRY_ONLY they are
// refused. (Under ALLOW_ANY they pass through unsniffed unless a
// 0.0.0.0 listener takes the port, which the finding's own collision
// reasoning covers.) Like the bypass paths, it does not change the
// finding's verdict: hiding an entry is usually meant.
func (j *judge) serviceEntryExportPaths(f *Finding, se cluster.ServiceEntry) {
	def := j.inv.Mesh.DefaultServiceExportTo
	if j.meshAbsent() || !cluster.ExportRestricted(se.ExportTo, def) {
		return
	}
	var hidden []clientProfile
	for _, prof := range j.clients {
		if cluster.ServiceVisible(se.ExportTo, def, se.Namespace, prof.pod.Namespace) {
			continue
		}
		l := cluster.OutboundListenerFor(j.inv, prof.pod, cluster.OutboundDestination{Namespace: se.Namespace, Port: uint32(f.Port)}, false)
		if l.OutboundTrafficPolicy == cluster.OutboundRegistryOnly {
			hidden = append(hidden, prof)
		}
	}
	if len(hidden) == 0 {
		return
	}
	clients := clientsWord(hidden)
	jd := ruleSENotExportedBlackHole.with(cluster.DescribeExportTo(se.ExportTo, def, "exportTo"), clients)
	f.Paths = append(f.Paths, PathVerdict{Scenario: MeshToExternal, Verdict: jd.rule.Verdict, Code: jd.rule.Code, Reason: jd.reason, Clients: clients})
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })

}

// exportToFix adds the clients' namespaces to the Service's exportTo.
func exportToFix(svc cluster.Service, mesh cluster.MeshConfig, clientNamespaces []string) Fix {
	current := svc.ExportTo
	if len(current) == 0 {
		current = mesh.DefaultServiceExportTo.Values()
	}
	next := slices.Clone(current)
	next = slices.DeleteFunc(next, func(e string) bool { return e == "~" })
	for _, ns := range clientNamespaces {
		if !slices.Contains(next, ns) {
			next = append(next, ns)
		}
	}
	value := strings.Join(next, ",")
	return Fix{Type: FixExportTo, Scenario: MeshToMesh,
		Title:   fmt.Sprintf("export %s/%s to the clients' namespaces (%s: %q)", svc.Namespace, svc.Name, cluster.AnnotationExportTo, value),
		Why:     "with the Service visible, the clients' proxies get a listener and a cluster for it and send mTLS (auto mTLS) instead of plaintext through the passthrough cluster",
		Command: fmt.Sprintf("kubectl annotate service -n %s %s %s --overwrite", shellQuote(svc.Namespace), shellQuote(svc.Name), shellQuote(cluster.AnnotationExportTo+"="+value)),
		Notes:   []string{"exportTo also decides which DestinationRules and VirtualServices of other namespaces apply; check them for the added namespaces"}}
}

// profileNamespaces are the namespaces of the profiles' pods.
func profileNamespaces(ps []clientProfile) []string {
	set := map[string]bool{}
	for _, p := range ps {
		p.namespaces(func(ns string, _ int) { set[ns] = true })
	}
	return slices.Sorted(maps.Keys(set))
}
