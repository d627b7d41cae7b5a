package proxyconfig

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// EnvoyDefaultListenerFiltersTimeout is Envoy's listener_filters_timeout
// when a listener leaves it unset (envoy.config.listener.v3.Listener:
// "If not specified, a default timeout of 15s is used"; "0" disables it).
const EnvoyDefaultListenerFiltersTimeout = 15 * time.Second

// Istio's sidecar listener names and ports (pilot/pkg/networking/core:
// listener_builder.go buildVirtualOutboundListener, buildVirtualInboundListener).
const (
	VirtualOutbound     = "virtualOutbound"
	VirtualInbound      = "virtualInbound"
	virtualOutboundPort = 15001
	virtualInboundPort  = 15006
)

// Decision is what a proxy does with a connection whose client sends
// nothing first (a server-first protocol's client waiting for the banner).
type Decision struct {
	// Listener is the listener that runs its filters and picks the chain
	// (after virtualOutbound's hand-off by original destination);
	// ListenerAddress its address as "IP:PORT".
	Listener        string `json:"listener"`
	ListenerAddress string `json:"listenerAddress,omitempty"`
	// Via says how Envoy picked the listener: "exact" (its address is the
	// original destination), "wildcard" (0.0.0.0:PORT or [::]:PORT on the
	// destination's port), "accepting" (no listener for the destination:
	// the one that accepted it, virtualOutbound's passthrough, or the
	// inbound listener itself).
	Via string `json:"via"`
	// Inspectors are the listener filters, in order, that run for this
	// connection and wait for client bytes (filter_disabled did not match);
	// Skipped are the ones filter_disabled turned off for this port.
	Inspectors []string `json:"inspectors,omitempty"`
	Skipped    []string `json:"skipped,omitempty"`
	// Unknown are listener filters this package does not know: they may
	// or may not wait, so a decision with any is not proof.
	Unknown []string `json:"unknown,omitempty"`
	// Waits is true when an inspector waits for the client's first bytes.
	Waits bool `json:"waits"`
	// Timeout is how long the wait lasts: 0 = forever
	// (listener_filters_timeout "0s"); TimeoutDefault says it is Envoy's
	// default 15 s because the listener sets none. Meaningful when Waits.
	Timeout        time.Duration `json:"timeout"`
	TimeoutDefault bool          `json:"timeoutDefault,omitempty"`
	// OnTimeout is what Envoy does when the timeout ends the wait:
	// "continue" (continue_on_listener_filters_timeout: the connection
	// goes on with nothing detected, to Chain) or "close". Empty when
	// nothing waits or the wait is forever.
	OnTimeout string `json:"onTimeout,omitempty"`
	// Chain is the filter chain the connection ends in once the listener
	// filters are done (at once, or after the timeout with continue) with
	// nothing detected: transport raw_buffer, no ALPN. Empty with
	// NoChain: no chain matches and there is no default: Envoy closes it.
	Chain   string `json:"chain,omitempty"`
	NoChain bool   `json:"noChain,omitempty"`
	// ChainTLS: the chain terminates TLS (a DownstreamTlsContext), so a
	// client that does not start a TLS handshake never gets through.
	ChainTLS bool `json:"chainTLS,omitempty"`
	// Filter is the chain's terminal network filter ("tcp_proxy",
	// "http_connection_manager", ...); Cluster the tcp_proxy's cluster.
	Filter  string `json:"filter,omitempty"`
	Cluster string `json:"cluster,omitempty"`
	// WaitsForRequest: the chain is an HTTP connection manager, which
	// opens no upstream connection before a request arrives.
	WaitsForRequest bool `json:"waitsForRequest,omitempty"`
	// UpstreamTLS is how Cluster's connections leave a client sidecar
	// (UpstreamPlaintext, UpstreamTLS, UpstreamAutoMTLS); client side only.
	UpstreamTLS string `json:"upstreamTLS,omitempty"`
	// Undecided says why the dump cannot decide (no listener at all, a
	// filter_chain_matcher this package does not evaluate); the other
	// fields are then as far as it got.
	Undecided string `json:"undecided,omitempty"`
}

// Forever says the proxy waits for client bytes with no timeout: a
// server-first client and this proxy wait on each other until one gives up.
func (d Decision) Forever() bool {
	return d.Undecided == "" && len(d.Unknown) == 0 && d.Waits && d.Timeout == 0
}

// Passes says the proxy relays at once whatever the server sends first: no
// inspector waits and the connection ends in a tcp_proxy.
func (d Decision) Passes() bool {
	return d.Undecided == "" && len(d.Unknown) == 0 && !d.Waits && !d.NoChain && d.Filter == "tcp_proxy"
}

