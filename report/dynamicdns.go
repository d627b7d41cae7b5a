package report

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// Under the mesh config's outboundTrafficPolicy ALLOW_ANY_DYNAMIC_DNS
// (Istio 1.31, mesh level only: the Sidecar API's enum has no such mode)
// the virtualOutbound listener on 15001 gets an HTTP inspector and no
// listener_filters_timeout (listener_builder.go
// buildVirtualOutboundListener, `if util.IsAllowAnyDynamicDNSOutbound`),
// so Envoy's 15 s default applies with continue_on_listener_filters_timeout
// unset: the socket is closed after it. iptables redirects every captured
// outbound connection to 15001, and Envoy runs all of that listener's
// filters before it hands the connection to the listener of its original
// destination (envoy source/server/active_tcp_socket.cc:
// continueFilterChain runs every accept filter, then newConnection looks
// up the listener of the restored address; onTimeout unlinks the socket
// unless continue_on_listener_filters_timeout). So the inspector waits on
// every port, declared ones included: it changes the verdict of each
// server-first port's mesh-client path, not only of unknown destinations
// (SF0305). A Sidecar with its own outboundTrafficPolicy (ALLOW_ANY or
// REGISTRY_ONLY) replaces the mesh's for its workloads
// (sidecar.go initSidecarScopeInternalIndexes) and removes the inspector.
var ruleDynamicDNSEveryPort = rule(Rule{
	Code: "SF0306", Name: "DynamicDNSInspectorBeforePortListener", Verdict: AtRisk,
	Template: "outboundTrafficPolicy ALLOW_ANY_DYNAMIC_DNS: the sidecars of clients in %s first accept the connection on the 15001 listener, whose HTTP inspector waits for the client's first bytes (Envoy's default %s, then the connection is closed) before the port's own listener sees it, even on a declared port; %s suggest a server-first protocol",
	Args:     []string{"clients", "envoyTimeout", "hints"},
	Explain: "Istio 1.31's ALLOW_ANY_DYNAMIC_DNS adds an HTTP inspector to virtualOutbound (15001), the\n" +
		"listener iptables redirects every outbound connection to, and sets no listener-filter timeout.\n" +
		"Envoy runs the accepting listener's filters before it hands the connection to the listener of\n" +
		"its original destination, so a server-first client waits 15s (Envoy's default) and is then\n" +
		"closed, whatever the destination port declares. A Sidecar resource with an\n" +
		"outboundTrafficPolicy of its own (ALLOW_ANY) for the clients removes the inspector; so does\n" +
		"the mesh's ALLOW_ANY, or excluding the port from the clients' capture.",
	Source: "pilot/pkg/networking/core/listener_builder.go buildVirtualOutboundListener (HTTP inspector when IsAllowAnyDynamicDNSOutbound; no timeout set); pilot/pkg/networking/util IsAllowAnyDynamicDNSOutbound (the SidecarScope's policy); envoy source/server/active_tcp_socket.cc continueFilterChain, newConnection, onTimeout",
})

// dynamicDNSClients lists the client profiles (less skip, a Service's own
// backends) whose sidecars run the 15001 HTTP inspector on connections to
// ip:port: captured, and with the mesh's ALLOW_ANY_DYNAMIC_DNS as their
// policy.
func (j *judge) dynamicDNSClients(skip []*cluster.Pod, ip netip.Addr, port uint32) []clientProfile {
	if j.meshAbsent() || j.inv.Mesh.OutboundTrafficPolicy != cluster.OutboundAllowAnyDynamicDNS {
		return nil
	}
	var out []clientProfile
	for k, prof := range j.clients {
		prof, ok := prof.without(skip, j.profileOf, k)
		if !ok {
			continue
		}
		if captured, _ := cluster.OutboundCaptured(prof.pod, ip, port); !captured {
			continue
		}
		if sc, ok := cluster.SelectSidecar(j.inv.Sidecars, j.inv.Mesh.RootNamespace, prof.pod); ok && sc.OutboundTrafficPolicy != "" {
			continue
		}
		out = append(out, prof)
	}
	return out
}

// dynamicDNSServiceEntryPath adds SF0306 to a ServiceEntry port's paths,
// raises the finding to it and adds its fixes (after the entry's own,
// which speak for its declaration).
func (j *judge) dynamicDNSServiceEntryPath(f *Finding, se cluster.ServiceEntry) {
	if len(f.Hints) == 0 {
		return
	}
	profs := j.dynamicDNSClients(nil, firstIP(se.Addresses), uint32(f.Port))
	if len(profs) == 0 {
		return
	}
	clients := clientsWord(profs)
	jd := ruleDynamicDNSEveryPort.with(clients, cluster.EnvoyListenerFiltersTimeout, strings.Join(f.Hints, ", "))
	f.Paths = append(f.Paths, PathVerdict{Scenario: MeshToExternal, Verdict: jd.rule.Verdict, Code: jd.rule.Code, Reason: jd.reason, Clients: clients, clientNamespaces: profileNamespaces(profs)})
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })
	if jd.rule.Verdict.Severity() < f.Verdict.Severity() {
		f.set(jd)
		f.Scenario = MeshToExternal
	}
	f.Fixes = append(f.Fixes, withScenario(dynamicDNSFixes(j.inv, profileNamespaces(profs)), MeshToExternal)...)
}

// dynamicDNSFixes give the clients' namespaces a Sidecar whose own
// outboundTrafficPolicy replaces the mesh's ALLOW_ANY_DYNAMIC_DNS.
func dynamicDNSFixes(inv *cluster.Inventory, namespaces []string) []Fix {
	var out []Fix
	for _, ns := range namespaces {
		fix := Fix{Type: FixSidecarResource, Scenario: MeshToMesh,
			Title: fmt.Sprintf("give namespace %s a Sidecar with outboundTrafficPolicy ALLOW_ANY", ns),
			Why:   "a Sidecar's own outboundTrafficPolicy replaces the mesh's ALLOW_ANY_DYNAMIC_DNS for its workloads, and ALLOW_ANY puts no HTTP inspector on the 15001 listener",
			Notes: []string{"unknown HTTP destinations of those workloads then take PassthroughCluster instead of the dynamic forward proxy"}}
		existing := ""
		for _, sc := range inv.Sidecars {
			if sc.Namespace == ns && sc.Selector == nil {
				existing = sc.Name
				break
			}
		}
		if existing != "" {
			fix.Title = fmt.Sprintf("set outboundTrafficPolicy ALLOW_ANY in Sidecar %s/%s", ns, existing)
			fix.Command = fmt.Sprintf("kubectl patch sidecars.networking.istio.io -n %s %s --type merge -p %s", shellQuote(ns), shellQuote(existing), shellQuote(`{"spec":{"outboundTrafficPolicy":{"mode":"ALLOW_ANY"}}}`))
		} else {
			fix.Manifest = toYAML(map[string]any{
				"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
				"metadata": map[string]any{"name": "default", "namespace": ns},
				"spec":     map[string]any{"outboundTrafficPolicy": map[string]any{"mode": "ALLOW_ANY"}},
			})
			fix.Notes = append(fix.Notes, "a namespace-wide Sidecar without egress keeps Istio's default scope (every visible service)")
		}
		out = append(out, fix)
	}
	return out
}
