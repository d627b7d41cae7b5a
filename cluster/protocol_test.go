package cluster

import (
	"testing"

	"k8s.io/utils/ptr"
)

// TestConvertProtocol follows istio pkg/config/kube/conversion.go
// ConvertProtocol and pkg/config/protocol Parse, case by case.
func TestConvertProtocol(t *testing.T) {
	tests := []struct {
		name        string
		port        int32
		portName    string
		l4          string
		appProtocol *string
		want        ResolvedProtocol
	}{
		// Port name prefixes, the text before the first '-', case-insensitive.
		{"tcp prefix", 8080, "tcp-mysql", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceName, false}},
		{"bare tcp", 8080, "tcp", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceName, false}},
		{"upper case", 8080, "TCP-DB", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceName, false}},
		{"mixed case http", 80, "Http-web", "TCP", nil, ResolvedProtocol{ProtocolHTTP, SourceName, false}},
		{"http2", 80, "http2-api", "TCP", nil, ResolvedProtocol{ProtocolHTTP2, SourceName, false}},
		{"https", 443, "https", "TCP", nil, ResolvedProtocol{ProtocolHTTPS, SourceName, false}},
		{"tls", 443, "tls-passthrough", "TCP", nil, ResolvedProtocol{ProtocolTLS, SourceName, false}},
		{"grpc", 9090, "grpc-api", "TCP", nil, ResolvedProtocol{ProtocolGRPC, SourceName, false}},
		{"grpc-web prefix", 9090, "grpc-web-ui", "TCP", nil, ResolvedProtocol{ProtocolGRPCWeb, SourceName, false}},
		{"grpc-web exact", 9090, "grpc-web", "TCP", nil, ResolvedProtocol{ProtocolGRPCWeb, SourceName, false}},
		{"grpc-web upper", 9090, "GRPC-WEB", "TCP", nil, ResolvedProtocol{ProtocolGRPCWeb, SourceName, false}},
		{"grpc-webx is grpc-web", 9090, "grpc-webx", "TCP", nil, ResolvedProtocol{ProtocolGRPCWeb, SourceName, false}},
		{"grpcweb without dash", 9090, "grpcweb", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"http_proxy", 3128, "http_proxy", "TCP", nil, ResolvedProtocol{ProtocolHTTPProxy, SourceName, false}},
		{"mongo", 27018, "mongo-db", "TCP", nil, ResolvedProtocol{ProtocolMongo, SourceName, false}},
		{"redis", 6379, "redis", "TCP", nil, ResolvedProtocol{ProtocolRedis, SourceName, false}},
		{"mysql", 3307, "mysql-main", "TCP", nil, ResolvedProtocol{ProtocolMySQL, SourceName, false}},
		{"udp name on a TCP port", 5000, "udp-x", "TCP", nil, ResolvedProtocol{ProtocolUDP, SourceName, false}},
		{"DoubleHBONE is never parsed", 5000, "DoubleHBONE", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},

		// Unrecognised names are sniffed.
		{"empty name", 8080, "", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"unknown name", 4222, "nats", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"suffix is not a prefix", 4222, "client-tcp", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"dash first", 4222, "-tcp", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"tcpx is not tcp", 4222, "tcpx", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"underscore is not a separator", 4222, "tcp_db", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"sctp without name", 4222, "", "SCTP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},

		// Well-known Service ports: only when nothing else decided.
		{"smtp port", 25, "smtp", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceWellKnownPort, false}},
		{"dns port", 53, "dns", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceWellKnownPort, false}},
		{"mysql port", 3306, "db", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceWellKnownPort, false}},
		{"mongodb port", 27017, "", "TCP", nil, ResolvedProtocol{ProtocolTCP, SourceWellKnownPort, false}},
		{"pop3 is not well-known", 110, "pop3", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"postgres is not well-known", 5432, "postgres", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"submission is not well-known", 587, "smtp", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"name beats well-known port", 3306, "http-admin", "TCP", nil, ResolvedProtocol{ProtocolHTTP, SourceName, false}},
		{"well-known with bad appProtocol", 3306, "tcp-mysql", "TCP", ptr.To("vendor.io/mysql"), ResolvedProtocol{ProtocolTCP, SourceWellKnownPort, false}},
		{"UDP on well-known port", 53, "dns", "UDP", nil, ResolvedProtocol{ProtocolUDP, SourceProtocol, false}},

		// UDP wins over everything.
		{"UDP beats name", 5000, "http-x", "UDP", nil, ResolvedProtocol{ProtocolUDP, SourceProtocol, false}},
		{"UDP beats appProtocol", 5000, "x", "UDP", ptr.To("http"), ResolvedProtocol{ProtocolUDP, SourceProtocol, false}},
		{"lower-case udp is not UDP", 5000, "x", "udp", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},

		// appProtocol replaces the name.
		{"appProtocol tcp", 4222, "client", "TCP", ptr.To("tcp"), ResolvedProtocol{ProtocolTCP, SourceAppProtocol, false}},
		{"appProtocol TCP upper", 4222, "client", "TCP", ptr.To("TCP"), ResolvedProtocol{ProtocolTCP, SourceAppProtocol, false}},
		{"appProtocol beats name", 8080, "tcp-x", "TCP", ptr.To("http"), ResolvedProtocol{ProtocolHTTP, SourceAppProtocol, false}},
		{"appProtocol with prefix", 8080, "", "TCP", ptr.To("http-custom"), ResolvedProtocol{ProtocolHTTP, SourceAppProtocol, false}},
		{"appProtocol grpc-web", 8080, "", "TCP", ptr.To("grpc-web"), ResolvedProtocol{ProtocolGRPCWeb, SourceAppProtocol, false}},
		{"k8s h2c", 8080, "tcp", "TCP", ptr.To("kubernetes.io/h2c"), ResolvedProtocol{ProtocolHTTP2, SourceAppProtocol, false}},
		{"k8s ws", 8080, "tcp", "TCP", ptr.To("kubernetes.io/ws"), ResolvedProtocol{ProtocolHTTP, SourceAppProtocol, false}},
		{"k8s wss", 8443, "tcp", "TCP", ptr.To("kubernetes.io/wss"), ResolvedProtocol{ProtocolHTTPS, SourceAppProtocol, false}},
		{"k8s names are case-sensitive", 8080, "", "TCP", ptr.To("Kubernetes.io/h2c"), ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"k8s names only in appProtocol", 8080, "kubernetes.io/h2c", "TCP", nil, ResolvedProtocol{ProtocolAuto, SourceNone, false}},

		// The trap: an appProtocol Istio does not know defeats a good name.
		{"trap nats", 4222, "tcp-nats", "TCP", ptr.To("nats.io/client"), ResolvedProtocol{ProtocolAuto, SourceNone, true}},
		{"trap mysql name", 3307, "mysql", "TCP", ptr.To("mysql.com/x"), ResolvedProtocol{ProtocolAuto, SourceNone, true}},
		{"trap empty appProtocol", 4222, "tcp", "TCP", ptr.To(""), ResolvedProtocol{ProtocolAuto, SourceNone, true}},
		{"no trap when name was sniffed anyway", 4222, "client", "TCP", ptr.To("nats.io/client"), ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"no trap when unnamed", 4222, "", "TCP", ptr.To("nats.io/client"), ResolvedProtocol{ProtocolAuto, SourceNone, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ConvertProtocol(tt.port, tt.portName, tt.l4, tt.appProtocol)
			if got != tt.want {
				t.Errorf("ConvertProtocol(%d, %q, %q, %v) = %+v, want %+v", tt.port, tt.portName, tt.l4, deref(tt.appProtocol), got, tt.want)
			}
			if got.Sniffed() != (tt.want.Protocol == ProtocolAuto) {
				t.Errorf("Sniffed() = %v", got.Sniffed())
			}
		})
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

