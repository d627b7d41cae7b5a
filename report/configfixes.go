package report

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// Fix types for the config-decided paths.
const (
	FixDestinationRule   = "destination-rule"
	FixExcludeOutbound   = "exclude-outbound-ports"
	FixExcludeInbound    = "exclude-inbound-ports"
	FixSidecarResource   = "sidecar"
	FixDeclarePodPort    = "declare-pod-port"
	managedDRNamePrefix  = "serverfirst-"
	portLevelSettingsFYI = "portLevelSettings is a list the API server replaces whole: copy the rule's other portLevelSettings (and any trafficPolicy it has) into this manifest before applying it"
)

// drTLSFix sets the tls mode of one port in a DestinationRule: the rule
// that applies (rule "ns/name") or, when rule is empty, a new one for host.
func drTLSFix(rule, host, namespace string, port int32, mode cluster.ClientTLSMode, title, why string) Fix {
	ns, name := namespace, truncateLabel(managedDRNamePrefix+strings.SplitN(host, ".", 2)[0]+"-"+strconv.Itoa(int(port)), 63)
	meta := map[string]any{"namespace": ns, "name": name, "labels": map[string]any{ManagedByLabel: ManagerName}}
	notes := []string{}
	if rule != "" {
		ns, name, _ = strings.Cut(rule, "/")
		meta = map[string]any{"namespace": ns, "name": name}
		notes = append(notes, portLevelSettingsFYI)
	}
	manifest, ok := drManifest(ns, name, rule == "", host, port, mode)
	if !ok {
		obj := map[string]any{
			"apiVersion": "networking.istio.io/v1",
			"kind":       "DestinationRule",
			"metadata":   meta,
			"spec": map[string]any{
				"host": host,
				"trafficPolicy": map[string]any{"portLevelSettings": []any{
					map[string]any{"port": map[string]any{"number": int64(port)}, "tls": map[string]any{"mode": string(mode)}},
				}},
			},
		}
		manifest = toYAML(obj)
	}
	fix := Fix{Type: FixDestinationRule, Scenario: MeshToMesh, Title: title, Why: why, Manifest: manifest, Notes: notes}
	if mode == cluster.TLSDisable {
		fix.WeakensSecurity = true
		fix.Notes = append(fix.Notes, fmt.Sprintf("SECURITY: mesh clients then send port %d in plaintext, without mTLS identity", port))
	}
	return fix
}

// drManifest writes drTLSFix's manifest as toYAML would, without its
// marshalling round trip (a big cluster has thousands of these); ok is
// false when a name needs YAML quoting, for toYAML to handle.
func drManifest(ns, name string, managed bool, host string, port int32, mode cluster.ClientTLSMode) (string, bool) {
	for _, s := range []string{ns, name, host} {
		if !plainYAMLName(s) {
			return "", false
		}
	}
	var b strings.Builder
	writeManifestHead(&b, "networking.istio.io/v1", "DestinationRule", ns, name, managed)
	fmt.Fprintf(&b, "  host: %s\n  trafficPolicy:\n    portLevelSettings:\n    - port:\n        number: %d\n      tls:\n        mode: %s\n", host, port, mode)
	return b.String(), true
}

// plainYAMLName: a Kubernetes name YAML reads back as the same string
// without quotes (starts with a letter, DNS characters, not a YAML 1.1
// boolean or null).
func plainYAMLName(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	switch s {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return false
	}
	return true
}

