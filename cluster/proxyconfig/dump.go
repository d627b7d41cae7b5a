// Package proxyconfig reads an Envoy admin /config_dump (the JSON a sidecar
// serves on 127.0.0.1:15000, what `istioctl proxy-config` reads) and decides
// what that proxy does with a connection whose client sends nothing first:
// which listener takes it, which listener filters wait for client bytes and
// for how long, and which filter chain and cluster it ends in.
//
// It decodes only the fields that decide that, with encoding/json structs for
// that subset of Envoy's proto-JSON. Not with go-control-plane's generated
// types: they are not in this module's go.mod, and protojson decodes an Any
// only when its type is registered, so reading a real Istio dump needs every
// extension type istiod may send (upstream HttpProtocolOptions, stats,
// metadata exchange, ...: Istio's pkg/config/xds, 802 packages). Measured
// (stripped, go1.26): admin/v3 + seven extension packages + protojson is a
// 7.1 MB program against 2.1 MB for encoding/json alone, and it still fails
// on the first unregistered Any of a real dump. The bytes come from a
// cluster, so Parse bounds the input and never panics (FuzzParseConfigDump).
package proxyconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// MaxDumpBytes bounds the dump Parse accepts. A sidecar's dump without
// endpoints is tens of kilobytes in a small mesh and grows with the
// Services it sees; 64 MiB is far beyond meshes whose sidecars are scoped,
// and still bounded when one is not.
const MaxDumpBytes = 64 << 20

// ErrTooLarge is returned for a dump over MaxDumpBytes.
var ErrTooLarge = fmt.Errorf("config_dump over %d MiB", MaxDumpBytes>>20)

// Envoy's type URLs for the parts of a ConfigDump this package reads.
const (
	typeListenersDump = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
	typeClustersDump  = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
)

// Dump is the part of a /config_dump that decides server-first behaviour:
// the active listeners and clusters.
type Dump struct {
	Listeners []*Listener
	Clusters  map[string]*Cluster
}

