package sidecar

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// family is how a listener treats a protocol; Istio's
// ModelProtocolToListenerProtocol reduces every protocol to one of these.
type family int

const (
	famAuto family = iota // sniffed: HTTP inspector, TCP and HTTP chains
	famTCP                // tcp_proxy, no listener filter
	famHTTP               // HTTP connection manager
	famUDP                // no TCP listener at all
)

func (f family) String() string {
	return [...]string{"auto", "tcp", "http", "udp"}[f]
}

// familyOf follows istio's protocol.Instance IsTCP/IsHTTP split. An empty or
// unknown protocol is auto, which is also what Istio does with names it
// cannot parse.
func familyOf(p cluster.Protocol) family {
	switch strings.ToUpper(string(p)) {
	case "TCP", "TLS", "HTTPS", "MONGO", "MYSQL", "REDIS":
		return famTCP
	case "HTTP", "HTTP2", "GRPC", "GRPC-WEB", "HTTP_PROXY":
		return famHTTP
	case "UDP":
		return famUDP
	}
	return famAuto
}

// seFamily parses a ServiceEntry port protocol as written when the inventory
// did not resolve it; unset means auto, as protocol.Parse("") does.
func seFamily(p cluster.ServiceEntryPort) family {
	if p.Resolved.Protocol != "" {
		return familyOf(p.Resolved.Protocol)
	}
	return familyOf(cluster.Protocol(p.Protocol))
}

type podKey struct{ ns, name string }

// svcPort is one Service port, the unit an outbound cluster is built from.
type svcPort struct {
	svc  *cluster.Service
	port *cluster.ServicePort
}

// wildcard is the 0.0.0.0:PORT outbound listener after Istio's merging:
// any HTTP or auto contributor turns it into a sniffing listener
// (HTTPOverTCP/TCPOverHTTP/Auto conflicts all end as protocol.Unsupported).
type wildcard struct {
	fam     family
	sources []string
}

type cidrListener struct {
	prefix netip.Prefix
	port   uint16
	fam    family
	name   string
}

// view is one config generation compiled for lookups. It is immutable once
// built, so connections can use it without locks.
type view struct {
	inv       *cluster.Inventory
	selfKey   podKey
	self      *cluster.Pod
	detection time.Duration
	rootNS    string

	pods      map[podKey]*cluster.Pod
	podByIP   map[netip.Addr]*cluster.Pod
	vip       map[netip.AddrPort]svcPort // ClusterIP:port listeners (TCP-family and auto)
	vipHTTP   map[netip.AddrPort]svcPort // HTTP-family ports: only a route on the wildcard listener
	headless  map[netip.AddrPort]svcPort // podIP:port listeners of headless Services
	seExact   map[netip.AddrPort]seListener
	seCIDR    []cidrListener
	wildcards map[uint16]*wildcard
}

type seListener struct {
	name string
	fam  family
}

// Identity names the pod a sidecar runs in, as the injector passes it to
// istio-proxy (POD_NAMESPACE, POD_NAME, INSTANCE_IP).
type Identity struct {
	Namespace string
	Name      string
	IP        string
}

