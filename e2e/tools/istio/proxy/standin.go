package proxy

import (
	"bytes"
	"strings"
)

// The world's stand-in for a TLS ClientHello: an Envoy client sidecar
// whose upstream transport socket is TLS writes it first, naming the ALPN
// protocols its UpstreamTlsContext offers; the server sidecar's
// tls_inspector recognises it and its DownstreamTlsContext transport
// socket consumes it. Its first byte (0x00) starts no text protocol and no
// TLS record, so one byte tells plaintext apart. Same wire format as
// e2e/sidecar's preamble: magic, ALPN (length-prefixed, comma-joined),
// peer (length-prefixed).
var standInMagic = []byte("\x00\x01SFMODEL-MTLS\x00")

// standInAccept is the server side's answer (the ServerHello's stand-in):
// a client sidecar relays nothing back until it has read it, so a server
// that answers with anything else (a plaintext app's greeting behind a
// sidecar that does not terminate TLS) fails the handshake, as in Envoy.
var standInAccept = []byte("\x00\x02SFMODEL-MTLS-OK\x00")

func encodeStandIn(alpn []string, peer string) []byte {
	a, p := clip(strings.Join(alpn, ",")), clip(peer)
	b := append([]byte(nil), standInMagic...)
	b = append(b, byte(len(a)))
	b = append(b, a...)
	b = append(b, byte(len(p)))
	return append(b, p...)
}

func clip(s string) string {
	if len(s) > 255 {
		return s[:255]
	}
	return s
}

// parseStandIn looks at the first bytes of a connection: done=false means
// more bytes are needed to decide. With tls, alpn and n (the stand-in's
// length) are set.
func parseStandIn(buf []byte) (done, tls bool, alpn []string, n int) {
	if len(buf) == 0 {
		return false, false, nil, 0
	}
	m := min(len(buf), len(standInMagic))
	if !bytes.Equal(buf[:m], standInMagic[:m]) {
		return true, false, nil, 0
	}
	if m < len(standInMagic) {
		return false, false, nil, 0
	}
	rest := buf[m:]
	if len(rest) < 1 {
		return false, false, nil, 0
	}
	al := int(rest[0])
	if len(rest) < 2+al {
		return false, false, nil, 0
	}
	pl := int(rest[1+al])
	if len(rest) < 2+al+pl {
		return false, false, nil, 0
	}
	if al > 0 {
		alpn = strings.Split(string(rest[1:1+al]), ",")
	}
	return true, true, alpn, m + 2 + al + pl
}

// httpProtocol is http_inspector's verdict on the first bytes: "http/1.1"
// for an HTTP/1.x request line, "h2c" for the HTTP/2 preface, "" for
// anything else; done=false while the bytes could still be either.
func httpProtocol(buf []byte) (done bool, proto string) {
	const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
	if bytes.HasPrefix(buf, []byte(preface)) {
		return true, "h2c"
	}
	if len(buf) < len(preface) && bytes.HasPrefix([]byte(preface), buf) {
		return false, ""
	}
	line, _, complete := bytes.Cut(buf, []byte("\r\n"))
	for i, c := range line {
		if c == ' ' {
			if i == 0 {
				return true, ""
			}
			break
		}
		if c < 'A' || c > 'Z' {
			return true, ""
		}
	}
	if !complete {
		if len(buf) > 4096 {
			return true, ""
		}
		return false, ""
	}
	f := strings.Fields(string(line))
	if len(f) == 3 && (f[2] == "HTTP/1.1" || f[2] == "HTTP/1.0") {
		return true, "http/1.1"
	}
	return true, ""
}
