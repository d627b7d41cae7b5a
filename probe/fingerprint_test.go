package probe

import (
	"encoding/hex"
	"testing"
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	// Captured from mariadbd 10.11.19 (Debian 12) on loopback.
	mysqlHandshake = mustHex("640000000a352e352e352d31302e31312e31392d4d6172696144422d302b6465623132753100" +
		"050000003a333241306b4d7c00fef7080200ff81150000000000001d0000004a3c2f727676704f7a3a4e5c00" +
		"6d7973716c5f6e61746976655f70617373776f726400")
	// MySQL 8.0 greeting: version "8.0.36", caching_sha2_password.
	mysql8Handshake = mustHex("4a0000000a382e302e333600" + "0d000000" + "1a2b3c4d5e6f7061" + "00" + "ffff" + "ff" +
		"0200" + "ffdf" + "15" + "00000000000000000000" + "0102030405060708090a0b0c" + "00" +
		"63616368696e675f736861325f70617373776f726400")
	// ER_HOST_NOT_PRIVILEGED (1130), sent instead of a greeting.
	mysqlHostNotAllowed = mysqlPacket(append([]byte{0xff, 0x6a, 0x04},
		"Host '10.0.0.7' is not allowed to connect to this MariaDB server"...))
	// ER_CON_COUNT_ERROR (1040) with a SQLSTATE marker.
	mysqlTooMany = mysqlPacket(append([]byte{0xff, 0x10, 0x04}, "#08004Too many connections"...))
)

// mysqlPacket frames payload as the first packet of a connection.
func mysqlPacket(payload []byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}, payload...)
}

