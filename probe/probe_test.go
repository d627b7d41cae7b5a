//go:build linux

package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testServer is a loopback listener that runs handle for every connection
// and counts the bytes clients sent, so tests can prove the prober is passive.
type testServer struct {
	ln         net.Listener
	target     Target
	acceptDone chan struct{}
	handlers   sync.WaitGroup
	mu         sync.Mutex
	received   int
	accepted   chan struct{}
}

func startServer(t *testing.T, network, address string, handle func(c net.Conn)) *testServer {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, address, err)
	}
	return serve(t, ln, handle)
}

func serve(t *testing.T, ln net.Listener, handle func(c net.Conn)) *testServer {
	t.Helper()
	addr := ln.Addr().(*net.TCPAddr)
	s := &testServer{
		ln:       ln,
		target:   Target{Host: addr.IP.String(), Port: addr.Port},
		accepted: make(chan struct{}, 1024),
	}
	s.acceptDone = make(chan struct{})
	go func() {
		defer close(s.acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.handlers.Add(1)
			s.accepted <- struct{}{}
			go func() {
				defer s.handlers.Done()
				defer c.Close()
				handle(&countingConn{Conn: c, s: s})
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the listener and returns once its accept loop and every
// handler have returned.
func (s *testServer) stop() {
	s.ln.Close()
	<-s.acceptDone
	s.handlers.Wait()
}

func (s *testServer) bytesReceived() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.received
}

type countingConn struct {
	net.Conn
	s *testServer
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.s.mu.Lock()
	c.s.received += n
	c.s.mu.Unlock()
	return n, err
}

// untilClientCloses keeps the connection open until the prober hangs up.
func untilClientCloses(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func sendThenWait(banner string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := c.Write([]byte(banner)); err != nil {
			return
		}
		untilClientCloses(c)
	}
}

func resetAtOnce(c net.Conn) {
	_ = c.(*countingConn).Conn.(*net.TCPConn).SetLinger(0)
}

func flood(c net.Conn) {
	chunk := bytes.Repeat([]byte("x"), 4096)
	for {
		if _, err := c.Write(chunk); err != nil {
			return
		}
	}
}

// refusingTarget is a port that is bound but not listening: connecting to it
// is refused, and nobody else can take the port meanwhile.
func refusingTarget(t *testing.T) Target {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return Target{Host: "127.0.0.1", Port: sa.(*syscall.SockaddrInet4).Port}
}

// blackholeTarget is a listener with backlog 0 that never accepts, filled
// with connections until the kernel drops further handshakes: the next
// connect can only time out.
func blackholeTarget(t *testing.T) Target {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := Target{Host: "127.0.0.1", Port: sa.(*syscall.SockaddrInet4).Port}
	for range 16 {
		c, err := net.DialTimeout("tcp", target.String(), 200*time.Millisecond)
		if err != nil {
			if isTimeout(err) {
				return target
			}
			t.Fatalf("filling the backlog of %s: %v", target, err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("the kernel kept accepting handshakes into a backlog-0 listener; cannot provoke a connect timeout")
	return target
}

// fast options: generous timeouts where the outcome arrives by itself, a
// short banner wait only where silence is the expected outcome.
func opts(banner time.Duration) Options {
	o := DefaultOptions()
	o.ConnectTimeout = time.Minute
	o.BannerTimeout = banner
	return o
}

func TestProbeOutcomes(t *testing.T) {
	const long, short = time.Minute, 200 * time.Millisecond
	tests := []struct {
		name         string
		handle       func(net.Conn)
		target       func(t *testing.T) Target // instead of handle
		options      Options
		wantOutcome  Outcome
		wantBanner   string
		wantProtocol string
	}{
		{name: "banner now", handle: sendThenWait("220 mail.example.com ESMTP Postfix\r\n"), options: opts(long),
			wantOutcome: OutcomeBanner, wantBanner: "220 mail.example.com ESMTP Postfix\r\n", wantProtocol: ProtocolSMTP},
		{name: "banner in two writes joins up to the newline", handle: func(c net.Conn) {
			c.Write([]byte("SSH-2.0-Open"))
			c.Write([]byte("SSH_9.2\r\n"))
			untilClientCloses(c)
		}, options: func() Options { o := opts(long); o.QuietGap = long; return o }(),
			wantOutcome: OutcomeBanner, wantBanner: "SSH-2.0-OpenSSH_9.2\r\n", wantProtocol: ProtocolSSH},
		{name: "binary banner without newline ends with its packet", handle: sendThenWait(string(mysqlHandshake)),
			options:     func() Options { o := opts(long); o.QuietGap = long; return o }(),
			wantOutcome: OutcomeBanner, wantBanner: string(mysqlHandshake), wantProtocol: ProtocolMySQL},
		{name: "banner then close", handle: func(c net.Conn) { c.Write([]byte("+OK POP3 ready")) }, options: opts(long),
			wantOutcome: OutcomeBanner, wantBanner: "+OK POP3 ready", wantProtocol: ProtocolPOP3},
		{name: "one byte then nothing (drip)", handle: sendThenWait("*"), options: opts(long),
			wantOutcome: OutcomeBanner, wantBanner: "*", wantProtocol: ProtocolUnknown},
		{name: "flood is capped", handle: flood, options: func() Options { o := opts(long); o.MaxBannerBytes = 100; return o }(),
			wantOutcome: OutcomeBanner, wantBanner: strings.Repeat("x", 100), wantProtocol: ProtocolUnknown},
		{name: "flood default cap", handle: flood, options: opts(long),
			wantOutcome: OutcomeBanner, wantBanner: strings.Repeat("x", 512), wantProtocol: ProtocolUnknown},
		{name: "silent", handle: untilClientCloses, options: opts(short), wantOutcome: OutcomeSilent},
		{name: "close at once", handle: func(net.Conn) {}, options: opts(long), wantOutcome: OutcomeClosed},
		{name: "reset at once", handle: resetAtOnce, options: opts(long), wantOutcome: OutcomeReset},
		{name: "refused", target: refusingTarget, options: opts(long), wantOutcome: OutcomeRefused},
		{name: "connect timeout", target: blackholeTarget,
			options:     func() Options { o := opts(long); o.ConnectTimeout = short; return o }(),
			wantOutcome: OutcomeConnectTimeout},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var target Target
			var srv *testServer
			if tc.target != nil {
				target = tc.target(t)
			} else {
				srv = startServer(t, "tcp", "127.0.0.1:0", tc.handle)
				target = srv.target
			}
			r := Probe(context.Background(), target, tc.options)
			if r.Outcome != tc.wantOutcome {
				t.Fatalf("outcome = %q (error %q), want %q", r.Outcome, r.Error, tc.wantOutcome)
			}
			if got := string(r.Bytes()); got != tc.wantBanner {
				t.Errorf("banner = %q, want %q", got, tc.wantBanner)
			}
			if r.Protocol != tc.wantProtocol {
				t.Errorf("protocol = %q, want %q", r.Protocol, tc.wantProtocol)
			}
			if r.Target != target.String() {
				t.Errorf("target = %q, want %q", r.Target, target.String())
			}
			if (r.FirstByteMs != nil) != (tc.wantBanner != "") {
				t.Errorf("firstByteMs = %v, want set only when bytes arrived", r.FirstByteMs)
			}
			if r.FirstByteMs != nil && *r.FirstByteMs < 0 || r.ConnectMs < 0 {
				t.Errorf("negative timings: connect %v, first byte %v", r.ConnectMs, *r.FirstByteMs)
			}
			if r.DNSMs != nil {
				t.Errorf("dnsMs = %v for an IP literal, want none", *r.DNSMs)
			}
			if r.Address != target.String() {
				t.Errorf("address = %q, want %q", r.Address, target.String())
			}
			if r.Error != "" {
				t.Errorf("error = %q for outcome %q, want none", r.Error, r.Outcome)
			}
			if srv != nil {
				srv.ln.Close() // the handlers finish once the prober has hung up
				srv.handlers.Wait()
				if n := srv.bytesReceived(); n != 0 {
					t.Errorf("server received %d bytes from a passive probe", n)
				}
			}
		})
	}
}

// A late banner: the server speaks only once the prober is waiting for it.
func TestProbeBannerLate(t *testing.T) {
	waiting := make(chan struct{})
	srv := startServer(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		<-waiting
		sendThenWait("* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n")(c)
	})
	testHookReading = func(got Target) {
		if got == srv.target {
			close(waiting)
		}
	}
	t.Cleanup(func() { testHookReading = nil })

	r := Probe(context.Background(), srv.target, opts(time.Minute))
	if r.Outcome != OutcomeBanner || r.Protocol != ProtocolIMAP {
		t.Fatalf("got %q/%q (error %q), want banner/imap", r.Outcome, r.Protocol, r.Error)
	}
	if r.FirstByteMs == nil {
		t.Fatal("firstByteMs missing for a banner")
	}
}

func TestProbePayloadIsSentOnlyWhenAsked(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", func(c net.Conn) {
		line := make([]byte, 6)
		if _, err := io.ReadFull(c, line); err != nil {
			return
		}
		if string(line) == "PING\r\n" {
			sendThenWait("+PONG\r\n")(c)
		}
	})
	o := opts(time.Minute)
	o.Payload = []byte("PING\r\n")
	r := Probe(context.Background(), srv.target, o)
	if r.Outcome != OutcomeBanner || r.Banner != "+PONG\r\n" {
		t.Fatalf("got %q %q (error %q), want the reply to the payload", r.Outcome, r.Banner, r.Error)
	}
	srv.ln.Close()
	srv.handlers.Wait()
	if got := srv.bytesReceived(); got != len(o.Payload) {
		t.Errorf("server received %d bytes, want exactly the %d-byte payload", got, len(o.Payload))
	}
}

func TestProbeIPv6(t *testing.T) {
	ln, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("IPv6 loopback unavailable on this machine: %v", err)
	}
	srv := serve(t, ln, sendThenWait("SSH-2.0-OpenSSH_9.2p1\r\n"))
	if srv.target.Host != "::1" {
		t.Fatalf("listener host = %q", srv.target.Host)
	}
	r := Probe(context.Background(), srv.target, opts(time.Minute))
	want := "[::1]:" + itoa(srv.target.Port)
	if r.Outcome != OutcomeBanner || r.Protocol != ProtocolSSH || r.Target != want || r.Address != want {
		t.Fatalf("got %+v, want an ssh banner from %s", r, want)
	}
}

