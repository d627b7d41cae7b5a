package report

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Code is a rule's stable identifier: "SF" and four digits, grouped by
// concern like Istio's analyzer messages (IST0118 ...). A code names one
// condition forever: it is never renamed, and a retired code is never
// given to another rule.
//
//	SF00xx  reserved (internal, future use)
//	SF01xx  protocol declaration (Service and ServiceEntry ports)
//	SF02xx  mTLS and the server's inbound side
//	SF03xx  outbound: 0.0.0.0 listener collisions, ServiceEntries, external targets
//	SF04xx  probe evidence (direct, mesh client, outside client)
//	SF05xx  mesh config and timeouts
//	SF06xx  DestinationRules (client-side TLS against the server's mTLS mode)
//	SF07xx  interception annotations (traffic.sidecar.istio.io/*)
//	SF08xx  Sidecar resources
//	SF09xx  pod ports no Service declares
//	SF10xx  proxy config evidence (the sidecars' own /config_dump)
//	SF11xx  service visibility (exportTo; report/visibility.go)
type Code string

var codePattern = regexp.MustCompile(`^SF[0-9]{4}$`)

// Rule is one registered condition that gives a verdict. Every verdict the
// engine gives comes from exactly one rule, so a finding's code says which
// branch of the engine decided it.
type Rule struct {
	Code Code
	// Name is a stable CamelCase name, as Istio's messages have.
	Name    string
	Verdict Verdict
	// Template is the one-line reason, with one fmt verb per Args entry.
	Template string
	// Args name the template's verbs, in order (for explain and the README).
	Args []string
	// Explain says in plain words when the rule fires and why the verdict
	// follows: what `explain CODE` prints.
	Explain string
	// Source is where Istio (or Envoy) decides what the rule models, so
	// anyone can check the rule against the real thing.
	Source string
	// Retired rules are kept so their code is never reused; the engine
	// no longer gives them. Retire a rule by replacing its entry with
	// rule(Rule{Code: ..., Name: ..., Retired: true, Explain: "what it was"})
	// and deleting its branch; TestRuleCodesStayReserved fails if a code
	// disappears instead.
	Retired bool
}

// registry holds every rule, in declaration order; Rules() sorts by code.
var registry []*Rule

// rule registers a rule. Adding a rule is one call here (in the code's
// group below) plus the engine branch that gives it.
func rule(r Rule) *Rule {
	registry = append(registry, &r)
	return &r
}

// judgement is a rule applied: the verdict, its code and its reason.
type judgement struct {
	rule   *Rule
	reason string
}

// with fills the rule's template.
func (r *Rule) with(args ...any) judgement {
	return judgement{rule: r, reason: fmt.Sprintf(r.Template, args...)}
}

// set gives a finding the judgement's verdict, code and reason.
func (f *Finding) set(j judgement) {
	f.Verdict, f.Code, f.Reason = j.rule.Verdict, j.rule.Code, j.reason
}

// Rules lists every rule, retired ones included, by code.
func Rules() []Rule {
	out := make([]Rule, 0, len(registry))
	for _, r := range registry {
		out = append(out, *r)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Code < out[b].Code })
	return out
}

// LookupRule finds a rule by code (any case).
func LookupRule(code string) (Rule, bool) {
	c := Code(strings.ToUpper(strings.TrimSpace(code)))
	for _, r := range registry {
		if r.Code == c {
			return *r, true
		}
	}
	return Rule{}, false
}

// Message is the template with each verb replaced by its argument's name
// in braces: what the reason looks like, in general.
func (r Rule) Message() string {
	args := make([]any, len(r.Args))
	for i, a := range r.Args {
		args[i] = rawArg("{" + a + "}")
	}
	return fmt.Sprintf(r.Template, args...)
}

// rawArg prints as itself under %s, %q and %d alike.
type rawArg string

func (a rawArg) Format(s fmt.State, _ rune) { fmt.Fprint(s, string(a)) }

// explainRule is what `explain CODE` prints.
func explainRule(r Rule) string {
	var b strings.Builder
	if r.Retired {
		fmt.Fprintf(&b, "%s (%s): retired, the code stays reserved.\n\n%s\n", r.Code, r.Name, r.Explain)
		return b.String()
	}
	fmt.Fprintf(&b, "%s %s (%s): %s\n\n%s\n", r.Code, r.Verdict, r.Name, r.Message(), r.Explain)
	if r.Source != "" {
		fmt.Fprintf(&b, "\nWhere Istio decides it: %s\n", r.Source)
	}
	fmt.Fprintf(&b, "\nSee also: kubectl serverfirst explain %s\n", r.Verdict)
	return b.String()
}

