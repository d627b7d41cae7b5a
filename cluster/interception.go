package cluster

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Pod annotations that decide what istio-iptables captures (istio/api
// annotation/annotations.yaml; the injection template passes them to
// istio-iptables as -b, -d, -i, -x, -q, -o).
const (
	AnnotationIncludeInboundPorts     = "traffic.sidecar.istio.io/includeInboundPorts"
	AnnotationExcludeInboundPorts     = "traffic.sidecar.istio.io/excludeInboundPorts"
	AnnotationIncludeOutboundPorts    = "traffic.sidecar.istio.io/includeOutboundPorts"
	AnnotationExcludeOutboundPorts    = "traffic.sidecar.istio.io/excludeOutboundPorts"
	AnnotationIncludeOutboundIPRanges = "traffic.sidecar.istio.io/includeOutboundIPRanges"
	AnnotationExcludeOutboundIPRanges = "traffic.sidecar.istio.io/excludeOutboundIPRanges"
	annotationInterceptionMode        = "sidecar.istio.io/interceptionMode"
	annotationStatusPort              = "status.sidecar.istio.io/port"
)

// Ports the injection template always excludes from inbound capture: Envoy's
// Prometheus port and its health port; the agent's status port (15020
// unless status.sidecar.istio.io/port moves it) is added too.
const (
	envoyPrometheusPort = 15090
	envoyHealthPort     = 15021
	defaultStatusPort   = 15020
	// hboneInboundPort is returned from inbound capture by istio-iptables
	// itself (ISTIO_INBOUND -p tcp --dport 15008 -j RETURN).
	hboneInboundPort = 15008
)

// Interception is the traffic capture of one pod, read from its
// annotations with the injector's defaults (values.global.proxy:
// includeInboundPorts "*", includeIPRanges "*", the rest empty). The zero
// value is a pod without any of the annotations. Pods the injector handled
// carry the inbound ones explicitly.
type Interception struct {
	// Mode is sidecar.istio.io/interceptionMode: "" (REDIRECT, the
	// default), TPROXY or NONE (no iptables capture at all).
	Mode string
	// InboundListed: includeInboundPorts is a list (InboundPorts, maybe
	// empty: nothing captured inbound) rather than "*".
	InboundListed bool
	InboundPorts  []uint32
	// InboundExcluded is excludeInboundPorts; it applies only with "*",
	// beside 15090, 15021 and the status port.
	InboundExcluded []uint32
	// StatusPort is status.sidecar.istio.io/port; 0 means 15020.
	StatusPort uint32
	// OutboundIPsListed: includeOutboundIPRanges is a list
	// (OutboundIPRanges) rather than "*".
	OutboundIPsListed   bool
	OutboundIPRanges    []netip.Prefix
	OutboundExcludedIPs []netip.Prefix
	// OutboundPorts is includeOutboundPorts: captured whatever the IP.
	OutboundPorts []uint32
	// OutboundExcludedPorts is excludeOutboundPorts, applied first of all.
	OutboundExcludedPorts []uint32
	// Invalid says, per annotation, why the injector (pkg/kube/inject
	// validate.go) would refuse it; such a value is ignored here.
	Invalid []string
}

// interceptionAnnotations are read in this order (the order of Invalid).
var interceptionAnnotations = []string{
	annotationInterceptionMode, annotationStatusPort,
	AnnotationIncludeInboundPorts, AnnotationExcludeInboundPorts,
	AnnotationIncludeOutboundPorts, AnnotationExcludeOutboundPorts,
	AnnotationIncludeOutboundIPRanges, AnnotationExcludeOutboundIPRanges,
}

// ParseInterception reads a pod's interception annotations.
func ParseInterception(annotations map[string]string) Interception {
	var out Interception
	for _, name := range interceptionAnnotations {
		v, ok := annotations[name]
		if !ok {
			continue
		}
		var err error
		switch name {
		case annotationInterceptionMode:
			switch v {
			case "REDIRECT":
			case "TPROXY", "NONE":
				out.Mode = v
			default:
				err = fmt.Errorf("not REDIRECT, TPROXY or NONE")
			}
		case annotationStatusPort:
			out.StatusPort, err = parseInjectorPort(v)
		case AnnotationIncludeInboundPorts:
			if v != "*" {
				out.InboundPorts, err = parseInjectorPorts(v)
				out.InboundListed = err == nil
			}
		case AnnotationExcludeInboundPorts:
			out.InboundExcluded, err = parseInjectorPorts(v)
		case AnnotationExcludeOutboundPorts:
			out.OutboundExcludedPorts, err = parseInjectorPorts(v)
		case AnnotationIncludeOutboundPorts:
			// The injector does not validate this one; istio-iptables
			// hands each entry to iptables --dport, which fails the init
			// container on anything but a port.
			out.OutboundPorts, err = parseInjectorPorts(v)
		case AnnotationIncludeOutboundIPRanges:
			if v != "*" {
				out.OutboundIPRanges, err = parseInjectorCIDRs(v)
				out.OutboundIPsListed = err == nil
			}
		case AnnotationExcludeOutboundIPRanges:
			out.OutboundExcludedIPs, err = parseInjectorCIDRs(v)
		}
		if err != nil {
			out.Invalid = append(out.Invalid, fmt.Sprintf("%s %q: %v", name, v, err))
		}
	}
	return out
}

// inboundAlwaysExcluded are the injector's own exclusions with "*".
func (ic Interception) inboundAlwaysExcluded(port uint32) bool {
	status := cmp.Or(ic.StatusPort, defaultStatusPort)
	return port == envoyPrometheusPort || port == envoyHealthPort || port == status
}

// parseInjectorPort is the injector's parsePort: the value trimmed, a
// decimal that fits 16 bits.
func parseInjectorPort(s string) (uint32, error) {
	p, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port", s)
	}
	return uint32(p), nil
}

