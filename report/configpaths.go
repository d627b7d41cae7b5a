package report

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// The client paths that DestinationRules, interception annotations and
// Sidecar resources decide (SF06xx-SF08xx), and pod ports no Service
// declares (SF09xx).

// SF06xx: DestinationRules (client-side TLS against the server's mTLS mode).
var (
	rulePlaintextIntoPermissive = rule(Rule{
		Code: "SF0601", Name: "PlaintextIntoPermissiveServerFirst", Verdict: AtRisk,
		Template: "%s: clients in %s send plaintext to a PERMISSIVE port: the server's sidecar waits for their first bytes to tell TLS from plaintext, and %s suggest a server-first protocol",
		Args:     []string{"why", "clients", "hints"},
		Explain: "A DestinationRule (tls.mode DISABLE, top level or portLevelSettings) makes these mesh\n" +
			"clients send plaintext. Under PERMISSIVE the server's sidecar runs a TLS inspector on the\n" +
			"port, which waits for the client's first bytes, even when the port is declared TCP: a\n" +
			"server-first server and its client then wait on each other. Istio's own integration suite\n" +
			"asserts this failure (DR DISABLE + PA PERMISSIVE on a server-first TCP port). Fix: drop the\n" +
			"DestinationRule's DISABLE (auto mTLS then sends mTLS) or set the port's PeerAuthentication\n" +
			"to DISABLE as well.",
		Source: "pilot/pkg/networking/core/listener_inbound.go buildInboundListener (tls_inspector where the mTLS mode is PERMISSIVE); cluster_builder.go buildUpstreamTLSSettings (DISABLE is used as written); tests/integration/pilot/common/routing.go serverFirstTestCases",
	})
	rulePlaintextIntoStrict = rule(Rule{
		Code: "SF0602", Name: "PlaintextIntoStrict", Verdict: MTLSRejected,
		Template: "%s: clients in %s send plaintext to a STRICT port: the server's sidecar accepts only mutual TLS",
		Args:     []string{"why", "clients"},
		Explain: "A DestinationRule with tls.mode DISABLE makes these clients send plaintext, and the port's\n" +
			"effective PeerAuthentication is STRICT: the server's sidecar has no plaintext filter chain,\n" +
			"so every connection fails, whatever the protocol. Drop the DISABLE (or set ISTIO_MUTUAL).",
		Source: "pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts (STRICT builds only the TLS chain); tests/integration/pilot/common/routing.go serverFirstTestCases (DR DISABLE + STRICT)",
	})
	ruleMutualIntoDisabled = rule(Rule{
		Code: "SF0603", Name: "MutualTLSIntoDisabledPort", Verdict: MTLSRejected,
		Template: "%s: clients in %s send mutual TLS to a port whose PeerAuthentication is DISABLE: the server's sidecar passes the TLS handshake on to an application that does not speak it",
		Args:     []string{"why", "clients"},
		Explain: "A DestinationRule sets tls.mode ISTIO_MUTUAL, but the server's port is DISABLE: its sidecar\n" +
			"has only a plaintext chain, so the client's TLS handshake reaches the application, and the\n" +
			"connection fails. Auto mTLS would have sent plaintext here; the explicit mode overrides it.",
		Source: "pilot/pkg/networking/core/cluster_builder.go buildUpstreamTLSSettings (an explicit ISTIO_MUTUAL is always used); tests/integration/pilot/common/routing.go serverFirstTestCases (DR ISTIO_MUTUAL + PA DISABLE)",
	})
	ruleMutualIntoNoSidecar = rule(Rule{
		Code: "SF0604", Name: "MutualTLSIntoServerWithoutSidecar", Verdict: MTLSRejected,
		Template: "%s: clients in %s send mutual TLS to a server without a sidecar: nothing terminates it",
		Args:     []string{"why", "clients"},
		Explain: "An explicit tls.mode ISTIO_MUTUAL applies to every endpoint, sidecar or not (auto mTLS\n" +
			"would have sent plaintext to a server without one): the server receives a TLS handshake it\n" +
			"cannot answer.",
		Source: "pilot/pkg/networking/core/cluster_tls.go applyUpstreamTLSSettings (a user-supplied ISTIO_MUTUAL gets no per-endpoint tlsMode match)",
	})
	ruleTLSOriginationServerFirst = rule(Rule{
		Code: "SF0605", Name: "TLSOriginationToServerFirst", Verdict: AtRisk,
		Template: "%s: clients in %s originate TLS to the server, and %s suggest a server-first plaintext protocol",
		Args:     []string{"why", "clients", "hints"},
		Explain: "tls.mode SIMPLE or MUTUAL makes the client's sidecar start a TLS handshake with the\n" +
			"server application; a plaintext server-first server answers with its banner instead.",
		Source: "pilot/pkg/networking/core/cluster_tls.go buildUpstreamClusterTLSContext",
	})
	rulePlaintextIntoPermissiveNoHints = rule(Rule{
		Code: "SF0606", Name: "PlaintextIntoPermissiveClientFirst", Verdict: OK,
		Template: "%s: clients in %s send plaintext to a PERMISSIVE port; the server's sidecar waits for their first bytes, harmless unless the server speaks first",
		Args:     []string{"why", "clients"},
		Explain: "As SF0601, but nothing hints at a server-first protocol: a client-first client sends its\n" +
			"bytes, the TLS inspector sees plaintext and passes them on.",
		Source: "pilot/pkg/networking/core/listener_inbound.go buildInboundListener",
	})
	rulePlaintextIntoDisabled = rule(Rule{
		Code: "SF0607", Name: "PlaintextIntoDisabledPort", Verdict: OK,
		Template: "%s: clients in %s send plaintext to a port whose PeerAuthentication is DISABLE: no TLS inspector waits on the server side",
		Args:     []string{"why", "clients"},
		Explain: "DestinationRule DISABLE and PeerAuthentication DISABLE agree: the one combination with\n" +
			"plaintext that works for a server-first port declared TCP.",
		Source: "tests/integration/pilot/common/routing.go serverFirstTestCases (DR DISABLE + PA DISABLE works)",
	})
)