// Parse decodes a /config_dump document (Envoy's admin.v3.ConfigDump in
// proto-JSON, proto field names). Unknown fields are ignored; a document
// with neither listeners nor clusters is an error (it is not a dump).
func Parse(data []byte) (*Dump, error) {
	if len(data) > MaxDumpBytes {
		return nil, ErrTooLarge
	}
	var doc struct {
		Configs []configEntry `json:"configs"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("config_dump: %w", err)
	}
	d := &Dump{Clusters: map[string]*Cluster{}}
	var sawListeners, sawClusters bool
	for _, c := range doc.Configs {
		switch c.Type {
		case typeListenersDump:
			sawListeners = true
			for _, s := range c.StaticListeners {
				if s.Listener != nil {
					d.Listeners = append(d.Listeners, s.Listener)
				}
			}
			for _, dl := range c.DynamicListeners {
				// Only the active state takes connections: a warming
				// listener is not serving yet, a draining one no longer
				// gets new connections.
				if dl.ActiveState != nil && dl.ActiveState.Listener != nil {
					d.Listeners = append(d.Listeners, dl.ActiveState.Listener)
				}
			}
		case typeClustersDump:
			sawClusters = true
			for _, s := range slices.Concat(c.StaticClusters, c.DynamicActiveClusters) {
				if s.Cluster != nil && s.Cluster.Name != "" {
					d.Clusters[s.Cluster.Name] = s.Cluster
				}
			}
		}
	}
	if !sawListeners && !sawClusters {
		return nil, errors.New("config_dump: no ListenersConfigDump or ClustersConfigDump in configs[]")
	}
	for _, l := range d.Listeners {
		if err := l.validate(); err != nil {
			return nil, fmt.Errorf("config_dump: listener %q: %w", l.Name, err)
		}
	}
	return d, nil
}

// ListenerByName finds a listener by its name; nil if there is none.
func (d *Dump) ListenerByName(name string) *Listener {
	for _, l := range d.Listeners {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// configEntry is one entry of configs[]: an Any whose @type says which
// fields are set. One struct holds the fields of both dump types read.
type configEntry struct {
	Type            string `json:"@type"`
	StaticListeners []struct {
		Listener *Listener `json:"listener"`
	} `json:"static_listeners"`
	DynamicListeners []struct {
		Name        string `json:"name"`
		ActiveState *struct {
			Listener *Listener `json:"listener"`
		} `json:"active_state"`
	} `json:"dynamic_listeners"`
	StaticClusters        []clusterEntry `json:"static_clusters"`
	DynamicActiveClusters []clusterEntry `json:"dynamic_active_clusters"`
}

type clusterEntry struct {
	Cluster *Cluster `json:"cluster"`
}

// Listener is envoy.config.listener.v3.Listener, the fields read.
type Listener struct {
	Name                string  `json:"name"`
	Address             Address `json:"address"`
	AdditionalAddresses []struct {
		Address Address `json:"address"`
	} `json:"additional_addresses"`
	FilterChains       []FilterChain `json:"filter_chains"`
	DefaultFilterChain *FilterChain  `json:"default_filter_chain"`
	// FilterChainMatcher is the matcher API that replaces
	// filter_chain_match; this package does not evaluate it.
	FilterChainMatcher json.RawMessage `json:"filter_chain_matcher"`
	// UseOriginalDst (a BoolValue: a plain JSON bool) makes the listener
	// hand connections off to the listener of their original destination.
	UseOriginalDst  *bool            `json:"use_original_dst"`
	BindToPort      *bool            `json:"bind_to_port"`
	ListenerFilters []ListenerFilter `json:"listener_filters"`
	// ListenerFiltersTimeout: nil = Envoy's default (15 s), "0s" = none.
	ListenerFiltersTimeout           *Duration `json:"listener_filters_timeout"`
	ContinueOnListenerFiltersTimeout bool      `json:"continue_on_listener_filters_timeout"`
	TrafficDirection                 string    `json:"traffic_direction"`
}

func (l *Listener) validate() error {
	for i := range l.ListenerFilters {
		if err := l.ListenerFilters[i].FilterDisabled.validate(0); err != nil {
			return err
		}
	}
	return nil
}

// Address is envoy.config.core.v3.Address with a socket address.
type Address struct {
	SocketAddress *struct {
		Address   string `json:"address"`
		PortValue uint32 `json:"port_value"`
	} `json:"socket_address"`
}

// AddrPort is the socket address; ok is false for other kinds (a pipe, an
// internal listener) or an address that is not an IP.
func (a Address) AddrPort() (netip.AddrPort, bool) {
	if a.SocketAddress == nil || a.SocketAddress.PortValue > 65535 {
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(a.SocketAddress.Address)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(a.SocketAddress.PortValue)), true
}

// ListenerFilter is envoy.config.listener.v3.ListenerFilter.
type ListenerFilter struct {
	Name        string `json:"name"`
	TypedConfig *struct {
		Type string `json:"@type"`
	} `json:"typed_config"`
	FilterDisabled *Predicate `json:"filter_disabled"`
}

// Kind names the filter by what it does, from its type URL (the name is a
// convention only): "tls_inspector", "http_inspector", "original_dst",
// "proxy_protocol", ..., or the name as given when the type is unknown.
func (f ListenerFilter) Kind() string {
	if f.TypedConfig != nil {
		switch t := f.TypedConfig.Type; {
		case strings.HasSuffix(t, ".tls_inspector.v3.TlsInspector"):
			return "tls_inspector"
		case strings.HasSuffix(t, ".http_inspector.v3.HttpInspector"):
			return "http_inspector"
		case strings.HasSuffix(t, ".original_dst.v3.OriginalDst"):
			return "original_dst"
		case strings.HasSuffix(t, ".original_src.v3.OriginalSrc"):
			return "original_src"
		case strings.HasSuffix(t, ".proxy_protocol.v3.ProxyProtocol"):
			return "proxy_protocol"
		}
	}
	return strings.TrimPrefix(f.Name, "envoy.filters.listener.")
}

// waitsForClientBytes says whether the filter reads from the client before
// it lets the connection go on: the inspectors need the client's first
// bytes to decide, PROXY protocol needs its header. original_dst and
// original_src act on the socket alone. known is false for a filter this
// package does not know (it could do either).
func waitsForClientBytes(kind string) (waits, known bool) {
	switch kind {
	case "tls_inspector", "http_inspector", "proxy_protocol":
		return true, true
	case "original_dst", "original_src":
		return false, true
	}
	return false, false
}

// Predicate is envoy.config.listener.v3.ListenerFilterChainMatchPredicate:
// a listener filter is skipped for a connection the predicate matches.
type Predicate struct {
	OrMatch  *predicateSet `json:"or_match"`
	AndMatch *predicateSet `json:"and_match"`
	NotMatch *Predicate    `json:"not_match"`
	AnyMatch *bool         `json:"any_match"`
	// DestinationPortRange is a type.v3.Int32Range: start inclusive, end
	// exclusive.
	DestinationPortRange *struct {
		Start int64 `json:"start"`
		End   int64 `json:"end"`
	} `json:"destination_port_range"`
}

type predicateSet struct {
	Rules []*Predicate `json:"rules"`
}

// maxPredicateDepth bounds nesting: Istio's predicates are two levels deep,
// and a hostile document must not make Matches recurse without end
// (encoding/json itself stops at 10000 levels).
const maxPredicateDepth = 32

func (p *Predicate) validate(depth int) error {
	if p == nil {
		return nil
	}
	if depth > maxPredicateDepth {
		return fmt.Errorf("filter_disabled nested deeper than %d", maxPredicateDepth)
	}
	for _, set := range []*predicateSet{p.OrMatch, p.AndMatch} {
		if set == nil {
			continue
		}
		for _, r := range set.Rules {
			if err := r.validate(depth + 1); err != nil {
				return err
			}
		}
	}
	return p.NotMatch.validate(depth + 1)
}

// Matches evaluates the predicate for a connection to port (the original
// destination port: the filter runs after original_dst). A predicate with
// no rule set matches nothing.
func (p *Predicate) Matches(port uint16) bool {
	switch {
	case p == nil:
		return false
	case p.OrMatch != nil:
		return slices.ContainsFunc(p.OrMatch.Rules, func(r *Predicate) bool { return r.Matches(port) })
	case p.AndMatch != nil:
		return !slices.ContainsFunc(p.AndMatch.Rules, func(r *Predicate) bool { return !r.Matches(port) })
	case p.NotMatch != nil:
		return !p.NotMatch.Matches(port)
	case p.AnyMatch != nil:
		return *p.AnyMatch
	case p.DestinationPortRange != nil:
		return int64(port) >= p.DestinationPortRange.Start && int64(port) < p.DestinationPortRange.End
	}
	return false
}

// FilterChain is envoy.config.listener.v3.FilterChain, the fields read.
type FilterChain struct {
	Name             string            `json:"name"`
	FilterChainMatch *FilterChainMatch `json:"filter_chain_match"`
	Filters          []NetworkFilter   `json:"filters"`
	TransportSocket  *TransportSocket  `json:"transport_socket"`
}

// FilterChainMatch is envoy.config.listener.v3.FilterChainMatch.
type FilterChainMatch struct {
	// DestinationPort is a UInt32Value: a plain JSON number.
	DestinationPort          *uint32     `json:"destination_port"`
	PrefixRanges             []CidrRange `json:"prefix_ranges"`
	ServerNames              []string    `json:"server_names"`
	TransportProtocol        string      `json:"transport_protocol"`
	ApplicationProtocols     []string    `json:"application_protocols"`
	DirectSourcePrefixRanges []CidrRange `json:"direct_source_prefix_ranges"`
	SourceType               string      `json:"source_type"`
	SourcePrefixRanges       []CidrRange `json:"source_prefix_ranges"`
	SourcePorts              []uint32    `json:"source_ports"`
}

// CidrRange is envoy.config.core.v3.CidrRange.
type CidrRange struct {
	AddressPrefix string `json:"address_prefix"`
	// PrefixLen is a UInt32Value; unset is 0 (the whole address space).
	PrefixLen *uint32 `json:"prefix_len"`
}

func (c CidrRange) prefix() (netip.Prefix, bool) {
	ip, err := netip.ParseAddr(c.AddressPrefix)
	if err != nil {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 0
	if c.PrefixLen != nil {
		if int(*c.PrefixLen) > ip.BitLen() {
			return netip.Prefix{}, false
		}
		bits = int(*c.PrefixLen)
	}
	p, err := ip.Prefix(bits)
	return p, err == nil
}

// NetworkFilter is envoy.config.listener.v3.Filter with the fields of the
// terminal filters this package names (tcp_proxy's cluster).
type NetworkFilter struct {
	Name        string `json:"name"`
	TypedConfig *struct {
		Type             string `json:"@type"`
		Cluster          string `json:"cluster"`
		WeightedClusters *struct {
			Clusters []struct {
				Name string `json:"name"`
			} `json:"clusters"`
		} `json:"weighted_clusters"`
	} `json:"typed_config"`
}

// Kind is "tcp_proxy", "http_connection_manager", or the filter's name
// without Envoy's prefix.
func (f NetworkFilter) Kind() string {
	if f.TypedConfig != nil {
		switch t := f.TypedConfig.Type; {
		case strings.HasSuffix(t, ".tcp_proxy.v3.TcpProxy"):
			return "tcp_proxy"
		case strings.HasSuffix(t, ".http_connection_manager.v3.HttpConnectionManager"):
			return "http_connection_manager"
		}
	}
	return strings.TrimPrefix(f.Name, "envoy.filters.network.")
}

// TransportSocket is envoy.config.core.v3.TransportSocket.
type TransportSocket struct {
	Name        string `json:"name"`
	TypedConfig *struct {
		Type string `json:"@type"`
	} `json:"typed_config"`
}

// TLS says whether the socket speaks TLS (tls, or Istio's tls wrapped in
// a stats/metadata-exchange socket whose name still says tls).
func (t *TransportSocket) TLS() bool {
	if t == nil {
		return false
	}
	if t.TypedConfig != nil && (strings.HasSuffix(t.TypedConfig.Type, "TlsContext")) {
		return true
	}
	return t.Name == "envoy.transport_sockets.tls" || t.Name == "tls"
}

// Cluster is envoy.config.cluster.v3.Cluster, the fields that say whether
// the client side speaks TLS upstream.
type Cluster struct {
	Name                   string           `json:"name"`
	Type                   string           `json:"type"`
	TransportSocket        *TransportSocket `json:"transport_socket"`
	TransportSocketMatches []struct {
		Name            string           `json:"name"`
		Match           map[string]any   `json:"match"`
		TransportSocket *TransportSocket `json:"transport_socket"`
	} `json:"transport_socket_matches"`
}

// Upstream TLS, as a client sidecar's cluster configures it.
const (
	// UpstreamPlaintext: no TLS transport socket at all (a DestinationRule
	// with tls mode DISABLE, PassthroughCluster, a non-mesh endpoint).
	UpstreamPlaintext = "plaintext"
	// UpstreamTLS: the cluster always originates TLS (ISTIO_MUTUAL or
	// SIMPLE/MUTUAL set by a DestinationRule).
	UpstreamTLS = "tls"
	// UpstreamAutoMTLS: Istio's auto mTLS, a transport_socket_matches entry
	// that speaks TLS to endpoints labelled tlsMode=istio (a sidecar) and
	// plaintext to the others.
	UpstreamAutoMTLS = "istio-mtls-to-sidecars"
)

// UpstreamTLS says how the cluster's connections leave the client sidecar.
func (c *Cluster) UpstreamTLS() string {
	for _, m := range c.TransportSocketMatches {
		if m.TransportSocket.TLS() {
			if v, _ := m.Match["tlsMode"].(string); v == "istio" {
				return UpstreamAutoMTLS
			}
			if len(m.Match) == 0 {
				return UpstreamTLS
			}
		}
	}
	if c.TransportSocket.TLS() {
		return UpstreamTLS
	}
	return UpstreamPlaintext
}

// Duration is a google.protobuf.Duration in proto-JSON: decimal seconds
// with an "s" suffix ("0s", "5s", "0.100s").
type Duration time.Duration

// UnmarshalJSON accepts proto-JSON's string form only.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	num, ok := strings.CutSuffix(s, "s")
	if !ok || num == "" || strings.ContainsAny(num, "eE+") {
		return fmt.Errorf("duration %q: want seconds like \"1.5s\"", s)
	}
	secs, frac, _ := strings.Cut(num, ".")
	neg := strings.HasPrefix(secs, "-")
	secs = strings.TrimPrefix(secs, "-")
	if len(frac) > 9 {
		return fmt.Errorf("duration %q: more than nanoseconds", s)
	}
	whole, err := strconv.ParseUint(secs, 10, 64)
	if err != nil || whole > uint64(time.Duration(1<<63-1)/time.Second)-1 {
		return fmt.Errorf("duration %q: out of range", s)
	}
	var nanos uint64
	if frac != "" {
		n, err := strconv.ParseUint(frac, 10, 64)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		for i := len(frac); i < 9; i++ {
			n *= 10
		}
		nanos = n
	}
	v := time.Duration(whole)*time.Second + time.Duration(nanos)
	if neg {
		v = -v
	}
	*d = Duration(v)
	return nil
}
