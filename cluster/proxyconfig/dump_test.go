package proxyconfig

import (
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{in: `"0s"`, want: 0},
		{in: `"5s"`, want: 5 * time.Second},
		{in: `"0.100s"`, want: 100 * time.Millisecond},
		{in: `"1.000000001s"`, want: time.Second + 1},
		{in: `"-1s"`, want: -time.Second},
		{in: `"15"`, err: true},
		{in: `"1m"`, err: true},
		{in: `"s"`, err: true},
		{in: `"1e3s"`, err: true},
		{in: `"0.0000000001s"`, err: true},
		{in: `"99999999999999999999s"`, err: true},
		{in: `5`, err: true},
	} {
		var d Duration
		err := json.Unmarshal([]byte(tc.in), &d)
		if (err != nil) != tc.err {
			t.Errorf("%s: err %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if !tc.err && time.Duration(d) != tc.want {
			t.Errorf("%s = %v, want %v", tc.in, time.Duration(d), tc.want)
		}
	}
}

func TestPredicate(t *testing.T) {
	rng := func(start, end int) string {
		return `{"destination_port_range":{"start":` + itoa(start) + `,"end":` + itoa(end) + `}}`
	}
	for _, tc := range []struct {
		name string
		json string
		port uint16
		want bool
	}{
		{"range start is inclusive", rng(3306, 3307), 3306, true},
		{"range end is exclusive", rng(3306, 3307), 3307, false},
		{"or of ranges", `{"or_match":{"rules":[` + rng(80, 81) + `,` + rng(3306, 3307) + `]}}`, 3306, true},
		{"or, none", `{"or_match":{"rules":[` + rng(80, 81) + `]}}`, 3306, false},
		{"and", `{"and_match":{"rules":[` + rng(1, 5000) + `,` + rng(3000, 4000) + `]}}`, 3306, true},
		{"and, one fails", `{"and_match":{"rules":[` + rng(1, 5000) + `,` + rng(4000, 5000) + `]}}`, 3306, false},
		{"not", `{"not_match":` + rng(3306, 3307) + `}`, 3306, false},
		{"not, other port", `{"not_match":` + rng(3306, 3307) + `}`, 80, true},
		{"any true", `{"any_match":true}`, 1, true},
		{"empty matches nothing", `{}`, 1, false},
	} {
		var p Predicate
		if err := json.Unmarshal([]byte(tc.json), &p); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := p.Matches(tc.port); got != tc.want {
			t.Errorf("%s: Matches(%d) = %v, want %v", tc.name, tc.port, got, tc.want)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestParseRejects(t *testing.T) {
	deep := strings.Repeat(`{"not_match":`, maxPredicateDepth+2) + `{}` + strings.Repeat(`}`, maxPredicateDepth+2)
	for _, tc := range []struct {
		name, in string
	}{
		{"not JSON", `<html>`},
		{"no dump parts", `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.BootstrapConfigDump"}]}`},
		{"bad duration", `{"configs":[{"@type":"` + typeListenersDump + `","dynamic_listeners":[{"active_state":{"listener":{"name":"x","listener_filters_timeout":"forever"}}}]}]}`},
		{"predicate too deep", `{"configs":[{"@type":"` + typeListenersDump + `","dynamic_listeners":[{"active_state":{"listener":{"name":"x","listener_filters":[{"name":"f","filter_disabled":` + deep + `}]}}}]}]}`},
	} {
		if _, err := Parse([]byte(tc.in)); err == nil {
			t.Errorf("%s: Parse accepted it", tc.name)
		}
	}
	if _, err := Parse(make([]byte, MaxDumpBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized dump: %v, want ErrTooLarge", err)
	}
}

// small is a dump in Envoy's format with the listeners an Istio sidecar
// has, cut down to one Service of each kind: a sniffed VIP listener, a
// TCP one, an HTTP wildcard, virtualOutbound, virtualInbound (PERMISSIVE
// on 3306), and clusters with auto mTLS and without TLS.
const small = `{"configs":[
{"@type":"type.googleapis.com/envoy.admin.v3.ClustersConfigDump","dynamic_active_clusters":[
 {"cluster":{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"outbound|3307||db.shop.svc.cluster.local","type":"EDS",
  "transport_socket_matches":[{"name":"tlsMode-istio","match":{"tlsMode":"istio"},"transport_socket":{"name":"envoy.transport_sockets.tls","typed_config":{"@type":"type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"}}},
   {"name":"tlsMode-disabled","match":{},"transport_socket":{"name":"envoy.transport_sockets.raw_buffer","typed_config":{"@type":"type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"}}}]}},
 {"cluster":{"name":"outbound|3306||db-tcp.shop.svc.cluster.local","type":"EDS"}},
 {"cluster":{"name":"PassthroughCluster","type":"ORIGINAL_DST"}}]},
{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[
 {"name":"10.96.0.7_3307","active_state":{"listener":{"name":"10.96.0.7_3307","address":{"socket_address":{"address":"10.96.0.7","port_value":3307}},
  "filter_chains":[{"filter_chain_match":{"transport_protocol":"raw_buffer","application_protocols":["http/1.1","h2c"]},"name":"http","filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"}}]}],
  "default_filter_chain":{"name":"tcp","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"outbound|3307||db.shop.svc.cluster.local"}}]},
  "bind_to_port":false,"listener_filters":[{"name":"envoy.filters.listener.http_inspector","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
  "listener_filters_timeout":"0s","continue_on_listener_filters_timeout":true,"traffic_direction":"OUTBOUND"}}},
 {"name":"10.96.0.8_3306","active_state":{"listener":{"name":"10.96.0.8_3306","address":{"socket_address":{"address":"10.96.0.8","port_value":3306}},
  "filter_chains":[{"filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"outbound|3306||db-tcp.shop.svc.cluster.local"}}]}],
  "bind_to_port":false,"listener_filters_timeout":"0s","continue_on_listener_filters_timeout":true}}},
 {"name":"0.0.0.0_8080","active_state":{"listener":{"name":"0.0.0.0_8080","address":{"socket_address":{"address":"0.0.0.0","port_value":8080}},
  "filter_chains":[{"filter_chain_match":{"transport_protocol":"raw_buffer","application_protocols":["http/1.1","h2c"]},"name":"0.0.0.0_8080","filters":[{"name":"envoy.filters.network.http_connection_manager","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"}}]}],
  "default_filter_chain":{"filter_chain_match":{},"name":"PassthroughFilterChain","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"PassthroughCluster"}}]},
  "bind_to_port":false,"listener_filters":[{"name":"envoy.filters.listener.http_inspector","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}],
  "listener_filters_timeout":"5s","continue_on_listener_filters_timeout":true}}},
 {"name":"virtualOutbound","active_state":{"listener":{"name":"virtualOutbound","address":{"socket_address":{"address":"0.0.0.0","port_value":15001}},
  "filter_chains":[{"filter_chain_match":{"destination_port":15001},"name":"virtualOutbound-blackhole","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"BlackHoleCluster"}}]},
   {"name":"virtualOutbound-catchall-tcp","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"PassthroughCluster"}}]}],
  "use_original_dst":true,"listener_filters":[{"name":"envoy.filters.listener.original_dst","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],"traffic_direction":"OUTBOUND"}}},
 {"name":"virtualInbound","active_state":{"listener":{"name":"virtualInbound","address":{"socket_address":{"address":"0.0.0.0","port_value":15006}},
  "filter_chains":[
   {"filter_chain_match":{"destination_port":3306,"transport_protocol":"tls","application_protocols":["istio-peer-exchange","istio"]},"name":"0.0.0.0_3306","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"inbound|3306||"}}]},
   {"filter_chain_match":{"destination_port":3306,"transport_protocol":"raw_buffer"},"name":"0.0.0.0_3306","filters":[{"name":"envoy.filters.network.tcp_proxy","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy","cluster":"inbound|3306||"}}]}],
  "listener_filters":[{"name":"envoy.filters.listener.original_dst","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},
   {"name":"envoy.filters.listener.tls_inspector","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector"},"filter_disabled":{"or_match":{"rules":[{"destination_port_range":{"start":15090,"end":15091}},{"destination_port_range":{"start":8080,"end":8081}}]}}},
   {"name":"envoy.filters.listener.http_inspector","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"},"filter_disabled":{"destination_port_range":{"start":3306,"end":3307}}}],
  "listener_filters_timeout":"0s","continue_on_listener_filters_timeout":true,"traffic_direction":"INBOUND"}}}]}]}`

func TestSmallDump(t *testing.T) {
	d, err := Parse([]byte(small))
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	src := ap("10.88.0.5:40000")
	for _, tc := range []struct {
		name string
		got  Decision
		want Decision
	}{
		{"sniffed VIP waits forever", d.Outbound(ap("10.96.0.7:3307"), src), Decision{
			Listener: "10.96.0.7_3307", ListenerAddress: "10.96.0.7:3307", Via: "exact", Skipped: []string{},
			Inspectors: []string{"http_inspector"}, Waits: true, Timeout: 0,
			Chain: "tcp", Filter: "tcp_proxy", Cluster: "outbound|3307||db.shop.svc.cluster.local", UpstreamTLS: UpstreamAutoMTLS,
		}},
		{"declared TCP passes", d.Outbound(ap("10.96.0.8:3306"), src), Decision{
			Listener: "10.96.0.8_3306", ListenerAddress: "10.96.0.8:3306", Via: "exact",
			Filter: "tcp_proxy", Cluster: "outbound|3306||db-tcp.shop.svc.cluster.local", UpstreamTLS: UpstreamPlaintext,
		}},
		{"wildcard collision waits 5s then passes through", d.Outbound(ap("203.0.113.9:8080"), src), Decision{
			Listener: "0.0.0.0_8080", ListenerAddress: "0.0.0.0:8080", Via: "wildcard",
			Inspectors: []string{"http_inspector"}, Waits: true, Timeout: 5 * time.Second, OnTimeout: "continue",
			Chain: "PassthroughFilterChain", Filter: "tcp_proxy", Cluster: "PassthroughCluster", UpstreamTLS: UpstreamPlaintext,
		}},
		{"unknown port passes through", d.Outbound(ap("203.0.113.9:25"), src), Decision{
			Listener: "virtualOutbound", ListenerAddress: "0.0.0.0:15001", Via: "accepting",
			Chain: "virtualOutbound-catchall-tcp", Filter: "tcp_proxy", Cluster: "PassthroughCluster", UpstreamTLS: UpstreamPlaintext,
		}},
		{"PERMISSIVE inbound waits for a plaintext client", d.Inbound(ap("10.88.0.9:3306"), src, false), Decision{
			Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
			Inspectors: []string{"tls_inspector"}, Skipped: []string{"http_inspector"}, Waits: true,
			Chain: "0.0.0.0_3306", Filter: "tcp_proxy", Cluster: "inbound|3306||",
		}},
		{"inbound from a sidecar's mTLS does not wait", d.Inbound(ap("10.88.0.9:3306"), src, true), Decision{
			Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
			Skipped: []string{"http_inspector"},
			Chain:   "0.0.0.0_3306", Filter: "tcp_proxy", Cluster: "inbound|3306||",
		}},
		{"inbound port with no chain", d.Inbound(ap("10.88.0.9:8080"), src, false), Decision{
			Listener: "virtualInbound", ListenerAddress: "0.0.0.0:15006", Via: "accepting",
			Inspectors: []string{"http_inspector"}, Skipped: []string{"tls_inspector"}, Waits: true, NoChain: true,
		}},
	} {
		if !equalDecision(tc.got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, tc.got, tc.want)
		}
	}
	if !d.Outbound(ap("10.96.0.7:3307"), src).Forever() {
		t.Error("sniffed VIP: Forever() = false")
	}
	if !d.Outbound(ap("10.96.0.8:3306"), src).Passes() {
		t.Error("declared TCP: Passes() = false")
	}
}

// equalDecision compares decisions, a nil and an empty list alike.
func equalDecision(a, b Decision) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Under outboundTrafficPolicy ALLOW_ANY_DYNAMIC_DNS Istio puts an HTTP
// inspector on virtualOutbound itself, with no timeout (Envoy's 15s) and
// no continue: it runs before the hand-off, so even a declared TCP port
// waits 15s and is closed; the target listener's "0s" does not apply.
func TestWaitBeforeHandOff(t *testing.T) {
	inspector := `"listener_filters":[{"name":"envoy.filters.listener.original_dst","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}},{"name":"envoy.filters.listener.http_inspector","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"}}]`
	orig := `"listener_filters":[{"name":"envoy.filters.listener.original_dst","typed_config":{"@type":"type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"}}],"traffic_direction":"OUTBOUND"`
	if !strings.Contains(small, orig) {
		t.Fatal("the small dump changed: update this test")
	}
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		name, with string
		want       Decision
	}{
		{"no timeout, no continue: 15s then closed at virtualOutbound", inspector + `,"traffic_direction":"OUTBOUND"`, Decision{
			Listener: "virtualOutbound", ListenerAddress: "0.0.0.0:15001", Via: "accepting",
			Inspectors: []string{"http_inspector"}, Waits: true, Timeout: 15 * time.Second, TimeoutDefault: true, OnTimeout: "close"}},
		{"5s then continue: the declared TCP listener after the wait", inspector + `,"listener_filters_timeout":"5s","continue_on_listener_filters_timeout":true`, Decision{
			Listener: "10.96.0.8_3306", ListenerAddress: "10.96.0.8:3306", Via: "exact",
			Inspectors: []string{"http_inspector"}, Waits: true, Timeout: 5 * time.Second, OnTimeout: "continue",
			Filter: "tcp_proxy", Cluster: "outbound|3306||db-tcp.shop.svc.cluster.local", UpstreamTLS: UpstreamPlaintext}},
		{"0s: forever at virtualOutbound", inspector + `,"listener_filters_timeout":"0s"`, Decision{
			Listener: "virtualOutbound", ListenerAddress: "0.0.0.0:15001", Via: "accepting",
			Inspectors: []string{"http_inspector"}, Waits: true}},
	} {
		d, err := Parse([]byte(strings.Replace(small, orig, tc.with, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if got := d.Outbound(ap("10.96.0.8:3306"), ap("10.88.0.5:40000")); !equalDecision(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}