// The rules, by group. Templates keep the reasons the engine gave before
// the registry existed, word for word.

// SF01xx: protocol declaration.
var (
	ruleNotTCP = rule(Rule{
		Code: "SF0101", Name: "NonTCPPort", Verdict: OK,
		Template: "%s: the sidecar does not sniff it", Args: []string{"protocol"},
		Explain: "The Service port's Kubernetes protocol is not TCP (UDP or SCTP). Istio only sniffs TCP\n" +
			"traffic, so nothing waits for the client.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol (protocol: UDP -> UDP)",
	})
	ruleSniffedHinted = rule(Rule{
		Code: "SF0102", Name: "SniffedServerFirstHints", Verdict: AtRisk,
		Template: "protocol not declared, so the sidecar sniffs it, and %s suggest a server-first protocol", Args: []string{"hints"},
		Explain: "Neither the port name, nor appProtocol, nor a well-known port number declares the\n" +
			"protocol, so the sidecars sniff the port: they wait for the client's first bytes. The\n" +
			"port number, the names or the image suggest a server-first protocol, whose client waits\n" +
			"for the server: both wait until something times out. Static evidence only.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol; pilot/pkg/networking/core/listener.go buildListenerFromEntry (http_inspector on sniffed outbound ports), listener_inbound.go populateListenerFilters (inbound)",
	})
	ruleSniffedHintedTimeout = rule(Rule{
		Code: "SF0103", Name: "SniffedServerFirstHintsDetectionTimeout", Verdict: AtRisk,
		Template: "protocol not declared, so the sidecar sniffs it, and %s suggest a server-first protocol; with protocolDetectionTimeout %s clients wait that long instead of forever",
		Args:     []string{"hints", "protocolDetectionTimeout"},
		Explain: "As SF0102, but the mesh config sets protocolDetectionTimeout: after it Envoy gives up\n" +
			"sniffing and passes the connection as plain TCP, so clients are delayed on every\n" +
			"connection rather than hung (and clients with a shorter timeout still fail).",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry (listener_filters_timeout = protocolDetectionTimeout, continue_on_listener_filters_timeout: true)",
	})
	ruleTrapHinted = rule(Rule{
		Code: "SF0104", Name: "AppProtocolTrapServerFirstHints", Verdict: AtRisk,
		Template: "appProtocol %q is not a protocol Istio knows and it replaces the port name %q, so the port is sniffed; %s suggest a server-first protocol",
		Args:     []string{"appProtocol", "portName", "hints"},
		Explain: "An appProtocol Istio does not recognise (such as nats.io/client) replaces the port name\n" +
			"entirely, so even a correct tcp- name no longer declares the port: it is sniffed, and\n" +
			"the hints suggest a server-first protocol.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol (a set appProtocol is parsed instead of the name)",
	})
	ruleTrapHintedTimeout = rule(Rule{
		Code: "SF0105", Name: "AppProtocolTrapServerFirstHintsDetectionTimeout", Verdict: AtRisk,
		Template: "appProtocol %q is not a protocol Istio knows and it replaces the port name %q, so the port is sniffed; %s suggest a server-first protocol; with protocolDetectionTimeout %s clients wait that long instead of forever",
		Args:     []string{"appProtocol", "portName", "hints", "protocolDetectionTimeout"},
		Explain:  "As SF0104, with protocolDetectionTimeout set: clients are delayed that long instead of hung.",
		Source:   "pkg/config/kube/conversion.go ConvertProtocol; pilot/pkg/networking/core/listener.go buildListenerFromEntry",
	})
	ruleTrap = rule(Rule{
		Code: "SF0106", Name: "AppProtocolTrap", Verdict: AtRisk,
		Template: "appProtocol %q is not a protocol Istio knows and it replaces the port name %q: the port is sniffed",
		Args:     []string{"appProtocol", "portName"},
		Explain: "An unrecognised appProtocol replaces a port name that would have declared the port, so\n" +
			"the port is sniffed although its author meant to declare it. Nothing else hints at a\n" +
			"server-first protocol, but the declaration plainly failed.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol",
	})
	ruleSniffedNoHints = rule(Rule{
		Code: "SF0107", Name: "SniffedNoHints", Verdict: OK,
		Template: "protocol not declared (sniffed), but nothing suggests a server-first protocol; probe it to be sure",
		Explain: "The port is sniffed, which is harmless for client-first protocols (HTTP, PostgreSQL,\n" +
			"Redis, ...), and nothing hints at a server-first one. Only a probe can tell for sure.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol (unrecognised -> auto detection)",
	})
	ruleHTTPHinted = rule(Rule{
		Code: "SF0108", Name: "DeclaredHTTPServerFirstHints", Verdict: AtRisk,
		Template: "declared %s (%s), but %s suggest a server-first protocol: the sidecar waits for an HTTP request that never comes",
		Args:     []string{"protocol", "protocolSource", "hints"},
		Explain: "The port is declared HTTP-family, so the sidecar runs an HTTP connection manager on it\n" +
			"and waits for a request; the port number or a name (not just an image) suggests a\n" +
			"server-first protocol, whose client never sends one.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundHTTPListenerOpts (HTTP connection manager on declared HTTP ports)",
	})
	ruleDeclared = rule(Rule{
		Code: "SF0109", Name: "DeclaredProtocol", Verdict: OK,
		Template: "declared %s by %s: the sidecar does not wait for the client", Args: []string{"protocol", "source"},
		Explain: "The port's protocol is declared (tcp-/mysql-/... name, appProtocol, the well-known ports\n" +
			"25, 53, 3306, 27017, or a ServiceEntry's protocol) and nothing suggests the declaration is\n" +
			"wrong, so the sidecar does not sniff it.",
		Source: "pkg/config/kube/conversion.go ConvertProtocol (names, appProtocol, wellKnownPorts)",
	})
)