// configFixes adds the fixes of the config-decided paths (SF06xx-SF08xx)
// to a Service port's fixes and, for a port already declared TCP, drops
// the declare-the-protocol fixes that would change nothing. It also offers
// the interception workarounds as alternatives for a mesh-to-mesh
// server-first port, each with its caveats.
func (j *judge) configFixes(f Finding, svc cluster.Service, p cluster.ServicePort, meshPod *cluster.Pod, fixes []Fix) []Fix {
	host := cluster.ServiceHostname(svc.Namespace, svc.Name)
	targetPort, targetKnown := target.ParsePort(f.TargetPort)
	var added []Fix
	configOnly := true // every affected mesh-to-mesh path comes from config
	meshAffected := false
	for _, pv := range f.Paths {
		if pv.Verdict.Affected() && pv.Scenario == ExternalToMesh && meshPod != nil && targetKnown && len(svc.Selector) > 0 {
			// Beside the PeerAuthentication DISABLE: keep the port away
			// from the server's sidecar, which mesh clients then need a
			// DestinationRule DISABLE for.
			fix := j.excludeInboundFix(svc, p, targetPort)
			fix.Scenario = ExternalToMesh
			if !slices.ContainsFunc(fixes, func(x Fix) bool { return x.Type == FixExcludeInbound && x.Scenario == ExternalToMesh }) {
				fixes = append(fixes, fix)
			}
		}
		if !pv.Verdict.Affected() || pv.Scenario != MeshToMesh {
			continue
		}
		meshAffected = true
		rule := pv.destinationRule
		switch pv.Code {
		case rulePlaintextIntoPermissive.Code, rulePlaintextIntoStrict.Code:
			added = append(added, drTLSFix(rule, host, svc.Namespace, p.Port, cluster.TLSIstioMutual,
				fmt.Sprintf("send mutual TLS to %s port %d: tls ISTIO_MUTUAL in DestinationRule %s", host, p.Port, cmp.Or(rule, "(new)")),
				"the clients then send mTLS, which the server's sidecar terminates without waiting for the client's first bytes (DR ISTIO_MUTUAL + PA PERMISSIVE or STRICT works in Istio's own server-first tests); deleting the tls DISABLE does the same through auto mTLS"))
			if pv.Code == rulePlaintextIntoPermissive.Code {
				if fix, ok := j.peerAuthenticationFix(f, svc, meshPod); ok {
					fix.Scenario = MeshToMesh
					fix.AlternativeOnly = true
					fix.Why = "keeps the clients' plaintext and makes the server side agree: DISABLE on the port removes the TLS inspector (DR DISABLE + PA DISABLE works in Istio's own server-first tests)"
					added = append(added, fix)
				}
			}
		case ruleMutualIntoDisabled.Code, ruleMutualIntoNoSidecar.Code:
			added = append(added, drTLSFix(rule, host, svc.Namespace, p.Port, cluster.TLSDisable,
				fmt.Sprintf("send plaintext to %s port %d: tls DISABLE in DestinationRule %s", host, p.Port, cmp.Or(rule, "(new)")),
				"the server side expects plaintext on this port; deleting the ISTIO_MUTUAL lets auto mTLS choose plaintext too"))
		case ruleMTLSIntoUncaptured.Code:
			added = append(added, drTLSFix("", host, svc.Namespace, p.Port, cluster.TLSDisable,
				fmt.Sprintf("send plaintext to %s port %d, which the server's sidecar does not capture", host, p.Port),
				"auto mTLS ignores the server's excludeInboundPorts and sends mTLS to the application; Istio's FAQ prescribes a DestinationRule with tls DISABLE for the excluded port"))
		case ruleBypassIntoPermissive.Code, ruleBypassIntoStrict.Code:
			added = append(added, Fix{Type: FixExcludeOutbound, Scenario: MeshToMesh,
				Title: "remove the port from the clients' traffic.sidecar.istio.io/excludeOutboundPorts (or the address from excludeOutboundIPRanges)",
				Why:   "the clients then reach the server through their sidecar, with mTLS, instead of as plaintext clients from outside the mesh",
				Notes: []string{"interception annotations are read when a pod is created: change the workload's pod template and restart the pods"}})
			if fix, ok := j.peerAuthenticationFix(f, svc, meshPod); ok && pv.Code == ruleBypassIntoPermissive.Code {
				fix.Scenario, fix.AlternativeOnly = MeshToMesh, true
				added = append(added, fix)
			}
		case ruleNoListenerPermissive.Code, ruleNoListenerStrict.Code:
			added = append(added, Fix{Type: FixSidecarResource, Scenario: MeshToMesh,
				Title: fmt.Sprintf("import %s into the clients' Sidecar egress hosts (%s/%s)", host, svc.Namespace, host),
				Why:   "with a listener for the Service the clients send mTLS through it instead of plaintext through the passthrough cluster"})
		case ruleDynamicDNSEveryPort.Code:
			added = append(added, dynamicDNSFixes(j.inv, pv.clientNamespaces)...)
		case ruleNotExportedPermissive.Code, ruleNotExportedStrict.Code:
			added = append(added, exportToFix(svc, j.inv.Mesh, pv.clientNamespaces))
		case ruleEgressPortSniffs.Code:
			added = append(added, Fix{Type: FixSidecarResource, Scenario: MeshToMesh,
				Title: fmt.Sprintf("set protocol: TCP on the clients' Sidecar egress listener for port %d", p.Port),
				Why:   "a Sidecar egress port replaces the Service's protocol; TCP stops the client side from sniffing"})
		case ruleIngressPassthrough.Code:
			added = append(added, Fix{Type: FixSidecarResource, Scenario: MeshToMesh,
				Title: fmt.Sprintf("add an ingress listener for port %d with protocol: TCP to the server's Sidecar", targetPort),
				Why:   "a Sidecar with ingress listeners sends every other port to the sniffing passthrough chain"})
		default:
			configOnly = false
		}
	}
	if meshAffected && configOnly && !p.Resolved.Sniffed() && !p.Resolved.Protocol.HTTPFamily() {
		// The port is declared already: declaring it again fixes nothing.
		fixes = slices.DeleteFunc(fixes, func(x Fix) bool {
			return x.Scenario == MeshToMesh && (x.Type == FixAppProtocol || x.Type == FixRename || x.Type == FixWellKnownPort)
		})
	}
	fixes = append(fixes, added...)
	if meshPod != nil && targetKnown && meshAffected && !configOnly && len(f.Hints) > 0 && len(svc.Selector) > 0 {
		fixes = append(fixes, j.interceptionAlternatives(f, svc, p, targetPort)...)
	}
	return fixes
}

