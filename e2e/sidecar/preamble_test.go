package sidecar

import (
	"bytes"
	"net"
	"testing"
	"time"
)

func TestParsePreamble(t *testing.T) {
	full := encodePreamble("istio-peer-exchange", "app/client")
	tests := []struct {
		name string
		in   []byte
		done bool
		mesh bool
		data string
	}{
		{name: "nothing yet", in: nil},
		{name: "prefix of the magic: keep waiting", in: full[:5]},
		{name: "magic without ALPN yet", in: full[:len(preambleMagic)]},
		{name: "whole preamble", in: full, done: true, mesh: true},
		{name: "preamble and application bytes", in: append(append([]byte(nil), full...), "PING\r\n"...), done: true, mesh: true, data: "PING\r\n"},
		{name: "plaintext: decided at the first byte", in: []byte("P"), done: true, data: "P"},
		{name: "TLS ClientHello is not the preamble", in: []byte{0x16, 0x03, 0x01}, done: true, data: "\x16\x03\x01"},
		{name: "diverges after a shared first byte", in: []byte{0x00, 0x00, 0x00, 0x08}, done: true, data: "\x00\x00\x00\x08"},
	}
	for _, tc := range tests {
		fb, done := parsePreamble(tc.in)
		if done != tc.done || fb.Mesh != tc.mesh || string(fb.Data) != tc.data {
			t.Errorf("%s: done %v mesh %v data %q; want %v %v %q", tc.name, done, fb.Mesh, fb.Data, tc.done, tc.mesh, tc.data)
		}
		if tc.mesh && (fb.ALPN != "istio-peer-exchange" || fb.Peer != "app/client") {
			t.Errorf("%s: alpn %q peer %q", tc.name, fb.ALPN, fb.Peer)
		}
	}
}

func FuzzParsePreamble(f *testing.F) {
	f.Add(encodePreamble("istio-http/1.1", "ns/pod"))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add(preambleMagic)
	f.Fuzz(func(t *testing.T, b []byte) {
		fb, done := parsePreamble(b)
		if done && !fb.Mesh && !bytes.Equal(fb.Data, b) {
			t.Fatalf("plaintext bytes must be forwarded unchanged")
		}
	})
}

// inspectTLS over a real loopback socket: the preamble is recognised even
// when it arrives in pieces, and a silent client is reported only as a
// timeout, never as data.
func TestInspectTLSOverSocket(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pre := encodePreamble("istio-peer-exchange", "app/client")

	tests := []struct {
		name    string
		send    [][]byte
		timeout time.Duration
		mesh    bool
		timed   bool
		data    string
	}{
		{name: "preamble in two writes", send: [][]byte{pre[:7], append(append([]byte(nil), pre[7:]...), 'x')}, mesh: true, data: "x"},
		{name: "plaintext", send: [][]byte{[]byte("PING\r\n")}, data: "PING\r\n"},
		{name: "silent client with a detection timeout", timeout: 50 * time.Millisecond, timed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := l.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			done := make(chan struct{})
			var fb firstBytes
			var ierr error
			go func() { fb, ierr = inspectTLS(s, tc.timeout); close(done) }()
			for _, b := range tc.send {
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			<-done
			if ierr != nil {
				t.Fatal(ierr)
			}
			if fb.Mesh != tc.mesh || fb.TimedOut != tc.timed || string(fb.Data) != tc.data {
				t.Fatalf("got mesh %v timedOut %v data %q", fb.Mesh, fb.TimedOut, fb.Data)
			}
		})
	}
}