// Outbound decides a client sidecar's outbound path to dst (the address
// the application dials; iptables sends it to virtualOutbound on 15001).
// src is the client pod's address (for chains that match on the source;
// the zero value matches none of them).
func (d *Dump) Outbound(dst, src netip.AddrPort) Decision {
	accepting := d.bound(virtualOutboundPort, VirtualOutbound)
	if accepting == nil {
		return Decision{Undecided: "no virtualOutbound listener (port 15001) in the dump"}
	}
	ci := connInfo{dst: dst, src: src, transport: "raw_buffer"}
	var out Decision
	// Envoy runs the accepting listener's filters first (original_dst
	// restores the destination), with the accepting listener's own
	// timeout, then hands the socket to the listener of the original
	// destination, which runs its own filters under its own timeout
	// (active_tcp_socket.cc newConnection -> onAcceptWorker).
	first := runFilters(accepting, ci)
	l, via := accepting, "accepting"
	if accepting.UseOriginalDst != nil && *accepting.UseOriginalDst {
		if h, v := d.handOff(dst, accepting); h != nil {
			l, via = h, v
		}
	}
	out.Via = via
	if l != accepting {
		if len(first.inspectors) > 0 || len(first.unknown) > 0 {
			// A wait before the hand-off (an HTTP inspector on the 15001
			// catch-all under ALLOW_ANY_DYNAMIC_DNS) is bounded by
			// virtualOutbound's timeout, not the target's.
			pre := finish(Decision{Via: "accepting"}, accepting, first, ci)
			if pre.Timeout == 0 || pre.OnTimeout != "continue" || len(pre.Unknown) > 0 {
				pre.Chain, pre.NoChain, pre.ChainTLS, pre.Filter, pre.Cluster, pre.WaitsForRequest = "", false, false, "", "", false
				if pre.OnTimeout == "close" || pre.Timeout == 0 {
					return pre // it never reaches the hand-off
				}
			}
			second := runFilters(l, ci)
			out = finish(out, l, second, ci)
			out.Skipped = append(slices.Clone(first.skipped), out.Skipped...)
			out.Unknown = append(slices.Clone(first.unknown), out.Unknown...)
			switch {
			case !out.Waits:
				out.Waits, out.Inspectors, out.Timeout, out.TimeoutDefault, out.OnTimeout = true, first.inspectors, pre.Timeout, pre.TimeoutDefault, "continue"
			case out.Timeout > 0:
				out.Inspectors = append(slices.Clone(first.inspectors), out.Inspectors...)
				out.Timeout += pre.Timeout
			}
			d.upstream(&out)
			return out
		}
		first = merge(first, runFilters(l, ci))
	}
	out = finish(out, l, first, ci)
	d.upstream(&out)
	return out
}

// upstream says how the decision's cluster leaves the client sidecar.
func (d *Dump) upstream(out *Decision) {
	if out.Cluster != "" {
		if c := d.Clusters[out.Cluster]; c != nil {
			out.UpstreamTLS = c.UpstreamTLS()
		}
	}
}

// Inbound decides a server sidecar's inbound path for a connection to dst
// (the pod's address and the container port; iptables sends it to
// virtualInbound on 15006) from a client that sends TLS first (clientTLS:
// another sidecar speaking Istio mTLS) or nothing (a plaintext client of a
// server-first protocol).
func (d *Dump) Inbound(dst, src netip.AddrPort, clientTLS bool) Decision {
	l := d.bound(virtualInboundPort, VirtualInbound)
	if l == nil {
		return Decision{Undecided: "no virtualInbound listener (port 15006) in the dump"}
	}
	ci := connInfo{dst: dst, src: src, transport: "raw_buffer"}
	if clientTLS {
		// A sidecar's ClientHello arrives at once: tls_inspector decides
		// without waiting, and http_inspector skips TLS connections. Istio's
		// mTLS ALPN for TCP (cluster_tls.go: istio-peer-exchange, istio).
		ci.transport, ci.alpn = "tls", []string{"istio-peer-exchange", "istio"}
	}
	fr := runFilters(l, ci)
	if clientTLS {
		fr.inspectors = nil
	}
	return finish(Decision{Via: "accepting"}, l, fr, ci)
}

// bound finds the listener that binds port (bind_to_port unset or true),
// preferring Istio's name for it.
func (d *Dump) bound(port uint16, name string) *Listener {
	var found *Listener
	for _, l := range d.Listeners {
		ap, ok := l.Address.AddrPort()
		if !ok || ap.Port() != port || (l.BindToPort != nil && !*l.BindToPort) {
			continue
		}
		if l.Name == name {
			return l
		}
		if found == nil {
			found = l
		}
	}
	return found
}