// buildView compiles inv for the pod id. resolve, when not nil, stands in for
// DNS capture with address auto-allocation: it returns the addresses a
// ServiceEntry host resolves to, which then count as the entry's addresses.
func buildView(inv *cluster.Inventory, id Identity, resolve func(host string) []netip.Addr) *view {
	v := &view{
		inv:       inv,
		selfKey:   podKey{id.Namespace, id.Name},
		detection: inv.Mesh.ProtocolDetectionTimeout,
		rootNS:    inv.Mesh.RootNamespace,
		pods:      map[podKey]*cluster.Pod{},
		podByIP:   map[netip.Addr]*cluster.Pod{},
		vip:       map[netip.AddrPort]svcPort{},
		vipHTTP:   map[netip.AddrPort]svcPort{},
		headless:  map[netip.AddrPort]svcPort{},
		seExact:   map[netip.AddrPort]seListener{},
		wildcards: map[uint16]*wildcard{},
	}
	if v.rootNS == "" {
		v.rootNS = "istio-system"
	}
	for i := range inv.Pods {
		p := &inv.Pods[i]
		v.pods[podKey{p.Namespace, p.Name}] = p
		for _, s := range p.IPs {
			if a, err := netip.ParseAddr(s); err == nil {
				v.podByIP[a] = p
			}
		}
	}
	v.self = v.pods[v.selfKey]
	if v.self == nil && id.IP != "" {
		if a, err := netip.ParseAddr(id.IP); err == nil {
			v.self = v.podByIP[a]
		}
	}

	for i := range inv.Services {
		s := &inv.Services[i]
		if s.Type == "ExternalName" {
			continue // no cluster IP, no endpoints: Istio builds no listener for it
		}
		vip, vipErr := netip.ParseAddr(s.ClusterIP)
		headless := vipErr != nil // "None" or empty
		for j := range s.Ports {
			sp := &s.Ports[j]
			if sp.Protocol == "UDP" || sp.Port <= 0 || sp.Port > 65535 {
				continue
			}
			port := uint16(sp.Port)
			fam := familyOf(sp.Resolved.Protocol)
			ref := svcPort{s, sp}
			name := s.Name + "." + s.Namespace + ":" + strconv.Itoa(int(port))
			switch {
			case fam == famUDP:
			case fam == famHTTP:
				// HTTP services always bind 0.0.0.0:PORT (buildSidecarOutboundListener,
				// ListenerProtocolHTTP), whatever their address.
				v.addWildcard(port, famHTTP, name)
				if !headless {
					v.vipHTTP[netip.AddrPortFrom(vip, port)] = ref
				}
			case headless:
				// Headless TCP/auto ports get one listener per endpoint IP.
				for _, b := range s.Backends {
					p := v.pods[podKey{b.Namespace, b.Name}]
					if p == nil || (podKey{p.Namespace, p.Name}) == v.selfKey {
						continue // "traffic to self does not flow through an outbound listener"
					}
					for _, ip := range p.IPs {
						if a, err := netip.ParseAddr(ip); err == nil {
							v.headless[netip.AddrPortFrom(a, port)] = ref
						}
					}
				}
			default:
				v.vip[netip.AddrPortFrom(vip, port)] = ref
			}
		}
	}

	for i := range inv.ServiceEntries {
		se := &inv.ServiceEntries[i]
		addrs := append([]string(nil), se.Addresses...)
		if resolve != nil && len(se.Addresses) == 0 {
			for _, h := range se.Hosts {
				for _, a := range resolve(h) {
					addrs = append(addrs, a.String())
				}
			}
		}
		for _, p := range se.Ports {
			if p.Number == 0 || p.Number > 65535 {
				continue
			}
			fam := seFamily(p)
			if fam == famUDP {
				continue
			}
			port := uint16(p.Number)
			name := se.Name + "." + se.Namespace + ":" + strconv.Itoa(int(port))
			if len(addrs) == 0 || fam == famHTTP {
				// No address to bind, or HTTP (which always binds the wildcard).
				v.addWildcard(port, fam, name)
				continue
			}
			for _, a := range addrs {
				if pfx, err := netip.ParsePrefix(a); err == nil && pfx.Bits() != pfx.Addr().BitLen() {
					// A real CIDR lands on 0.0.0.0:PORT as a filter chain match, so it
					// shares that listener's inspectors.
					v.seCIDR = append(v.seCIDR, cidrListener{pfx.Masked(), port, fam, name})
					v.addWildcard(port, fam, name)
					continue
				}
				a = strings.TrimSuffix(strings.TrimSuffix(a, "/32"), "/128")
				if ip, err := netip.ParseAddr(a); err == nil {
					v.seExact[netip.AddrPortFrom(ip, port)] = seListener{name, fam}
				}
			}
		}
	}
	return v
}

func (v *view) addWildcard(port uint16, fam family, source string) {
	w := v.wildcards[port]
	if w == nil {
		w = &wildcard{fam: fam}
		v.wildcards[port] = w
	} else if w.fam != fam || fam == famAuto {
		w.fam = famAuto
	}
	w.sources = append(w.sources, source)
}

// outboundPlan is what the outbound listener decided for one connection.
type outboundPlan struct {
	Listener string // Envoy-style name, e.g. "10.96.0.10_3306" or "0.0.0.0_10000"
	Sniff    bool   // an HTTP inspector waits for the client's first bytes
	// Service is the cluster behind the listener's TCP chain; nil means the
	// original destination (PassthroughCluster or a ServiceEntry).
	Service   *svcPort
	Blackhole bool
	Why       string
}

