package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxy "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// envoyDefaultListenerFiltersTimeout is Envoy's listener_filters_timeout
// when a listener leaves it unset.
const envoyDefaultListenerFiltersTimeout = 15 * time.Second

// Envoy is the part of Envoy that decides whether bytes flow, run over the
// config an ADS Client received: listener hand-off by original
// destination, listener filters (original_dst, tls_inspector,
// http_inspector) with their filter_disabled predicates and
// listener_filters_timeout, filter chain match, tcp_proxy and the HTTP
// connection manager to a cluster's endpoint, and the upstream transport
// socket (TLS as the world's stand-in, raw otherwise).
type Envoy struct {
	XDS *Client
	// OriginalDst returns a captured connection's destination before
	// REDIRECT (SO_ORIGINAL_DST); nil uses the local address.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// Peer names this proxy in the TLS stand-in (its SPIFFE identity in
	// a real mesh).
	Peer string
	// Logf gets one line per connection decision.
	Logf func(format string, args ...any)
	// Dial opens upstream connections; nil uses a net.Dialer.
	Dial func(ctx context.Context, local, remote netip.AddrPort) (net.Conn, error)
}

// Serve accepts on ln (a listener socket Envoy binds: virtualOutbound on
// 15001, virtualInbound on 15006) until it is closed.
func (e *Envoy) Serve(ln net.Listener) error {
	port := uint32(ln.Addr().(*net.TCPAddr).Port)
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go e.handle(c, port)
	}
}

func (e *Envoy) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// bound is the listener Envoy binds on port (bind_to_port unset or true).
func bound(s *Snapshot, port uint32) *listener.Listener {
	for _, r := range s.Listeners {
		l := r.Value
		if l.GetAddress().GetSocketAddress().GetPortValue() == port && (l.GetBindToPort() == nil || l.GetBindToPort().GetValue()) {
			return l
		}
	}
	return nil
}

func addrPort(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		ap := t.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

func (e *Envoy) handle(down net.Conn, port uint32) {
	defer down.Close()
	snap := e.XDS.Snapshot()
	ci := ConnInfo{Src: addrPort(down.RemoteAddr()), Dst: addrPort(down.LocalAddr()), Transport: "raw_buffer"}
	if e.OriginalDst != nil {
		if d, err := e.OriginalDst(down); err == nil {
			ci.Dst = d
		}
	}
	accepted := bound(snap, port)
	if accepted == nil {
		e.logf("conn %s -> %s: no listener bound on %d yet: closed", ci.Src, ci.Dst, port)
		return
	}
	l := FindListener(snap.Listeners, accepted, ci.Dst)
	head, why, ok := e.listenerFilters(down, l, &ci)
	if !ok {
		e.logf("conn %s -> %s: listener %s: %s: closed", ci.Src, ci.Dst, l.GetName(), why)
		return
	}
	fc := SelectFilterChain(l, ci)
	if fc == nil {
		e.logf("conn %s -> %s: listener %s (%s, transport %s, alpn %v): no filter chain matches: closed", ci.Src, ci.Dst, l.GetName(), why, ci.Transport, ci.ALPN)
		return
	}
	// The downstream transport socket: TLS consumes the handshake.
	if ts := fc.GetTransportSocket(); ts != nil && strings.HasSuffix(ts.GetTypedConfig().GetTypeUrl(), "DownstreamTlsContext") {
		if done, tls, _, n := parseStandIn(head); done && tls {
			head = head[n:]
			if _, err := down.Write(standInAccept); err != nil {
				return
			}
		} else {
			e.logf("conn %s -> %s: listener %s chain %s: TLS expected, plaintext arrived: reset", ci.Src, ci.Dst, l.GetName(), fc.GetName())
			return
		}
	}
	prefix := fmt.Sprintf("conn %s -> %s: listener %s (%s; transport %s, alpn %v) chain %q", ci.Src, ci.Dst, l.GetName(), why, ci.Transport, ci.ALPN, fc.GetName())
	for _, f := range fc.GetFilters() {
		switch tu := f.GetTypedConfig().GetTypeUrl(); {
		case strings.HasSuffix(tu, ".TcpProxy"):
			var tp tcpproxy.TcpProxy
			if err := f.GetTypedConfig().UnmarshalTo(&tp); err != nil {
				e.logf("%s: tcp_proxy: %v: closed", prefix, err)
				return
			}
			name := tp.GetCluster()
			if wc := tp.GetWeightedClusters().GetClusters(); name == "" && len(wc) > 0 {
				name = wc[0].GetName()
			}
			e.proxyTo(down, head, name, ci, snap, prefix+" tcp_proxy")
			return
		case strings.HasSuffix(tu, ".HttpConnectionManager"):
			var h hcm.HttpConnectionManager
			if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
				e.logf("%s: http_connection_manager: %v: closed", prefix, err)
				return
			}
			e.serveHTTP(down, head, &h, ci, snap, prefix+" http_connection_manager")
			return
		}
	}
	e.logf("%s: no tcp_proxy or http_connection_manager: closed", prefix)
}