// handOff is Envoy's lookup by original destination: the listener whose
// address (or additional address) is exactly dst, else one on the wildcard
// address of dst's family with dst's port.
func (d *Dump) handOff(dst netip.AddrPort, accepting *Listener) (*Listener, string) {
	var wildcard *Listener
	for _, l := range d.Listeners {
		if l == accepting {
			continue
		}
		addrs := []Address{l.Address}
		for _, a := range l.AdditionalAddresses {
			addrs = append(addrs, a.Address)
		}
		for _, a := range addrs {
			ap, ok := a.AddrPort()
			if !ok || ap.Port() != dst.Port() {
				continue
			}
			if ap.Addr() == dst.Addr().Unmap() {
				return l, "exact"
			}
			if ap.Addr().IsUnspecified() && ap.Addr().Is4() == dst.Addr().Unmap().Is4() && wildcard == nil {
				wildcard = l
			}
		}
	}
	if wildcard != nil {
		return wildcard, "wildcard"
	}
	return nil, ""
}

// connInfo is what Envoy knows about the connection when it matches: the
// addresses and what the inspectors detected.
type connInfo struct {
	dst, src  netip.AddrPort
	transport string
	alpn      []string
	sni       string
}

type filterRun struct {
	inspectors, skipped, unknown []string
}

func merge(a, b filterRun) filterRun {
	return filterRun{
		inspectors: append(slices.Clone(a.inspectors), b.inspectors...),
		skipped:    append(slices.Clone(a.skipped), b.skipped...),
		unknown:    append(slices.Clone(a.unknown), b.unknown...),
	}
}

// runFilters walks the listener's filters in order for the connection.
func runFilters(l *Listener, ci connInfo) filterRun {
	var fr filterRun
	for _, f := range l.ListenerFilters {
		kind := f.Kind()
		if f.FilterDisabled.Matches(ci.dst.Port()) {
			fr.skipped = append(fr.skipped, kind)
			continue
		}
		waits, known := waitsForClientBytes(kind)
		switch {
		case !known:
			fr.unknown = append(fr.unknown, kind)
		case waits:
			fr.inspectors = append(fr.inspectors, kind)
		}
	}
	return fr
}

// finish fills the decision from the listener whose chains the
// connection meets: the wait, its timeout, and the chain.
func finish(out Decision, l *Listener, fr filterRun, ci connInfo) Decision {
	out.Listener = l.Name
	if ap, ok := l.Address.AddrPort(); ok {
		out.ListenerAddress = ap.String()
	}
	out.Inspectors, out.Skipped, out.Unknown = fr.inspectors, fr.skipped, fr.unknown
	out.Waits = len(fr.inspectors) > 0
	if out.Waits {
		if l.ListenerFiltersTimeout == nil {
			out.Timeout, out.TimeoutDefault = EnvoyDefaultListenerFiltersTimeout, true
		} else {
			out.Timeout = max(time.Duration(*l.ListenerFiltersTimeout), 0)
		}
		if out.Timeout > 0 {
			out.OnTimeout = "close"
			if l.ContinueOnListenerFiltersTimeout {
				out.OnTimeout = "continue"
			}
		}
	}
	if len(l.FilterChainMatcher) > 0 && string(l.FilterChainMatcher) != "null" {
		out.Undecided = fmt.Sprintf("listener %s picks its chain with filter_chain_matcher, which this tool does not evaluate", l.Name)
		return out
	}
	fc := selectFilterChain(l, ci)
	if fc == nil {
		out.NoChain = true
		return out
	}
	out.Chain, out.ChainTLS = fc.Name, fc.TransportSocket.TLS()
	for _, f := range fc.Filters {
		switch k := f.Kind(); k {
		case "tcp_proxy":
			out.Filter = k
			if f.TypedConfig != nil {
				out.Cluster = f.TypedConfig.Cluster
				if out.Cluster == "" && f.TypedConfig.WeightedClusters != nil && len(f.TypedConfig.WeightedClusters.Clusters) > 0 {
					out.Cluster = f.TypedConfig.WeightedClusters.Clusters[0].Name
				}
			}
			return out
		case "http_connection_manager":
			out.Filter, out.WaitsForRequest = k, true
			return out
		}
	}
	if n := len(fc.Filters); n > 0 {
		out.Filter = fc.Filters[n-1].Kind()
	}
	return out
}
