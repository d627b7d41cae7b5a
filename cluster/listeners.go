package cluster

import (
	"fmt"
	"time"
)

// EnvoyListenerFiltersTimeout is Envoy's default listener_filters_timeout:
// it applies on every listener where Istio sets none.
const EnvoyListenerFiltersTimeout = 15 * time.Second

// InspectorWait is one listener inspector that waits for the client's
// first bytes, as Istio builds it, and what ends the wait.
type InspectorWait struct {
	// Listener names it as an Envoy config dump does.
	Listener string
	// Timeout is the listener_filters_timeout; 0 waits forever.
	Timeout time.Duration
	// Closes is true when the socket is closed after the timeout
	// (continue_on_listener_filters_timeout false); otherwise the
	// connection carries on as plain TCP.
	Closes bool
	// Why says where the timeout comes from.
	Why string
}

// Path kinds a client's connection can take, for the waits on them.
const (
	// PathMeshClient: a client with a sidecar dials a port the sidecar
	// sniffs (its per-port or 0.0.0.0:PORT outbound listener).
	PathMeshClient = "mesh-client"
	// PathCatchAll: a client with a sidecar dials a destination no
	// outbound listener claims: only the 15001 catch-all sees it.
	PathCatchAll = "catch-all"
	// PathInbound: a client without a sidecar reaches a server's sidecar,
	// whose virtualInbound inspects the first bytes (TLS under PERMISSIVE,
	// HTTP on undeclared ports).
	PathInbound = "inbound"
)

// Waits lists, in the order a connection meets them, the inspectors on a
// path that wait for the client's first bytes.
//
// Outbound per-port listeners with an HTTP inspector get timeout =
// protocolDetectionTimeout and continue (listener.go buildListenerFromEntry);
// virtualInbound likewise (listener_inbound.go buildInboundListener). Under
// ALLOW_ANY_DYNAMIC_DNS the 15001 virtualOutbound listener gets an HTTP
// inspector and no timeout, so Envoy's 15 s applies, then the socket is
// closed (listener_builder.go buildVirtualOutboundListener sets neither
// listener_filters_timeout nor continue_on_listener_filters_timeout). Envoy
// runs the listener filters of the listener that accepted the redirected
// connection (15001) before it hands the connection to the listener of its
// original destination, so that inspector comes first on every mesh-client
// path.
func Waits(mc MeshConfig, path string) []InspectorWait {
	var out []InspectorWait
	if mc.OutboundTrafficPolicy == OutboundAllowAnyDynamicDNS && (path == PathMeshClient || path == PathCatchAll) {
		out = append(out, InspectorWait{Listener: "virtualOutbound (15001)", Timeout: EnvoyListenerFiltersTimeout, Closes: true,
			Why: fmt.Sprintf("the %s listener-filter timeout Envoy applies to the 15001 catch-all's HTTP inspector under ALLOW_ANY_DYNAMIC_DNS", EnvoyListenerFiltersTimeout)})
	}
	pdt := InspectorWait{Timeout: mc.ProtocolDetectionTimeout, Why: fmt.Sprintf("protocolDetectionTimeout %s", mc.ProtocolDetectionTimeout)}
	switch path {
	case PathMeshClient:
		pdt.Listener = "outbound per-port listener"
		out = append(out, pdt)
	case PathInbound:
		pdt.Listener = "virtualInbound (15006)"
		out = append(out, pdt)
	}
	return out
}

// WaitBound is how long the mesh can keep a client waiting on a path
// before one of its own timeouts ends the wait (a fallback to TCP or a
// close), with what that timeout is. Zero means nothing in the mesh ends
// it: the wait is forever, so any silence is a hang. A longer silence
// than the bound, after the bound's last fallback, is a hang too.
func WaitBound(mc MeshConfig, path string) (time.Duration, string) {
	var sum time.Duration
	var why string
	for _, w := range Waits(mc, path) {
		if w.Timeout == 0 {
			break
		}
		sum += w.Timeout
		if why == "" {
			why = w.Why
		} else {
			why += " + " + w.Why
		}
		if w.Closes {
			break
		}
	}
	return sum, why
}