// SF07xx: interception annotations.
var (
	ruleMTLSIntoUncaptured = rule(Rule{
		Code: "SF0701", Name: "MutualTLSIntoUncapturedPort", Verdict: MTLSRejected,
		Template: "%s does not capture port %d (%s), but clients in %s send it mutual TLS (%s): the application receives a TLS handshake",
		Args:     []string{"server", "port", "capture", "clients", "why"},
		Explain: "The server's interception annotations keep the port away from its sidecar, so nothing on\n" +
			"the server side sniffs or terminates mTLS. Auto mTLS does not know about the exclusion and\n" +
			"still sends mTLS to a pod with a sidecar: Istio's FAQ says a DestinationRule with tls.mode\n" +
			"DISABLE for that port is then needed.",
		Source: "tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude; pilot/pkg/xds/endpoints/mtls_checker.go (auto mTLS keys on the tlsMode label only); istio.io FAQ automtls-exlucde-port",
	})
	rulePlaintextIntoUncaptured = rule(Rule{
		Code: "SF0702", Name: "PlaintextIntoUncapturedPort", Verdict: OK,
		Template: "%s does not capture port %d (%s) and clients in %s send plaintext (%s): nothing on the server side sniffs it",
		Args:     []string{"server", "port", "capture", "clients", "why"},
		Explain: "The port bypasses the server's sidecar and the clients send plaintext: the server's side\n" +
			"neither sniffs nor checks mTLS (no mTLS protects the port either).",
		Source: "tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude",
	})
	ruleBypassIntoPermissive = rule(Rule{
		Code: "SF0703", Name: "ClientBypassIntoPermissiveServerFirst", Verdict: AtRisk,
		Template: "clients in %s bypass their sidecar for this destination (%s), so they arrive as plaintext clients from outside the mesh: the server's PERMISSIVE sidecar waits for their first bytes, and %s suggest a server-first protocol",
		Args:     []string{"clients", "capture", "hints"},
		Explain: "excludeOutboundPorts (or excludeOutboundIPRanges, or includeOutboundIPRanges/Ports that\n" +
			"miss the destination) keep these clients' connections away from their own sidecar: nothing\n" +
			"sniffs on their side, but they send plaintext, and the server's sidecar under PERMISSIVE\n" +
			"waits for the first bytes to tell TLS from plaintext. The workaround users reach for first\n" +
			"only works when the server side does not wait either (port DISABLE or not captured).",
		Source: "tools/istio-iptables/pkg/capture/run.go (ISTIO_OUTPUT: excludeOutboundPorts first, then IP ranges); pilot/pkg/networking/core/listener_inbound.go (tls_inspector under PERMISSIVE)",
	})
	ruleBypassIntoStrict = rule(Rule{
		Code: "SF0704", Name: "ClientBypassIntoStrict", Verdict: MTLSRejected,
		Template: "clients in %s bypass their sidecar for this destination (%s): the server's STRICT sidecar rejects their plaintext",
		Args:     []string{"clients", "capture"},
		Explain:  "Clients that bypass their sidecar send plaintext; a STRICT port accepts only mutual TLS.",
		Source:   "tools/istio-iptables/pkg/capture/run.go; pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts",
	})
	ruleBypassNotSniffed = rule(Rule{
		Code: "SF0705", Name: "ClientBypassServerNotSniffing", Verdict: OK,
		Template: "clients in %s bypass their sidecar for this destination (%s) and the server side does not wait (%s): nothing sniffs",
		Args:     []string{"clients", "capture", "server"},
		Explain:  "Neither side's sidecar inspects these connections: the banner reaches the client.",
		Source:   "tools/istio-iptables/pkg/capture/run.go",
	})
)

