package cluster

import "strings"

// ProtocolHTTPProxy is Istio's HTTP_PROXY protocol (a name prefix
// "http_proxy"): only meaningful on Sidecar egress listeners, but
// ConvertProtocol returns it, so we must too.
const ProtocolHTTPProxy Protocol = "HTTP_PROXY"

// wellKnownTCPPorts are the Service ports Istio never sniffs when nothing
// else declares the protocol (pkg/config/kube/conversion.go). The check is
// on the Service port, not the targetPort.
var wellKnownTCPPorts = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// protocolNames are the names Istio's protocol.Parse knows, lower case.
var protocolNames = map[string]Protocol{
	"tcp": ProtocolTCP, "udp": ProtocolUDP, "grpc": ProtocolGRPC, "grpc-web": ProtocolGRPCWeb,
	"http": ProtocolHTTP, "http_proxy": ProtocolHTTPProxy, "http2": ProtocolHTTP2, "https": ProtocolHTTPS,
	"tls": ProtocolTLS, "mongo": ProtocolMongo, "redis": ProtocolRedis, "mysql": ProtocolMySQL,
}

// parseProtocolName is Istio's protocol.Parse: case-insensitive, and
// anything unknown is sniffed.
func parseProtocolName(s string) Protocol {
	if p, ok := protocolNames[strings.ToLower(s)]; ok {
		return p
	}
	return ProtocolAuto
}

const grpcWebPrefix = "grpc-web"

// ConvertProtocol decides a Kubernetes Service port's protocol exactly as
// Istio's kube.ConvertProtocol does. l4 is the port's Kubernetes protocol
// (TCP, UDP, SCTP; empty means TCP); appProtocol is nil when unset.
//
// The order matters and is where users get caught: UDP wins, then a set
// appProtocol *replaces* the port name (so an unrecognised appProtocol
// defeats a correct "tcp-" name), then a "grpc-web" prefix, then the text
// before the first '-', then the well-known Service ports. Whatever is
// left is sniffed (ProtocolAuto).
func ConvertProtocol(port int32, portName, l4 string, appProtocol *string) ResolvedProtocol {
	if l4 == "UDP" {
		return ResolvedProtocol{Protocol: ProtocolUDP, Source: SourceProtocol}
	}
	name, source := portName, SourceName
	if appProtocol != nil {
		switch *appProtocol {
		case "kubernetes.io/h2c":
			return ResolvedProtocol{Protocol: ProtocolHTTP2, Source: SourceAppProtocol}
		case "kubernetes.io/ws":
			return ResolvedProtocol{Protocol: ProtocolHTTP, Source: SourceAppProtocol}
		case "kubernetes.io/wss":
			return ResolvedProtocol{Protocol: ProtocolHTTPS, Source: SourceAppProtocol}
		}
		name, source = *appProtocol, SourceAppProtocol
	}
	if p := protocolFromName(name); p != ProtocolAuto {
		return ResolvedProtocol{Protocol: p, Source: source}
	}
	if wellKnownTCPPorts[port] {
		return ResolvedProtocol{Protocol: ProtocolTCP, Source: SourceWellKnownPort}
	}
	return ResolvedProtocol{
		Protocol: ProtocolAuto,
		Source:   SourceNone,
		// The trap: the name alone would have declared the port, but an
		// appProtocol Istio does not know replaced it.
		AppProtocolTrap: appProtocol != nil && protocolFromName(portName) != ProtocolAuto,
	}
}

// protocolFromName applies Istio's name rule: a "grpc-web" prefix, else
// the text before the first '-'.
func protocolFromName(name string) Protocol {
	if len(name) >= len(grpcWebPrefix) && strings.EqualFold(name[:len(grpcWebPrefix)], grpcWebPrefix) {
		return ProtocolGRPCWeb
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	return parseProtocolName(name)
}

// ServiceEntryPortProtocol is how Istio reads a ServiceEntry port: the
// protocol field parsed case-insensitively; empty or unknown is sniffed.
// Istio does not look at the port name or number here.
func ServiceEntryPortProtocol(protocol string) ResolvedProtocol {
	if p := parseProtocolName(protocol); p != ProtocolAuto {
		return ResolvedProtocol{Protocol: p, Source: SourceProtocol}
	}
	return ResolvedProtocol{Protocol: ProtocolAuto, Source: SourceNone}
}

// TCPFamily reports whether Istio proxies the protocol as opaque TCP (no
// HTTP parsing, no sniffing): TCP, HTTPS, TLS, Mongo, Redis, MySQL.
func (p Protocol) TCPFamily() bool {
	switch p {
	case ProtocolTCP, ProtocolHTTPS, ProtocolTLS, ProtocolMongo, ProtocolRedis, ProtocolMySQL:
		return true
	}
	return false
}

// HTTPFamily reports whether Istio builds an HTTP listener for the
// protocol: HTTP, HTTP2, HTTP_PROXY, gRPC, gRPC-Web.
func (p Protocol) HTTPFamily() bool {
	switch p {
	case ProtocolHTTP, ProtocolHTTP2, ProtocolHTTPProxy, ProtocolGRPC, ProtocolGRPCWeb:
		return true
	}
	return false
}
