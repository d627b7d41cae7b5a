package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// Options configure a Model.
type Options struct {
	Source ConfigSource
	Pod    Identity

	// Listen addresses; empty means Envoy's and pilot-agent's ports on all
	// addresses. StatusAddr "-" disables the status server.
	OutboundAddr string // ":15001"
	InboundAddr  string // ":15006"
	StatusAddr   string // ":15021"
	// AgentAddr is pilot-agent's own port (":15020"): POST /quitquitquit
	// from localhost stops the model, so a Job's pod can complete with a
	// classic sidecar. "-" disables it.
	AgentAddr string

	// Refresh is how often the source is polled (default 1s); Model.Refresh
	// asks for an immediate poll.
	Refresh time.Duration

	// DNSAutoAllocate stands in for ISTIO_META_DNS_CAPTURE together with
	// ISTIO_META_DNS_AUTO_ALLOCATE: ServiceEntry hosts without addresses
	// match by the addresses they resolve to.
	DNSAutoAllocate bool

	// InboundBindAddr is the source of connections to the app, Envoy's
	// inbound passthrough bind address (default 127.0.0.6).
	InboundBindAddr string

	// OriginalDst overrides SO_ORIGINAL_DST; nil in real use. Tests that run
	// without iptables set it.
	OriginalDst func(*net.TCPConn) (netip.AddrPort, error)

	// Log receives one line per connection decision and per config change
	// (default: stderr).
	Log *log.Logger
	// OnGeneration is called after every config change, first load included.
	OnGeneration func(Status)
	// OnReady is called once the listeners are up.
	OnReady func(*Model)
}

// Status is what the model reports about its config, on /model/status.
type Status struct {
	Ready bool `json:"ready"`
	// Generation counts config changes; it starts at 1 with the first load
	// and only moves when the loaded config differs from the one in use.
	Generation uint64 `json:"generation"`
	// LastSyncStarted is when the latest successful load began: anything
	// written to the API server before that instant is in the config in use.
	LastSyncStarted time.Time `json:"lastSyncStarted"`
	LastError       string    `json:"lastError,omitempty"`
	Source          string    `json:"source"`
	Pod             string    `json:"pod"`
	// PodKnown is false while the pod is missing from the inventory (just
	// created): inbound then uses passthrough chains and namespace policy.
	PodKnown                 bool   `json:"podKnown"`
	ProtocolDetectionTimeout string `json:"protocolDetectionTimeout"`
}

// Model is a running sidecar model.
type Model struct {
	opts    Options
	log     *log.Logger
	view    atomic.Pointer[view]
	refresh chan struct{}
	ready   chan struct{}
	quit    chan struct{} // closed by /quitquitquit
	quitOne sync.Once

	mu      sync.Mutex
	status  Status
	current *cluster.Inventory

	addrMu                  sync.Mutex
	outAddr, inAddr, stAddr net.Addr
	agAddr                  net.Addr
}

// New checks opts and returns a model that is not yet listening.
func New(opts Options) (*Model, error) {
	if opts.Source == nil {
		return nil, errors.New("sidecar: Options.Source is required")
	}
	if opts.Pod.Namespace == "" || (opts.Pod.Name == "" && opts.Pod.IP == "") {
		return nil, errors.New("sidecar: the pod's namespace and its name or IP are required (POD_NAMESPACE, POD_NAME, INSTANCE_IP)")
	}
	if opts.Pod.IP != "" {
		if _, err := netip.ParseAddr(opts.Pod.IP); err != nil {
			return nil, fmt.Errorf("sidecar: pod IP %q: %v", opts.Pod.IP, err)
		}
	}
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&opts.OutboundAddr, fmt.Sprintf(":%d", OutboundPort))
	def(&opts.InboundAddr, fmt.Sprintf(":%d", InboundPort))
	def(&opts.StatusAddr, fmt.Sprintf(":%d", StatusPort))
	def(&opts.AgentAddr, fmt.Sprintf(":%d", AgentPort))
	def(&opts.InboundBindAddr, "127.0.0.6")
	if _, err := netip.ParseAddr(opts.InboundBindAddr); err != nil {
		return nil, fmt.Errorf("sidecar: inbound bind address %q: %v", opts.InboundBindAddr, err)
	}
	if opts.Refresh <= 0 {
		opts.Refresh = time.Second
	}
	if opts.OriginalDst == nil {
		opts.OriginalDst = originalDst
	}
	m := &Model{opts: opts, log: opts.Log, refresh: make(chan struct{}, 1), ready: make(chan struct{}), quit: make(chan struct{})}
	if m.log == nil {
		m.log = log.New(os.Stderr, "sidecar-model: ", log.LstdFlags|log.Lmicroseconds)
	}
	m.status = Status{Source: opts.Source.String(), Pod: opts.Pod.Namespace + "/" + opts.Pod.Name}
	return m, nil
}

