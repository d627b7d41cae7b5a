package sidecar

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// Capture is the subset of istio-iptables the injector uses by default
// (REDIRECT mode, all inbound ports, all outbound IP ranges), IPv4 only.
type Capture struct {
	OutboundPort        int   // -p, Envoy's virtualOutbound (15001)
	InboundPort         int   // -z, Envoy's virtualInbound (15006)
	ProxyUID            int   // -u
	ProxyGID            int   // -g
	ExcludeInboundPorts []int // -d, pilot-agent's own ports
}

// DefaultCapture is what istio-init runs in an injected pod:
// istio-iptables -p 15001 -z 15006 -u 1337 -m REDIRECT -i '*' -x "" -b '*' -d 15090,15021,15020.
func DefaultCapture() Capture {
	return Capture{
		OutboundPort:        OutboundPort,
		InboundPort:         InboundPort,
		ProxyUID:            ProxyUID,
		ProxyGID:            ProxyGID,
		ExcludeInboundPorts: []int{15090, StatusPort, 15020},
	}
}

// hboneInboundPort is never redirected: ambient's HBONE port, which
// istio-iptables always exempts.
const hboneInboundPort = 15008

// Rules returns the nat table in iptables-restore form, rule for rule as
// istio-iptables writes it (compare its testdata/*.golden).
func (c Capture) Rules() string {
	uid, gid := strconv.Itoa(c.ProxyUID), strconv.Itoa(c.ProxyGID)
	hbone := strconv.Itoa(hboneInboundPort)
	var b strings.Builder
	w := func(s string) { b.WriteString(s + "\n") }
	w("*nat")
	for _, ch := range []string{"ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"} {
		w(":" + ch + " - [0:0]")
	}
	w("-A ISTIO_INBOUND -p tcp --dport " + hbone + " -j RETURN")
	w("-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports " + strconv.Itoa(c.OutboundPort))
	w("-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports " + strconv.Itoa(c.InboundPort))
	// Inbound: everything but pilot-agent's ports goes to virtualInbound.
	w("-A PREROUTING -p tcp -j ISTIO_INBOUND")
	for _, p := range c.ExcludeInboundPorts {
		w("-A ISTIO_INBOUND -p tcp --dport " + strconv.Itoa(p) + " -j RETURN")
	}
	w("-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT")
	// Outbound.
	w("-A OUTPUT -j ISTIO_OUTPUT")
	// Envoy's inbound passthrough connects to the app from 127.0.0.6.
	w("-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN")
	// The proxy calling its own pod IP goes back through inbound; any other
	// process's traffic over lo (to localhost or to its own pod IP) is left alone.
	w("-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport " + hbone + " -m owner --uid-owner " + uid + " -j ISTIO_IN_REDIRECT")
	w("-A ISTIO_OUTPUT -o lo -m owner ! --uid-owner " + uid + " -j RETURN")
	w("-A ISTIO_OUTPUT -m owner --uid-owner " + uid + " -j RETURN")
	w("-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -p tcp ! --dport " + hbone + " -m owner --gid-owner " + gid + " -j ISTIO_IN_REDIRECT")
	w("-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner " + gid + " -j RETURN")
	w("-A ISTIO_OUTPUT -m owner --gid-owner " + gid + " -j RETURN")
	w("-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN")
	// -i '*': everything else leaving the pod goes to virtualOutbound.
	w("-A ISTIO_OUTPUT -j ISTIO_REDIRECT")
	w("COMMIT")
	return b.String()
}

// Apply installs the rules in the network namespace at netnsPath ("" = the
// caller's own), first removing what an earlier run left, so a restarted
// sidecar does not stack a second copy of every jump. Needs root (NET_ADMIN).
func (c Capture) Apply(ctx context.Context, netnsPath string) error {
	if err := c.Remove(ctx, netnsPath); err != nil {
		return err
	}
	if _, err := runIn(ctx, netnsPath, c.Rules(), "iptables-restore", "--noflush"); err != nil {
		return fmt.Errorf("install capture rules: %w", err)
	}
	return nil
}

// Remove deletes the capture rules and chains, if present.
func (c Capture) Remove(ctx context.Context, netnsPath string) error {
	save, err := runIn(ctx, netnsPath, "", "iptables-save", "-t", "nat")
	if err != nil {
		return fmt.Errorf("read nat table: %w", err)
	}
	if !strings.Contains(save, ":ISTIO_") {
		return nil
	}
	var in strings.Builder
	in.WriteString("*nat\n")
	for _, line := range strings.Split(save, "\n") {
		if (strings.HasPrefix(line, "-A PREROUTING ") || strings.HasPrefix(line, "-A OUTPUT ")) &&
			(strings.HasSuffix(line, "-j ISTIO_INBOUND") || strings.HasSuffix(line, "-j ISTIO_OUTPUT")) {
			in.WriteString("-D" + strings.TrimPrefix(line, "-A") + "\n")
		}
	}
	chains := []string{"ISTIO_INBOUND", "ISTIO_REDIRECT", "ISTIO_IN_REDIRECT", "ISTIO_OUTPUT"}
	for _, ch := range chains {
		if strings.Contains(save, ":"+ch+" ") {
			in.WriteString("-F " + ch + "\n")
		}
	}
	for _, ch := range chains {
		if strings.Contains(save, ":"+ch+" ") {
			in.WriteString("-X " + ch + "\n")
		}
	}
	in.WriteString("COMMIT\n")
	if _, err := runIn(ctx, netnsPath, in.String(), "iptables-restore", "--noflush"); err != nil {
		return fmt.Errorf("remove old capture rules: %w", err)
	}
	return nil
}

// runIn runs an iptables tool, inside netnsPath through nsenter when given.
func runIn(ctx context.Context, netnsPath, stdin string, name string, args ...string) (string, error) {
	if netnsPath != "" {
		args = append([]string{"--net=" + netnsPath, "--", name}, args...)
		name = "nsenter"
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}
