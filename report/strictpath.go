package report

// The external-to-mesh path into STRICT, judged from the inventory: the
// static counterpart of SF0201/SF0202, so a static finding lists the
// seed's third scenario whatever the port's mTLS mode.
var ruleStrictUnmeshed = rule(Rule{
	Code: "SF0205", Name: "StrictRejectsUnmeshedClients", Verdict: MTLSRejected,
	Template: "%s can reach it, and under STRICT mTLS the server's sidecar accepts only mutual TLS: their plaintext connections are rejected (%s suggest a server-first protocol)",
	Args:     []string{"unmeshedPods", "hints"},
	Explain: "The external-to-mesh path, from the inventory: the port's effective PeerAuthentication mode is\n" +
		"STRICT and pods without a sidecar exist. Their plaintext connections match no filter chain of\n" +
		"the server's virtualInbound (STRICT builds only the TLS one), so they are rejected: a policy,\n" +
		"not a sniffing deadlock, and what a probe from a client without a sidecar shows (SF0201,\n" +
		"SF0202). Bring the clients into the mesh; a port-level PERMISSIVE would turn the rejection\n" +
		"into the PERMISSIVE wait (SF0203) for a server-first protocol.",
	Source: "pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts with pilot/pkg/security/authn MTLSSettings (STRICT builds only the TLS chain)",
})

// The external-to-mesh path into a port the server's sidecar does not
// capture (found by the verdict grid in the e2e world: SF0203/SF0205 were
// given to such ports, yet a client without a sidecar got the banner).
var ruleUnmeshedUncaptured = rule(Rule{
	Code: "SF0206", Name: "UnmeshedClientsUncapturedPort", Verdict: OK,
	Template: "%s can reach it, and %s does not capture port %d (%s): their plaintext reaches the server directly, nothing sniffs it",
	Args:     []string{"unmeshedPods", "server", "port", "capture"},
	Explain: "The external-to-mesh path, from the inventory: the server's interception annotations keep\n" +
		"the port away from its sidecar, so clients without a sidecar talk to the application\n" +
		"directly, whatever the port's mTLS mode (which no chain enforces there).",
	Source: "tools/istio-iptables/pkg/capture/run.go handleInboundPortsInclude (excluded ports RETURN before ISTIO_IN_REDIRECT)",
})
