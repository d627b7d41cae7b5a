// Command demo starts throw-away servers on 127.0.0.1 for hack/demo.sh: a
// handful of server-first greeters, two client-first (silent) servers, a
// server that hangs up, a refused port, a hostile banner, and a toy
// "sniffing sidecar" in front of the SMTP greeter that, like a mesh proxy
// detecting the protocol, waits for the client to speak before it connects
// upstream. It prints "NAME HOST:PORT DESCRIPTION" per server, then
// "ready", and serves until its stdin closes.
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// A MariaDB 10.11 greeting, as captured from mariadbd on loopback.
const mariadbGreetingHex = "640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100" +
	"050000003a333241306b4d7c00fef7080200ff81150000000000001d0000004a3c2f727676704f7a3a4e5c00" +
	"6d7973716c5f6e61746976655f70617373776f726400"

type server struct {
	name, description string
	handle            func(net.Conn)
}

func greet(banner string) func(net.Conn) {
	return func(c net.Conn) {
		if _, err := io.WriteString(c, banner); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c) // stay, as real servers do
	}
}

func main() {
	mariadb, err := hex.DecodeString(mariadbGreetingHex)
	if err != nil {
		panic(err)
	}
	out := bufio.NewWriter(os.Stdout)

	smtp := listen()
	serve(smtp, greet("220 mail.demo.local ESMTP Postfix (Debian/GNU)\r\n"))
	servers := []server{
		{"mysql", "MariaDB 10.11 greeting (binary handshake)", greet(string(mariadb))},
		{"ssh", "OpenSSH", greet("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")},
		{"ftp", "vsftpd", greet("220 (vsFTPd 3.0.3)\r\n")},
		{"pop3", "Dovecot POP3", greet("+OK Dovecot (Debian) ready.\r\n")},
		{"imap", "Dovecot IMAP", greet("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot (Debian) ready.\r\n")},
		{"nats", "NATS server", greet(`INFO {"server_id":"NDEMO","version":"2.10.7","proto":1,"max_payload":1048576}` + "\r\n")},
		{"vnc", "VNC server", greet("RFB 003.008\n")},
		{"slow-smtp", "SMTP server that greets after 1.5s", func(c net.Conn) {
			time.Sleep(1500 * time.Millisecond) // the point of this demo server
			greet("220 slow.demo.local ESMTP Exim 4.96\r\n")(c)
		}},
		{"redis", "client-first: waits for a command", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
		{"postgres", "client-first: waits for the startup packet", func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
		{"hangs-up", "accepts, then closes at once", func(net.Conn) {}},
		{"hostile", "banner with terminal escape sequences", greet("\x1b]0;owned\x07\x1b[2J\x1b[31mHACKED\x1b[0m\r\n")},
	}
	fmt.Fprintf(out, "smtp %s Postfix, reached directly\n", smtp.Addr())
	for _, s := range servers {
		ln := listen()
		serve(ln, s.handle)
		fmt.Fprintf(out, "%s %s %s\n", s.name, ln.Addr(), s.description)
	}
	sidecar := listen()
	serve(sidecar, sniffingProxy(smtp.Addr().String()))
	fmt.Fprintf(out, "smtp-via-sidecar %s the same Postfix behind a protocol-sniffing proxy\n", sidecar.Addr())

	// A port that was just freed: nothing listens there any more.
	gone := listen()
	gone.Close()
	fmt.Fprintf(out, "refused %s nothing listens here\n", gone.Addr())

	fmt.Fprintln(out, "ready")
	out.Flush()
	_, _ = io.Copy(io.Discard, os.Stdin)
}

func listen() net.Listener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	return ln
}

func serve(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
}

// sniffingProxy models the sidecar's protocol detection: it reads the
// client's first bytes to decide what the protocol is before it opens the
// upstream connection. A server-first client sends nothing, so upstream is
// never dialled and its greeting never comes: the deadlock.
func sniffingProxy(upstream string) func(net.Conn) {
	return func(client net.Conn) {
		first := make([]byte, 1024)
		n, err := client.Read(first)
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer up.Close()
		if _, err := up.Write(first[:n]); err != nil {
			return
		}
		go func() { _, _ = io.Copy(client, up) }()
		_, _ = io.Copy(up, client)
	}
}
