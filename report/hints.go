package report

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// serverFirstPorts are ports whose usual protocol greets the client first.
// Client-first databases (PostgreSQL 5432, Redis 6379, MongoDB 27017,
// MSSQL 1433) are deliberately absent: sniffing them is harmless.
var serverFirstPorts = map[int32]string{
	21: "ftp", 22: "ssh", 23: "telnet", 24: "lmtp", 25: "smtp", 110: "pop3", 119: "nntp", 143: "imap",
	587: "smtp", 2222: "ssh", 2525: "smtp", 3306: "mysql", 4222: "nats", 5900: "vnc",
	6032: "proxysql", 6033: "proxysql", 7419: "faktory",
}

// serverFirstWords are protocol and product words that, in a port name, a
// host name or an image name, point to a server-first server. The value is
// the protocol it implies.
var serverFirstWords = map[string]string{
	"mysql": "mysql", "mysqld": "mysql", "mariadb": "mysql", "percona": "mysql", "proxysql": "mysql",
	"galera": "mysql", "tidb": "mysql", "vitess": "mysql", "vtgate": "mysql", "singlestore": "mysql", "memsql": "mysql",
	"smtp": "smtp", "smtps": "", "submission": "smtp", "postfix": "smtp", "exim": "smtp", "exim4": "smtp",
	"sendmail": "smtp", "opensmtpd": "smtp", "mailhog": "smtp", "mailpit": "smtp", "maildev": "smtp", "mta": "smtp",
	"lmtp": "lmtp", "ftp": "ftp", "vsftpd": "ftp", "proftpd": "ftp", "pureftpd": "ftp",
	"pop3": "pop3", "pop": "pop3", "imap": "imap", "dovecot": "imap",
	"nats": "nats", "vnc": "vnc", "rfb": "vnc", "tigervnc": "vnc", "x11vnc": "vnc",
	"ssh": "ssh", "sshd": "ssh", "sftp": "ssh", "openssh": "ssh", "gitea": "", "telnet": "telnet",
	"faktory": "faktory", "nntp": "nntp",
}

// words splits a name into lower-case words at anything not a letter or
// digit, so "tcp-mysql", "mysql_primary" and "bitnami/mariadb" all yield
// their product word.
func words(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < '0' || r > '9')
	})
}

// wordHint returns the first server-first word in a name and the
// protocol it implies.
func wordHint(s string) (word, protocol string, ok bool) {
	for _, w := range words(s) {
		if p, found := serverFirstWords[w]; found && p != "" {
			return w, p, true
		}
	}
	return "", "", false
}

// imageName is an image reference without registry, tag and digest:
// "docker.io/bitnami/mariadb:11.4@sha256:..." -> "bitnami/mariadb".
func imageName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	if i := strings.Index(ref, "/"); i >= 0 && strings.ContainsAny(ref[:i], ".:") {
		ref = ref[i+1:]
	}
	return ref
}

// hintSet collects hints without duplicates, in a stable order.
type hintSet map[string]bool

func (h hintSet) port(p int32) {
	if proto, ok := serverFirstPorts[p]; ok {
		h["port:"+strconv.Itoa(int(p))+"/"+proto] = true
	}
}

func (h hintSet) name(kind, s string) {
	if w, _, ok := wordHint(s); ok {
		h[kind+":"+w] = true
	}
}

func (h hintSet) image(ref string) {
	name := imageName(ref)
	// Only the repository's last part names the product; "mysql" in
	// "myorg/mysql-backup-tool" is a fair hint too, "myorg" is not.
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	for _, w := range words(name) {
		// An exporter or proxy for a protocol is not a server of it.
		if w == "exporter" || w == "backup" || w == "client" || w == "cli" {
			return
		}
	}
	if w, _, ok := wordHint(name); ok {
		h["image:"+w] = true
	}
}

// list is never nil: a finding without hints has an empty list.
func (h hintSet) list() []string {
	out := slices.AppendSeq(make([]string, 0, len(h)), maps.Keys(h))
	slices.Sort(out)
	return out
}