// Listener and port numbers Envoy and pilot-agent use; the inbound capture
// excludes the agent's ones.
const (
	OutboundPort = 15001
	InboundPort  = 15006
	StatusPort   = 15021
	AgentPort    = 15020
	ProxyUID     = 1337
	ProxyGID     = 1337
)

// outbound picks the listener for dst the way Envoy's virtualOutbound hands a
// redirected connection to the most specific IP:port listener, then to
// 0.0.0.0:PORT, then to its own passthrough chain.
func (v *view) outbound(dst netip.AddrPort) outboundPlan {
	port := dst.Port()
	if port == OutboundPort {
		return outboundPlan{Listener: "virtualOutbound", Blackhole: true, Why: "BlackHoleCluster for the outbound capture port"}
	}
	if ref, ok := v.vip[dst]; ok {
		return v.serviceListener(dst, ref, "Service ClusterIP")
	}
	if ref, ok := v.headless[dst]; ok {
		return v.serviceListener(dst, ref, "headless Service endpoint")
	}
	if se, ok := v.seExact[dst]; ok {
		return outboundPlan{
			Listener: listenerName(dst.Addr().String(), port),
			Sniff:    se.fam == famAuto,
			Why:      fmt.Sprintf("ServiceEntry %s address, protocol %s", se.name, se.fam),
		}
	}
	if w, ok := v.wildcards[port]; ok {
		why := fmt.Sprintf("0.0.0.0:%d listener (%s) exists for %s", port, w.fam, strings.Join(w.sources, ", "))
		for _, c := range v.seCIDR {
			if c.port == port && c.prefix.Contains(dst.Addr()) {
				why += "; ServiceEntry " + c.name + " CIDR chain"
			}
		}
		return outboundPlan{Listener: listenerName("0.0.0.0", port), Sniff: w.fam != famTCP, Why: why}
	}
	return outboundPlan{Listener: "virtualOutbound", Why: "no listener for this address and port: PassthroughCluster"}
}

func (v *view) serviceListener(dst netip.AddrPort, ref svcPort, what string) outboundPlan {
	fam := familyOf(ref.port.Resolved.Protocol)
	return outboundPlan{
		Listener: listenerName(dst.Addr().String(), dst.Port()),
		Sniff:    fam == famAuto,
		Service:  &ref,
		Why: fmt.Sprintf("%s of %s/%s port %d, protocol %s (%s)", what, ref.svc.Namespace, ref.svc.Name,
			ref.port.Port, fam, protocolSource(ref.port.Resolved)),
	}
}

func protocolSource(r cluster.ResolvedProtocol) string {
	if r.Source == "" {
		return "source unknown"
	}
	return "from " + string(r.Source)
}

func listenerName(addr string, port uint16) string {
	return addr + "_" + strconv.Itoa(int(port))
}

// upstream is where the model connects for an outbound connection.
type upstream struct {
	Addr     netip.AddrPort
	Preamble bool   // the upstream has a sidecar: speak "mTLS" first
	ALPN     string // what Istio's client would offer: istio-peer-exchange or istio-http/1.1
	Why      string
}