func TestFingerprint(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, ProtocolUnknown},
		{"mariadb handshake", mysqlHandshake, ProtocolMySQL},
		{"mysql 8 handshake", mysql8Handshake, ProtocolMySQL},
		{"mysql handshake cut short", mysqlHandshake[:20], ProtocolMySQL},
		{"mysql host not allowed", mysqlHostNotAllowed, ProtocolMySQL},
		{"mysql too many connections", mysqlTooMany, ProtocolMySQL},
		{"mysql-like framing, version not a number", append([]byte{9, 0, 0, 0, 0x0a}, "abc\x00xyz"...), ProtocolUnknown},
		{"mysql-like framing, error code too small", append([]byte{9, 0, 0, 0, 0xff, 1, 0}, "oops!!"...), ProtocolUnknown},
		{"mysql-like framing, payload longer than declared", append([]byte{3, 0, 0, 0, 0x0a}, "5.7\x00"...), ProtocolUnknown},
		{"postfix", []byte("220 mail.example.com ESMTP Postfix (Debian/GNU)\r\n"), ProtocolSMTP},
		{"exim", []byte("220 mx.example.org ESMTP Exim 4.96 Mon, 01 Jan 2024 00:00:00 +0000\r\n"), ProtocolSMTP},
		{"sendmail", []byte("220 host.localdomain ESMTP Sendmail 8.17.1/8.17.1; Mon, 1 Jan 2024\r\n"), ProtocolSMTP},
		{"exchange", []byte("220 EXCH01 Microsoft ESMTP MAIL Service ready at Mon, 1 Jan 2024\r\n"), ProtocolSMTP},
		{"smtp on a host named ftp", []byte("220 ftp.example.com ESMTP\r\n"), ProtocolSMTP},
		{"bare 220 counts as smtp", []byte("220 localhost\r\n"), ProtocolSMTP},
		{"masked 220 counts as smtp", []byte("220 ****************************\r\n"), ProtocolSMTP},
		{"smtp rejection greeting", []byte("554 mx.example.com no service for you\r\n"), ProtocolSMTP},
		{"smtp multi-line greeting", []byte("220-mx.example.com ESMTP\r\n220 ready\r\n"), ProtocolSMTP},
		{"vsftpd", []byte("220 (vsFTPd 3.0.3)\r\n"), ProtocolFTP},
		{"proftpd", []byte("220 ProFTPD Server (Debian) [::ffff:127.0.0.1]\r\n"), ProtocolFTP},
		{"pure-ftpd", []byte("220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n"), ProtocolFTP},
		{"filezilla", []byte("220-FileZilla Server 1.8.0\r\n"), ProtocolFTP},
		{"microsoft ftp", []byte("220 Microsoft FTP Service\r\n"), ProtocolFTP},
		{"serv-u", []byte("220 Serv-U Version 15.1 ready...\r\n"), ProtocolFTP},
		{"ftp on a host named smtp", []byte("220 smtp.example.com FTP server ready\r\n"), ProtocolFTP},
		{"ftp 120", []byte("120 Service ready in 5 minutes.\r\n"), ProtocolFTP},
		{"ftp busy", []byte("421 Too many users, FTP service closing\r\n"), ProtocolFTP},
		{"busy, says nothing", []byte("421 Service not available\r\n"), ProtocolUnknown},
		{"reply code without separator", []byte("220x\r\n"), ProtocolUnknown},
		{"three digits alone", []byte("220"), ProtocolSMTP},
		{"http status line is not a reply code", []byte("HTTP/1.1 400 Bad Request\r\n"), ProtocolUnknown},
		{"pop3 dovecot", []byte("+OK Dovecot (Debian) ready.\r\n"), ProtocolPOP3},
		{"pop3 bare", []byte("+OK"), ProtocolPOP3},
		{"not pop3", []byte("+OKAY\r\n"), ProtocolUnknown},
		{"imap ok", []byte("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS] Dovecot ready.\r\n"), ProtocolIMAP},
		{"imap preauth", []byte("* PREAUTH IMAP4rev1 server logged in as joe\r\n"), ProtocolIMAP},
		{"imap bye", []byte("* BYE Autologout; idle for too long\r\n"), ProtocolIMAP},
		{"imap lower case", []byte("* ok imap ready\r\n"), ProtocolIMAP},
		{"openssh", []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"), ProtocolSSH},
		{"ssh 1.99", []byte("SSH-1.99-Cisco-1.25\r\n"), ProtocolSSH},
		{"ssh after a pre-banner line", []byte("Welcome\r\nSSH-2.0-dropbear_2022.83\r\n"), ProtocolSSH},
		{"nats", []byte(`INFO {"server_id":"NDX","version":"2.10.7","go":"go1.21","max_payload":1048576}` + "\r\n"), ProtocolNATS},
		{"nats tab", []byte("INFO\t{}\r\n"), ProtocolNATS},
		{"info without json", []byte("INFO ready\r\n"), ProtocolUnknown},
		{"vnc", []byte("RFB 003.008\n"), ProtocolVNC},
		{"vnc apple", []byte("RFB 003.889\n"), ProtocolVNC},
		{"not vnc", []byte("RFB 3.8\n"), ProtocolUnknown},
		{"telnet will echo", []byte{0xff, 0xfb, 0x01, 0xff, 0xfb, 0x03}, ProtocolTelnet},
		{"telnet do terminal type", []byte{0xff, 0xfd, 0x18}, ProtocolTelnet},
		{"iac alone", []byte{0xff}, ProtocolUnknown},
		{"iac with subnegotiation first", []byte{0xff, 0xfa, 0x18}, ProtocolUnknown},
		{"faktory", []byte(`+HI {"v":2}` + "\r\n"), ProtocolFaktory},
		{"rsync", []byte("@RSYNCD: 31.0\n"), ProtocolRsync},
		{"tarantool", []byte("Tarantool 2.11.1 (Binary) 7d1c4b2e-0000\n"), ProtocolTarantool},
		{"random text", []byte("hello world\n"), ProtocolUnknown},
		{"binary noise", []byte{0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}, ProtocolUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fingerprint(tc.in); got != tc.want {
				t.Errorf("Fingerprint(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

var knownProtocols = map[string]bool{
	ProtocolMySQL: true, ProtocolSMTP: true, ProtocolFTP: true, ProtocolPOP3: true, ProtocolIMAP: true,
	ProtocolSSH: true, ProtocolNATS: true, ProtocolVNC: true, ProtocolTelnet: true, ProtocolFaktory: true,
	ProtocolRsync: true, ProtocolTarantool: true, ProtocolUnknown: true,
}

// FuzzFingerprint: any bytes give one of the documented names, the same one
// every time, without panicking.
func FuzzFingerprint(f *testing.F) {
	for _, seed := range [][]byte{mysqlHandshake, mysql8Handshake, mysqlHostNotAllowed, mysqlTooMany,
		[]byte("220 mail ESMTP\r\n"), []byte("220 (vsFTPd 3.0.3)\r\n"), []byte("+OK\r\n"), []byte("* OK\r\n"),
		[]byte("SSH-2.0-x\r\n"), []byte("INFO {}\r\n"), []byte("RFB 003.008\n"), {0xff, 0xfb, 0x01}, {}} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := Fingerprint(b)
		if !knownProtocols[got] {
			t.Fatalf("Fingerprint(%q) = %q, not a documented protocol name", b, got)
		}
		if again := Fingerprint(b); again != got {
			t.Fatalf("Fingerprint(%q) is not deterministic: %q then %q", b, got, again)
		}
		if len(b) == 0 && got != ProtocolUnknown {
			t.Fatalf("Fingerprint(empty) = %q", got)
		}
	})
}

func TestDescribe(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"mariadb", mysqlHandshake, "MySQL handshake v10, server 5.5.5-10.11.19-MariaDB-0+deb12u1"},
		{"mysql 8", mysql8Handshake, "MySQL handshake v10, server 8.0.36"},
		{"cut short", mysqlHandshake[:12], "MySQL handshake v10, server 5.5.5-1"},
		{"error", mysqlHostNotAllowed, "MySQL error 1130: Host '10.0.0.7' is not allowed to connect to this MariaDB server"},
		{"error with sqlstate", mysqlTooMany, "MySQL error 1040 (08004): Too many connections"},
		{"error with escape in message", mysqlPacket(append([]byte{0xff, 0x15, 0x04}, "Access denied for \x1b[2J"...)),
			`MySQL error 1045: Access denied for \x1b[2J`},
		{"text", []byte("220 mail ESMTP\r\n"), `220 mail ESMTP\r\n`},
		{"text with escape", []byte("\x1b[31mred"), `\x1b[31mred`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Describe(tc.in); got != tc.want {
				t.Errorf("Describe(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// FuzzDescribe: the one-line rendering never panics and never carries a
// control character, whatever the bytes.
func FuzzDescribe(f *testing.F) {
	for _, seed := range [][]byte{mysqlHandshake, mysqlHostNotAllowed, mysqlTooMany, []byte("220 ok\r\n")} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, r := range Describe(b) {
			if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
				t.Fatalf("Describe(%q) contains %U", b, r)
			}
		}
	})
}