func TestProbeHostName(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", sendThenWait("220 (vsFTPd 3.0.3)\r\n"))
	target := Target{Host: "localhost", Port: srv.target.Port}
	r := Probe(context.Background(), target, opts(time.Minute))
	if r.Outcome != OutcomeBanner || r.Protocol != ProtocolFTP {
		t.Fatalf("got %q/%q (error %q), want banner/ftp", r.Outcome, r.Protocol, r.Error)
	}
	if r.Target != "localhost:"+itoa(srv.target.Port) {
		t.Errorf("target = %q", r.Target)
	}
	// localhost may also resolve to ::1, where nothing listens; the prober
	// must then move on to 127.0.0.1 and say which address answered.
	if r.Address != srv.target.String() {
		t.Errorf("address = %q, want %q", r.Address, srv.target.String())
	}
	if r.DNSMs == nil {
		t.Error("dnsMs missing for a host name")
	}
}

func TestProbeAlreadyCanceled(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", sendThenWait("220 hi\r\n"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := Probe(ctx, srv.target, opts(time.Minute))
	if r.Outcome != OutcomeError || r.Error != CanceledError {
		t.Fatalf("got %q %q, want error %q", r.Outcome, r.Error, CanceledError)
	}
}

func TestProbeAllOrderAndCancel(t *testing.T) {
	banner := startServer(t, "tcp", "127.0.0.1:0", sendThenWait("RFB 003.008\n"))
	silent := startServer(t, "tcp", "127.0.0.1:0", untilClientCloses)
	targets := []Target{banner.target, silent.target, silent.target, silent.target, silent.target, banner.target}
	// Two workers: the first banner finishes, then both workers sit on
	// silent targets that would wait an hour; the rest never start.
	o := opts(time.Hour)
	o.Concurrency = 2
	o.PerIPPort = 2 // both workers on the one silent server

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan []Result)
	go func() { done <- ProbeAll(ctx, targets, o) }()
	<-silent.accepted
	<-silent.accepted
	cancel()
	results := <-done

	if len(results) != len(targets) {
		t.Fatalf("%d results for %d targets", len(results), len(targets))
	}
	if r := results[0]; r.Outcome != OutcomeBanner || r.Protocol != ProtocolVNC {
		t.Errorf("result 0 = %q/%q, want the banner that finished before the cancel", r.Outcome, r.Protocol)
	}
	for i, r := range results[1:] {
		if r.Outcome != OutcomeError || r.Error != CanceledError {
			t.Errorf("result %d = %q %q, want error %q", i+1, r.Outcome, r.Error, CanceledError)
		}
	}
	for i, r := range results {
		if r.Target != targets[i].String() {
			t.Errorf("result %d is for %s, want %s (input order)", i, r.Target, targets[i])
		}
	}
	// The silent server sees its clients hang up: no socket outlives ProbeAll.
	silent.ln.Close()
	silent.handlers.Wait()
}