var ruleBypassExternal = rule(Rule{
	Code: "SF0706", Name: "ClientBypassExternal", Verdict: OK,
	Template: "clients in %s bypass their sidecar for this destination (%s): nothing sniffs their connections",
	Args:     []string{"clients", "capture"},
	Explain: "These clients' interception annotations keep connections to the destination away from\n" +
		"their own sidecar, so they reach the external server directly; the finding's verdict still\n" +
		"speaks for the other mesh clients.",
	Source: "tools/istio-iptables/pkg/capture/run.go (ISTIO_OUTPUT: excludeOutboundPorts first, then IP ranges)",
})

// SF08xx: Sidecar resources.
var (
	ruleNoListenerPermissive = rule(Rule{
		Code: "SF0801", Name: "SidecarScopeHidesServiceServerFirst", Verdict: AtRisk,
		Template: "%s, so their connections take the passthrough cluster as plaintext: the server's PERMISSIVE sidecar waits for their first bytes, and %s suggest a server-first protocol",
		Args:     []string{"why", "hints"},
		Explain: "A Sidecar resource's egress hosts leave the Service out of these clients' scope: their proxy\n" +
			"has no listener or cluster for it, so under ALLOW_ANY the connection rides the 15001\n" +
			"catch-all to PassthroughCluster, in plaintext. The server's PERMISSIVE sidecar then waits\n" +
			"for the first bytes, as for a client outside the mesh.",
		Source: "pilot/pkg/model/sidecar.go convertIstioListenerToWrapper/selectServices; pilot/pkg/networking/core/listener_builder.go buildVirtualOutboundListener (PassthroughCluster)",
	})
	ruleNoListenerStrict = rule(Rule{
		Code: "SF0802", Name: "SidecarScopeHidesServiceStrict", Verdict: MTLSRejected,
		Template: "%s, so their connections take the passthrough cluster as plaintext: the server's STRICT sidecar rejects them",
		Args:     []string{"why"},
		Explain:  "As SF0801, into a STRICT port: the passthrough sends plaintext, which STRICT refuses.",
		Source:   "pilot/pkg/model/sidecar.go selectServices; listener_inbound.go inboundChainForOpts",
	})
	ruleNoListenerBlackHole = rule(Rule{
		Code: "SF0803", Name: "SidecarScopeBlackHole", Verdict: Unreachable,
		Template: "%s, and their outboundTrafficPolicy is REGISTRY_ONLY: the connection goes to BlackHoleCluster and is closed at once",
		Args:     []string{"why"},
		Explain: "Under REGISTRY_ONLY, traffic to a destination the client's proxy does not know is closed\n" +
			"(BlackHoleCluster): not a hang, a refusal.",
		Source: "pilot/pkg/networking/core/listener_builder.go buildOutboundCatchAllNetworkFilterChains (BlackHoleCluster)",
	})
	ruleNoListenerUncaptured = rule(Rule{
		Code: "SF0806", Name: "SidecarScopeHidesServiceUncapturedPort", Verdict: OK,
		Template: "%s, so their connections take the passthrough cluster as plaintext, and %s does not capture port %d (%s): nothing sniffs them",
		Args:     []string{"why", "server", "port", "capture"},
		Explain: "As SF0801, but the server's interception annotations keep the port away from its sidecar:\n" +
			"the plaintext from the passthrough cluster reaches the application directly.",
		Source: "pilot/pkg/networking/core/listener_builder.go buildVirtualOutboundListener (PassthroughCluster); tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude",
	})
	ruleEgressPortTCP = rule(Rule{
		Code: "SF0807", Name: "SidecarEgressPortDeclaresTCP", Verdict: OK,
		Template: "%s, so clients in %s do not sniff the port the Service leaves to detection; their sidecar's mutual TLS reaches %s, whose inbound does not wait for a TLS client",
		Args:     []string{"why", "clients", "server"},
		Explain: "A Sidecar egress listener with a TCP port sets the port's outbound protocol for the services\n" +
			"it imports: those clients' proxies relay at once instead of sniffing. Their connection\n" +
			"arrives as mutual TLS, which the server's TLS inspector recognises from the handshake, so\n" +
			"the banner comes back. Other clients of the port still sniff it.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners (egress port protocol via protocol.Parse); pilot/pkg/networking/core/listener_inbound.go (the TLS chain for mTLS clients)",
	})
	ruleEgressPortSniffs = rule(Rule{
		Code: "SF0804", Name: "SidecarEgressPortSniffs", Verdict: AtRisk,
		Template: "%s, which makes clients in %s sniff a port the Service declares %s, and %s suggest a server-first protocol",
		Args:     []string{"why", "clients", "protocol", "hints"},
		Explain: "A Sidecar egress listener with a port sets that port's outbound protocol for the services\n" +
			"it imports, replacing the Service's: without a protocol (or with an HTTP one) the client's\n" +
			"proxy sniffs it again.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners (egress port protocol via protocol.Parse)",
	})
	ruleIngressPassthrough = rule(Rule{
		Code: "SF0805", Name: "SidecarIngressPassthroughSniffs", Verdict: AtRisk,
		Template: "%s although the Service declares %s, and %s suggest a server-first protocol",
		Args:     []string{"why", "protocol", "hints"},
		Explain: "A Sidecar with ingress listeners replaces the inbound chains Istio builds from Services:\n" +
			"ports it does not list go to the inbound passthrough chain, which sniffs.",
		Source: "pilot/pkg/networking/core/listener_inbound.go buildInboundChainConfigs (PILOT_ALLOW_SIDECAR_SERVICE_INBOUND_LISTENER_MERGE off by default)",
	})
)

