package target

import "github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"

// ConfigStage is one proxy on a client path and what its own config
// (Envoy's /config_dump) decides for a client that sends nothing first.
type ConfigStage struct {
	// Side is "client" (the client's sidecar, outbound) or "server" (the
	// server's sidecar, inbound).
	Side string
	// Proxy names the pod whose config was read ("shop/web"), or "self".
	Proxy string
	// Port is the destination port the proxy sees (the Service port on
	// the client side, the container port on the server side).
	Port     int32
	Decision proxyconfig.Decision
	// ClientTLS (server side): the connection arrives as TLS from the
	// client's sidecar, so no inspector waits for the application.
	ClientTLS bool
	// Uncaptured (server side) says why the pod's inbound capture skips
	// the port ("excludeInboundPorts lists port 22005"): the connection
	// reaches the application, not the proxy, whose Decision is then
	// empty.
	Uncaptured string
}

// ConfigPath is what the proxies on one client path of a target decide,
// in the order the connection meets them: config evidence, as an
// Observation is probe evidence.
type ConfigPath struct {
	Target TargetKey
	// Unmeshed: the path of clients without a sidecar (only the server's
	// inbound); else the path of mesh clients.
	Unmeshed bool
	// ServerInMesh: the target's server has a sidecar.
	ServerInMesh bool
	Stages       []ConfigStage
	// Clients says who takes the path ("clients like shop/web", "clients
	// without a sidecar").
	Clients string
}