// parsePorts is the injector's parsePorts: the whole value trimmed, then
// every comma-separated entry a port (an empty entry, "*" or a range
// fails); an empty value is an empty list.
func parseInjectorPorts(s string) ([]uint32, error) {
	return parseInjectorList(strings.TrimSpace(s), parseInjectorPort)
}

// parseInjectorCIDRs is the injector's validateCIDRList: every
// comma-separated entry a prefix netip.ParsePrefix accepts (no spaces, no
// "*"); an empty value is an empty list.
func parseInjectorCIDRs(s string) ([]netip.Prefix, error) {
	return parseInjectorList(s, func(e string) (netip.Prefix, error) {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR", e)
		}
		return p, nil
	})
}

// parseInjectorList parses every comma-separated entry of s ("" is none).
func parseInjectorList[T any](s string, parse func(string) (T, error)) ([]T, error) {
	if s == "" {
		return nil, nil
	}
	var out []T
	for _, e := range strings.Split(s, ",") {
		v, err := parse(e)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// InboundCaptured reports whether connections to the pod's container port
// go through its sidecar (istio-iptables ISTIO_INBOUND): never without a
// sidecar or with interceptionMode NONE; never 15008; with
// includeInboundPorts "*" every other port unless excludeInboundPorts or
// the injector's 15090, 15021 and status port list it; with a list, only
// the listed ports (istio-iptables then ignores every exclusion). An uncaptured port is neither sniffed nor
// mTLS-checked.
func InboundCaptured(pod *Pod, port uint32) (bool, string) {
	ic := pod.Interception
	switch {
	case !pod.HasSidecar:
		return false, "the pod has no sidecar"
	case ic.Mode == "NONE":
		return false, "interceptionMode NONE: istio-iptables captures nothing"
	case port == hboneInboundPort:
		return false, "port 15008 is the sidecar's HBONE port, never captured"
	case ic.InboundListed && slices.Contains(ic.InboundPorts, port):
		return true, fmt.Sprintf("includeInboundPorts lists port %d", port)
	case ic.InboundListed:
		return false, fmt.Sprintf("includeInboundPorts %s does not list port %d", quotedList(ic.InboundPorts), port)
	case ic.inboundAlwaysExcluded(port):
		return false, fmt.Sprintf("port %d is the sidecar's own (the injector always excludes 15090, 15021 and the status port)", port)
	case slices.Contains(ic.InboundExcluded, port):
		return false, fmt.Sprintf("excludeInboundPorts lists port %d", port)
	}
	return true, "every inbound port is captured (includeInboundPorts \"*\")"
}

// OutboundCaptured reports whether the pod's connections to ip:port go
// through its sidecar, in istio-iptables' ISTIO_OUTPUT order:
// excludeOutboundPorts first, then loopback destinations (127.0.0.1/32 and
// ::1), excludeOutboundIPRanges, includeOutboundPorts, and finally
// includeOutboundIPRanges ("*" captures the rest). An invalid ip is judged
// by the port rules alone.
func OutboundCaptured(pod *Pod, ip netip.Addr, port uint32) (bool, string) {
	ic := pod.Interception
	ip = ip.Unmap()
	switch {
	case !pod.HasSidecar:
		return false, "the pod has no sidecar"
	case ic.Mode == "NONE":
		return false, "interceptionMode NONE: istio-iptables captures nothing"
	case slices.Contains(ic.OutboundExcludedPorts, port):
		return false, fmt.Sprintf("excludeOutboundPorts lists port %d: the client's sidecar never sees the connection", port)
	case ip.IsValid() && (ip == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || ip == netip.IPv6Loopback()):
		return false, "loopback destinations are never captured"
	}
	if ip.IsValid() {
		for _, p := range ic.OutboundExcludedIPs {
			if p.Contains(ip) {
				return false, fmt.Sprintf("excludeOutboundIPRanges %s holds %s", p, ip)
			}
		}
	}
	if slices.Contains(ic.OutboundPorts, port) {
		return true, fmt.Sprintf("includeOutboundPorts lists port %d", port)
	}
	if !ic.OutboundIPsListed {
		return true, "every outbound address is captured (includeOutboundIPRanges \"*\")"
	}
	if ip.IsValid() {
		for _, p := range ic.OutboundIPRanges {
			if p.Contains(ip) {
				return true, fmt.Sprintf("includeOutboundIPRanges %s holds %s", p, ip)
			}
		}
	}
	return false, fmt.Sprintf("includeOutboundIPRanges %s does not hold %s", quotedList(ic.OutboundIPRanges), ip)
}

// quotedList is a list as its annotation would hold it: "80,443".
func quotedList[T any](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = fmt.Sprint(v)
	}
	return strconv.Quote(strings.Join(s, ","))
}
