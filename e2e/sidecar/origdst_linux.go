package sidecar

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// originalDst reads where a REDIRECTed connection was going before iptables
// rewrote it (SO_ORIGINAL_DST, IPv4), as Envoy's original_dst listener
// filter does.
//
// e2e/tools/istio/proxy has the same 30 lines (OriginalDst), on purpose: that
// module builds Istio's binaries with the k8s.io versions istio.io/istio pins
// (v0.36), and importing this package would pull the e2e module, and through
// it the product's k8s.io v0.37, into its build; importing that package from
// here would pull Envoy's go-control-plane and grpc into the e2e module.
func originalDst(c *net.TCPConn) (netip.AddrPort, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, err
	}
	var mreq *unix.IPv6Mreq
	var serr error
	if err := rc.Control(func(fd uintptr) {
		// struct sockaddr_in is 16 bytes, the size of an IPv6Mreq: the usual
		// way to read it through x/sys/unix.
		mreq, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("SO_ORIGINAL_DST: %w", serr)
	}
	raw := mreq.Multiaddr
	port := binary.BigEndian.Uint16(raw[2:4])
	addr := netip.AddrFrom4([4]byte{raw[4], raw[5], raw[6], raw[7]})
	return netip.AddrPortFrom(addr, port), nil
}
