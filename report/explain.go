package report

import (
	"fmt"
	"strings"
)

// explanations are what `explain TOPIC` prints: the why, the evidence
// needed, and the fixes, in plain words. Keys are lower case.
var explanations = map[string]string{
	"deadlock": `DEADLOCK: the connection hangs until a timeout.

Why: the port's protocol is not declared, so the sidecar (Envoy) waits for the
client's first bytes to detect it. A server-first protocol (MySQL, SMTP, FTP,
POP3, IMAP, SSH, NATS, VNC, ...) makes the client wait for the server's banner.
Each waits for the other until something gives up.

Evidence: a probe that bypasses the sidecar (the direct path, e.g. a
port-forward to the pod) receives the banner, and a probe through the mesh
receives nothing before the timeout. Without both halves the tool says AT-RISK,
never DEADLOCK.

Fixes: see the scenario of the finding (explain mesh-to-mesh, mesh-to-external,
external-to-mesh).`,
	"delayed": `DELAYED: the banner arrives, but only after the mesh's protocolDetectionTimeout.

Why: meshConfig.protocolDetectionTimeout is set (the default, 0s, waits forever).
After it, Envoy gives up sniffing and treats the connection as plain TCP, so
the server's banner finally passes. Clients see a slow connect on every
connection, and clients with short timeouts still fail.

Evidence: through the mesh the first byte arrives after about the detection
timeout (at least 80% of it), while directly it arrives promptly.

Fixes: the same as for DEADLOCK (explain mesh-to-mesh): declare the port TCP.
Raising or lowering the timeout only moves the delay.`,
	"at-risk": `AT-RISK: static evidence says this port will hang; nothing proved it yet.

Why: the port is sniffed (no protocol from its name, appProtocol or a
well-known port number) and something suggests a server-first protocol: the
port number (3306, 25, 21, 110, 143, 4222, 5900, ...), the port or Service name,
or a container image (mysql, mariadb, postfix, dovecot, nats, ...).

Evidence: the inventory only. To prove it, probe from a client with a sidecar
and from the direct path: run the scan inside a pod (--vantage self), or compare
"kubectl serverfirst probe HOST:PORT" from a meshed pod with a port-forward.

Fixes: as for DEADLOCK; declaring a port TCP is harmless even if the server
turns out to be client-first.`,
	"ok": `OK: nothing waits for the client on this port.

Why: the port is declared TCP-family (a tcp-/mysql-/redis-/... name, appProtocol,
or the well-known ports 25, 53, 3306, 27017), or a probe through the mesh got the
banner promptly, or the port is sniffed and nothing suggests a server-first
protocol (probe it to be sure).`,
	"client-first": `CLIENT-FIRST: the server waits for the client to speak first.

Why: HTTP, PostgreSQL, Redis, MongoDB, TLS and most protocols are client-first.
The sidecar sees the client's bytes at once, so sniffing is harmless here.

Evidence: the direct probe (no sidecar) got no banner within the timeout.`,
	"mtls-rejected": `MTLS-REJECTED: STRICT mTLS refuses a client without a sidecar.

Why: the server's PeerAuthentication mode is STRICT for this port, so its
sidecar accepts only mutual-TLS connections from other sidecars. A plaintext
client is reset or closed. This is policy working, not sniffing.

Evidence: a probe from a client without a sidecar is reset or closed.

Fixes: move the client into the mesh; or, if plaintext is acceptable, a
PeerAuthentication with portLevelMtls DISABLE (or PERMISSIVE, which then needs
the external-to-mesh fix) on the workload's port.`,
	"unreachable": `UNREACHABLE: no vantage point could connect.

Why: connection refused, timed out, or the name did not resolve: the server is
down, a NetworkPolicy blocks the prober, or the address is wrong. The finding
says which vantage saw what; the static verdict is not overridden.`,
	"mesh-to-mesh": `mesh-to-mesh: client and server are both in the mesh.

The client's sidecar sniffs the Service port outbound, the server's sidecar
inbound; both wait for the client. Fixes, best first:
  1. appProtocol: tcp on the Service port (nothing refers to appProtocol, so
     nothing else changes; it also repairs an unknown appProtocol such as
     nats.io/client, which defeats a correct tcp- name);
  2. rename the port with a tcp- prefix, keeping the rest of the name (update
     anything that refers to the port by name);
  3. move the Service to the protocol's well-known port (3306 for MySQL, 25 for
     SMTP), which Istio never sniffs; clients must change port;
  4. TLS on the server: a TLS client speaks first.
"kubectl serverfirst fix" prints 1 as a manifest and the rest as comments.`,
	"mesh-to-external": `mesh-to-external: the client is in the mesh, the server is not.

An external destination on a port that some in-mesh Service uses for HTTP or
sniffing rides that 0.0.0.0:PORT listener in the client's sidecar and is sniffed.
A ServiceEntry port without a protocol is sniffed too. Fix: a ServiceEntry for
the host and port with protocol TCP. A host-name ServiceEntry is matched by
address, so either give it addresses or turn on DNS proxying with address
auto-allocation (ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE) and
restart the client pods (otherwise istioctl analyze reports IST0134).
A Service whose pods have no sidecar is fixed like mesh-to-mesh: declare its port.`,
	"external-to-mesh": `external-to-mesh: the client has no sidecar, the server has one.

Under PERMISSIVE mTLS the server's sidecar inspects the first bytes to tell
mTLS from plaintext, even on a port declared TCP, and so waits for the client.
Fix: a PeerAuthentication selecting the workload with
portLevelMtls: {TARGETPORT: {mode: DISABLE}}. That makes the port plaintext
and unauthenticated for every client: fix --apply needs --allow-plaintext. Istio
applies only the oldest workload-level policy to a pod, so the tool extends an
existing one instead of adding a second. Better, where possible: put the client
in the mesh.
Without probes, the tool flags this path (SF0203) on a server-first port behind
a PERMISSIVE sidecar whenever the scanned namespaces hold pods without a sidecar,
and says how many and where.`,
}

// Topics lists what explain knows, verdicts first.
func Topics() []string {
	var out []string
	for _, v := range Verdicts {
		out = append(out, string(v))
	}
	for _, s := range Scenarios {
		out = append(out, string(s))
	}
	return out
}

// Explain returns the text for a verdict, a scenario or a rule code such
// as SF0401 (any case).
func Explain(topic string) (string, error) {
	if r, ok := LookupRule(topic); ok {
		return explainRule(r), nil
	}
	t, ok := explanations[strings.ToLower(strings.TrimSpace(topic))]
	if !ok {
		if codePattern.MatchString(strings.ToUpper(strings.TrimSpace(topic))) {
			return "", fmt.Errorf("no rule has the code %q: the README lists them, or look at a finding's \"code\" in -o json", topic)
		}
		return "", fmt.Errorf("nothing to explain about %q: try one of %s, or a rule code such as %s", topic, strings.Join(Topics(), ", "), ruleDeadlock.Code)
	}
	return t + "\n", nil
}

// RuleCodes lists the codes explain knows (for shell completion).
func RuleCodes() []string {
	var out []string
	for _, r := range Rules() {
		out = append(out, string(r.Code))
	}
	return out
}
