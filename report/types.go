// Package report joins the cluster inventory (static evidence) and probe
// results (active evidence) into findings with verdicts, maps each finding
// to the fix table, generates the fix manifests, and renders reports.
//
// It knows nothing about reaching the API server or dialing: it takes
// plain values in (an inventory, observations) and gives plain values out.
// Probes are planned and run by cluster/vantage; of package probe, report
// uses only the result values (Result, Outcome) and Describe.
package report

import "github.com/serverfirst/kubectl-serverfirst/internal/target"

// Verdict is the tool's conclusion about one target. The strings are a
// contract (JSON, --fail-on, explain).
type Verdict string

const (
	// Deadlock: the server speaks first on the direct path and nothing
	// arrives through the mesh path before the timeout. Proven.
	Deadlock Verdict = "DEADLOCK"
	// MTLSRejected: STRICT mTLS refuses a plaintext client (reset/closed).
	MTLSRejected Verdict = "MTLS-REJECTED"
	// Delayed: the banner arrives through the mesh, but only after about
	// the mesh's protocolDetectionTimeout.
	Delayed Verdict = "DELAYED"
	// AtRisk: static evidence says the port will hang; no active proof.
	AtRisk Verdict = "AT-RISK"
	// Unreachable: no vantage point could connect at all.
	Unreachable Verdict = "UNREACHABLE"
	// ClientFirst: the server does not speak first, so sniffing is harmless.
	ClientFirst Verdict = "CLIENT-FIRST"
	// OK: the port is declared so the mesh does not wait, or the banner
	// arrived promptly through the mesh.
	OK Verdict = "OK"
)

// Verdicts in order, worst first: the report's sort order.
var Verdicts = []Verdict{Deadlock, MTLSRejected, Delayed, AtRisk, Unreachable, ClientFirst, OK}

// Severity ranks a verdict: lower is worse.
func (v Verdict) Severity() int {
	for i, x := range Verdicts {
		if x == v {
			return i
		}
	}
	return len(Verdicts)
}

// Affected reports whether the verdict needs action.
func (v Verdict) Affected() bool {
	switch v {
	case Deadlock, Delayed, AtRisk, MTLSRejected:
		return true
	}
	return false
}

// Scenario says where client and server sit relative to the mesh, which
// decides the fix.
type Scenario string

const (
	MeshToMesh     Scenario = "mesh-to-mesh"
	MeshToExternal Scenario = "mesh-to-external"
	ExternalToMesh Scenario = "external-to-mesh"
)

// Scenarios lists them in the fix table's order.
var Scenarios = []Scenario{MeshToMesh, MeshToExternal, ExternalToMesh}

// Evidence is an observation as the report shows it.
type Evidence struct {
	Vantage     target.Vantage `json:"vantage"`
	Address     string         `json:"address,omitempty"`
	Outcome     string         `json:"outcome"`
	ConnectMs   float64        `json:"connectMs"`
	FirstByteMs *float64       `json:"firstByteMs,omitempty"`
	Banner      string         `json:"banner,omitempty"`
	Protocol    string         `json:"protocol,omitempty"`
	Error       string         `json:"error,omitempty"`
	// InMesh says whether a "self" probe went through a sidecar (only set
	// for target.VantageSelf; the other vantages imply it).
	InMesh *bool `json:"inMesh,omitempty"`

	// Proxy-config evidence (vantage "proxy-config"): the pod whose
	// sidecar config was read ("self" for the tool's own), which side of
	// the path it is ("client", "server"), the path it stands for, the
	// listener Envoy picks, the inspectors that wait for the client's
	// first bytes, how long (0 = forever; absent when nothing waits), what
	// follows the timeout ("continue", "close"), the filter chain and the
	// cluster. Outcome is waits-forever, waits, passes, no-chain,
	// http-request or undecided (Error says why).
	Proxy      string   `json:"proxy,omitempty"`
	Side       string   `json:"side,omitempty"`
	Scenario   Scenario `json:"scenario,omitempty"`
	Listener   string   `json:"listener,omitempty"`
	Inspectors []string `json:"inspectors,omitempty"`
	TimeoutMs  *int64   `json:"timeoutMs,omitempty"`
	OnTimeout  string   `json:"onTimeout,omitempty"`
	Chain      string   `json:"chain,omitempty"`
	Cluster    string   `json:"cluster,omitempty"`
}

// Fix is one way out, as a manifest or a command.
type Fix struct {
	// Type is a stable one-word name: appProtocol, rename, well-known-port,
	// tls, service-entry, peer-authentication.
	Type string `json:"type"`
	// Scenario is the client path the fix repairs.
	Scenario Scenario `json:"scenario,omitempty"`
	Title    string   `json:"title"`
	Why      string   `json:"why"`
	// Manifest is YAML ready for `kubectl apply -f -` (and server-side
	// apply): a partial object that sets only what the fix changes.
	Manifest string `json:"manifest,omitempty"`
	// Command is a shell command when a manifest cannot express the fix.
	Command string `json:"command,omitempty"`
	// Notes are what else must be true for the fix to work.
	Notes []string `json:"notes,omitempty"`
	// WeakensSecurity marks fixes that open a plaintext path; fix --apply
	// never applies them without --allow-plaintext.
	WeakensSecurity bool `json:"weakensSecurity,omitempty"`
	// AlternativeOnly keeps a fix out of the plan's best picks (fix lists
	// it as an alternative): disabling mTLS where STRICT was chosen on
	// purpose, the interception workarounds.
	AlternativeOnly bool `json:"alternativeOnly,omitempty"`
	// Change is what the manifest changes, machine-readable: fix plans
	// and applies from it, also from a saved report (fix --from).
	Change *Change `json:"change,omitempty"`
}

