package proxy

import (
	"net/netip"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func chain(name string, m *listener.FilterChainMatch) *listener.FilterChain {
	return &listener.FilterChain{Name: name, FilterChainMatch: m}
}

func cidr(prefix string, bits uint32) *core.CidrRange {
	return &core.CidrRange{AddressPrefix: prefix, PrefixLen: wrapperspb.UInt32(bits)}
}

// TestSelectFilterChain follows Envoy's matching order: the destination
// port narrows before the transport protocol, a specific value beats an
// unset one, and without a survivor the default chain takes over.
func TestSelectFilterChain(t *testing.T) {
	// virtualInbound-like: port 3306 has a TLS and a plaintext chain, the
	// rest falls to port-less passthrough chains.
	l := &listener.Listener{
		FilterChains: []*listener.FilterChain{
			chain("passthrough-tls", &listener.FilterChainMatch{TransportProtocol: "tls"}),
			chain("passthrough-raw", &listener.FilterChainMatch{TransportProtocol: "raw_buffer"}),
			chain("3306-tls", &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(3306), TransportProtocol: "tls", ApplicationProtocols: []string{"istio-peer-exchange", "istio"}}),
			chain("3306-raw", &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(3306), TransportProtocol: "raw_buffer"}),
			chain("8080-http", &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080), ApplicationProtocols: []string{"http/1.1", "h2c"}}),
			chain("10.0/16", &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9000), PrefixRanges: []*core.CidrRange{cidr("10.0.0.0", 16)}}),
			chain("10.0.1/24", &listener.FilterChainMatch{DestinationPort: wrapperspb.UInt32(9000), PrefixRanges: []*core.CidrRange{cidr("10.0.1.0", 24)}}),
		},
		DefaultFilterChain: chain("default", nil),
	}
	dst := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	src := netip.MustParseAddrPort("10.88.0.9:40000")
	for _, tc := range []struct {
		name string
		ci   ConnInfo
		want string
	}{
		{"mesh client on a service port", ConnInfo{Src: src, Dst: dst("10.88.0.2:3306"), Transport: "tls", ALPN: []string{"istio"}}, "3306-tls"},
		{"plaintext client on a service port", ConnInfo{Src: src, Dst: dst("10.88.0.2:3306"), Transport: "raw_buffer"}, "3306-raw"},
		{"TLS without Istio ALPN", ConnInfo{Src: src, Dst: dst("10.88.0.2:3306"), Transport: "tls", ALPN: []string{"h2"}}, "default"},
		{"port without chains: passthrough", ConnInfo{Src: src, Dst: dst("10.88.0.2:5555"), Transport: "raw_buffer"}, "passthrough-raw"},
		{"HTTP detected", ConnInfo{Src: src, Dst: dst("10.88.0.2:8080"), Transport: "raw_buffer", ALPN: []string{"http/1.1"}}, "8080-http"},
		{"not HTTP on an HTTP-only port: default", ConnInfo{Src: src, Dst: dst("10.88.0.2:8080"), Transport: "raw_buffer"}, "default"},
		{"longest prefix wins", ConnInfo{Src: src, Dst: dst("10.0.1.7:9000"), Transport: "raw_buffer"}, "10.0.1/24"},
		{"shorter prefix", ConnInfo{Src: src, Dst: dst("10.0.2.7:9000"), Transport: "raw_buffer"}, "10.0/16"},
		{"no prefix contains it: default", ConnInfo{Src: src, Dst: dst("192.168.0.1:9000"), Transport: "raw_buffer"}, "default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := SelectFilterChain(l, tc.ci)
			if got.GetName() != tc.want {
				t.Errorf("chain %q, want %q", got.GetName(), tc.want)
			}
		})
	}
	l.DefaultFilterChain = nil
	if got := SelectFilterChain(l, ConnInfo{Src: src, Dst: dst("10.88.0.2:8080"), Transport: "raw_buffer"}); got != nil {
		t.Errorf("no default chain: got %q, want none (Envoy closes)", got.GetName())
	}
}

