package proxyconfig

import (
	"net/netip"
	"slices"
	"strings"
)

// selectFilterChain is Envoy's filter_chain_match selection
// (envoy.config.listener.v3.FilterChainMatch): the criteria in Envoy's
// order — destination port, destination IP, server name, transport
// protocol, application protocols, direct source IP, source type, source
// IP, source port — and at each step the most specific chains that match
// survive; chains without the criterion survive only when none matches it.
// No survivor: the default filter chain; nil when there is none either
// (Envoy closes the connection).
func selectFilterChain(l *Listener, ci connInfo) *FilterChain {
	chains := make([]*FilterChain, 0, len(l.FilterChains))
	for i := range l.FilterChains {
		chains = append(chains, &l.FilterChains[i])
	}
	steps := []func(m *FilterChainMatch) (has, ok bool, specificity int){
		func(m *FilterChainMatch) (bool, bool, int) {
			if m.DestinationPort == nil {
				return false, false, 0
			}
			return true, *m.DestinationPort == uint32(ci.dst.Port()), 0
		},
		func(m *FilterChainMatch) (bool, bool, int) { return cidrStep(m.PrefixRanges, ci.dst) },
		func(m *FilterChainMatch) (bool, bool, int) { return serverNameStep(m.ServerNames, ci.sni) },
		func(m *FilterChainMatch) (bool, bool, int) {
			if m.TransportProtocol == "" {
				return false, false, 0
			}
			return true, m.TransportProtocol == ci.transport, 0
		},
		func(m *FilterChainMatch) (bool, bool, int) {
			if len(m.ApplicationProtocols) == 0 {
				return false, false, 0
			}
			for _, p := range ci.alpn {
				if slices.Contains(m.ApplicationProtocols, p) {
					return true, true, 0
				}
			}
			return true, false, 0
		},
		func(m *FilterChainMatch) (bool, bool, int) { return cidrStep(m.DirectSourcePrefixRanges, ci.src) },
		func(m *FilterChainMatch) (bool, bool, int) {
			src := ci.src.Addr()
			switch m.SourceType {
			case "SAME_IP_OR_LOOPBACK":
				return true, src.IsValid() && (src.IsLoopback() || src == ci.dst.Addr()), 0
			case "EXTERNAL":
				return true, src.IsValid() && !src.IsLoopback() && src != ci.dst.Addr(), 0
			}
			return false, false, 0
		},
		func(m *FilterChainMatch) (bool, bool, int) { return cidrStep(m.SourcePrefixRanges, ci.src) },
		func(m *FilterChainMatch) (bool, bool, int) {
			if len(m.SourcePorts) == 0 {
				return false, false, 0
			}
			return true, ci.src.IsValid() && slices.Contains(m.SourcePorts, uint32(ci.src.Port())), 0
		},
	}
	empty := &FilterChainMatch{}
	for _, step := range steps {
		var specific, generic []*FilterChain
		best := -1
		for _, fc := range chains {
			m := fc.FilterChainMatch
			if m == nil {
				m = empty
			}
			has, ok, spec := step(m)
			switch {
			case !has:
				generic = append(generic, fc)
			case ok && spec > best:
				best, specific = spec, []*FilterChain{fc}
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
	return l.DefaultFilterChain
}

// cidrStep: the longest prefix that contains the address wins; an invalid
// (unknown) address matches no range.
func cidrStep(ranges []CidrRange, ap netip.AddrPort) (has, ok bool, specificity int) {
	if len(ranges) == 0 {
		return false, false, 0
	}
	ip := ap.Addr()
	best := -1
	for _, r := range ranges {
		p, valid := r.prefix()
		if !valid || !ip.IsValid() {
			continue
		}
		if p.Contains(ip.Unmap()) && p.Bits() > best {
			best = p.Bits()
		}
	}
	return true, best >= 0, best
}

// serverNameStep: an exact name beats the longest matching wildcard; a
// connection without SNI matches none.
func serverNameStep(names []string, sni string) (has, ok bool, specificity int) {
	if len(names) == 0 {
		return false, false, 0
	}
	best := -1
	for _, n := range names {
		switch {
		case sni == "":
		case n == sni:
			best = max(best, 1<<16)
		case strings.HasPrefix(n, "*.") && strings.HasSuffix(sni, n[1:]):
			best = max(best, len(n))
		}
	}
	return true, best >= 0, best
}