// listenerFilters runs the listener's filters in order; it returns the
// bytes read meanwhile (replayed upstream), a note of what happened, and
// false when Envoy closes the connection (timeout without
// continue_on_listener_filters_timeout, or the peer closed first).
func (e *Envoy) listenerFilters(c net.Conn, l *listener.Listener, ci *ConnInfo) ([]byte, string, bool) {
	timeout := envoyDefaultListenerFiltersTimeout
	if t := l.GetListenerFiltersTimeout(); t != nil {
		timeout = t.AsDuration()
	}
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	var buf []byte
	var notes []string
	read := func() error {
		if err := c.SetReadDeadline(deadline); err != nil {
			return err
		}
		b := make([]byte, 4096)
		n, err := c.Read(b)
		buf = append(buf, b[:n]...)
		return err
	}
	defer c.SetReadDeadline(time.Time{})
	waitedFrom := time.Now()
	for _, lf := range l.GetListenerFilters() {
		tu := lf.GetTypedConfig().GetTypeUrl()
		if FilterDisabled(lf.GetFilterDisabled(), *ci) {
			continue
		}
		var decide func() bool
		switch {
		case strings.HasSuffix(tu, ".TlsInspector"):
			decide = func() bool {
				done, tls, alpn, _ := parseStandIn(buf)
				if done && tls {
					ci.Transport, ci.ALPN = "tls", alpn
				}
				return done
			}
		case strings.HasSuffix(tu, ".HttpInspector"):
			if ci.Transport != "raw_buffer" {
				continue // Envoy's http_inspector skips detected TLS
			}
			decide = func() bool {
				done, proto := httpProtocol(buf)
				if done && proto != "" {
					ci.ALPN = []string{proto}
				}
				return done
			}
		default:
			continue // original_dst is applied already; others do not read
		}
		name := lf.GetName()
		for !decide() {
			if err := read(); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if l.GetContinueOnListenerFiltersTimeout() {
						notes = append(notes, fmt.Sprintf("%s timed out after %s, continuing", name, timeout))
						return buf, strings.Join(notes, "; "), true
					}
					return buf, fmt.Sprintf("%s timed out after %s", name, timeout), false
				}
				if len(buf) == 0 || !decide() {
					return buf, fmt.Sprintf("%s: peer closed before it decided (%v)", name, err), false
				}
				break
			}
		}
		notes = append(notes, fmt.Sprintf("%s decided after %s", name, time.Since(waitedFrom).Round(time.Millisecond)))
	}
	if len(notes) == 0 {
		notes = append(notes, "no inspector")
	}
	return buf, strings.Join(notes, "; "), true
}

