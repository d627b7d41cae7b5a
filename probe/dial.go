package probe

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"time"
)

// resolve turns host into addresses. IP literals skip DNS and report zero
// lookup time.
func resolve(ctx context.Context, host string, timeout time.Duration) ([]netip.Addr, time.Duration, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	took := time.Since(start)
	if err != nil {
		var dnsErr *net.DNSError
		if errors.As(err, &dnsErr) {
			switch {
			case dnsErr.IsNotFound:
				return nil, took, errors.New("dns: no such host " + host)
			case dnsErr.IsTimeout:
				return nil, took, errors.New("dns: lookup of " + host + " timed out")
			}
		}
		return nil, took, errors.New("dns: " + err.Error())
	}
	if len(ips) == 0 {
		return nil, took, errors.New("dns: no addresses for " + host)
	}
	for i, ip := range ips {
		ips[i] = ip.Unmap()
	}
	return ips, took, nil
}

// dial tries the addresses in order, giving each an equal share of what is
// left of the timeout (as net.Dialer does), and returns the first connection,
// attached to c. On failure it reports the first address's error, the one
// users expect.
func dial(ctx context.Context, c *canceler, addrs []netip.Addr, port int, timeout time.Duration) (connection, string, time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var firstErr error
	var addr string
	for i, a := range addrs {
		share := time.Until(deadline) / time.Duration(len(addrs)-i)
		if share <= 0 {
			break
		}
		ap := netip.AddrPortFrom(a, uint16(port))
		addr = ap.String()
		conn, err := dialAddr(ctx, c, ap, time.Now().Add(share))
		if err == nil {
			return conn, addr, time.Since(start), nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if c.isCanceled() || ctx.Err() != nil {
			break
		}
	}
	if firstErr == nil {
		firstErr = os.ErrDeadlineExceeded
	}
	return nil, addr, time.Since(start), firstErr
}

// dialPortable connects with the standard library's dialer and attaches
// the connection to c. The Linux dialer uses it for what it does not handle.
func dialPortable(ctx context.Context, c *canceler, ap netip.AddrPort, deadline time.Time) (connection, error) {
	// KeepAlive -1: probes are short; the option would cost a syscall.
	d := net.Dialer{Deadline: deadline, KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", ap.String())
	if err != nil {
		return nil, err
	}
	tcp := conn.(*net.TCPConn)
	if !c.attach(tcp, time.Time{}) {
		tcp.Close()
		return nil, context.Canceled
	}
	return tcp, nil
}