// SF02xx: mTLS and the server's inbound side.
var (
	ruleStrictSilent = rule(Rule{
		Code: "SF0201", Name: "StrictHoldsPlaintext", Verdict: MTLSRejected,
		Template: "STRICT mTLS: the server's sidecar waits for a mutual-TLS handshake and never passes a plaintext client through",
		Explain: "A client without a sidecar got silence from a port whose effective PeerAuthentication\n" +
			"mode is STRICT: the server's sidecar only accepts mutual TLS, so this is policy, not a\n" +
			"sniffing deadlock, whatever the server says.",
		Source: "pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts with pilot/pkg/security/authn MTLSSettings (STRICT builds only the TLS chain)",
	})
	ruleStrictClosed = rule(Rule{
		Code: "SF0202", Name: "StrictClosesPlaintext", Verdict: MTLSRejected,
		Template: "STRICT mTLS: the sidecar closes a plaintext connection (%s)", Args: []string{"outcome"},
		Explain: "A client without a sidecar was reset or closed by a port under STRICT mTLS.",
		Source:  "pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts (STRICT: no plaintext chain matches)",
	})
)

// The external-to-mesh path judged from the inventory.
var (
	rulePermissiveUnmeshed = rule(Rule{
		Code: "SF0203", Name: "PermissiveServerFirstUnmeshedClients", Verdict: AtRisk,
		Template: "%s can reach it, and under PERMISSIVE mTLS the server's sidecar waits for a client's first bytes to tell mTLS from plaintext, even on a declared port; %s suggest a server-first protocol",
		Args:     []string{"unmeshedPods", "hints"},
		Explain: "The external-to-mesh path, from the inventory: the port's effective PeerAuthentication mode is\n" +
			"PERMISSIVE, so the server's virtualInbound listener runs the TLS inspector on it (whatever its\n" +
			"protocol), which waits for the client's first bytes; pods without a sidecar exist, and a\n" +
			"server-first client among them waits for the banner. Declaring the port TCP does not help this\n" +
			"path; a port-level DISABLE (or the client in the mesh) does.",
		Source: "pilot/pkg/networking/core/listener_inbound.go populateListenerFilters (tls_inspector where a chain matches transport_protocol tls: PERMISSIVE)",
	})
	rulePermissiveUnmeshedTimeout = rule(Rule{
		Code: "SF0204", Name: "PermissiveServerFirstUnmeshedClientsDetectionTimeout", Verdict: AtRisk,
		Template: "%s can reach it, and under PERMISSIVE mTLS the server's sidecar waits for a client's first bytes to tell mTLS from plaintext, even on a declared port; %s suggest a server-first protocol; with protocolDetectionTimeout %s they wait that long instead of forever",
		Args:     []string{"unmeshedPods", "hints", "protocolDetectionTimeout"},
		Explain:  "As SF0203, with protocolDetectionTimeout set: virtualInbound gives up inspecting after it and passes the connection, so those clients are delayed rather than hung.",
		Source:   "pilot/pkg/networking/core/listener_inbound.go buildInboundListener (listener_filters_timeout = protocolDetectionTimeout, continue)",
	})
)