// SF09xx: pod ports no Service declares.
var (
	ruleUncoveredPodPort = rule(Rule{
		Code: "SF0901", Name: "UndeclaredPodPortSniffed", Verdict: AtRisk,
		Template: "no Service declares container port %d, so the sidecar's inbound passthrough chain sniffs it (%s), and %s suggest a server-first protocol",
		Args:     []string{"port", "inbound", "hints"},
		Explain: "Clients that dial pod IPs (StatefulSet peers, clustering protocols, health checkers)\n" +
			"reach ports no Service names. Istio sends those to its inbound passthrough chains, which\n" +
			"are built as auto-detected: sniffed, with a TLS inspector, whatever the PeerAuthentication\n" +
			"says, so a server-first protocol hangs there for every client.",
		Source: "pilot/pkg/networking/core/listener_inbound.go buildInboundPassthroughChains (passthrough built as protocol auto)",
	})
	ruleUncoveredPodPortNotCaptured = rule(Rule{
		Code: "SF0902", Name: "UndeclaredPodPortNotCaptured", Verdict: OK,
		Template: "no Service declares container port %d, but the sidecar does not capture it (%s): nothing sniffs it",
		Args:     []string{"port", "capture"},
		Explain:  "The pod's interception annotations keep the port away from its sidecar.",
		Source:   "tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude",
	})
	ruleUncoveredPodPortDeclared = rule(Rule{
		Code: "SF0903", Name: "UndeclaredPodPortSidecarIngress", Verdict: OK,
		Template: "no Service declares container port %d, but %s",
		Args:     []string{"port", "inbound"},
		Explain:  "A Sidecar ingress listener declares the port's inbound protocol.",
		Source:   "pilot/pkg/networking/core/listener_inbound.go buildInboundChainConfigs",
	})
)

// clientProfile is one kind of mesh client: pods that see a destination
// the same way (namespace where it matters, Sidecar, workload-selected
// DestinationRules, interception), judged once through a representative.
// A cluster has many pods and few profiles.
type clientProfile struct {
	pod     *cluster.Pod
	count   int
	members []*cluster.Pod
	// byNS counts the members by namespace, less the pods in less (a
	// profile without some pods shares the whole profile's map): read
	// it through namespaces.
	byNS map[string]int
	less map[string]int
}

// namespaces calls yield with each namespace that has members and their
// number, in no order.
func (c clientProfile) namespaces(yield func(ns string, n int)) {
	for ns, n := range c.byNS {
		if n -= c.less[ns]; n > 0 {
			yield(ns, n)
		}
	}
}

// without is the profile less the given pods (a Service's own backends
// are not its clients); ok is false when nothing is left. It costs the
// size of skip, not of the profile: every Service port asks, and copying
// the namespace counts of a profile that spans a big cluster each time
// was most of report.Build's allocations.
func (c clientProfile) without(skip []*cluster.Pod, profileOf map[*cluster.Pod]int, self int) (clientProfile, bool) {
	var mine map[*cluster.Pod]bool
	for _, p := range skip {
		if k, ok := profileOf[p]; ok && k == self {
			if mine == nil {
				mine = map[*cluster.Pod]bool{}
			}
			mine[p] = true
		}
	}
	if len(mine) == 0 {
		return c, true
	}
	out := clientProfile{count: c.count - len(mine), members: c.members, byNS: c.byNS, less: maps.Clone(c.less)}
	if out.less == nil {
		out.less = map[string]int{}
	}
	for p := range mine {
		out.less[p.Namespace]++
	}
	for _, m := range c.members {
		if !mine[m] {
			out.pod = m
			break
		}
	}
	return out, out.count > 0
}

