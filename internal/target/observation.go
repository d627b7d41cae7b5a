package target

import "github.com/serverfirst/kubectl-serverfirst/probe"

// Vantage is where a probe ran from.
type Vantage string

const (
	// VantageDirect bypasses the sidecar (a port-forward to the pod): it
	// tells whether the server itself speaks first.
	VantageDirect Vantage = "direct"
	// VantageMeshClient is a client with a sidecar.
	VantageMeshClient Vantage = "mesh-client"
	// VantageOutsideClient is a client without a sidecar.
	VantageOutsideClient Vantage = "outside-client"
	// VantageSelf is wherever the tool runs (a laptop, a Job pod); whether
	// it is in the mesh is given by Observation.InMesh.
	VantageSelf Vantage = "self"
)

// Observation is one probe result from one vantage point. Its JSON form is
// what a shard stores (report/publish).
type Observation struct {
	Target  TargetKey `json:"target"`
	Vantage Vantage   `json:"vantage"`
	// InMesh is whether the probing client had a sidecar (meaningful for
	// VantageSelf; implied by the other vantages).
	InMesh bool         `json:"inMesh"`
	Result probe.Result `json:"result"`
}

// ThroughMesh reports whether the observation's client had a sidecar: a
// mesh-client probe, or a self probe from inside the mesh.
func (o Observation) ThroughMesh() bool {
	return o.Vantage == VantageMeshClient || o.Vantage == VantageSelf && o.InMesh
}

// ProbeTask is one dial to make on behalf of one target.
type ProbeTask struct {
	Key     TargetKey
	Target  probe.Target
	Vantage Vantage
	InMesh  bool
}

// Reprobe is the client side of each path that verification probes again:
// by target, whether the client has a sidecar.
type Reprobe map[TargetKey]map[bool]bool

// Wants reports whether a probe of target k by a client with (inMesh) or
// without a sidecar is one of the paths to verify.
func (r Reprobe) Wants(k TargetKey, inMesh bool) bool { return r[k][inMesh] }

// Merge is the evidence a re-judgement rests on: the fresh observations
// replace those of the paths they probed again; the rest carries over
// (the direct path, which no fix changes, and paths not being verified).
func (r Reprobe) Merge(old, fresh []Observation) []Observation {
	out := make([]Observation, 0, len(old)+len(fresh))
	for _, o := range old {
		if o.Vantage == VantageDirect || !r.Wants(o.Target, o.ThroughMesh()) {
			out = append(out, o)
		}
	}
	return append(out, fresh...)
}