// serveHTTP is the HTTP connection manager as far as bytes flowing goes:
// it waits for a request head, routes it by Host through the route
// configuration, and relays the connection to the route's cluster.
func (e *Envoy) serveHTTP(down net.Conn, head []byte, h *hcm.HttpConnectionManager, ci ConnInfo, snap *Snapshot, prefix string) {
	for !bytes.Contains(head, []byte("\r\n\r\n")) {
		b := make([]byte, 4096)
		n, err := down.Read(b)
		head = append(head, b[:n]...)
		if err != nil {
			e.logf("%s: no request before the client went (%v): closed", prefix, err)
			return
		}
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		e.logf("%s: bad request: %v: closed", prefix, err)
		return
	}
	rc := h.GetRouteConfig()
	if name := h.GetRds().GetRouteConfigName(); name != "" {
		rc = snap.Routes[name].Value
	}
	cl := routeCluster(rc, req)
	if cl == "" {
		e.logf("%s: no route for %s %s: 404", prefix, req.Host, req.URL.Path)
		_, _ = io.WriteString(down, "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
		return
	}
	e.proxyTo(down, head, cl, ci, snap, prefix+" route "+req.Host)
}

// routeCluster picks the virtual host by the Host header (exact, then
// suffix and prefix wildcards, then "*") and its first route whose path
// prefix matches, as far as naming a cluster goes.
func routeCluster(rc *route.RouteConfiguration, req *http.Request) string {
	var vh *route.VirtualHost
	best := -1
	for _, v := range rc.GetVirtualHosts() {
		for _, d := range v.GetDomains() {
			score := -1
			switch {
			case d == req.Host:
				score = 3 << 16
			case d == "*":
				score = 0
			case strings.HasPrefix(d, "*") && strings.HasSuffix(req.Host, d[1:]):
				score = 2<<16 + len(d)
			case strings.HasSuffix(d, "*") && strings.HasPrefix(req.Host, d[:len(d)-1]):
				score = 1<<16 + len(d)
			}
			if score > best {
				best, vh = score, v
			}
		}
	}
	for _, r := range vh.GetRoutes() {
		m := r.GetMatch()
		if p := m.GetPrefix(); p != "" && !strings.HasPrefix(req.URL.Path, p) {
			continue
		}
		if p := m.GetPath(); p != "" && req.URL.Path != p {
			continue
		}
		a := r.GetRoute()
		if c := a.GetCluster(); c != "" {
			return c
		}
		if wc := a.GetWeightedClusters().GetClusters(); len(wc) > 0 {
			return wc[0].GetName()
		}
		return ""
	}
	return ""
}

// proxyTo connects to the cluster's endpoint and relays, head first.
func (e *Envoy) proxyTo(down net.Conn, head []byte, name string, ci ConnInfo, snap *Snapshot, prefix string) {
	r, ok := snap.Clusters[name]
	if !ok {
		e.logf("%s -> cluster %s: unknown cluster: closed", prefix, name)
		return
	}
	c := r.Value
	remote, meta, ok := pickEndpoint(c, ci, snap)
	if !ok {
		e.logf("%s -> cluster %s: no healthy endpoint (%s; %s): closed", prefix, name, clusterKind(c), describeEndpoints(c, snap))
		return
	}
	var local netip.AddrPort
	if sa := c.GetUpstreamBindConfig().GetSourceAddress(); sa != nil {
		if ip, err := netip.ParseAddr(sa.GetAddress()); err == nil {
			local = netip.AddrPortFrom(ip, 0)
		}
	}
	ts := c.GetTransportSocket()
	for _, m := range c.GetTransportSocketMatches() {
		if metaMatches(m.GetMatch(), meta) {
			ts = m.GetTransportSocket()
			break
		}
	}
	var standIn []byte
	tlsNote := "plaintext"
	if strings.HasSuffix(ts.GetTypedConfig().GetTypeUrl(), "UpstreamTlsContext") {
		var u tlsv3.UpstreamTlsContext
		if err := ts.GetTypedConfig().UnmarshalTo(&u); err == nil {
			alpn := u.GetCommonTlsContext().GetAlpnProtocols()
			standIn = encodeStandIn(alpn, e.Peer)
			tlsNote = fmt.Sprintf("TLS (stand-in) alpn %v", alpn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var up net.Conn
	var err error
	if e.Dial != nil {
		up, err = e.Dial(ctx, local, remote)
	} else {
		d := net.Dialer{}
		if local.IsValid() {
			d.LocalAddr = net.TCPAddrFromAddrPort(local)
		}
		up, err = d.DialContext(ctx, "tcp", remote.String())
	}
	if err != nil {
		e.logf("%s -> cluster %s %s: %v: closed", prefix, name, remote, err)
		return
	}
	defer up.Close()
	if _, err := up.Write(append(standIn, head...)); err != nil {
		return
	}
	if standIn != nil {
		// The handshake completes when the server side answers; Envoy
		// bounds it by the cluster's connect_timeout.
		limit := 10 * time.Second
		if ct := c.GetConnectTimeout(); ct != nil {
			limit = ct.AsDuration()
		}
		_ = up.SetReadDeadline(time.Now().Add(limit))
		got := make([]byte, len(standInAccept))
		n, err := io.ReadFull(up, got)
		_ = up.SetReadDeadline(time.Time{})
		if err != nil || !bytes.Equal(got, standInAccept) {
			e.logf("%s -> cluster %s endpoint %s %s: handshake failed (server answered %q, %v): closed", prefix, name, remote, tlsNote, got[:n], err)
			return
		}
	}
	e.logf("%s -> cluster %s endpoint %s %s: relaying", prefix, name, remote, tlsNote)
	relay(down, up)
}

// describeEndpoints lists a cluster's endpoints and health, for the log.
func describeEndpoints(c *cluster.Cluster, snap *Snapshot) string {
	cla := c.GetLoadAssignment()
	if c.GetType() == cluster.Cluster_EDS {
		n := c.GetName()
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			n = sn
		}
		r, ok := snap.Endpoints[n]
		if !ok {
			return "no EDS response for " + n
		}
		cla = r.Value
	}
	var out []string
	for _, le := range cla.GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d %s", sa.GetAddress(), sa.GetPortValue(), ep.GetHealthStatus()))
		}
	}
	if len(out) == 0 {
		return "no endpoints"
	}
	return strings.Join(out, ", ")
}

func clusterKind(c *cluster.Cluster) string {
	if c.GetClusterType() != nil {
		return c.GetClusterType().GetName()
	}
	return c.GetType().String()
}

// pickEndpoint: ORIGINAL_DST goes where the client was going; EDS and
// static clusters take their first endpoint that is not unhealthy.
func pickEndpoint(c *cluster.Cluster, ci ConnInfo, snap *Snapshot) (netip.AddrPort, *core.Metadata, bool) {
	if c.GetType() == cluster.Cluster_ORIGINAL_DST && c.GetClusterType() == nil {
		return ci.Dst, nil, true
	}
	cla := c.GetLoadAssignment()
	if c.GetType() == cluster.Cluster_EDS {
		n := c.GetName()
		if sn := c.GetEdsClusterConfig().GetServiceName(); sn != "" {
			n = sn
		}
		cla = snap.Endpoints[n].Value
	}
	return firstEndpoint(cla)
}

func firstEndpoint(cla *endpoint.ClusterLoadAssignment) (netip.AddrPort, *core.Metadata, bool) {
	for _, le := range cla.GetEndpoints() {
		for _, ep := range le.GetLbEndpoints() {
			switch ep.GetHealthStatus() {
			case core.HealthStatus_UNHEALTHY, core.HealthStatus_DRAINING, core.HealthStatus_TIMEOUT:
				continue
			}
			sa := ep.GetEndpoint().GetAddress().GetSocketAddress()
			ip, err := netip.ParseAddr(sa.GetAddress())
			if err != nil {
				continue
			}
			return netip.AddrPortFrom(ip, uint16(sa.GetPortValue())), ep.GetMetadata(), true
		}
	}
	return netip.AddrPort{}, nil, false
}

// metaMatches is Envoy's transport_socket_matches rule: every key of match
// equals the endpoint's envoy.transport_socket_match metadata (an empty
// match matches everything).
func metaMatches(match *structpb.Struct, meta *core.Metadata) bool {
	have := meta.GetFilterMetadata()["envoy.transport_socket_match"].GetFields()
	for k, v := range match.GetFields() {
		hv, ok := have[k]
		if !ok || hv.GetStringValue() != v.GetStringValue() {
			return false
		}
	}
	return true
}

// relay copies both ways until both sides are done, passing half-closes.
func relay(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else {
			dst.Close()
		}
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
}