// clientProfiles groups the inventory's sidecar pods; profileOf maps each
// to its profile.
func clientProfiles(inv *cluster.Inventory) ([]clientProfile, map[*cluster.Pod]int) {
	// A client's namespace only changes which DestinationRule applies
	// when the namespace has rules of its own, is the root, or a rule
	// names it in exportTo; elsewhere every namespace sees the same.
	nsMatters := map[string]bool{inv.Mesh.RootNamespace: true}
	everyNS := visibilityMatters(inv) // exportTo hides something from someone
	for _, d := range inv.DestinationRules {
		nsMatters[d.Namespace] = true
		for _, e := range d.ExportTo {
			nsMatters[e] = true
		}
	}
	index := map[string]int{}
	profileOf := map[*cluster.Pod]int{}
	var out []clientProfile
	for i := range inv.Pods {
		p := &inv.Pods[i]
		if !p.HasSidecar {
			continue
		}
		key := profileKey(inv, p, everyNS || nsMatters[p.Namespace])
		k, ok := index[key]
		if !ok {
			k = len(out)
			index[key] = k
			out = append(out, clientProfile{pod: p, byNS: map[string]int{}})
		}
		out[k].count++
		out[k].members = append(out[k].members, p)
		out[k].byNS[p.Namespace]++
		profileOf[p] = k
	}
	return out, profileOf
}

func profileKey(inv *cluster.Inventory, p *cluster.Pod, nsMatters bool) string {
	var b strings.Builder
	if nsMatters {
		b.WriteString(p.Namespace)
	}
	if sc, ok := cluster.SelectSidecar(inv.Sidecars, inv.Mesh.RootNamespace, p); ok {
		b.WriteString("|sc=" + sc.Namespace + "/" + sc.Name)
	}
	for _, d := range inv.DestinationRules {
		if d.Selector != nil && d.Namespace == p.Namespace && selectsAll(d.Selector, p.Labels) {
			b.WriteString("|dr=" + d.Name)
		}
	}
	if !reflect.ValueOf(p.Interception).IsZero() {
		fmt.Fprintf(&b, "|ic=%v", p.Interception)
	}
	return b.String()
}

// clientsWord names the pods of the profiles that share a judgement.
func clientsWord(ps []clientProfile) string {
	byNS := map[string]int{}
	for _, p := range ps {
		p.namespaces(func(ns string, n int) { byNS[ns] += n })
	}
	var parts []string
	for _, ns := range slices.Sorted(maps.Keys(byNS)) {
		n := byNS[ns]
		word := "pods"
		if n == 1 {
			word = "pod"
		}
		parts = append(parts, fmt.Sprintf("%s (%d %s)", ns, n, word))
	}
	return strings.Join(parts, ", ")
}

// configPath is one judged client path of a Service port.
type configPath struct {
	scenario Scenario
	key      string
	// destinationRule is "ns/name" of the DestinationRule that decides the
	// path, or "".
	destinationRule string
	profiles        []clientProfile
	// build fills the template once the clients are known.
	build func(clients string) judgement
}