// SF03xx: outbound listeners, ServiceEntries, external targets.
var (
	ruleSENoAddressCollision = rule(Rule{
		Code: "SF0301", Name: "ServiceEntryRidesWildcardListener", Verdict: AtRisk,
		Template: "declared %s but without addresses (and no DNS auto-allocation): clients reach it by IP and ride the 0.0.0.0:%d listener that %s puts there, which sniffs",
		Args:     []string{"protocol", "port", "services"},
		Explain: "A ServiceEntry declares the port, but without addresses and without DNS proxying with\n" +
			"auto-allocation the sidecar cannot match the traffic by address. It then rides the\n" +
			"0.0.0.0:PORT listener an in-mesh HTTP Service (or sniffed ServiceEntry) puts in every\n" +
			"client sidecar, whose inspector waits for the client.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners (wildcard 0.0.0.0 bind for HTTP ports and address-less entries); istioctl IST0134",
	})
	ruleExternalCollision = rule(Rule{
		Code: "SF0302", Name: "ExternalRidesWildcardListener", Verdict: AtRisk,
		Template: "no ServiceEntry declares it, and %s put a sniffing 0.0.0.0:%d listener in every client sidecar",
		Args:     []string{"services", "port"},
		Explain: "An external destination on a port that an in-mesh Service uses for HTTP (or a sniffed\n" +
			"address-less ServiceEntry) is caught by that 0.0.0.0:PORT listener and sniffed.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundListeners, buildListenerFromEntry",
	})
	ruleExternalPassthrough = rule(Rule{
		Code: "SF0303", Name: "ExternalPassthrough", Verdict: OK,
		Template: "no in-mesh Service uses port %d, so mesh clients pass it through as plain TCP", Args: []string{"port"},
		Explain: "No outbound listener claims the port, so traffic to the external destination takes the\n" +
			"15001 catch-all to the PassthroughCluster, which does not sniff (under ALLOW_ANY).",
		Source: "pilot/pkg/networking/core/listener_builder.go buildVirtualOutboundListener, buildOutboundCatchAllNetworkFilterChains",
	})
)

// Outbound traffic policy, as Istio builds the 15001 catch-all.
var (
	ruleRegistryOnlyBlackHole = rule(Rule{
		Code: "SF0304", Name: "RegistryOnlyBlackHole", Verdict: AtRisk,
		Template: "outboundTrafficPolicy REGISTRY_ONLY and no ServiceEntry declares it: mesh clients' sidecars send it to BlackHoleCluster, so the connection opens and is closed at once",
		Explain: "Under REGISTRY_ONLY the 15001 catch-all's fallthrough chain is a tcp_proxy to\n" +
			"BlackHoleCluster: an unknown destination is not sniffed but refused (connect, then closed), for\n" +
			"every protocol. A ServiceEntry with protocol TCP both registers it and keeps it unsniffed. (A\n" +
			"0.0.0.0:PORT listener on the port, SF0302, sniffs first and waits as before.)",
		Source: "pilot/pkg/networking/core/listener_builder.go buildOutboundCatchAllNetworkFiltersOnly (BlackHoleCluster unless ALLOW_ANY or ALLOW_ANY_DYNAMIC_DNS)",
	})
	ruleDynamicDNSCatchAll = rule(Rule{
		Code: "SF0305", Name: "DynamicDNSCatchAllInspector", Verdict: AtRisk,
		Template: "outboundTrafficPolicy ALLOW_ANY_DYNAMIC_DNS puts an HTTP inspector on the 15001 catch-all of every client sidecar: it waits %s (Envoy's default listener-filter timeout) for the client's first bytes, then closes the connection",
		Args:     []string{"envoyTimeout"},
		Explain: "Istio 1.31's ALLOW_ANY_DYNAMIC_DNS (mesh config only) adds an HTTP inspector to the\n" +
			"virtualOutbound (15001) listener, to send plaintext HTTP to the dynamic forward proxy, and sets\n" +
			"no listener_filters_timeout, so Envoy's 15s default applies, with\n" +
			"continue_on_listener_filters_timeout unset: the socket is closed after it. A server-first\n" +
			"destination that only the catch-all sees waits 15s, then fails. A ServiceEntry with protocol TCP\n" +
			"gives it its own listener.",
		Source: "pilot/pkg/networking/core/listener_builder.go buildVirtualOutboundListener (HTTP inspector when IsAllowAnyDynamicDNSOutbound; no timeout set)",
	})
)

