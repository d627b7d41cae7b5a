//go:build linux

package probe

import (
	"context"
	"maps"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// concurrencyMeter is a set of silent loopback servers that counts how many
// connections they hold open at once. A connection counts from its accept
// until the server sees the client's close. The servers never wait on a
// connection: at every accept they look (MSG_PEEK, non-blocking) at those
// they hold, and a connection whose client has closed shows EOF by then,
// because the prober closes one socket before it dials the next and on
// loopback the FIN reaches the peer's socket within the close call.
type concurrencyMeter struct {
	mu      sync.Mutex
	held    map[*net.TCPConn]string // connection -> server address
	peak    int                     // across all servers
	peakAt  map[string]int          // per server address
	total   int
	targets []Target
}

func newConcurrencyMeter(t *testing.T, servers int) *concurrencyMeter {
	m := &concurrencyMeter{held: map[*net.TCPConn]string{}, peakAt: map[string]int{}}
	var loops sync.WaitGroup
	var listeners []*net.TCPListener
	for range servers {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().(*net.TCPAddr)
		m.targets = append(m.targets, Target{Host: addr.IP.String(), Port: addr.Port})
		loops.Go(func() {
			for {
				c, err := ln.AcceptTCP()
				if err != nil {
					return
				}
				m.accepted(c, addr.String())
			}
		})
		listeners = append(listeners, ln)
	}
	t.Cleanup(func() {
		for _, ln := range listeners {
			ln.Close()
		}
		loops.Wait()
		m.mu.Lock()
		defer m.mu.Unlock()
		for c := range m.held {
			c.Close()
		}
	})
	return m
}

func (m *concurrencyMeter) accepted(c *net.TCPConn, server string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for old := range m.held {
		if clientClosed(old) {
			old.Close()
			delete(m.held, old)
		}
	}
	m.held[c] = server
	m.total++
	m.peak = max(m.peak, len(m.held))
	n := 0
	for _, s := range m.held {
		if s == server {
			n++
		}
	}
	m.peakAt[server] = max(m.peakAt[server], n)
}

// clientClosed peeks without blocking: 0 bytes is EOF, EAGAIN is an open,
// silent client.
func clientClosed(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	var buf [1]byte
	_ = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = err == nil && n == 0 || err != nil && err != syscall.EAGAIN
		return true
	})
	return closed
}

func (m *concurrencyMeter) figures() (peak, total int, peakAt map[string]int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak, m.total, maps.Clone(m.peakAt)
}

// The politeness limits, counted where they matter: at the servers.
func TestProbeAllPoliteness(t *testing.T) {
	tests := []struct {
		name            string
		servers, repeat int // targets: each server's address, repeat times
		perIP, perPort  int
		wantPeak        int // at most, across all servers (all on 127.0.0.1)
		wantPeakPerPort int // at most, at one server
	}{
		{name: "defaults: one connection per IP:port", servers: 1, repeat: 12, wantPeak: 1, wantPeakPerPort: 1},
		{name: "defaults: a few per IP", servers: 6, repeat: 3, wantPeak: 4, wantPeakPerPort: 1},
		{name: "per IP:port 3", servers: 1, repeat: 12, perIP: 8, perPort: 3, wantPeak: 3, wantPeakPerPort: 3},
		{name: "per IP 2 over many ports", servers: 8, repeat: 2, perIP: 2, perPort: 2, wantPeak: 2, wantPeakPerPort: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newConcurrencyMeter(t, tc.servers)
			var targets []Target
			for range tc.repeat {
				targets = append(targets, m.targets...)
			}
			o := opts(50 * time.Millisecond) // every target silent: each holds its slot
			o.Concurrency = len(targets)     // the pool would allow all at once
			o.PerIP, o.PerIPPort = tc.perIP, tc.perPort
			results := ProbeAll(context.Background(), targets, o)
			for i, r := range results {
				if r.Outcome != OutcomeSilent {
					t.Fatalf("result %d = %q %q, want silent", i, r.Outcome, r.Error)
				}
			}
			peak, total, peakAt := m.figures()
			if peak > tc.wantPeak || total != len(targets) {
				t.Errorf("servers on 127.0.0.1 held %d connections at once (want at most %d), %d in all (want %d)",
					peak, tc.wantPeak, total, len(targets))
			}
			for server, n := range peakAt {
				if n > tc.wantPeakPerPort {
					t.Errorf("server %s held %d connections at once, want at most %d", server, n, tc.wantPeakPerPort)
				}
			}
		})
	}
}

// The dispatcher's bookkeeping, step by step: input order, holding back,
// and that a worker finding nothing can stop because the held target's own
// destination releases it.
func TestDispatcher(t *testing.T) {
	a1 := Target{Host: "10.0.0.1", Port: 1}
	a2 := Target{Host: "10.0.0.1", Port: 2}
	mapped := Target{Host: "::ffff:10.0.0.1", Port: 1} // the same endpoint as a1
	b1 := Target{Host: "10.0.0.2", Port: 1}
	d := newDispatcher([]Target{a1, mapped, a2, b1}, 2, 1)

	steps := []struct {
		finish int // -1: none
		want   int
	}{
		{-1, 0},  // a1 starts
		{-1, 2},  // the mapped a1 is held (one per IP:port), a2 goes ahead
		{-1, 3},  // b1 starts
		{-1, -1}, // nothing left to start: a worker may stop
		{2, -1},  // a2 done: 10.0.0.1 has room, but its held target waits for a1's port
		{0, 1},   // a1 done: the held target starts
		{1, -1},
	}
	for n, s := range steps {
		if s.finish >= 0 {
			d.finish(s.finish)
		}
		if got := d.take(); got != s.want {
			t.Fatalf("step %d: take() = %d, want %d", n, got, s.want)
		}
	}
	d.finish(3)
	for host, dst := range d.dests {
		if dst.inFlight != 0 || len(dst.held) != 0 {
			t.Errorf("%s: %d in flight, %d held after all finished", host, dst.inFlight, len(dst.held))
		}
	}
}