// interceptionAlternatives are the workarounds users reach for first
// (istio/istio#24856, #34444, #27510), listed as alternatives only.
func (j *judge) interceptionAlternatives(f Finding, svc cluster.Service, p cluster.ServicePort, targetPort int32) []Fix {
	inbound := j.excludeInboundFix(svc, p, targetPort)
	inbound.Notes = append(inbound.Notes, "mesh clients still sniff their side of a port whose protocol is not declared: declare it as well, or exclude it on the clients too")
	outbound := Fix{Type: FixExcludeOutbound, Scenario: MeshToMesh, AlternativeOnly: true,
		Title: fmt.Sprintf("exclude port %d from the clients' sidecars (traffic.sidecar.istio.io/excludeOutboundPorts: \"%d\" on the client workloads)", p.Port, p.Port),
		Why:   "the clients' own sidecars then never see the connection, so nothing sniffs it on their side",
		Notes: []string{
			"the clients then arrive as plaintext clients from outside the mesh: under PERMISSIVE the server's sidecar still waits for their first bytes, so this only works with the server port's mTLS DISABLE or excluded from its sidecar",
			"every destination on that port bypasses the clients' sidecars (mTLS, retries, telemetry)",
			"interception annotations are read when a pod is created: change the pod template and restart the pods",
		}}
	if f.MTLSMode == string(cluster.MTLSStrict) {
		outbound.Notes[0] = "the server port is STRICT: plaintext clients are rejected, so this does not work unless the port's mTLS is changed"
	}
	return []Fix{inbound, outbound}
}