func TestServiceEntryPortProtocol(t *testing.T) {
	tests := []struct {
		in   string
		want ResolvedProtocol
	}{
		{"TCP", ResolvedProtocol{ProtocolTCP, SourceProtocol, false}},
		{"tcp", ResolvedProtocol{ProtocolTCP, SourceProtocol, false}},
		{"HTTP", ResolvedProtocol{ProtocolHTTP, SourceProtocol, false}},
		{"HTTPS", ResolvedProtocol{ProtocolHTTPS, SourceProtocol, false}},
		{"TLS", ResolvedProtocol{ProtocolTLS, SourceProtocol, false}},
		{"GRPC", ResolvedProtocol{ProtocolGRPC, SourceProtocol, false}},
		{"GRPC-Web", ResolvedProtocol{ProtocolGRPCWeb, SourceProtocol, false}},
		{"MONGO", ResolvedProtocol{ProtocolMongo, SourceProtocol, false}},
		{"MySQL", ResolvedProtocol{ProtocolMySQL, SourceProtocol, false}},
		{"REDIS", ResolvedProtocol{ProtocolRedis, SourceProtocol, false}},
		{"UDP", ResolvedProtocol{ProtocolUDP, SourceProtocol, false}},
		{"HTTP2", ResolvedProtocol{ProtocolHTTP2, SourceProtocol, false}},
		{"HTTP_PROXY", ResolvedProtocol{ProtocolHTTPProxy, SourceProtocol, false}},
		// Unlike a Service port, no prefix rule and no well-known ports.
		{"tcp-mysql", ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"", ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{"SMTP", ResolvedProtocol{ProtocolAuto, SourceNone, false}},
		{" TCP", ResolvedProtocol{ProtocolAuto, SourceNone, false}},
	}
	for _, tt := range tests {
		if got := ServiceEntryPortProtocol(tt.in); got != tt.want {
			t.Errorf("ServiceEntryPortProtocol(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestProtocolFamilies mirrors istio protocol.Instance IsTCP and IsHTTP.
func TestProtocolFamilies(t *testing.T) {
	all := []Protocol{ProtocolTCP, ProtocolUDP, ProtocolHTTP, ProtocolHTTP2, ProtocolHTTPS, ProtocolTLS,
		ProtocolGRPC, ProtocolGRPCWeb, ProtocolMongo, ProtocolMySQL, ProtocolRedis, ProtocolHTTPProxy, ProtocolAuto}
	tcp := map[Protocol]bool{ProtocolTCP: true, ProtocolHTTPS: true, ProtocolTLS: true, ProtocolMongo: true, ProtocolRedis: true, ProtocolMySQL: true}
	http := map[Protocol]bool{ProtocolHTTP: true, ProtocolHTTP2: true, ProtocolHTTPProxy: true, ProtocolGRPC: true, ProtocolGRPCWeb: true}
	for _, p := range all {
		if p.TCPFamily() != tcp[p] {
			t.Errorf("%s.TCPFamily() = %v", p, p.TCPFamily())
		}
		if p.HTTPFamily() != http[p] {
			t.Errorf("%s.HTTPFamily() = %v", p, p.HTTPFamily())
		}
	}
}