// upstream resolves the plan to an address. Service clusters resolve to an
// endpoint (EDS); the original destination is used as is, except that a
// ClusterIP is resolved to an endpoint the way kube-proxy would, because the
// e2e world has no kube-proxy. Only Service clusters use (auto) mTLS:
// PassthroughCluster and ServiceEntry clusters are plaintext.
func (v *view) upstream(plan outboundPlan, dst netip.AddrPort, http bool) (upstream, error) {
	ref := plan.Service
	if ref == nil && http {
		// The HTTP chain routes by Host to a Service; without HTTP routing the
		// model takes the Service whose address the client dialled.
		if r, ok := v.vipHTTP[dst]; ok {
			ref = &r
		} else if r, ok := v.vip[dst]; ok {
			ref = &r
		}
	}
	alpn := "istio-peer-exchange"
	if http {
		alpn = "istio-http/1.1"
	}
	if ref != nil && apiServerService(ref.svc) {
		// Envoy sends to the EndpointSlice's address (the API server is not
		// a pod); the inventory keeps only pod backends, so the model
		// relays to the ClusterIP and the node's kube-proxy picks the
		// address. Plaintext: the API server has no sidecar (TLS is the
		// client's own, end to end).
		return upstream{Addr: dst, Why: "the API server's Service (endpoints are not pods): via the ClusterIP, plaintext"}, nil
	}
	if ref != nil {
		pod, tp, err := v.endpoint(*ref, dst)
		if err != nil {
			return upstream{}, err
		}
		addr, err := podAddr(pod, tp)
		if err != nil {
			return upstream{}, err
		}
		mode := v.effectiveMTLS(pod, uint32(tp))
		u := upstream{Addr: addr, ALPN: alpn, Preamble: pod.HasSidecar && mode != cluster.MTLSDisable}
		u.Why = fmt.Sprintf("endpoint %s/%s of %s/%s", pod.Namespace, pod.Name, ref.svc.Namespace, ref.svc.Name)
		switch {
		case !pod.HasSidecar:
			u.Why += ", no sidecar: plaintext"
		case mode == cluster.MTLSDisable:
			u.Why += ", its port is DISABLE: auto mTLS sends plaintext"
		default:
			u.Why += ", sidecar: mTLS (preamble, ALPN " + alpn + ")"
		}
		return u, nil
	}
	// PassthroughCluster / ServiceEntry: plaintext to where the client dialled.
	for _, m := range []map[netip.AddrPort]svcPort{v.vip, v.vipHTTP} {
		if r, ok := m[dst]; ok {
			pod, tp, err := v.endpoint(r, dst)
			if err != nil {
				return upstream{}, err
			}
			addr, err := podAddr(pod, tp)
			if err != nil {
				return upstream{}, err
			}
			return upstream{Addr: addr, Why: "original destination is a ClusterIP: kube-proxy picks " + pod.Namespace + "/" + pod.Name + ", plaintext"}, nil
		}
	}
	return upstream{Addr: dst, Why: "original destination, plaintext"}, nil
}

// endpoint picks the backend of a Service port: the first running pod with an
// IP, in inventory order, so the choice is stable for tests. For a headless
// Service the client already chose the pod by dialling its IP.
func (v *view) endpoint(ref svcPort, dst netip.AddrPort) (*cluster.Pod, uint16, error) {
	if p := v.podByIP[dst.Addr()]; p != nil {
		if tp, ok := targetPort(*ref.port, p); ok {
			return p, tp, nil
		}
	}
	var fallback *cluster.Pod
	for _, b := range ref.svc.Backends {
		p := v.pods[podKey{b.Namespace, b.Name}]
		if p == nil || len(p.IPs) == 0 {
			continue
		}
		if _, ok := targetPort(*ref.port, p); !ok {
			continue
		}
		if p.Phase == "" || p.Phase == "Running" {
			tp, _ := targetPort(*ref.port, p)
			return p, tp, nil
		}
		if fallback == nil {
			fallback = p
		}
	}
	if fallback != nil {
		tp, _ := targetPort(*ref.port, fallback)
		return fallback, tp, nil
	}
	return nil, 0, fmt.Errorf("no healthy upstream: %s/%s port %d has no endpoint", ref.svc.Namespace, ref.svc.Name, ref.port.Port)
}

func podAddr(p *cluster.Pod, port uint16) (netip.AddrPort, error) {
	for _, s := range p.IPs {
		if a, err := netip.ParseAddr(s); err == nil {
			return netip.AddrPortFrom(a, port), nil
		}
	}
	return netip.AddrPort{}, fmt.Errorf("pod %s/%s has no usable IP", p.Namespace, p.Name)
}

// targetPort resolves a Service port's targetPort for pod p: a number, a
// container port name, or (unset) the Service port itself.
func targetPort(sp cluster.ServicePort, p *cluster.Pod) (uint16, bool) {
	t := sp.TargetPort
	if t == "" || t == "0" {
		return uint16(sp.Port), sp.Port > 0 && sp.Port <= 65535
	}
	if n, err := strconv.Atoi(t); err == nil {
		return uint16(n), n > 0 && n <= 65535
	}
	if p == nil {
		return 0, false
	}
	n, ok := p.ContainerPorts[t]
	return uint16(n), ok && n > 0 && n <= 65535
}

// inboundPlan is what the virtualInbound listener decided for a port of this pod.
type inboundPlan struct {
	Chain     string
	Fam       family
	Mode      cluster.MTLSMode
	Blackhole bool
	Why       string
}