// Ready is closed once the first config is loaded and the listeners are up.
func (m *Model) Ready() <-chan struct{} { return m.ready }

// Addrs returns the bound outbound, inbound and status addresses (status is
// nil when disabled); valid after Ready.
func (m *Model) Addrs() (outbound, inbound, status net.Addr) {
	m.addrMu.Lock()
	defer m.addrMu.Unlock()
	return m.outAddr, m.inAddr, m.stAddr
}

// AgentAddr is where the pilot-agent port listens (nil before Run is
// ready or when disabled).
func (m *Model) AgentAddr() net.Addr {
	m.addrMu.Lock()
	defer m.addrMu.Unlock()
	return m.agAddr
}

// Status returns a snapshot of the config state.
func (m *Model) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.status
}

// Refresh asks for a reload now instead of at the next tick.
func (m *Model) Refresh() {
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

// Run loads the config, listens, and proxies until ctx ends. Like Envoy
// before its first xDS push, it has no listeners until a config is loaded:
// captured connections are refused meanwhile.
func (m *Model) Run(ctx context.Context) error {
	for !m.sync(ctx) {
		if !m.wait(ctx) {
			return ctx.Err()
		}
	}
	var lc net.ListenConfig
	out, err := lc.Listen(ctx, "tcp", m.opts.OutboundAddr)
	if err != nil {
		return fmt.Errorf("sidecar: outbound listener: %w", err)
	}
	defer out.Close()
	in, err := lc.Listen(ctx, "tcp", m.opts.InboundAddr)
	if err != nil {
		return fmt.Errorf("sidecar: inbound listener: %w", err)
	}
	defer in.Close()
	// The HTTP ports: pilot-agent's status (15021) and its own (15020).
	var httpAddrs [2]net.Addr
	for i, h := range []struct {
		what, addr string
		handler    http.Handler
	}{{"status", m.opts.StatusAddr, m.statusHandler()}, {"agent", m.opts.AgentAddr, m.agentHandler()}} {
		if h.addr == "-" {
			continue
		}
		l, err := lc.Listen(ctx, "tcp", h.addr)
		if err != nil {
			return fmt.Errorf("sidecar: %s listener: %w", h.what, err)
		}
		srv := &http.Server{Handler: h.handler, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(l)
		defer srv.Close()
		httpAddrs[i] = l.Addr()
	}
	m.addrMu.Lock()
	m.outAddr, m.inAddr = out.Addr(), in.Addr()
	m.stAddr, m.agAddr = httpAddrs[0], httpAddrs[1]
	m.addrMu.Unlock()

	go m.serve(out, m.handleOutbound)
	go m.serve(in, m.handleInbound)
	m.mu.Lock()
	m.status.Ready = true
	m.mu.Unlock()
	close(m.ready)
	m.log.Printf("ready: outbound %s, inbound %s, config generation %d", out.Addr(), in.Addr(), m.Status().Generation)
	if m.opts.OnReady != nil {
		m.opts.OnReady(m)
	}

	for m.wait(ctx) {
		m.sync(ctx)
	}
	return nil
}

// agentHandler is the part of pilot-agent's :15020 server a Job needs:
// POST /quitquitquit from localhost makes the proxy exit (Run returns
// nil), answering 200 first, as pilot-agent does.
func (m *Model) agentHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
			http.Error(w, "only requests from localhost are allowed", http.StatusForbidden)
			return
		}
		io.WriteString(w, "OK")
		m.log.Printf("quitquitquit from %s: exiting", r.RemoteAddr)
		m.quitOne.Do(func() { close(m.quit) })
	})
	return mux
}

