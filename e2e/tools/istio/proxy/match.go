package proxy

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// ConnInfo is what Envoy knows about a downstream connection when it
// evaluates listener filter predicates and matches filter chains: the
// addresses (the destination is the original one, after original_dst) and
// what the inspectors detected.
type ConnInfo struct {
	Src, Dst netip.AddrPort
	// Transport is the detected transport protocol: "tls" when
	// tls_inspector saw a ClientHello, else "raw_buffer" (Envoy's default
	// for a listener without a detecting filter).
	Transport  string
	ServerName string
	// ALPN: the ClientHello's protocols (tls_inspector) or "http/1.1" /
	// "h2c" (http_inspector).
	ALPN []string
}

// FindListener is Envoy's hand-off by original_dst: with use_original_dst
// on the accepting listener, the connection moves to the listener whose
// address is exactly dst, else the wildcard 0.0.0.0 one on dst's port, else
// it stays where it was accepted.
func FindListener(ls map[string]Resource[*listener.Listener], accepted *listener.Listener, dst netip.AddrPort) *listener.Listener {
	if !accepted.GetUseOriginalDst().GetValue() {
		return accepted
	}
	var wildcard *listener.Listener
	for _, r := range ls {
		l := r.Value
		sa := l.GetAddress().GetSocketAddress()
		if sa == nil || sa.GetPortValue() != uint32(dst.Port()) || l == accepted {
			continue
		}
		ip, err := netip.ParseAddr(sa.GetAddress())
		if err != nil {
			continue
		}
		if ip == dst.Addr() {
			return l
		}
		if ip.IsUnspecified() {
			wildcard = l
		}
	}
	if wildcard != nil {
		return wildcard
	}
	return accepted
}

// FilterDisabled evaluates a listener filter's filter_disabled predicate
// (ListenerFilterChainMatchPredicate) for the connection; nil = enabled.
func FilterDisabled(p *listener.ListenerFilterChainMatchPredicate, ci ConnInfo) bool {
	if p == nil {
		return false
	}
	switch r := p.GetRule().(type) {
	case *listener.ListenerFilterChainMatchPredicate_OrMatch:
		for _, q := range r.OrMatch.GetRules() {
			if FilterDisabled(q, ci) {
				return true
			}
		}
		return false
	case *listener.ListenerFilterChainMatchPredicate_AndMatch:
		for _, q := range r.AndMatch.GetRules() {
			if !FilterDisabled(q, ci) {
				return false
			}
		}
		return true
	case *listener.ListenerFilterChainMatchPredicate_NotMatch:
		return !FilterDisabled(r.NotMatch, ci)
	case *listener.ListenerFilterChainMatchPredicate_AnyMatch:
		return r.AnyMatch
	case *listener.ListenerFilterChainMatchPredicate_DestinationPortRange:
		port := int32(ci.Dst.Port())
		return port >= r.DestinationPortRange.GetStart() && port < r.DestinationPortRange.GetEnd()
	}
	return false
}

// SelectFilterChain is Envoy's filter chain match: the criteria are
// applied in Envoy's order (destination port, destination IP, server name,
// transport protocol, application protocols, direct source IP, source
// type, source IP, source port); at each step the most specific matching
// chains survive, chains without the criterion only when none matches it.
// No survivor: the default filter chain (nil if none: Envoy closes the
// connection).
func SelectFilterChain(l *listener.Listener, ci ConnInfo) *listener.FilterChain {
	chains := l.GetFilterChains()
	steps := []func(*listener.FilterChainMatch) (has bool, ok bool, specificity int){
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			if m.GetDestinationPort() == nil {
				return false, false, 0
			}
			return true, m.GetDestinationPort().GetValue() == uint32(ci.Dst.Port()), 0
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			return cidrStep(m.GetPrefixRanges(), ci.Dst.Addr())
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			return serverNameStep(m.GetServerNames(), ci.ServerName)
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			if m.GetTransportProtocol() == "" {
				return false, false, 0
			}
			return true, m.GetTransportProtocol() == ci.Transport, 0
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			if len(m.GetApplicationProtocols()) == 0 {
				return false, false, 0
			}
			for _, p := range ci.ALPN {
				if slices.Contains(m.GetApplicationProtocols(), p) {
					return true, true, 0
				}
			}
			return true, false, 0
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			return cidrStep(m.GetDirectSourcePrefixRanges(), ci.Src.Addr())
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			switch m.GetSourceType() {
			case listener.FilterChainMatch_SAME_IP_OR_LOOPBACK:
				return true, ci.Src.Addr().IsLoopback() || ci.Src.Addr() == ci.Dst.Addr(), 0
			case listener.FilterChainMatch_EXTERNAL:
				return true, !ci.Src.Addr().IsLoopback() && ci.Src.Addr() != ci.Dst.Addr(), 0
			}
			return false, false, 0
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			return cidrStep(m.GetSourcePrefixRanges(), ci.Src.Addr())
		},
		func(m *listener.FilterChainMatch) (bool, bool, int) {
			if len(m.GetSourcePorts()) == 0 {
				return false, false, 0
			}
			return true, slices.Contains(m.GetSourcePorts(), uint32(ci.Src.Port())), 0
		},
	}
	for _, step := range steps {
		var specific, generic []*listener.FilterChain
		best := -1
		for _, fc := range chains {
			has, ok, spec := step(fc.GetFilterChainMatch())
			switch {
			case !has:
				generic = append(generic, fc)
			case ok && spec > best:
				best, specific = spec, []*listener.FilterChain{fc}
			case ok && spec == best:
				specific = append(specific, fc)
			}
		}
		if len(specific) > 0 {
			chains = specific
		} else {
			chains = generic
		}
		if len(chains) == 0 {
			break
		}
	}
	if len(chains) > 0 {
		return chains[0]
	}
	return l.GetDefaultFilterChain()
}

// cidrStep: the longest prefix containing ip wins.
func cidrStep(ranges []*core.CidrRange, ip netip.Addr) (has, ok bool, specificity int) {
	if len(ranges) == 0 {
		return false, false, 0
	}
	best := -1
	for _, r := range ranges {
		// An unset prefix_len is 0 (Envoy's default): the whole space.
		p, err := netip.ParsePrefix(r.GetAddressPrefix() + "/" + strconv.Itoa(int(r.GetPrefixLen().GetValue())))
		if err != nil {
			continue
		}
		if p.Masked().Contains(ip) && p.Bits() > best {
			best = p.Bits()
		}
	}
	return true, best >= 0, best
}

// serverNameStep: an exact name beats the longest matching wildcard.
func serverNameStep(names []string, sni string) (has, ok bool, specificity int) {
	if len(names) == 0 {
		return false, false, 0
	}
	best := -1
	for _, n := range names {
		switch {
		case n == sni && sni != "":
			best = max(best, 1<<16)
		case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]):
			best = max(best, len(n))
		}
	}
	return true, best >= 0, best
}