// configPaths judges a Service port's mesh clients by what decides their
// path beyond the port's protocol: the DestinationRule's TLS against the
// server's mTLS mode, interception on either side, and Sidecar scoping.
// It only adds paths where that config changes the default outcome, and
// raises the finding's verdict to the worst path's, never to DEADLOCK.
func (j *judge) configPaths(f *Finding, svc cluster.Service, p cluster.ServicePort, backends []*cluster.Pod, meshPod *cluster.Pod, targetPort int32, targetKnown bool) {
	if p.Protocol != "TCP" || j.meshAbsent() || svc.Type == "ExternalName" {
		return
	}
	hints := strings.Join(f.Hints, ", ")
	var server struct {
		captured   bool
		captureWhy string
		inbound    cluster.InboundProtocol
	}
	if meshPod != nil && targetKnown {
		server.captured, server.captureWhy = cluster.InboundCaptured(meshPod, uint32(targetPort))
		server.inbound = cluster.InboundProtocolFor(j.inv, meshPod, uint32(targetPort), []cluster.ResolvedProtocol{p.Resolved})
	}
	mode := cluster.MTLSMode(f.MTLSMode)
	serverName := ""
	if meshPod != nil {
		serverName = "the server pod " + meshPod.Namespace + "/" + meshPod.Name
	}
	clusterIP, _ := netip.ParseAddr(svc.ClusterIP)
	dest := cluster.TLSDestination{
		Host: cluster.ServiceHostname(svc.Namespace, svc.Name), Namespace: svc.Namespace, Port: uint32(p.Port),
		Headless: svc.ClusterIP == "None", Endpoints: backends, TargetPort: uint32(targetPort),
	}
	var ports []uint32
	for _, sp := range svc.Ports {
		ports = append(ports, uint32(sp.Port))
	}
	out := cluster.OutboundDestination{Host: dest.Host, Namespace: svc.Namespace, Port: uint32(p.Port), Protocol: p.Resolved, Ports: ports}

	var paths []*configPath
	// add groups clients by key; dr names the DestinationRule that decides
	// the path ("" for none), for the fix that changes it.
	add := func(key, dr string, sc Scenario, prof clientProfile, build func(clients string) judgement) {
		for _, cp := range paths {
			if cp.key == key {
				cp.profiles = append(cp.profiles, prof)
				return
			}
		}
		paths = append(paths, &configPath{key: key, destinationRule: dr, scenario: sc, profiles: []clientProfile{prof}, build: build})
	}
	// plaintext judges a client path that reaches the server in plaintext.
	plaintext := func(prof clientProfile, key, dr string, permissive, strict, fine func(clients string) judgement) {
		switch {
		case meshPod == nil || !targetKnown:
			return // no sidecar on the server side: plaintext is what it wants
		case !server.captured:
			if fine != nil {
				add(key+"|uncaptured", dr, MeshToMesh, prof, fine)
			}
		case mode == cluster.MTLSStrict:
			add(key+"|strict", dr, MeshToMesh, prof, strict)
		case mode == cluster.MTLSPermissive && hints != "":
			add(key+"|permissive", dr, MeshToMesh, prof, permissive)
		}
	}
	for k, prof := range j.clients {
		prof, ok := prof.without(backends, j.profileOf, k)
		if !ok {
			continue
		}
		c := prof.pod
		if captured, why := cluster.OutboundCaptured(c, clusterIP, uint32(p.Port)); !captured {
			plaintext(prof, "bypass|"+why, "",
				func(cl string) judgement { return ruleBypassIntoPermissive.with(cl, why, hints) },
				func(cl string) judgement { return ruleBypassIntoStrict.with(cl, why) },
				func(cl string) judgement {
					return ruleBypassNotSniffed.with(cl, why, serverName+" does not capture the port")
				})
			continue
		}
		exported := cluster.ServiceVisible(svc.ExportTo, j.inv.Mesh.DefaultServiceExportTo, svc.Namespace, c.Namespace)
		l := cluster.OutboundListenerFor(j.inv, c, out, exported)
		if l.OutboundTrafficPolicy == cluster.OutboundAllowAnyDynamicDNS && hints != "" {
			// The 15001 listener's HTTP inspector runs before any
			// per-port listener (dynamicdns.go); the paths below still
			// say what happens after it.
			sc := MeshToMesh
			if meshPod == nil {
				sc = MeshToExternal
			}
			add("dynamic-dns", "", sc, prof, func(cl string) judgement {
				return ruleDynamicDNSEveryPort.with(cl, cluster.EnvoyListenerFiltersTimeout, hints)
			})
		}
		if !l.Exists && !exported {
			why := notExportedWhy(svc, j.inv.Mesh)
			if ls := j.wildcardListenersSeenBy(c.Namespace, uint32(p.Port)); len(ls) > 0 {
				if hints != "" {
					listeners := strings.Join(ls, ", ")
					add("notexported-wildcard|"+listeners, "", MeshToMesh, prof, func(cl string) judgement {
						return ruleNotExportedWildcard.with(fmt.Sprintf(why, cl), listeners, p.Port, hints)
					})
				}
				continue
			}
			if l.OutboundTrafficPolicy == cluster.OutboundRegistryOnly {
				add("notexported-blackhole", "", MeshToMesh, prof, func(cl string) judgement { return ruleNotExportedBlackHole.with(fmt.Sprintf(why, cl)) })
				continue
			}
			plaintext(prof, "notexported", "",
				func(cl string) judgement { return ruleNotExportedPermissive.with(fmt.Sprintf(why, cl), hints) },
				func(cl string) judgement { return ruleNotExportedStrict.with(fmt.Sprintf(why, cl)) },
				func(cl string) judgement {
					return ruleNotExportedUncaptured.with(fmt.Sprintf(why, cl), serverName, targetPort, server.captureWhy)
				})
			continue
		}
		if !l.Exists {
			why := fmt.Sprintf("Sidecar %s gives clients in %%s no listener for %s", l.Sidecar, dest.Host)
			if l.OutboundTrafficPolicy == "REGISTRY_ONLY" {
				add("blackhole|"+l.Sidecar, "", MeshToMesh, prof, func(cl string) judgement { return ruleNoListenerBlackHole.with(fmt.Sprintf(why, cl)) })
				continue
			}
			plaintext(prof, "nolistener|"+l.Sidecar, "",
				func(cl string) judgement { return ruleNoListenerPermissive.with(fmt.Sprintf(why, cl), hints) },
				func(cl string) judgement { return ruleNoListenerStrict.with(fmt.Sprintf(why, cl)) },
				func(cl string) judgement {
					return ruleNoListenerUncaptured.with(fmt.Sprintf(why, cl), serverName, targetPort, server.captureWhy)
				})
			continue
		}
		if l.EgressPort && !p.Resolved.Sniffed() && !p.Resolved.Protocol.HTTPFamily() && (l.Protocol.Sniffed() || l.Protocol.Protocol.HTTPFamily()) && hints != "" {
			reason := l.Reason
			add("egress|"+l.Sidecar, "", MeshToMesh, prof, func(cl string) judgement {
				return ruleEgressPortSniffs.with(reason, cl, p.Resolved.Protocol, hints)
			})
		}
		tls := cluster.ClientTLSFor(j.inv, j.drIndex, c.Namespace, c.Labels, dest)
		// A client whose listener sniffs (or runs an HTTP connection
		// manager) waits for the application before anything reaches the
		// server: no server-side config makes its path fine. The verdict
		// grid found paths called OK for such clients (e2e/scenarios
		// grid_test.go).
		clientWaits := l.Protocol.Sniffed() || l.Protocol.Protocol.HTTPFamily()
		inboundWaits := server.inbound.Protocol.Sniffed() || server.inbound.Protocol.Protocol.HTTPFamily()
		if l.EgressPort && !clientWaits && p.Resolved.Sniffed() && hints != "" && tls.Mode == cluster.TLSIstioMutual &&
			meshPod != nil && targetKnown && server.captured && mode != cluster.MTLSDisable && !server.inbound.Protocol.Protocol.HTTPFamily() {
			why, srv := l.Reason, serverName
			add("egress-tcp|"+l.Sidecar, tls.Rule, MeshToMesh, prof, func(cl string) judgement { return ruleEgressPortTCP.with(why, cl, srv) })
			continue
		}
		switch {
		case tls.Mode == cluster.TLSIstioMutual && meshPod != nil && targetKnown && !server.captured:
			why := tls.Reason
			add("mtls-uncaptured|"+tls.Rule, tls.Rule, MeshToMesh, prof, func(cl string) judgement {
				return ruleMTLSIntoUncaptured.with(serverName, targetPort, server.captureWhy, cl, why)
			})
		case !tls.RuleSetsTLS:
			// Auto mTLS: the model the rest of the engine already judges,
			// except where the server does not capture the port.
			if tls.Mode == cluster.TLSDisable && meshPod != nil && targetKnown && !server.captured && !clientWaits {
				why := tls.Reason
				add("plain-uncaptured", "", MeshToMesh, prof, func(cl string) judgement {
					return rulePlaintextIntoUncaptured.with(serverName, targetPort, server.captureWhy, cl, why)
				})
			}
		case tls.Mode == cluster.TLSDisable:
			why := tls.Reason
			if meshPod != nil && targetKnown && server.captured && mode == cluster.MTLSDisable {
				// Fine only where neither side sniffs: Istio's table has
				// DISABLE/DISABLE work for a port declared TCP, not auto.
				if !clientWaits && !inboundWaits {
					add("dr-plain-disabled|"+tls.Rule, tls.Rule, MeshToMesh, prof, func(cl string) judgement { return rulePlaintextIntoDisabled.with(why, cl) })
				}
				continue
			}
			if mode == cluster.MTLSPermissive && hints == "" && server.captured {
				add("dr-plain-nohints|"+tls.Rule, tls.Rule, MeshToMesh, prof, func(cl string) judgement { return rulePlaintextIntoPermissiveNoHints.with(why, cl) })
				continue
			}
			fine := func(cl string) judgement {
				return rulePlaintextIntoUncaptured.with(serverName, targetPort, server.captureWhy, cl, why)
			}
			if clientWaits {
				fine = nil
			}
			plaintext(prof, "dr-plain|"+tls.Rule, tls.Rule,
				func(cl string) judgement { return rulePlaintextIntoPermissive.with(why, cl, hints) },
				func(cl string) judgement { return rulePlaintextIntoStrict.with(why, cl) },
				fine)
		case tls.Mode == cluster.TLSIstioMutual && meshPod == nil && len(backends) > 0:
			why := tls.Reason
			add("dr-mtls-nosidecar|"+tls.Rule, tls.Rule, MeshToExternal, prof, func(cl string) judgement { return ruleMutualIntoNoSidecar.with(why, cl) })
		case tls.Mode == cluster.TLSIstioMutual && mode == cluster.MTLSDisable:
			why := tls.Reason
			add("dr-mtls-disabled|"+tls.Rule, tls.Rule, MeshToMesh, prof, func(cl string) judgement { return ruleMutualIntoDisabled.with(why, cl) })
		case (tls.Mode == cluster.TLSSimple || tls.Mode == cluster.TLSMutual) && hints != "":
			why := tls.Reason
			add("dr-origination|"+tls.Rule, tls.Rule, MeshToMesh, prof, func(cl string) judgement { return ruleTLSOriginationServerFirst.with(why, cl, hints) })
		}
	}
	if meshPod != nil && targetKnown && server.captured && server.inbound.Sidecar != "" && server.inbound.Passthrough && !p.Resolved.Sniffed() && hints != "" {
		why := server.inbound.Reason
		paths = append(paths, &configPath{key: "ingress", scenario: MeshToMesh, build: func(string) judgement {
			return ruleIngressPassthrough.with(why, p.Resolved.Protocol, hints)
		}})
	}
	if len(paths) == 0 {
		return
	}
	own := PathVerdict{Scenario: f.Scenario, Verdict: f.Verdict, Code: f.Code, Reason: f.Reason}
	var judged []PathVerdict
	for _, cp := range paths {
		if cp.build == nil {
			continue
		}
		clients := clientsWord(cp.profiles)
		if len(cp.profiles) == 0 {
			clients = "every mesh client"
		}
		jd := cp.build(clients)
		judged = append(judged, PathVerdict{Scenario: cp.scenario, Verdict: jd.rule.Verdict, Code: jd.rule.Code, Reason: jd.reason, Clients: clients, destinationRule: cp.destinationRule, clientNamespaces: profileNamespaces(cp.profiles)})
		if jd.rule.Verdict.Severity() < f.Verdict.Severity() {
			f.set(jd)
			f.Scenario = cp.scenario
		}
	}
	if len(judged) == 0 {
		return
	}
	if len(f.Paths) == 0 && own.Code != "" {
		// Keep the port's own judgement beside the config paths, so paths
		// list every client path the report knows.
		f.Paths = append(f.Paths, own)
	}
	f.Paths = append(f.Paths, judged...)
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })
	if delay := j.inv.Mesh.ProtocolDetectionTimeout; delay > 0 && slices.ContainsFunc(judged, func(pv PathVerdict) bool { return pv.Verdict == AtRisk }) {
		f.Notes = append(f.Notes, fmt.Sprintf("protocolDetectionTimeout %s bounds the inbound inspector's wait: those clients are delayed that long rather than hung", delay))
	}
}