// wait blocks until the next refresh is due; false when ctx ended.
func (m *Model) wait(ctx context.Context) bool {
	t := time.NewTimer(m.opts.Refresh)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-m.quit:
		return false
	case <-t.C:
	case <-m.refresh:
	}
	return true
}

// sync loads the config once and swaps it in if it changed.
func (m *Model) sync(ctx context.Context) bool {
	started := time.Now()
	inv, err := m.opts.Source.Load(ctx)
	if err == nil && inv == nil {
		err = errors.New("source returned no inventory")
	}
	m.mu.Lock()
	if err != nil {
		msg := err.Error()
		if msg != m.status.LastError {
			m.log.Printf("config load from %s failed (keeping generation %d): %v", m.opts.Source, m.status.Generation, err)
		}
		m.status.LastError = msg
		m.mu.Unlock()
		return false
	}
	m.status.LastError = ""
	m.status.LastSyncStarted = started
	if m.current != nil && reflect.DeepEqual(m.current, inv) {
		m.mu.Unlock()
		return true
	}
	var resolve func(string) []netip.Addr
	if m.opts.DNSAutoAllocate {
		resolve = lookupHost
	}
	v := buildView(inv, m.opts.Pod, resolve)
	m.view.Store(v)
	m.current = inv
	m.status.Generation++
	m.status.PodKnown = v.self != nil
	m.status.ProtocolDetectionTimeout = inv.Mesh.ProtocolDetectionTimeout.String()
	st := m.status
	m.mu.Unlock()
	m.log.Printf("config generation %d from %s: %d services, %d service entries, %d peer authentications, protocolDetectionTimeout %s, pod known %v",
		st.Generation, st.Source, len(inv.Services), len(inv.ServiceEntries), len(inv.PeerAuthentications), st.ProtocolDetectionTimeout, st.PodKnown)
	if m.opts.OnGeneration != nil {
		m.opts.OnGeneration(st)
	}
	return true
}

func lookupHost(host string) []netip.Addr {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", host)
	if err != nil {
		return nil
	}
	return addrs
}

func (m *Model) statusHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		if !m.Status().Ready {
			http.Error(w, "config not loaded", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	mux.HandleFunc("/model/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(m.Status())
	})
	return mux
}

func (m *Model) serve(l net.Listener, handle func(*net.TCPConn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Printf("accept on %s: %v", l.Addr(), err)
			continue
		}
		go handle(c.(*net.TCPConn))
	}
}

func waitDesc(d time.Duration) string {
	if d <= 0 {
		return "waits for the client's first bytes with no timeout"
	}
	return "waits for the client's first bytes, up to protocolDetectionTimeout " + d.String()
}

// handleOutbound is virtualOutbound (15001).
func (m *Model) handleOutbound(c *net.TCPConn) {
	defer c.Close()
	dst, err := m.opts.OriginalDst(c)
	if err != nil {
		m.log.Printf("outbound from %s: no original destination: %v", c.RemoteAddr(), err)
		return
	}
	v := m.view.Load()
	plan := v.outbound(dst)
	tag := fmt.Sprintf("outbound %s -> %s [%s]", c.RemoteAddr(), dst, plan.Listener)
	if plan.Blackhole {
		m.log.Printf("%s: %s: closed", tag, plan.Why)
		return
	}
	var first firstBytes
	if plan.Sniff {
		m.log.Printf("%s: %s; HTTP inspector %s", tag, plan.Why, waitDesc(v.detection))
		if first, err = inspectFirst(c, v.detection); err != nil {
			m.log.Printf("%s: client went away before sending anything: %v", tag, err)
			return
		}
		if first.TimedOut {
			m.log.Printf("%s: no client bytes within %s: continuing as TCP", tag, v.detection)
		}
	} else {
		m.log.Printf("%s: %s; TCP, no listener filter", tag, plan.Why)
	}
	up, err := v.upstream(plan, dst, !first.TimedOut && looksHTTP(first.Data))
	if err != nil {
		m.log.Printf("%s: %v: closed", tag, err)
		return
	}
	d := net.Dialer{Timeout: 10 * time.Second} // Istio's default connectTimeout
	uc, err := d.Dial("tcp", up.Addr.String())
	if err != nil {
		m.log.Printf("%s: upstream %s (%s): %v: closed", tag, up.Addr, up.Why, err)
		return
	}
	defer uc.Close()
	m.log.Printf("%s: relaying to %s (%s)", tag, up.Addr, up.Why)
	head := first.Data
	if up.Preamble {
		head = append(encodePreamble(up.ALPN, m.opts.Pod.Namespace+"/"+m.opts.Pod.Name), head...)
	}
	if len(head) > 0 {
		if _, err := uc.Write(head); err != nil {
			return
		}
	}
	relay(c, uc.(*net.TCPConn))
}

