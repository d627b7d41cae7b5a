package cluster

import (
	"reflect"
	"testing"

	"k8s.io/utils/ptr"
)

func svc(ns, name, typ, clusterIP string, ports ...ServicePort) Service {
	return Service{Namespace: ns, Name: name, Type: typ, ClusterIP: clusterIP, Ports: ports}
}

func sp(name string, port int32, l4 string, appProtocol *string) ServicePort {
	out := ServicePort{Name: name, Port: port, Protocol: l4, Resolved: ConvertProtocol(port, name, l4, appProtocol)}
	if appProtocol != nil {
		out.AppProtocol = *appProtocol
	}
	return out
}

func TestSniffingListenerPorts(t *testing.T) {
	services := []Service{
		svc("web", "front", "ClusterIP", "10.96.0.10", sp("http", 10000, "TCP", nil), sp("grpc-api", 9090, "TCP", nil)),
		svc("web", "admin", "ClusterIP", "10.96.0.11", sp("http-admin", 10000, "TCP", nil)),
		svc("web", "gw", "LoadBalancer", "10.96.0.12", sp("http2", 8080, "TCP", nil), sp("", 8081, "TCP", ptr.To("kubernetes.io/ws"))),
		svc("web", "stateful", "ClusterIP", "None", sp("http-peer", 7000, "TCP", nil), sp("peer", 7001, "TCP", nil)),
		// Sniffed ClusterIP ports bind VIP:PORT: no wildcard.
		svc("db", "nats", "ClusterIP", "10.96.0.20", sp("client", 4222, "TCP", nil), sp("tcp-nats", 4223, "TCP", ptr.To("nats.io/client"))),
		// Declared TCP-family ports bind VIP:PORT too.
		svc("db", "mysql", "ClusterIP", "10.96.0.21", sp("tcp-mysql", 3306, "TCP", nil), sp("https", 443, "TCP", nil), sp("mongo", 27018, "TCP", nil)),
		// UDP is never sniffed, even under an HTTP name.
		svc("dns", "resolver", "ClusterIP", "10.96.0.53", sp("http-dns", 5353, "UDP", nil)),
		// ExternalName Services get no listener at all.
		svc("ext", "alias", "ExternalName", "", sp("http", 8082, "TCP", nil)),
		// NodePort with HTTP counts like any other.
		svc("ops", "grafana", "NodePort", "10.96.0.30", sp("http-grafana", 3000, "TCP", nil)),
	}
	got := SniffingListenerPorts(services)
	want := map[uint32][]string{
		10000: {"web/admin:http-admin (HTTP)", "web/front:http (HTTP)"},
		9090:  {"web/front:grpc-api (GRPC)"},
		8080:  {"web/gw:http2 (HTTP2)"},
		8081:  {"web/gw:(unnamed) (HTTP)"},
		7000:  {"web/stateful:http-peer (HTTP)"},
		3000:  {"ops/grafana:http-grafana (HTTP)"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SniffingListenerPorts =\n %v\nwant\n %v", got, want)
	}

	if c, ok := OutboundCollision(got, 10000); !ok || c.Port != 10000 || !reflect.DeepEqual(c.Services, want[10000]) {
		t.Errorf("OutboundCollision(10000) = %+v, %v", c, ok)
	}
	for _, port := range []uint32{3306, 4222, 4223, 5353, 8082, 7001, 1} {
		if c, ok := OutboundCollision(got, port); ok {
			t.Errorf("OutboundCollision(%d) = %+v, want none", port, c)
		}
	}
	if len(SniffingListenerPorts(nil)) != 0 {
		t.Error("SniffingListenerPorts(nil) is not empty")
	}
}
