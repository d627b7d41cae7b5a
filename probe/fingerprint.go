package probe

import (
	"bytes"
	"strconv"
	"strings"
)

// Protocol names returned by Fingerprint. MariaDB speaks the MySQL protocol
// and is reported as ProtocolMySQL.
const (
	ProtocolMySQL     = "mysql"
	ProtocolSMTP      = "smtp"
	ProtocolFTP       = "ftp"
	ProtocolPOP3      = "pop3"
	ProtocolIMAP      = "imap"
	ProtocolSSH       = "ssh"
	ProtocolNATS      = "nats"
	ProtocolVNC       = "vnc"
	ProtocolTelnet    = "telnet"
	ProtocolFaktory   = "faktory"
	ProtocolRsync     = "rsync"
	ProtocolTarantool = "tarantool"
	ProtocolUnknown   = "unknown"
)

// Fingerprint names the protocol whose server greeting starts b, or
// ProtocolUnknown. It only looks at what a server sends first, so it is meant
// for banners, not for replies to a Payload. The rules, in order:
//
//   - telnet: IAC (0xFF) followed by WILL/WONT/DO/DONT (0xFB-0xFE);
//   - mysql: one MySQL packet with sequence id 0 holding either a protocol-10
//     handshake (0x0A, then a printable version string starting with a digit,
//     NUL-terminated unless the bytes end first) or an error packet (0xFF, a 2-byte error code, printable text),
//     as sent by a server that refuses the client (too many connections,
//     host blocked);
//   - ssh: a line starting "SSH-" (RFC 4253 allows other lines before it);
//   - pop3 "+OK", imap "* OK" / "* PREAUTH" / "* BYE", nats "INFO {",
//     vnc "RFB nnn.", faktory "+HI ", rsync "@RSYNCD:", tarantool "Tarantool ";
//   - a three-digit reply code (SMTP and FTP share the format and the 220
//     greeting) is told apart by the words of the greeting, see replyCode.
func Fingerprint(b []byte) string {
	if len(b) == 0 {
		return ProtocolUnknown
	}
	if len(b) >= 2 && b[0] == 0xFF && b[1] >= 0xFB && b[1] <= 0xFE {
		return ProtocolTelnet
	}
	if isMySQLGreeting(b) {
		return ProtocolMySQL
	}
	if hasSSHLine(b) {
		return ProtocolSSH
	}
	switch {
	case hasWordPrefix(b, "+OK", false):
		return ProtocolPOP3
	case hasWordPrefix(b, "* OK", true), hasWordPrefix(b, "* PREAUTH", true), hasWordPrefix(b, "* BYE", true):
		return ProtocolIMAP
	case isNATSInfo(b):
		return ProtocolNATS
	case isRFB(b):
		return ProtocolVNC
	case bytes.HasPrefix(b, []byte("+HI ")):
		return ProtocolFaktory
	case bytes.HasPrefix(b, []byte("@RSYNCD: ")):
		return ProtocolRsync
	case bytes.HasPrefix(b, []byte("Tarantool ")):
		return ProtocolTarantool
	}
	return replyCode(b)
}

// isMySQLGreeting checks the packet framing and the first field strictly
// enough that no text greeting matches (byte 3 is a NUL).
func isMySQLGreeting(b []byte) bool {
	if len(b) < 7 || b[3] != 0 {
		return false
	}
	size := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
	payload := b[4:]
	if size < 3 || len(payload) > size {
		return false
	}
	switch payload[0] {
	case 0x0A: // protocol 10 handshake: server version, NUL, thread id, ...
		// The version may be cut off by MaxBannerBytes or a short read;
		// what arrived must still look like one.
		version := payload[1:]
		if end := bytes.IndexByte(version, 0); end >= 0 {
			version = version[:end]
		}
		if len(version) < 1 || len(version) > 64 {
			return false
		}
		if version[0] < '0' || version[0] > '9' {
			return false
		}
		return isPrintableASCII(version)
	case 0xFF: // error packet: code, optional '#' + SQLSTATE, message
		code := int(payload[1]) | int(payload[2])<<8
		if code < 1000 {
			return false
		}
		msg := payload[3:]
		if len(msg) > 16 {
			msg = msg[:16]
		}
		return len(msg) > 0 && isPrintableASCII(msg)
	}
	return false
}

func isPrintableASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7E {
			return false
		}
	}
	return true
}

func hasSSHLine(b []byte) bool {
	for line := range bytes.Lines(b) {
		if bytes.HasPrefix(line, []byte("SSH-")) {
			return true
		}
	}
	return false
}

// hasWordPrefix reports whether b starts with prefix followed by the end of
// input, a space, '[' or a line break, so "+OKAY" is not POP3.
func hasWordPrefix(b []byte, prefix string, foldCase bool) bool {
	if len(b) < len(prefix) {
		return false
	}
	head := string(b[:len(prefix)])
	if foldCase && !strings.EqualFold(head, prefix) || !foldCase && head != prefix {
		return false
	}
	if len(b) == len(prefix) {
		return true
	}
	switch b[len(prefix)] {
	case ' ', '[', '\r', '\n':
		return true
	}
	return false
}

func isNATSInfo(b []byte) bool {
	rest, ok := bytes.CutPrefix(b, []byte("INFO"))
	if !ok {
		return false
	}
	trimmed := bytes.TrimLeft(rest, " \t")
	return len(trimmed) < len(rest) && len(trimmed) > 0 && trimmed[0] == '{'
}

func isRFB(b []byte) bool {
	if len(b) < 8 || string(b[:4]) != "RFB " || b[7] != '.' {
		return false
	}
	for _, c := range b[4:7] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Words that name an FTP or an SMTP server in a greeting. A word votes when
// it contains one of these (case-insensitively): "vsFTPd", "ESMTP" and
// "OpenSMTPD" vote through "ftp" and "smtp".
var (
	ftpWords  = []string{"ftp", "filezilla", "serv-u"}
	smtpWords = []string{"smtp", "postfix", "exim", "sendmail", "qmail", "haraka", "mailenable", "mdaemon", "mail"}
)

// replyCode handles "NNN text" and "NNN-text" greetings, shared by SMTP and
// FTP. The rule: split the greeting into words (letters, digits, '-', '_',
// '.'), ignore words with a dot (host names and versions: an SMTP server
// called ftp.example.com must not vote FTP), and let the first word that
// names FTP or SMTP decide. With no such word, 220 and 554 mean SMTP (an
// SMTP greeting need only carry the domain, RFC 5321 4.3.1, while FTP
// servers all but always say "FTP" or their product name), 120 means FTP
// (RFC 959 only), anything else is unknown.
func replyCode(b []byte) string {
	if len(b) < 3 || b[0] < '1' || b[0] > '5' || !isDigit(b[1]) || !isDigit(b[2]) {
		return ProtocolUnknown
	}
	if len(b) > 3 {
		switch b[3] {
		case ' ', '-', '\r', '\n':
		default:
			return ProtocolUnknown
		}
	}
	text := strings.ToLower(string(b[3:]))
	words := strings.FieldsFunc(text, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.')
	})
	for _, w := range words {
		if strings.Contains(w, ".") {
			continue
		}
		for _, k := range ftpWords {
			if strings.Contains(w, k) {
				return ProtocolFTP
			}
		}
		for _, k := range smtpWords {
			if strings.Contains(w, k) {
				return ProtocolSMTP
			}
		}
	}
	switch string(b[:3]) {
	case "220", "554":
		return ProtocolSMTP
	case "120":
		return ProtocolFTP
	}
	return ProtocolUnknown
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// Describe renders a banner as one safe line for people: a MySQL greeting,
// which is binary, becomes its server version or error message; anything
// else is Sanitize(b).
func Describe(b []byte) string {
	if !isMySQLGreeting(b) {
		return Sanitize(b)
	}
	payload := b[4:]
	if payload[0] == 0x0A {
		version := payload[1:]
		if end := bytes.IndexByte(version, 0); end >= 0 {
			version = version[:end]
		}
		return "MySQL handshake v10, server " + Sanitize(version)
	}
	code := int(payload[1]) | int(payload[2])<<8
	msg := payload[3:]
	state := ""
	if len(msg) >= 6 && msg[0] == '#' {
		state, msg = " ("+Sanitize(msg[1:6])+")", msg[6:]
	}
	return "MySQL error " + strconv.Itoa(code) + state + ": " + Sanitize(msg)
}
