package report

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

// PathKey is one client path of one target: what a fix repairs and what
// fix --apply verifies.
type PathKey struct {
	Target   target.TargetKey
	Scenario Scenario
}

// String is "Service shop/orders-db:3307 (mesh-to-mesh)".
func (p PathKey) String() string {
	t := p.Target
	name := fmt.Sprintf("%s %s/%s:%d", t.Kind, t.Namespace, t.Name, t.Port)
	if t.Kind == target.KindExternal || t.Namespace == "" {
		name = fmt.Sprintf("%s %s:%d", t.Kind, t.Name, t.Port)
	}
	if p.Scenario == "" {
		return name
	}
	return name + " (" + string(p.Scenario) + ")"
}

// throughMesh: the path's clients have a sidecar.
func (p PathKey) throughMesh() bool { return p.Scenario != ExternalToMesh }

// AppliedPaths are the paths the given plan objects repair, in plan order.
func AppliedPaths(objects []PlannedObject) []PathKey {
	var out []PathKey
	for _, o := range objects {
		for _, p := range o.Paths {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// ReprobeFor lists what probing the paths again takes.
func ReprobeFor(paths []PathKey) target.Reprobe {
	r := target.Reprobe{}
	for _, p := range paths {
		if r[p.Target] == nil {
			r[p.Target] = map[bool]bool{}
		}
		r[p.Target][p.throughMesh()] = true
	}
	return r
}

// PathState is a path's verdict in one report and the probe result it
// rests on.
type PathState struct {
	Found   bool
	Verdict Verdict
	Code    Code
	Reason  string
	// Clients names the clients of a config-decided path.
	Clients string
	// Evidence is the path's probe result; nil when nothing probed it
	// (the verdict is static).
	Evidence *Evidence
}

// StateOf finds a path in a report. A finding with several paths of the
// same scenario (config-decided paths for different clients) gives its
// worst; one without paths gives the finding's verdict.
func StateOf(r Report, p PathKey) PathState {
	for _, f := range r.Findings {
		if f.Key() != p.Target {
			continue
		}
		s := PathState{Found: true, Verdict: f.Verdict, Code: f.Code, Reason: f.Reason}
		for _, pv := range f.Paths { // worst first
			if pv.Scenario == p.Scenario {
				s.Verdict, s.Code, s.Reason, s.Clients = pv.Verdict, pv.Code, pv.Reason, pv.Clients
				break
			}
		}
		for i, e := range f.Evidence {
			if e.Vantage != target.VantageDirect && e.Vantage != target.VantageProxyConfig && e.throughMesh() == p.throughMesh() && (e.Vantage != target.VantageOutsideClient || f.ServerInMesh) {
				s.Evidence = &f.Evidence[i]
				break
			}
		}
		if s.Evidence == nil {
			// --vantage config: the path's proxy config, the stage that
			// waits if one does (a push still pending keeps it waiting).
			for i, e := range f.Evidence {
				if e.Vantage == target.VantageProxyConfig && e.Scenario == p.Scenario && (s.Evidence == nil || s.Evidence.Outcome == "passes") {
					s.Evidence = &f.Evidence[i]
				}
			}
		}
		return s
	}
	return PathState{}
}

// PathCheck is one path before and after a fix.
type PathCheck struct {
	Path          PathKey
	Before, After PathState
}

// Took: after the fix the path is OK or client-first. Anything else,
// UNREACHABLE included, is not a proof that the fix worked.
func (c PathCheck) Took() bool {
	return c.After.Found && (c.After.Verdict == OK || c.After.Verdict == ClientFirst)
}

// Static: nothing probed the path after the fix; it was judged again from
// the objects only.
func (c PathCheck) Static() bool { return c.After.Evidence == nil }

// CheckPaths compares each path in two reports.
func CheckPaths(paths []PathKey, before, after Report) []PathCheck {
	out := make([]PathCheck, 0, len(paths))
	for _, p := range paths {
		out = append(out, PathCheck{Path: p, Before: StateOf(before, p), After: StateOf(after, p)})
	}
	return out
}

// Settled: probing again cannot change the path's verdict any more. It
// took; or nothing probes it (a static judgement is final at once); or
// its probe already gets the banner, so what is still in the way is
// config the objects decide (a Sidecar, a DestinationRule), not a push
// the mesh has yet to make.
func (c PathCheck) Settled() bool {
	return c.Took() || c.Static() || c.After.Evidence.Outcome == "banner"
}

// AllSettled reports whether verification can stop.
func AllSettled(checks []PathCheck) bool {
	return !slices.ContainsFunc(checks, func(c PathCheck) bool { return !c.Settled() })
}

// evidenceWord is "banner 1.8ms", "silent", "reset".
func evidenceWord(e *Evidence) string {
	if e.Outcome == "banner" && e.FirstByteMs != nil {
		return "banner " + ms(e.FirstByteMs)
	}
	return e.Outcome
}

// vantageWord names where a probe ran from.
func vantageWord(e *Evidence) string {
	if e.Vantage == target.VantageSelf && e.InMesh != nil {
		if *e.InMesh {
			return "self (in the mesh)"
		}
		return "self (outside the mesh)"
	}
	return string(e.Vantage)
}

// Line is the check as the user reads it:
//
//	verified  Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> banner 1.8ms (DEADLOCK -> OK)
func (c PathCheck) Line() string {
	var b strings.Builder
	if c.Took() {
		b.WriteString("verified  ")
	} else {
		b.WriteString("NOT TAKEN ")
	}
	b.WriteString(c.Path.String() + ": ")
	switch {
	case c.Static():
		b.WriteString("re-judged statically (nothing probed it)")
	case c.Before.Evidence != nil && c.Before.Evidence.Vantage == c.After.Evidence.Vantage:
		fmt.Fprintf(&b, "%s %s -> %s", vantageWord(c.After.Evidence), evidenceWord(c.Before.Evidence), evidenceWord(c.After.Evidence))
	case c.Before.Evidence != nil:
		fmt.Fprintf(&b, "%s %s -> %s %s", vantageWord(c.Before.Evidence), evidenceWord(c.Before.Evidence), vantageWord(c.After.Evidence), evidenceWord(c.After.Evidence))
	default:
		fmt.Fprintf(&b, "%s -> %s %s", "not probed", vantageWord(c.After.Evidence), evidenceWord(c.After.Evidence))
	}
	after := c.After.Verdict
	if !c.After.Found {
		after = "gone"
	}
	fmt.Fprintf(&b, " (%s -> %s)", c.Before.Verdict, after)
	if !c.Took() {
		switch {
		case !c.After.Found:
			b.WriteString("; the target is no longer in the scan")
		default:
			why := c.After.Reason
			if c.After.Clients != "" && !strings.Contains(why, c.After.Clients) {
				why += " (clients: " + c.After.Clients + ")"
			}
			fmt.Fprintf(&b, "; still in the way [%s]: %s", c.After.Code, why)
		}
	}
	return safetext.Line(b.String())
}

// RenderChecks writes one line per path and a summary line.
func RenderChecks(w io.Writer, checks []PathCheck) error {
	var b strings.Builder
	took := 0
	for _, c := range checks {
		b.WriteString(c.Line() + "\n")
		if c.Took() {
			took++
		}
	}
	if took == len(checks) {
		fmt.Fprintf(&b, "all %d path(s) verified\n", len(checks))
	} else {
		fmt.Fprintf(&b, "%d of %d path(s) not taken\n", len(checks)-took, len(checks))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