// SF04xx: probe evidence.
var (
	ruleDeadlock = rule(Rule{
		Code: "SF0401", Name: "ServerFirstSilentThroughMesh", Verdict: Deadlock,
		Template: "the server speaks first (%s in %s directly) but nothing arrives %s", Args: []string{"banner", "firstByte", "path"},
		Explain: "Both halves of the proof: the direct path (no sidecar on the client side) got the\n" +
			"server's banner, and the client path through a sidecar got nothing before the probe gave up.",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry and listener_inbound.go buildInboundListener (inspectors that wait for client bytes)",
	})
	ruleBannerArrives = rule(Rule{
		Code: "SF0402", Name: "BannerThroughPath", Verdict: OK,
		Template: "the banner arrives %s in %s", Args: []string{"path", "firstByte"},
		Explain: "The probe on this client path got the server's first bytes promptly: nothing waits.",
	})
	ruleDelayedDirect = rule(Rule{
		Code: "SF0403", Name: "DelayedByDetectionTimeout", Verdict: Delayed,
		Template: "the banner arrives %s only after %s, the mesh's protocolDetectionTimeout (%s); directly it takes %s",
		Args:     []string{"path", "firstByte", "protocolDetectionTimeout", "directFirstByte"},
		Explain: "Through the mesh the banner took at least 80% of protocolDetectionTimeout while the\n" +
			"direct path got it promptly: Envoy gave up sniffing and fell back to TCP.",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry (continue_on_listener_filters_timeout: true)",
	})
	ruleDelayed = rule(Rule{
		Code: "SF0404", Name: "DelayedByDetectionTimeoutNoDirect", Verdict: Delayed,
		Template: "the banner arrives %s only after %s, the mesh's protocolDetectionTimeout (%s)",
		Args:     []string{"path", "firstByte", "protocolDetectionTimeout"},
		Explain:  "As SF0403, without a direct banner to compare with.",
		Source:   "pilot/pkg/networking/core/listener.go buildListenerFromEntry (continue_on_listener_filters_timeout: true)",
	})
	ruleBothSilent = rule(Rule{
		Code: "SF0405", Name: "ClientFirstBothPaths", Verdict: ClientFirst,
		Template: "the server stays silent until the client speaks, directly and %s: sniffing is harmless", Args: []string{"path"},
		Explain: "Silence directly and through the mesh: the server waits for its client, so the sidecar sees the client's bytes first.",
	})
	ruleSilentHinted = rule(Rule{
		Code: "SF0406", Name: "SilentHintedNoDirectProof", Verdict: AtRisk,
		Template: "nothing arrives %s and the hints suggest a server-first protocol, but there is no direct proof that the server speaks first",
		Args:     []string{"path"},
		Explain: "Silence through the mesh, server-first hints, but no direct banner: half a proof, so not\n" +
			"DEADLOCK. Add a direct vantage (--direct or --vantage pods) to complete it.",
	})
	ruleSilentNoHints = rule(Rule{
		Code: "SF0407", Name: "SilentNoHints", Verdict: ClientFirst,
		Template: "nothing arrives %s; nothing suggests a server-first protocol (no direct probe to prove it)", Args: []string{"path"},
		Explain: "Silence through the mesh and nothing hints at a server-first protocol: most likely a client-first server.",
	})
	ruleServerFirstClosed = rule(Rule{
		Code: "SF0408", Name: "ServerFirstPathClosed", Verdict: AtRisk,
		Template: "the server speaks first directly, but %s the connection was %s without a byte", Args: []string{"path", "outcome"},
		Explain: "The direct path got a banner, this client path was reset or closed before any byte: something\n" +
			"in between ended it (a policy, BlackHoleCluster under REGISTRY_ONLY, a timeout), not a proven hang.",
	})
	rulePathClosed = rule(Rule{
		Code: "SF0409", Name: "PathClosed", Verdict: Unreachable,
		Template: "the connection %s was %s without a byte", Args: []string{"path", "outcome"},
		Explain: "The client path was reset or closed without a byte and nothing proves the server speaks first.",
	})
	rulePathUnreachable = rule(Rule{
		Code: "SF0410", Name: "PathUnreachable", Verdict: Unreachable,
		Template: "could not connect %s: %s", Args: []string{"path", "failure"},
		Explain: "The probe on this client path could not connect (refused, timed out, did not resolve).",
	})
	ruleDirectConfirmsRisk = rule(Rule{
		Code: "SF0411", Name: "DirectBannerConfirmsRisk", Verdict: AtRisk,
		Template: "the server speaks first (%s in %s directly) and %s", Args: []string{"banner", "firstByte", "staticReason"},
		Explain: "Only the direct path was probed: it proves the server speaks first, and the static rule\n" +
			"already found the port at risk. The mesh path was not probed, so not DEADLOCK.",
	})
	ruleDirectBannerSniffed = rule(Rule{
		Code: "SF0412", Name: "DirectBannerOnSniffedPort", Verdict: AtRisk,
		Template: "the server speaks first (%s in %s directly) on a port the sidecar sniffs", Args: []string{"banner", "firstByte"},
		Explain: "Only the direct path was probed: a server-first banner on a port Istio sniffs, though no static hint suggested it.",
		Source:  "pkg/config/kube/conversion.go ConvertProtocol (auto detection)",
	})
	ruleDirectBannerHTTP = rule(Rule{
		Code: "SF0413", Name: "DirectBannerOnHTTPPort", Verdict: AtRisk,
		Template: "the server speaks first (%s in %s directly) on a port declared %s: the sidecar waits for an HTTP request that never comes",
		Args:     []string{"banner", "firstByte", "protocol"},
		Explain:  "Only the direct path was probed: a server-first banner on a port declared HTTP-family.",
		Source:   "pilot/pkg/networking/core/listener.go buildSidecarOutboundHTTPListenerOpts",
	})
	ruleDirectSilentSniffed = rule(Rule{
		Code: "SF0414", Name: "DirectSilentOnSniffedPort", Verdict: ClientFirst,
		Template: "the server stays silent until the client speaks (direct probe): sniffing this port is harmless",
		Explain:  "Only the direct path was probed: the server waited for its client, so sniffing does no harm.",
	})
)