// excludeInboundFix keeps a port away from the server's sidecar, with the
// DestinationRule mesh clients then need.
func (j *judge) excludeInboundFix(svc cluster.Service, p cluster.ServicePort, targetPort int32) Fix {
	host := cluster.ServiceHostname(svc.Namespace, svc.Name)
	fix := drTLSFix("", host, svc.Namespace, p.Port, cluster.TLSDisable,
		fmt.Sprintf("exclude port %d from the server's sidecar (traffic.sidecar.istio.io/excludeInboundPorts: \"%d\" on the pods behind %s/%s), with this DestinationRule", targetPort, targetPort, svc.Namespace, svc.Name),
		"an inbound port the sidecar does not capture is neither sniffed nor TLS-inspected on the server side; auto mTLS would still send mTLS to it, hence the DestinationRule with tls DISABLE")
	fix.Type = FixExcludeInbound
	fix.AlternativeOnly = true
	fix.Notes = append(fix.Notes,
		"the annotation goes on the workload's pod template (read when a pod is created): restart the pods",
		"the port then has no mTLS, no authorization policy and no telemetry, for every client")
	return fix
}

// outboundExclusionAlternative is the workaround for an external
// server-first destination: the clients' sidecars never see it.
func outboundExclusionAlternative(f Finding) []Fix {
	if !f.Verdict.Affected() {
		return nil
	}
	return []Fix{{Type: FixExcludeOutbound, Scenario: MeshToExternal, AlternativeOnly: true,
		Title: fmt.Sprintf("exclude port %d from the clients' sidecars (traffic.sidecar.istio.io/excludeOutboundPorts: \"%d\" on the client workloads)", f.Port, f.Port),
		Why:   "the clients' sidecars then never see connections on this port, so nothing sniffs them; the usual workaround for external SMTP, MySQL and the like (istio/istio#24856, #34444)",
		Notes: []string{
			"every destination on that port, in the mesh or not, bypasses the clients' sidecars (no mTLS, no egress policy, no telemetry)",
			"interception annotations are read when a pod is created: change the pod template and restart the pods",
		}}}
}

// podPortFixes declare an uncovered pod port or keep it from the sidecar.
func (j *judge) podPortFixes(f Finding, pod *cluster.Pod) []Fix {
	name := tcpPortNameFor(f.PortName, f.Port)
	svcName := truncateLabel(managedDRNamePrefix+pod.Name+"-"+strconv.Itoa(int(f.Port)), 63)
	obj := corev1ac.Service(svcName, pod.Namespace).WithLabels(map[string]string{ManagedByLabel: ManagerName}).
		WithSpec(corev1ac.ServiceSpec().WithClusterIP("None").WithSelector(pod.Labels).
			WithPorts(corev1ac.ServicePort().WithName(name).WithPort(f.Port).WithTargetPort(intstr.FromInt32(f.Port)).WithAppProtocol("tcp")))
	declare := Fix{Type: FixDeclarePodPort, Scenario: MeshToMesh,
		Title:    fmt.Sprintf("declare port %d of %s/%s as TCP with a headless Service", f.Port, pod.Namespace, pod.Name),
		Why:      "a Service port gives the pod's sidecar an inbound chain for the port with the declared protocol, instead of the sniffing passthrough",
		Manifest: toYAML(obj),
		Notes:    []string{"the selector is every label of this pod: narrow it to the labels its workload's pods share"}}
	exclude := Fix{Type: FixExcludeInbound, Scenario: MeshToMesh, AlternativeOnly: true,
		Title: fmt.Sprintf("exclude port %d from the sidecar (traffic.sidecar.istio.io/excludeInboundPorts: \"%d\" on the pod template)", f.Port, f.Port),
		Why:   "an inbound port the sidecar does not capture is not sniffed",
		Notes: []string{"the port then has no mTLS, no authorization policy and no telemetry", "read when a pod is created: restart the pods"}}
	return []Fix{declare, exclude}
}

func tcpPortNameFor(name string, port int32) string {
	if name == "" {
		return "tcp-" + strconv.Itoa(int(port))
	}
	return truncateLabel("tcp-"+name, 15)
}