// handleInbound is virtualInbound (15006).
func (m *Model) handleInbound(c *net.TCPConn) {
	defer c.Close()
	dst, err := m.opts.OriginalDst(c)
	if err != nil {
		m.log.Printf("inbound from %s: no original destination: %v", c.RemoteAddr(), err)
		return
	}
	v := m.view.Load()
	plan := v.inbound(dst.Port())
	tag := fmt.Sprintf("inbound %s -> %s [%s]", c.RemoteAddr(), dst, plan.Chain)
	if plan.Blackhole {
		m.log.Printf("%s: %s: closed", tag, plan.Why)
		return
	}
	var first firstBytes
	if plan.Mode != cluster.MTLSDisable {
		// STRICT and PERMISSIVE chains match on transport protocol, so the TLS
		// inspector runs on every port, TCP-declared ones included.
		m.log.Printf("%s: %s; TLS inspector %s", tag, plan.Why, waitDesc(v.detection))
		if first, err = inspectTLS(c, v.detection); err != nil {
			m.log.Printf("%s: client went away: %v", tag, err)
			return
		}
		switch {
		case first.Mesh:
			m.log.Printf("%s: mTLS from %s (ALPN %s)", tag, first.Peer, first.ALPN)
		case plan.Mode == cluster.MTLSStrict && first.TimedOut:
			m.log.Printf("%s: STRICT, no client bytes within %s: no filter chain matches plaintext: closed", tag, v.detection)
			return
		case plan.Mode == cluster.MTLSStrict:
			m.log.Printf("%s: STRICT, plaintext client: no filter chain matches: reset", tag)
			c.SetLinger(0)
			return
		case first.TimedOut:
			m.log.Printf("%s: no client bytes within %s: continuing as plaintext TCP", tag, v.detection)
		default:
			m.log.Printf("%s: plaintext client", tag)
		}
	} else {
		switch plan.Fam {
		case famAuto:
			m.log.Printf("%s: %s; HTTP inspector %s", tag, plan.Why, waitDesc(v.detection))
			if first, err = inspectFirst(c, v.detection); err != nil {
				m.log.Printf("%s: client went away: %v", tag, err)
				return
			}
		default:
			m.log.Printf("%s: %s; no listener filter", tag, plan.Why)
		}
	}
	if plan.Fam == famHTTP && len(first.Data) == 0 {
		// The HTTP connection manager opens no upstream without a request,
		// detection timeout or not.
		m.log.Printf("%s: HTTP port: connection manager waits for a request", tag)
		if first, err = inspectFirst(c, 0); err != nil {
			return
		}
	}
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(m.opts.InboundBindAddr)}}
	app, err := d.Dial("tcp", dst.String())
	if err != nil {
		m.log.Printf("%s: app %s: %v: closed", tag, dst, err)
		return
	}
	defer app.Close()
	m.log.Printf("%s: relaying to app %s", tag, dst)
	if len(first.Data) > 0 {
		if _, err := app.Write(first.Data); err != nil {
			return
		}
	}
	relay(c, app.(*net.TCPConn))
}

// relay copies both ways, passing half-closes on, until both directions end.
func relay(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	cp := func(dst, src *net.TCPConn) {
		defer wg.Done()
		io.Copy(dst, src)
		dst.CloseWrite()
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
}
