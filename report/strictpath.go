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