// externalBypassPaths lists, for a destination outside the mesh, the mesh
// clients whose interception annotations keep it from their sidecar: they
// are not sniffed, whatever the verdict says for the others. addresses
// are the destination's IPs where known (others are judged by port).
func (j *judge) externalBypassPaths(f *Finding, addresses []string) {
	if j.meshAbsent() {
		return
	}
	ip := firstIP(addresses)
	var bypass []clientProfile
	why := ""
	for _, prof := range j.clients {
		if reflect.ValueOf(prof.pod.Interception).IsZero() {
			continue
		}
		if captured, w := cluster.OutboundCaptured(prof.pod, ip, uint32(f.Port)); !captured {
			bypass, why = append(bypass, prof), w
		}
	}
	if len(bypass) == 0 {
		return
	}
	jd := ruleBypassExternal.with(clientsWord(bypass), why)
	f.Paths = append(f.Paths, PathVerdict{Scenario: MeshToExternal, Verdict: jd.rule.Verdict, Code: jd.rule.Code, Reason: jd.reason, Clients: clientsWord(bypass)})
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })
}

// firstIP is the first of addresses that is an IP; the zero Addr (judged
// by port alone) when none is.
func firstIP(addresses []string) netip.Addr {
	for _, a := range addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			return ip
		}
	}
	return netip.Addr{}
}

