// Package probe is the active prober: it dials TCP targets, waits for the
// server to speak first, records how long each step took and fingerprints
// the first bytes. It knows nothing about Kubernetes.
//
// It is passive by default: nothing is written to a target unless the caller
// sets Options.Payload. A probe connects, waits, reads at most a few hundred
// bytes and closes the connection normally (FIN, not RST), so a server-first
// daemon sees an ordinary client that went away.
package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode"
)

// Target is one TCP endpoint to probe. Host is an IP literal (IPv6 without
// brackets) or a DNS name.
type Target struct {
	Host string
	Port int
}

// String gives HOST:PORT, with brackets around IPv6 literals.
func (t Target) String() string {
	return net.JoinHostPort(t.Host, strconv.Itoa(t.Port))
}

// ParseTarget reads HOST:PORT, [IPv6]:PORT or NAME:PORT. Its errors are one
// line and say what to write instead, because they reach users of the CLI as-is.
func ParseTarget(s string) (Target, error) {
	if s == "" {
		return Target{}, errors.New("empty target: want HOST:PORT")
	}
	if strings.ContainsFunc(s, unicode.IsSpace) {
		return Target{}, fmt.Errorf("target %q contains whitespace: want HOST:PORT", s)
	}
	if i := strings.Index(s, "://"); i >= 0 {
		return Target{}, fmt.Errorf("target %q has a scheme %q: want plain HOST:PORT, e.g. %s",
			s, s[:i+3], strings.TrimSuffix(s[i+3:], "/"))
	}
	if strings.ContainsAny(s, "/?@") {
		return Target{}, fmt.Errorf("target %q is not HOST:PORT (no paths, users or queries)", s)
	}
	host, portText, err := net.SplitHostPort(s)
	if err != nil {
		return Target{}, splitError(s)
	}
	if host == "" {
		return Target{}, fmt.Errorf("target %q has an empty host: want HOST:PORT", s)
	}
	port, err := ParsePort(portText)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: %v", s, err)
	}
	if err := checkHost(host, strings.HasPrefix(s, "[")); err != nil {
		return Target{}, fmt.Errorf("target %q: %v", s, err)
	}
	return Target{Host: host, Port: port}, nil
}

// splitError explains why net.SplitHostPort refused s, in the user's terms.
func splitError(s string) error {
	switch {
	case !strings.Contains(s, ":"):
		return fmt.Errorf("target %q is missing a port: want HOST:PORT", s)
	case !strings.HasPrefix(s, "[") && strings.Count(s, ":") > 1:
		i := strings.LastIndex(s, ":")
		if _, err := netip.ParseAddr(s[:i]); err == nil {
			return fmt.Errorf("target %q: IPv6 addresses need brackets: want [%s]:%s if %s is the port",
				s, s[:i], s[i+1:], s[i+1:])
		}
		return fmt.Errorf("target %q: IPv6 addresses need brackets: want [ADDRESS]:PORT", s)
	case strings.HasPrefix(s, "[") && !strings.Contains(s, "]"):
		return fmt.Errorf("target %q is missing ']': want [ADDRESS]:PORT", s)
	case strings.HasPrefix(s, "[") && !strings.Contains(s, "]:"):
		return fmt.Errorf("target %q is missing a port after ']': want [ADDRESS]:PORT", s)
	default:
		return fmt.Errorf("target %q is not HOST:PORT", s)
	}
}

// ParsePort reads a port: the whole string must be a number 1-65535 (so
// "80abc", "+80" and " 80" are not ports). It is the module's one port
// parser; its errors are worded for the PORT of HOST:PORT.
func ParsePort(s string) (int, error) {
	if s == "" {
		return 0, errors.New("missing port: want HOST:PORT")
	}
	if strings.ContainsFunc(s, func(c rune) bool { return c < '0' || c > '9' }) {
		return 0, fmt.Errorf("port %q is not a number 1-65535", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range 1-65535", s)
	}
	return n, nil
}

// checkHost accepts IP literals (with an IPv6 zone) and DNS names. Bracketed
// hosts must be IPv6 literals, as in URLs.
func checkHost(host string, bracketed bool) error {
	if addr, err := netip.ParseAddr(host); err == nil {
		if bracketed && !addr.Is6() {
			return fmt.Errorf("brackets are for IPv6 addresses only: write %s:PORT", host)
		}
		return nil
	}
	if bracketed {
		return fmt.Errorf("%q in brackets is not an IPv6 address", host)
	}
	return checkHostName(host)
}

// checkHostName applies the DNS length limits and a liberal character set:
// underscores are allowed because Kubernetes SRV-style and some internal
// names use them.
func checkHostName(name string) error {
	name = strings.TrimSuffix(name, ".")
	if strings.Trim(name, "0123456789.") == "" {
		return fmt.Errorf("%q is not a valid IPv4 address", name)
	}
	if len(name) > 253 {
		return errors.New("host name is longer than 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("host name %q has an empty label", name)
		}
		if len(label) > 63 {
			return fmt.Errorf("host name label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host name label %q starts or ends with '-'", label)
		}
		for _, c := range label {
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return fmt.Errorf("host name %q contains %q: want letters, digits, '-', '.'", name, c)
			}
		}
	}
	return nil
}
