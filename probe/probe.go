package probe

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"k8s.io/utils/ptr"
)

// Options tune a probe. Zero or negative fields mean "use the default", so a
// partly filled Options is safe; DefaultOptions shows the defaults.
type Options struct {
	// ConnectTimeout bounds the TCP handshake (all resolved addresses
	// together) and, separately, the DNS lookup of a host name.
	ConnectTimeout time.Duration
	// BannerTimeout is how long to wait after the connection is established
	// (and Payload written) for the server's bytes. Silence for this long
	// is the outcome "silent".
	BannerTimeout time.Duration
	// Concurrency bounds how many targets ProbeAll has in flight. Each one
	// holds one socket, and a silent target holds it for the whole
	// BannerTimeout while costing no CPU, so the default is as many as the
	// open-files limit allows (see DefaultConcurrency).
	Concurrency int
	// PerIP and PerIPPort are the politeness limits of ProbeAll: at most
	// this many probes in flight at once to one destination IP, and to one
	// IP:port. The defaults (4 and 1) make a probe look like one ordinary
	// client to each server: a MySQL server counts one handshake at a time
	// towards max_connect_errors, an SMTP server's per-client limits see a
	// single connection. A host name counts as given (names are not
	// resolved before dispatch).
	PerIP, PerIPPort int
	// Payload is written right after connecting. It is the only way the
	// prober ever sends bytes; empty means a purely passive probe.
	Payload []byte
	// MaxBannerBytes caps how much is read.
	MaxBannerBytes int
	// QuietGap ends the read once bytes have arrived and no more come for
	// this long. See readBanner for the whole rule.
	QuietGap time.Duration
	// Progress, when set, is called by ProbeAll after each target with the
	// number finished so far, from the probing goroutines: it must be
	// cheap and safe for concurrent use.
	Progress func(finished int)
}

// DefaultOptions: 3 s to connect, 3 s for a banner, DefaultConcurrency()
// targets at once but at most 4 per IP and 1 per IP:port, 512 bytes,
// 100 ms quiet gap, nothing sent.
func DefaultOptions() Options {
	o := fixedDefaults()
	o.Concurrency = DefaultConcurrency()
	return o
}

// fixedDefaults are the defaults that do not depend on the process.
func fixedDefaults() Options {
	return Options{
		ConnectTimeout: 3 * time.Second,
		BannerTimeout:  3 * time.Second,
		PerIP:          4,
		PerIPPort:      1,
		MaxBannerBytes: 512,
		QuietGap:       100 * time.Millisecond,
	}
}

// Bounds of DefaultConcurrency.
const (
	// FileReserve is what DefaultConcurrency leaves of the open-files
	// limit for everything else a process holds: stdio, the poller, DNS,
	// the files it reads and writes, its API connections.
	FileReserve = 64
	// maxDefaultConcurrency bounds the default where the limit is huge
	// (a hard limit of 2^20 is common): each probe in flight costs a
	// goroutine and a read buffer, some 10 KB, and 32,768 silent targets
	// at once already take one banner timeout in all.
	maxDefaultConcurrency = 1 << 15
	// unknownLimitConcurrency is the default where the limit is unknown.
	unknownLimitConcurrency = 256
)

// DefaultConcurrency is how many probes ProbeAll runs at once by default:
// the open-files limit (call RaiseOpenFileLimit first) less FileReserve,
// at most 32,768.
func DefaultConcurrency() int {
	limit, ok := OpenFileLimit()
	if !ok {
		return unknownLimitConcurrency
	}
	return min(max(1, limit-FileReserve), maxDefaultConcurrency)
}

func (o Options) withDefaults() Options {
	d := fixedDefaults()
	positiveOr(&o.ConnectTimeout, d.ConnectTimeout)
	positiveOr(&o.BannerTimeout, d.BannerTimeout)
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency() // reads the open-files limit: only when needed
	}
	positiveOr(&o.PerIP, d.PerIP)
	positiveOr(&o.PerIPPort, d.PerIPPort)
	positiveOr(&o.MaxBannerBytes, d.MaxBannerBytes)
	positiveOr(&o.QuietGap, d.QuietGap)
	return o
}