// podPortFindings lists the server-first candidates among the container
// ports of sidecar pods that no Service declares.
func (j *judge) podPortFindings() []Finding {
	if j.meshAbsent() {
		return nil
	}
	var out []Finding
	for _, u := range cluster.UncoveredPodPorts(j.inv) {
		f := Finding{
			Kind: target.KindPod, Namespace: u.Pod.Namespace, Name: u.Pod.Name, Port: u.Port.Number, PortName: u.Port.Name,
			TargetPort: strconv.Itoa(int(u.Port.Number)), Protocol: string(u.Inbound.Protocol.Protocol), ProtocolSource: string(u.Inbound.Protocol.Source),
			ServerInMesh: true, Scenario: MeshToMesh,
		}
		pod := j.pods[u.Pod.Namespace+"/"+u.Pod.Name]
		if pod != nil {
			f.MTLSMode = string(cluster.EffectiveMTLSMode(j.inv.PeerAuthentications, j.inv.Mesh.RootNamespace, pod.Namespace, pod.Labels, uint32(u.Port.Number)))
		}
		hints := hintSet{}
		hints.port(u.Port.Number)
		hints.name("name", u.Port.Name)
		if u.Port.Image != "" {
			hints.image(u.Port.Image)
		}
		f.Hints = hints.list()
		if len(f.Hints) == 0 {
			continue // not a server-first candidate
		}
		switch {
		case !u.Captured:
			f.set(ruleUncoveredPodPortNotCaptured.with(u.Port.Number, u.CaptureReason))
		case !u.Inbound.Passthrough && !u.Inbound.Protocol.Sniffed() && !u.Inbound.Protocol.Protocol.HTTPFamily():
			f.set(ruleUncoveredPodPortDeclared.with(u.Port.Number, u.Inbound.Reason))
		default:
			f.set(ruleUncoveredPodPort.with(u.Port.Number, u.Inbound.Reason, strings.Join(f.Hints, ", ")))
		}
		f.Paths = []PathVerdict{{Scenario: MeshToMesh, Verdict: f.Verdict, Code: f.Code, Reason: f.Reason, Clients: "any client that dials the pod IP"}}
		if f.Verdict.Affected() && pod != nil {
			f.Fixes = j.podPortFixes(f, pod)
		}
		out = append(out, f)
	}
	return out
}