func TestProbeAllInputOrderManyTargets(t *testing.T) {
	srvs := []*testServer{
		startServer(t, "tcp", "127.0.0.1:0", sendThenWait("220 smtp ESMTP\r\n")),
		startServer(t, "tcp", "127.0.0.1:0", sendThenWait("+OK\r\n")),
		startServer(t, "tcp", "127.0.0.1:0", func(net.Conn) {}),
	}
	want := []Outcome{OutcomeBanner, OutcomeBanner, OutcomeClosed}
	wantProto := []string{ProtocolSMTP, ProtocolPOP3, ""}
	var targets []Target
	for i := range 60 {
		targets = append(targets, srvs[i%3].target)
	}
	o := opts(time.Minute)
	o.Concurrency = 7
	results := ProbeAll(context.Background(), targets, o)
	for i, r := range results {
		if r.Target != targets[i].String() || r.Outcome != want[i%3] || r.Protocol != wantProto[i%3] {
			t.Fatalf("result %d = %s %q/%q, want %s %q/%q", i, r.Target, r.Outcome, r.Protocol,
				targets[i], want[i%3], wantProto[i%3])
		}
	}
}

func TestProbeAllLeaksNothing(t *testing.T) {
	// Taken before any server starts: once they are stopped, no goroutine
	// started since may still wait for anything.
	before := goroutines()
	servers := []*testServer{
		startServer(t, "tcp", "127.0.0.1:0", sendThenWait("SSH-2.0-x\r\n")),
		startServer(t, "tcp", "127.0.0.1:0", untilClientCloses),
		startServer(t, "tcp", "127.0.0.1:0", func(net.Conn) {}),
		startServer(t, "tcp", "127.0.0.1:0", resetAtOnce),
		startServer(t, "tcp", "127.0.0.1:0", flood),
	}
	targets := []Target{refusingTarget(t)}
	for range 20 {
		for _, s := range servers {
			targets = append(targets, s.target)
		}
	}
	// Warm up once so lazily created runtime resources (netpoller, ...)
	// exist before counting.
	ProbeAll(context.Background(), targets[:1], opts(time.Millisecond))
	fdsBefore := openFDs(t)

	ProbeAll(context.Background(), targets, opts(50*time.Millisecond))
	for _, s := range servers {
		s.stop()
	}
	// Stopping the servers closed their listeners and ended their accept
	// loops; account for them.
	fdsAfter := openFDs(t) + len(servers)
	if fdsAfter != fdsBefore {
		t.Errorf("open fds: %d before, %d after (listeners counted back in)", fdsBefore, fdsAfter)
	}
	for id, g := range goroutines() {
		if _, old := before[id]; !old && g.waiting() {
			t.Errorf("goroutine left waiting:\n%s", g)
		}
	}
}

