package sidecar

import (
	"bytes"
	"errors"
	"net"
	"os"
	"time"
)

// preambleMagic opens every sidecar-to-sidecar connection, in place of the
// TLS ClientHello with ALPN istio-peer-exchange that Envoy sends. It starts
// with bytes no text protocol sends and that differ from a real ClientHello
// (0x16 0x03), so a plaintext client is told apart at its first byte.
var preambleMagic = []byte("\x00\x01SFMODEL-MTLS\x00")

// encodePreamble returns magic, ALPN and peer name (each length-prefixed).
// The peer is for logs only, like the peer metadata istio-peer-exchange
// carries.
func encodePreamble(alpn, peer string) []byte {
	alpn, peer = clip(alpn), clip(peer)
	b := append([]byte(nil), preambleMagic...)
	b = append(b, byte(len(alpn)))
	b = append(b, alpn...)
	b = append(b, byte(len(peer)))
	return append(b, peer...)
}

func clip(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// firstBytes is what a listener filter saw before the filter chain was chosen.
type firstBytes struct {
	Mesh     bool   // the preamble arrived: a client with a sidecar
	ALPN     string // offered by the client sidecar
	Peer     string
	Data     []byte // application bytes already read, to be forwarded first
	TimedOut bool   // nothing decisive arrived before the detection timeout
}

// inspectTLS is the model's TLS inspector: it waits for the client's first
// bytes, up to timeout (0 = forever, as listener_filters_timeout 0 is), and
// reports whether they are the mesh preamble. Like Envoy's inspector, it needs
// no byte from a client that has none to send: it simply keeps waiting.
// The error is the client's (EOF, reset), never a timeout.
func inspectTLS(c net.Conn, timeout time.Duration) (firstBytes, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return firstBytes{}, err
		}
		defer c.SetReadDeadline(time.Time{})
	}
	var buf []byte
	chunk := make([]byte, 4096)
	for {
		n, err := c.Read(chunk)
		buf = append(buf, chunk[:n]...)
		if fb, done := parsePreamble(buf); done {
			return fb, nil
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// Partial preamble bytes are forwarded as they are: Envoy's
				// inspector would hand an incomplete ClientHello on the same way.
				return firstBytes{TimedOut: true, Data: buf}, nil
			}
			return firstBytes{Data: buf}, err
		}
	}
}

// parsePreamble decides as soon as buf is decisive: done with Mesh=false at
// the first byte that leaves the magic, done with Mesh=true once the whole
// preamble is there.
func parsePreamble(buf []byte) (firstBytes, bool) {
	if len(buf) == 0 {
		return firstBytes{}, false
	}
	n := min(len(buf), len(preambleMagic))
	if !bytes.Equal(buf[:n], preambleMagic[:n]) {
		return firstBytes{Data: buf}, true
	}
	rest := buf[n:]
	if n < len(preambleMagic) || len(rest) < 1 {
		return firstBytes{}, false
	}
	al := int(rest[0])
	if len(rest) < 1+al+1 {
		return firstBytes{}, false
	}
	alpn := string(rest[1 : 1+al])
	pl := int(rest[1+al])
	if len(rest) < 2+al+pl {
		return firstBytes{}, false
	}
	peer := string(rest[2+al : 2+al+pl])
	return firstBytes{Mesh: true, ALPN: alpn, Peer: peer, Data: rest[2+al+pl:]}, true
}

// inspectFirst is the model's HTTP inspector: wait for the client's first
// bytes up to timeout (0 = forever). TimedOut means Envoy would continue with
// the TCP chain (continue_on_listener_filters_timeout, which Istio sets).
func inspectFirst(c net.Conn, timeout time.Duration) (firstBytes, error) {
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return firstBytes{}, err
		}
		defer c.SetReadDeadline(time.Time{})
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if n > 0 {
		return firstBytes{Data: buf[:n]}, nil
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return firstBytes{TimedOut: true}, nil
	}
	return firstBytes{}, err
}