// SF05xx: mesh config and timeouts.
var (
	ruleMeshAbsent = rule(Rule{
		Code: "SF0501", Name: "MeshAbsent", Verdict: OK,
		Template: "Istio is not installed and no pod has a sidecar: nothing sniffs this port",
		Explain:  "No Istio CRDs and no pod with a sidecar: no Envoy is on any path, so nothing sniffs.",
	})
)

var (
	ruleWaitTooShort = rule(Rule{
		Code: "SF0502", Name: "ProbeWaitShorterThanMesh", Verdict: AtRisk,
		Template: "the server speaks first (%s in %s directly) and nothing arrives %s within the probe's %s wait, but %s could still end that wait: scan again with --timeout %s to tell DEADLOCK from DELAYED",
		Args:     []string{"banner", "firstByte", "path", "wait", "meshTimeout", "suggestedTimeout"},
		Explain: "DEADLOCK claims a hang, so silence through the mesh counts only when the probe waited longer\n" +
			"than every timeout of the mesh that could still end the wait on that path: protocolDetectionTimeout\n" +
			"(when > 0) on sniffing listeners, Envoy's 15s default where Istio sets no timeout (the 15001\n" +
			"catch-all under ALLOW_ANY_DYNAMIC_DNS). This probe gave up first, so the banner may still have\n" +
			"come (DELAYED). Without --timeout, scan waits that long by itself.",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry, listener_inbound.go buildInboundListener (listener_filters_timeout = protocolDetectionTimeout); listener_builder.go buildVirtualOutboundListener (no timeout: Envoy's 15s)",
	})
)

// SF06xx-SF09xx: DestinationRules, interception annotations, Sidecar
// resources, pod ports (see the group list at Code).