// inbound finds the filter chain for a destination port of this pod: the
// Service port that targets it (the first one in inventory order; Istio keeps
// the oldest Service), else the passthrough chain, which is auto-detected.
func (v *view) inbound(port uint16) inboundPlan {
	if port == InboundPort {
		return inboundPlan{Chain: "virtualInbound-blackhole", Blackhole: true, Why: "traffic to the inbound capture port itself"}
	}
	mode := v.effectiveMTLS(v.self, uint32(port))
	if v.self != nil {
		for i := range v.inv.Services {
			s := &v.inv.Services[i]
			if !backs(s, v.self) {
				continue
			}
			for _, sp := range s.Ports {
				if sp.Protocol == "UDP" {
					continue
				}
				if tp, ok := targetPort(sp, v.self); ok && tp == port {
					fam := familyOf(sp.Resolved.Protocol)
					return inboundPlan{
						Chain: fmt.Sprintf("inbound|%d||", port), Fam: fam, Mode: mode,
						Why: fmt.Sprintf("%s/%s port %d (%s), mTLS %s", s.Namespace, s.Name, sp.Port, fam, mode),
					}
				}
			}
		}
	}
	return inboundPlan{Chain: "InboundPassthroughCluster", Fam: famAuto, Mode: mode,
		Why: fmt.Sprintf("no Service targets port %d: passthrough chain (auto), mTLS %s", port, mode)}
}

func backs(s *cluster.Service, p *cluster.Pod) bool {
	for _, b := range s.Backends {
		if b.Namespace == p.Namespace && b.Name == p.Name {
			return true
		}
	}
	return false
}

// effectiveMTLS resolves PeerAuthentication for pod p and its container port:
// the oldest workload policy selecting the pod, else the oldest namespace
// policy, else the oldest mesh policy in the root namespace; UNSET inherits
// upwards and ends as PERMISSIVE. portLevelMtls only counts on the workload
// policy, and an UNSET port inherits the workload's mode (istio's
// pilot/pkg/model/authentication.go ComposePeerAuthentication).
//
// TODO: use cluster.EffectiveMTLSMode once it lands, so model and tool agree
// by construction.
func (v *view) effectiveMTLS(p *cluster.Pod, port uint32) cluster.MTLSMode {
	ns := v.selfKey.ns
	var labels map[string]string
	if p != nil {
		ns, labels = p.Namespace, p.Labels
	}
	var mesh, nsPol, wl *cluster.PeerAuthentication
	pas := append([]cluster.PeerAuthentication(nil), v.inv.PeerAuthentications...)
	sort.SliceStable(pas, func(i, j int) bool {
		if !pas[i].CreatedAt.Equal(pas[j].CreatedAt) {
			return pas[i].CreatedAt.Before(pas[j].CreatedAt)
		}
		return pas[i].Name < pas[j].Name
	})
	for i := range pas {
		pa := &pas[i]
		switch {
		case len(pa.Selector) == 0 && pa.Namespace == v.rootNS && mesh == nil:
			mesh = pa
			if ns == v.rootNS && nsPol == nil {
				nsPol = pa
			}
		case len(pa.Selector) == 0 && pa.Namespace == ns && nsPol == nil:
			nsPol = pa
		case len(pa.Selector) > 0 && pa.Namespace == ns && wl == nil && p != nil && selects(pa.Selector, labels):
			wl = pa
		}
	}
	mode := cluster.MTLSPermissive
	for _, pa := range []*cluster.PeerAuthentication{mesh, nsPol, wl} {
		if pa != nil && set(pa.Mode) {
			mode = pa.Mode
		}
	}
	if wl != nil {
		if pm, ok := wl.PortModes[port]; ok && set(pm) {
			mode = pm
		}
	}
	return mode
}

func set(m cluster.MTLSMode) bool { return m != "" && m != cluster.MTLSUnset }

func selects(sel, labels map[string]string) bool {
	for k, want := range sel {
		if got, ok := labels[k]; !ok || got != want {
			return false
		}
	}
	return true
}

// looksHTTP is the model's HTTP inspector: an HTTP/1.x request line or the
// HTTP/2 connection preface. Envoy parses more carefully; for routing
// purposes here only "HTTP or not" matters.
func looksHTTP(b []byte) bool {
	s := string(b)
	if strings.HasPrefix(s, "PRI * HTTP/2.0") {
		return true
	}
	for _, m := range []string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "} {
		if strings.HasPrefix(s, m) {
			return true
		}
	}
	return false
}

// apiServerService is default/kubernetes, the one Service whose endpoints
// are the control plane's addresses rather than pods.
func apiServerService(s *cluster.Service) bool {
	return s.Namespace == "default" && s.Name == "kubernetes" && len(s.Selector) == 0
}