// TestFilterDisabled evaluates the predicates Istio writes on
// virtualInbound's inspectors.
func TestFilterDisabled(t *testing.T) {
	portRange := func(start, end int32) *listener.ListenerFilterChainMatchPredicate {
		return &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_DestinationPortRange{
			DestinationPortRange: &typev3.Int32Range{Start: start, End: end},
		}}
	}
	or := &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_OrMatch{
		OrMatch: &listener.ListenerFilterChainMatchPredicate_MatchSet{Rules: []*listener.ListenerFilterChainMatchPredicate{portRange(3306, 3307), portRange(15006, 15007)}},
	}}
	not := &listener.ListenerFilterChainMatchPredicate{Rule: &listener.ListenerFilterChainMatchPredicate_NotMatch{NotMatch: or}}
	for _, tc := range []struct {
		name string
		p    *listener.ListenerFilterChainMatchPredicate
		port uint16
		want bool
	}{
		{"nil: enabled", nil, 3306, false},
		{"range start is inclusive", portRange(3306, 3307), 3306, true},
		{"range end is exclusive", portRange(3306, 3307), 3307, false},
		{"or: second rule", or, 15006, true},
		{"or: none", or, 8080, false},
		{"not", not, 8080, true},
	} {
		ci := ConnInfo{Dst: netip.AddrPortFrom(netip.MustParseAddr("10.88.0.2"), tc.port)}
		if got := FilterDisabled(tc.p, ci); got != tc.want {
			t.Errorf("%s: port %d disabled=%v, want %v", tc.name, tc.port, got, tc.want)
		}
	}
}

func TestHTTPProtocol(t *testing.T) {
	for _, tc := range []struct {
		in    string
		done  bool
		proto string
	}{
		{"", false, ""},
		{"GE", false, ""},
		{"GET / HTTP/1.1\r\n", true, "http/1.1"},
		{"POST /x HTTP/1.0\r\nHost: a\r\n", true, "http/1.1"},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", true, "h2c"},
		{"PRI * HT", false, ""},
		{"PING\r\n", true, ""},
		{"\x16\x03\x01", true, ""},
		{"\x00\x01SFMODEL", true, ""},
		{"ssh-2.0", true, ""},
	} {
		done, proto := httpProtocol([]byte(tc.in))
		if done != tc.done || proto != tc.proto {
			t.Errorf("httpProtocol(%q) = %v %q, want %v %q", tc.in, done, proto, tc.done, tc.proto)
		}
	}
}

func TestStandInRoundTrip(t *testing.T) {
	b := append(encodeStandIn([]string{"istio-peer-exchange", "istio"}, "spiffe://cluster.local/ns/a/sa/b"), "hello"...)
	for i := range len(b) - 5 {
		if done, _, _, _ := parseStandIn(b[:i]); done {
			t.Fatalf("decided after %d of %d bytes", i, len(b)-5)
		}
	}
	done, tls, alpn, n := parseStandIn(b)
	if !done || !tls || len(alpn) != 2 || alpn[1] != "istio" || string(b[n:]) != "hello" {
		t.Errorf("parseStandIn = %v %v %v rest %q", done, tls, alpn, b[n:])
	}
	if done, tls, _, _ := parseStandIn([]byte("5.5.5-MariaDB")); !done || tls {
		t.Errorf("plaintext: done %v tls %v, want decided, not TLS", done, tls)
	}
}

// FuzzInspectors: the inspectors never panic on network bytes, and once
// they decide, more bytes do not change the verdict.
func FuzzInspectors(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(encodeStandIn([]string{"istio"}, "peer"))
	f.Add([]byte("\x00\x01SFMODEL-MTLS\x00\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		d1, tls1, _, _ := parseStandIn(b)
		d2, tls2, _, _ := parseStandIn(append(append([]byte(nil), b...), 'x'))
		if d1 && (!d2 || tls1 != tls2) {
			t.Errorf("parseStandIn changed its verdict with one more byte: %q", b)
		}
		h1, p1 := httpProtocol(b)
		if h1 && p1 == "http/1.1" {
			if h2, p2 := httpProtocol(append(append([]byte(nil), b...), 'x')); !h2 || p2 != p1 {
				t.Errorf("httpProtocol changed its verdict with one more byte: %q", b)
			}
		}
	})
}