// goroutine is one entry of a full runtime.Stack dump: a header such as
// "goroutine 7 [chan receive, 2 minutes]:" and its frames.
type goroutine string

// goroutines returns a dump of all goroutines by id.
func goroutines() map[string]goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	all := map[string]goroutine{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if id, _, ok := strings.Cut(strings.TrimPrefix(g, "goroutine "), " "); ok {
			all[id] = goroutine(g)
		}
	}
	return all
}

// waiting tells a goroutine that waits for something (a channel, a lock,
// the network, ...), as a leaked one does forever, from one that can run.
// Right after a WaitGroup's Wait, the goroutines that called Done (ProbeAll's
// workers, the test servers' handlers) may still exist, runnable, on their
// way out: they wait for nothing but the CPU.
func (g goroutine) waiting() bool {
	header, _, _ := strings.Cut(string(g), "\n")
	_, status, _ := strings.Cut(header, " [")
	return !strings.HasPrefix(status, "running") && !strings.HasPrefix(status, "runnable")
}

func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files here: %v", err)
	}
	return len(entries)
}

func TestResultJSONContract(t *testing.T) {
	connect, first := 0.4, 1.7
	r := Result{Target: "127.0.0.1:2525", Outcome: OutcomeBanner, ConnectMs: connect, FirstByteMs: &first,
		Banner: "220 mail ESMTP\r\n", Protocol: "smtp"}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"target":"127.0.0.1:2525","outcome":"banner","connectMs":0.4,"firstByteMs":1.7,"banner":"220 mail ESMTP\r\n","protocol":"smtp"}`
	if string(got) != want {
		t.Errorf("JSON\n got %s\nwant %s", got, want)
	}
}

func TestBannerEncoding(t *testing.T) {
	tests := []struct {
		name       string
		in         []byte
		wantBanner string
		wantBase64 bool
	}{
		{"text", []byte("220 ok\r\n"), "220 ok\r\n", false},
		{"utf-8 text", []byte("220 Grüße\r\n"), "220 Grüße\r\n", false},
		{"controls are valid UTF-8", []byte("a\x00\x1b[2Jb"), "a\x00\x1b[2Jb", false},
		{"invalid bytes", []byte("v\xff\xfeok"), "v\ufffd\ufffdok", true},
		{"mysql greeting", mysqlHandshake, string([]rune(string(mysqlHandshake))), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r Result
			r.setBanner(tc.in)
			if r.Banner != tc.wantBanner {
				t.Errorf("banner = %q, want %q", r.Banner, tc.wantBanner)
			}
			if (r.BannerBase64 != "") != tc.wantBase64 {
				t.Errorf("bannerBase64 = %q, want present: %v", r.BannerBase64, tc.wantBase64)
			}
			js, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var back Result
			if err := json.Unmarshal(js, &back); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back.Bytes(), tc.in) {
				t.Errorf("bytes after a JSON round trip = %q, want %q", back.Bytes(), tc.in)
			}
		})
	}
}

func TestDefaultOptions(t *testing.T) {
	d := DefaultOptions()
	if d.BannerTimeout != 3*time.Second || d.ConnectTimeout != 3*time.Second || d.PerIP != 4 || d.PerIPPort != 1 ||
		d.MaxBannerBytes != 512 || len(d.Payload) != 0 {
		t.Errorf("DefaultOptions() = %+v", d)
	}
	if got := (Options{}).withDefaults(); got.BannerTimeout != d.BannerTimeout || got.QuietGap != d.QuietGap ||
		got.Concurrency != d.Concurrency || got.PerIP != d.PerIP || got.PerIPPort != d.PerIPPort {
		t.Errorf("zero Options do not fall back to defaults: %+v", got)
	}
	// The pool is what the open-files limit leaves, not a fixed number.
	limit, ok := OpenFileLimit()
	if !ok {
		t.Skip("open-files limit unknown here")
	}
	if want := min(max(1, limit-FileReserve), maxDefaultConcurrency); d.Concurrency != want {
		t.Errorf("default concurrency = %d with an open-files limit of %d, want %d", d.Concurrency, limit, want)
	}
}

func TestClassifyErrors(t *testing.T) {
	wrapped := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}
	if o, msg := classifyDial(wrapped); o != OutcomeError || msg != "connect: network is unreachable" {
		t.Errorf("classifyDial(ENETUNREACH) = %q %q", o, msg)
	}
	if o, _ := classifyRead(errors.New("weird")); o != OutcomeError {
		t.Errorf("classifyRead(unknown) = %q, want error", o)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// The standard-library dialer serves platforms without the raw Linux dialer
// and zoned IPv6 addresses; it must classify the same way.
func TestDialPortable(t *testing.T) {
	srv := startServer(t, "tcp", "127.0.0.1:0", sendThenWait("220 ok\r\n"))
	ap := netip.MustParseAddrPort(srv.target.String())
	c := &canceler{}
	conn, err := dialPortable(context.Background(), c, ap, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	n, _, err := readBanner(conn, c, make([]byte, 64), time.Now().Add(time.Minute), time.Minute)
	c.release(conn)
	if err != nil || n != len("220 ok\r\n") {
		t.Fatalf("read %d bytes, %v", n, err)
	}

	refused := netip.MustParseAddrPort(refusingTarget(t).String())
	if _, err := dialPortable(context.Background(), &canceler{}, refused, time.Now().Add(time.Minute)); err == nil {
		t.Fatal("dial to a refusing port succeeded")
	} else if o, _ := classifyDial(err); o != OutcomeRefused {
		t.Fatalf("classified %v as %q, want refused", err, o)
	}

	canceled := &canceler{}
	canceled.cancel()
	if _, err := dialPortable(context.Background(), canceled, ap, time.Now().Add(time.Minute)); err == nil {
		t.Fatal("a canceled probe kept its connection")
	}
}