// positiveOr sets *v to d unless it is positive (zero and negative mean
// unset).
func positiveOr[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// Outcome is what happened to one probe.
type Outcome string

const (
	// OutcomeBanner: connected and the server sent at least one byte first.
	OutcomeBanner Outcome = "banner"
	// OutcomeSilent: connected, nothing arrived within BannerTimeout. A
	// client-first server, or a sidecar waiting for the client.
	OutcomeSilent Outcome = "silent"
	// OutcomeRefused: the handshake was answered with RST.
	OutcomeRefused Outcome = "refused"
	// OutcomeClosed: connected, then the peer closed (FIN) without a byte.
	OutcomeClosed Outcome = "closed"
	// OutcomeReset: connected, then the peer reset the connection without a byte.
	OutcomeReset Outcome = "reset"
	// OutcomeConnectTimeout: no answer to the handshake within ConnectTimeout.
	OutcomeConnectTimeout Outcome = "connect-timeout"
	// OutcomeError: anything else (DNS failure, no route, canceled, ...);
	// Result.Error says what.
	OutcomeError Outcome = "error"
)

// CanceledError is Result.Error for targets cut short by the caller's context.
const CanceledError = "canceled"

// Result is the evidence from one probe. Its JSON form is a contract that
// automation relies on; fields appear in this order:
//
//	{"target":"127.0.0.1:2525","outcome":"banner","connectMs":0.4,"firstByteMs":1.7,
//	 "banner":"220 mail ESMTP\r\n","protocol":"smtp","address":"127.0.0.1:2525"}
//
// Banner bytes: when the bytes read are valid UTF-8, Banner is exactly those
// bytes (JSON escapes \r, \n and other controls, so nothing is lost) and
// BannerBase64 is absent. When they are not (a MySQL greeting carries a
// binary salt), Banner is a lossy, human-readable copy in which each invalid
// byte became U+FFFD, and BannerBase64 holds the exact bytes (standard
// base64). So: BannerBase64 present means Banner is lossy. Bytes() gives the
// exact bytes either way.
type Result struct {
	Target  string  `json:"target"`
	Outcome Outcome `json:"outcome"`
	// ConnectMs is the TCP handshake time, all addresses tried included;
	// for a failed connect, the time until it failed.
	ConnectMs float64 `json:"connectMs"`
	// FirstByteMs counts from the established connection to the first
	// byte; absent when no byte arrived.
	FirstByteMs  *float64 `json:"firstByteMs,omitempty"`
	Banner       string   `json:"banner,omitempty"`
	Protocol     string   `json:"protocol,omitempty"`
	BannerBase64 string   `json:"bannerBase64,omitempty"`
	// DNSMs is the name lookup time; absent for IP literals.
	DNSMs *float64 `json:"dnsMs,omitempty"`
	// Address is the IP:port dialled last (the one that answered, if any).
	Address string `json:"address,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Bytes returns the exact bytes read from the server.
func (r Result) Bytes() []byte {
	if r.BannerBase64 != "" {
		if b, err := base64.StdEncoding.DecodeString(r.BannerBase64); err == nil {
			return b
		}
	}
	return []byte(r.Banner)
}

// setBanner stores b following the encoding rule documented on Result.
func (r *Result) setBanner(b []byte) {
	if utf8.Valid(b) {
		r.Banner, r.BannerBase64 = string(b), ""
		return
	}
	r.Banner = string([]rune(string(b))) // each invalid byte becomes U+FFFD
	r.BannerBase64 = base64.StdEncoding.EncodeToString(b)
}

// millis rounds to microseconds so JSON stays short and readable.
func millis(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// testHookReading, when set by a test, runs after the connection is
// established (and Payload written) and before the first read, so a test
// server can send its "late" banner only once the prober is waiting.
var testHookReading func(Target)

// Probe dials t once and reports what the server did. It never returns an
// error: every failure is an Outcome. Canceling ctx ends it early.
func Probe(ctx context.Context, t Target, o Options) Result {
	c := &canceler{}
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.cancel()
		close(done)
	})
	// Wait for a cancel already under way, so nothing outlives the call.
	defer func() {
		if !stop() {
			<-done
		}
	}()
	return probe(ctx, c, t, o.withDefaults())
}

// probe is Probe with the cancellation supplied by the caller: ProbeAll
// shares one context registration among all its probes instead of adding
// thousands to the caller's context.
func probe(ctx context.Context, c *canceler, t Target, o Options) Result {
	r := Result{Target: t.String()}
	// ctx first: context.AfterFunc runs the cancel on a goroutine of its
	// own, so for a context already canceled when the probe starts, c may
	// not know yet; ctx.Err() is set before CancelFunc returns.
	if ctx.Err() != nil || c.isCanceled() {
		return canceled(r, ctx)
	}

	addrs, dnsTime, err := resolve(ctx, t.Host, o.ConnectTimeout)
	if dnsTime > 0 {
		r.DNSMs = ptr.To(millis(dnsTime))
	}
	if err != nil {
		if c.isCanceled() || ctx.Err() != nil {
			return canceled(r, ctx)
		}
		r.Outcome, r.Error = OutcomeError, err.Error()
		return r
	}

	conn, addr, connectTime, err := dial(ctx, c, addrs, t.Port, o.ConnectTimeout)
	r.ConnectMs = millis(connectTime)
	r.Address = addr
	if err != nil {
		if c.isCanceled() || ctx.Err() != nil {
			return canceled(r, ctx)
		}
		r.Outcome, r.Error = classifyDial(err)
		return r
	}
	defer c.release(conn)
	established := time.Now()

	if len(o.Payload) > 0 {
		if !c.setDeadline(established.Add(o.BannerTimeout)) {
			return canceled(r, ctx)
		}
		if _, err := conn.Write(o.Payload); err != nil {
			if c.isCanceled() {
				return canceled(r, ctx)
			}
			r.Outcome, r.Error = classifyRead(err)
			return r
		}
	}
	if testHookReading != nil {
		testHookReading(t)
	}

	buf := make([]byte, o.MaxBannerBytes)
	n, firstByte, err := readBanner(conn, c, buf, established.Add(o.BannerTimeout), o.QuietGap)
	if n > 0 {
		// Bytes already in hand are the evidence, even if the read was then
		// cut short by a close, a reset or the caller's cancel.
		r.Outcome = OutcomeBanner
		r.FirstByteMs = ptr.To(millis(firstByte.Sub(established)))
		r.setBanner(buf[:n])
		r.Protocol = Fingerprint(buf[:n])
		return r
	}
	if c.isCanceled() {
		return canceled(r, ctx)
	}
	r.Outcome, r.Error = classifyRead(err)
	return r
}

func canceled(r Result, ctx context.Context) Result {
	r.Outcome, r.Error = OutcomeError, CanceledError
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		r.Error = CanceledError + ": deadline exceeded"
	}
	return r
}

// connection is what a probe needs from a socket; both *net.TCPConn and
// the *os.File of the Linux dialer provide it.
type connection interface {
	io.ReadWriteCloser
	SetDeadline(t time.Time) error
}

// canceler lets a cancel reach the connection a probe currently holds.
// Deadline changes go through it under one lock, so a read loop that moves
// its deadline forward can never undo a cancel that raced it.
type canceler struct {
	mu       sync.Mutex
	conn     connection
	canceled bool
}

// cancel fails the current connection's I/O at once and every later attach.
func (c *canceler) cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.canceled = true
	if c.conn != nil {
		_ = c.conn.SetDeadline(time.Unix(1, 0))
	}
}

func (c *canceler) isCanceled() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.canceled
}

// attach makes conn the one a cancel reaches, with the given deadline;
// false means the probe is canceled and conn is left alone.
func (c *canceler) attach(conn connection, deadline time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.canceled {
		return false
	}
	c.conn = conn
	_ = conn.SetDeadline(deadline)
	return true
}

// setDeadline moves the attached connection's deadline; false means the
// probe was canceled meanwhile.
func (c *canceler) setDeadline(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.canceled {
		return false
	}
	_ = c.conn.SetDeadline(t)
	return true
}

// release detaches conn and closes it.
func (c *canceler) release(conn connection) {
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
	}
	c.mu.Unlock()
	_ = conn.Close()
}

// readBanner reads the server's first burst into buf. The rule:
//   - wait for the first byte until deadline (BannerTimeout after connect);
//   - once bytes have arrived, stop at once when the burst looks complete:
//     buf is full, the bytes end with a newline (every text greeting does),
//     or they are exactly one whole MySQL packet (the binary handshake or
//     error packet, which has no newline);
//   - otherwise keep reading while more bytes follow within quietGap of
//     each other, never past deadline;
//   - EOF, reset or timeout end the read; bytes already read are kept.
//
// It returns how many bytes it read, when the first one arrived, and the
// error that ended the read (nil when the burst was complete).
func readBanner(conn connection, c *canceler, buf []byte, deadline time.Time, quietGap time.Duration) (int, time.Time, error) {
	var first time.Time
	if !c.setDeadline(deadline) {
		return 0, first, context.Canceled
	}
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		if m > 0 {
			if n == 0 {
				first = time.Now()
			}
			n += m
			if burstComplete(buf[:n]) {
				return n, first, nil
			}
		}
		if err != nil {
			return n, first, err
		}
		if m > 0 {
			next := time.Now().Add(quietGap)
			if next.After(deadline) {
				next = deadline
			}
			if !c.setDeadline(next) {
				return n, first, context.Canceled
			}
		}
	}
	return n, first, nil
}

func burstComplete(b []byte) bool {
	if b[len(b)-1] == '\n' {
		return true
	}
	// A MySQL packet: 3-byte little-endian payload length, sequence id 0.
	if len(b) >= 5 && b[3] == 0 {
		size := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		return size > 0 && len(b) == 4+size
	}
	return false
}

func classifyDial(err error) (Outcome, string) {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return OutcomeRefused, ""
	case isTimeout(err):
		return OutcomeConnectTimeout, ""
	case errors.Is(err, syscall.ECONNRESET):
		return OutcomeReset, ""
	}
	return OutcomeError, "connect: " + shortError(err)
}

func classifyRead(err error) (Outcome, string) {
	switch {
	case isTimeout(err):
		return OutcomeSilent, ""
	case errors.Is(err, io.EOF):
		return OutcomeClosed, ""
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return OutcomeReset, ""
	}
	return OutcomeError, shortError(err)
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// shortError drops the "dial tcp 1.2.3.4:5:" prefix, which repeats the target.
func shortError(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

// ProbeAll probes every target, with at most o.Concurrency in flight and
// within the politeness limits o.PerIP and o.PerIPPort, and returns results
// in the order of targets. Targets start in input order, except that one
// whose destination is at its limit waits and later ones go ahead. When ctx
// is canceled, probes in flight stop (those that already hold bytes keep
// them), targets not yet started are reported as OutcomeError with Error
// "canceled", and ProbeAll returns only after every socket it opened is
// closed.
func ProbeAll(ctx context.Context, targets []Target, o Options) []Result {
	o = o.withDefaults()
	results := make([]Result, len(targets))
	workers := min(o.Concurrency, len(targets))
	// One canceler per worker and one registration on ctx for all of them:
	// thousands of per-probe registrations would contend on ctx's lock.
	cancelers := make([]canceler, workers)
	done := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		for i := range cancelers {
			cancelers[i].cancel()
		}
		close(done)
	})
	d := newDispatcher(targets, o.PerIP, o.PerIPPort)
	var finished atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := d.take(); i >= 0; i = d.take() {
				results[i] = probe(ctx, &cancelers[w], targets[i], o)
				d.finish(i)
				if o.Progress != nil {
					o.Progress(int(finished.Add(1)))
				}
			}
		})
	}
	wg.Wait()
	if !stop() {
		<-done
	}
	return results
}