// Finding is the report's unit: one target, its static facts, its
// evidence, its verdict and its fixes.
type Finding struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Port       int32  `json:"port"`
	PortName   string `json:"portName,omitempty"`
	TargetPort string `json:"targetPort,omitempty"`
	// Protocol is Istio's name for the port's protocol, "auto" when sniffed.
	Protocol        string   `json:"protocol"`
	ProtocolSource  string   `json:"protocolSource"`
	AppProtocol     string   `json:"appProtocol,omitempty"`
	AppProtocolTrap bool     `json:"appProtocolTrap,omitempty"`
	Hosts           []string `json:"hosts,omitempty"`
	ServerInMesh    bool     `json:"serverInMesh"`
	// MTLSMode is the effective inbound mode on the server's port; empty
	// when the server has no sidecar.
	MTLSMode string `json:"mtlsMode,omitempty"`
	// Hints are server-first clues: "port:3306/mysql", "name:smtp",
	// "image:mariadb", "host:mail", "banner:mysql".
	Hints []string `json:"hints"`
	// CollidesWith lists in-mesh Service ports whose sniffing or HTTP
	// listener shares this outbound port.
	CollidesWith []string `json:"collidesWith,omitempty"`
	// CollidesWithTotal is how many ports collide when CollidesWith lists
	// only the first maxCollisionsListed of them (0 when it lists all).
	CollidesWithTotal int     `json:"collidesWithTotal,omitempty"`
	Verdict           Verdict `json:"verdict"`
	// Code is the registered rule that gave the verdict (explain CODE).
	Code     Code     `json:"code"`
	Scenario Scenario `json:"scenario,omitempty"`
	// Paths are the verdicts of each client path probed (mesh client,
	// outside client), worst first; Verdict and Scenario are the first's.
	Paths    []PathVerdict `json:"paths,omitempty"`
	Reason   string        `json:"reason"`
	Evidence []Evidence    `json:"evidence"`
	Fixes    []Fix         `json:"fixes"`
	Notes    []string      `json:"notes,omitempty"`

	// Source is the manifest the target's object came from (scan -f):
	// "FILE#DOCUMENT", documents counted from 1; SourceLine is the line of
	// the port's entry there. Empty for objects read from a cluster.
	Source     string `json:"source,omitempty"`
	SourceLine int    `json:"sourceLine,omitempty"`
	// SourceTemplate is the chart template the object was rendered from
	// when the manifest is `helm template` output ("CHART/templates/FILE").
	SourceTemplate string `json:"sourceTemplate,omitempty"`
}

// Key is the finding's target.
func (f Finding) Key() target.TargetKey {
	return target.TargetKey{Kind: f.Kind, Namespace: f.Namespace, Name: f.Name, Port: f.Port}
}

// Report is the whole result of a scan. Its JSON is the documented schema.
type Report struct {
	Findings []Finding `json:"findings"`
	Warnings []string  `json:"warnings"`
	// Mesh says which mesh config the verdicts assumed.
	Mesh MeshSummary `json:"mesh"`
	// Summary counts findings by verdict.
	Summary map[Verdict]int `json:"summary"`
	// Static is true when no active probe ran: verdicts rest on the
	// inventory alone.
	Static bool `json:"static"`
	// SchemaVersion is the version of this JSON (SchemaVersion): fields
	// are only ever added, and fix --from refuses a newer one.
	SchemaVersion int `json:"schemaVersion"`
}

// MeshSummary is the mesh config the report assumed.
type MeshSummary struct {
	IstioInstalled             bool   `json:"istioInstalled"`
	Source                     string `json:"source"`
	RootNamespace              string `json:"rootNamespace"`
	ProtocolDetectionTimeoutMs int64  `json:"protocolDetectionTimeoutMs"`
	// OutboundTrafficPolicy is the mesh's mode (ALLOW_ANY, REGISTRY_ONLY,
	// ALLOW_ANY_DYNAMIC_DNS).
	OutboundTrafficPolicy string `json:"outboundTrafficPolicy,omitempty"`
	// BannerWaitMs is how long probes waited for a banner, and BannerWait
	// why that long (the user's --timeout, or the mesh's own timeouts);
	// absent in a static report.
	BannerWaitMs int64  `json:"bannerWaitMs,omitempty"`
	BannerWait   string `json:"bannerWait,omitempty"`
}

// PathVerdict is the verdict for one client path of a target.
type PathVerdict struct {
	Scenario Scenario `json:"scenario"`
	Verdict  Verdict  `json:"verdict"`
	// Code is the registered rule that gave the path's verdict.
	Code   Code   `json:"code"`
	Reason string `json:"reason"`
	// Clients says which clients take the path, where config decides it
	// ("web (3 pods), shop (1 pod)").
	Clients string `json:"clients,omitempty"`

	// destinationRule is "ns/name" of the DestinationRule that decides a
	// config path, for its fix (not part of the report).
	destinationRule string
	// clientNamespaces are the namespaces of the path's clients, for a
	// fix that names them (not part of the report).
	clientNamespaces []string
}
