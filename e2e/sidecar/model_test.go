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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// These tests need no root: the model listens on loopback and
// Options.OriginalDst stands in for iptables.

type failingSource struct{}

func (failingSource) Load(context.Context) (*cluster.Inventory, error) {
	return nil, errors.New("API server unreachable")
}
func (failingSource) String() string { return "failing" }

func startLoopbackModel(t *testing.T, src ConfigSource, id Identity, dst netip.AddrPort) (*Model, chan Status) {
	t.Helper()
	gens := make(chan Status, 8)
	m, err := New(Options{
		Source: src, Pod: id,
		OutboundAddr: "127.0.0.1:0", InboundAddr: "127.0.0.1:0", StatusAddr: "127.0.0.1:0", AgentAddr: "127.0.0.1:0",
		Refresh:      time.Hour,
		OriginalDst:  func(*net.TCPConn) (netip.AddrPort, error) { return dst, nil },
		Log:          log.New(io.Discard, "", 0),
		OnGeneration: func(s Status) { gens <- s },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("model stopped: %v", err)
	}
	return m, gens
}

func TestNewRejectsBadOptions(t *testing.T) {
	src := NewStaticSource(testInventory())
	for name, o := range map[string]Options{
		"no source":      {Pod: Identity{Namespace: "a", Name: "b"}},
		"no pod":         {Source: src},
		"no name, no IP": {Source: src, Pod: Identity{Namespace: "a"}},
		"bad pod IP":     {Source: src, Pod: Identity{Namespace: "a", Name: "b", IP: "10.0.0"}},
		"bad bind IP":    {Source: src, Pod: Identity{Namespace: "a", Name: "b"}, InboundBindAddr: "localhost"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
}

func TestGenerationsAndStatus(t *testing.T) {
	src := NewStaticSource(testInventory())
	m, gens := startLoopbackModel(t, src, Identity{Namespace: "app", Name: "server"}, netip.AddrPort{})
	if s := <-gens; s.Generation != 1 || !s.PodKnown {
		t.Fatalf("first load: %+v", s)
	}

	_, _, st := m.Addrs()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + st.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz/ready"); code != http.StatusOK {
		t.Fatalf("/healthz/ready = %d", code)
	}

	inv := testInventory()
	inv.Mesh.ProtocolDetectionTimeout = 5 * time.Second
	src.Set(inv)
	m.Refresh()
	if s := <-gens; s.Generation != 2 || s.ProtocolDetectionTimeout != "5s" {
		t.Fatalf("after a change: %+v", s)
	}
	_, body := get("/model/status")
	var s Status
	if err := json.Unmarshal([]byte(body), &s); err != nil || s.Generation != 2 || !s.Ready {
		t.Fatalf("/model/status = %s (%v)", body, err)
	}

	// An unchanged config moves the sync time, not the generation.
	before := m.Status().LastSyncStarted
	if !m.sync(context.Background()) {
		t.Fatal("sync failed")
	}
	if after := m.Status(); after.Generation != 2 || !after.LastSyncStarted.After(before) {
		t.Fatalf("unchanged reload: generation %d, sync %v -> %v", after.Generation, before, after.LastSyncStarted)
	}

	// A failed load keeps the config in use and says why.
	m.opts.Source = failingSource{}
	if m.sync(context.Background()) {
		t.Fatal("sync from a failing source succeeded")
	}
	if s := m.Status(); s.Generation != 2 || !strings.Contains(s.LastError, "unreachable") {
		t.Fatalf("after a failed load: %+v", s)
	}
}

// TestInboundOnLoopback drives handleInbound through real sockets: a banner
// app, the model's inbound listener, and clients with and without the
// preamble.
func TestInboundOnLoopback(t *testing.T) {
	app, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close() }) // parallel subtests outlive this function
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "220 ready, peer %s\r\n", c.RemoteAddr())
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	appAddr := netip.MustParseAddrPort(app.Addr().String())
	appPort := strconv.Itoa(int(appAddr.Port()))

	withPort := func(r cluster.ResolvedProtocol, mode cluster.MTLSMode) cluster.Inventory {
		inv := testInventory()
		inv.Pods[2].IPs = []string{"127.0.0.1"}
		inv.Services[1].Ports = append(inv.Services[1].Ports, port("p", int32(appAddr.Port()), appPort, r))
		inv.PeerAuthentications[1].PortModes[uint32(appAddr.Port())] = mode
		return inv
	}
	tests := []struct {
		name     string
		inv      cluster.Inventory
		preamble bool
		want     expect
	}{
		{name: "PERMISSIVE TCP, plaintext: TLS inspector waits", inv: withPort(tcpByName(), cluster.MTLSPermissive), want: hang},
		{name: "PERMISSIVE TCP, mesh client", inv: withPort(tcpByName(), cluster.MTLSPermissive), preamble: true, want: banner},
		{name: "PERMISSIVE auto, mesh client", inv: withPort(auto(), cluster.MTLSPermissive), preamble: true, want: banner},
		{name: "DISABLE TCP, plaintext", inv: withPort(tcpByName(), cluster.MTLSDisable), want: banner},
		{name: "DISABLE auto, plaintext: HTTP inspector waits", inv: withPort(auto(), cluster.MTLSDisable), want: hang},
		{name: "STRICT TCP, mesh client", inv: withPort(tcpByName(), cluster.MTLSStrict), preamble: true, want: banner},
		{name: "HTTP port: connection manager waits even for a mesh client", inv: withPort(httpByName(), cluster.MTLSPermissive), preamble: true, want: hang},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, _ := startLoopbackModel(t, NewStaticSource(tc.inv), Identity{Namespace: "app", Name: "server"}, appAddr)
			_, in, _ := m.Addrs()
			dial := func(network, addr string) (net.Conn, error) {
				c, err := net.Dial(network, addr)
				if err == nil && tc.preamble {
					_, err = c.Write(encodePreamble("istio-peer-exchange", "app/client"))
				}
				return c, err
			}
			r := exchange(dial, in.String(), "", waitFor(tc.want))
			check(t, "inbound", r, tc.want)
			if tc.want == banner && !strings.Contains(r.Got, "peer 127.0.0.6:") {
				t.Errorf("the app should see Envoy's inbound passthrough source 127.0.0.6: %q", r.Got)
			}
		})
	}
}

// TestQuitQuitQuit: pilot-agent's POST /quitquitquit ends Run cleanly
// (a Job's pod completes); other methods are refused.
func TestQuitQuitQuit(t *testing.T) {
	m, err := New(Options{
		Source: NewStaticSource(cluster.Inventory{}), Pod: Identity{Namespace: "app", Name: "job"},
		OutboundAddr: "127.0.0.1:0", InboundAddr: "127.0.0.1:0", StatusAddr: "-", AgentAddr: "127.0.0.1:0",
		Refresh: time.Hour, Log: log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- m.Run(context.Background()) }()
	select {
	case <-m.Ready():
	case err := <-done:
		t.Fatalf("model stopped: %v", err)
	}
	url := "http://" + m.AgentAddr().String() + "/quitquitquit"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit: %s, want 405", resp.Status)
	}
	resp, err = http.Post(url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /quitquitquit: %s", resp.Status)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after quitquitquit: %v, want nil (exit 0)", err)
	}
}
