package report

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

// PlannedObject is one document of a fix plan: every chosen change to one
// object, merged.
type PlannedObject struct {
	APIVersion, Kind, Namespace, Name string
	// Object is the typed apply configuration: a
	// *k8s.io/client-go/applyconfigurations/core/v1.ServiceApplyConfiguration,
	// or istio.io/client-go's ServiceEntryApplyConfiguration or
	// PeerAuthenticationApplyConfiguration.
	Object any
	// Create: the fixes create the object (it did not exist at the scan).
	Create bool
	// Changes are the fixes' changes merged into Object.
	Changes []*Change
	// Reasons are the findings and fixes that went into the object.
	Reasons []string
	// Notes are what else the fixes need.
	Notes []string
	// WeakensSecurity: some change opens a plaintext path.
	WeakensSecurity bool
	// Paths are the client paths the object's changes repair (what
	// fix --apply verifies).
	Paths []PathKey
}

// Manifest is the object as YAML.
func (p PlannedObject) Manifest() string { return manifestOf(p.Object, p.Create) }

// Ref is "Kind namespace/name".
func (p PlannedObject) Ref() string { return p.Kind + " " + p.Namespace + "/" + p.Name }

// ManualFix is a best fix that has no manifest (a command or advice).
type ManualFix struct {
	Finding string
	Fix     Fix
}

// FixPlan is what `fix` prints or applies.
type FixPlan struct {
	Objects []PlannedObject
	Manual  []ManualFix
	// Alternatives are the other fixes per finding, for comments.
	Alternatives []ManualFix
}

// findingRef names a finding in comments: "DEADLOCK shop/svc/orders-db:3307".
func findingRef(f Finding) string {
	ns := f.Namespace
	if ns != "" {
		ns += "/"
	}
	return fmt.Sprintf("%s %s%s", f.Verdict, ns, TargetName(f))
}

// Plan picks the best fix with a manifest for every affected finding and
// merges fixes to the same object into one document, so that applying
// the plan (client-side or server-side) never undoes one fix with another.
// It reads only what the report's JSON holds, so a saved report plans as
// the scan did.
func Plan(r Report) FixPlan {
	plan, _ := PlanSkipping(r, nil)
	return plan
}

// PlanSkipping is Plan without the fixes whose change skip names (fix
// --from leaves out those to objects that changed since the report): their
// paths get no fix. A fix whose change or manifest does not read (only a
// report edited by hand has one) is planned as a manual fix, and the error
// says which.
func PlanSkipping(r Report, skip map[*Change]bool) (FixPlan, error) {
	var errs []error
	var plan FixPlan
	groups := map[string]*PlannedObject{}
	var order []string
	for _, f := range r.Findings {
		if !f.Verdict.Affected() || len(f.Fixes) == 0 {
			continue
		}
		// One best fix per client path: a port can need a declared
		// protocol for mesh clients and a PeerAuthentication for the rest.
		var scenarios []Scenario
		byScenario := map[Scenario][]Fix{}
		for _, fix := range f.Fixes {
			if _, ok := byScenario[fix.Scenario]; !ok {
				scenarios = append(scenarios, fix.Scenario)
			}
			byScenario[fix.Scenario] = append(byScenario[fix.Scenario], fix)
		}
		for _, sc := range scenarios {
			ref := findingRef(f)
			if len(scenarios) > 1 && sc != "" {
				ref += " (" + string(sc) + ")"
			}
			if err := plan.add(byScenario[sc], ref, PathKey{Target: f.Key(), Scenario: sc}, groups, &order, skip); err != nil {
				errs = append(errs, err)
			}
		}
	}
	sort.Strings(order)
	for _, k := range order {
		o := groups[k]
		// Every fix's manifest is the object as scanned with its own
		// change; the first one's, with every change applied, is them all.
		for _, c := range o.Changes {
			applyChange(o.Object, c)
		}
		plan.Objects = append(plan.Objects, *o)
	}
	return plan, errors.Join(errs...)
}

// add picks the best fix with a manifest among fixes (one path of one
// finding), files the rest as alternatives, and merges the change into
// its object's group.
func (plan *FixPlan) add(fixes []Fix, ref string, path PathKey, groups map[string]*PlannedObject, order *[]string, skip map[*Change]bool) error {
	best := slices.IndexFunc(fixes, func(f Fix) bool { return f.Change != nil && !f.AlternativeOnly })
	chosen := max(best, 0) // without a manifest, the first fix is the manual one
	for i, fix := range fixes {
		if i != chosen {
			plan.Alternatives = append(plan.Alternatives, ManualFix{Finding: ref, Fix: fix})
		}
	}
	if best < 0 {
		plan.Manual = append(plan.Manual, ManualFix{Finding: ref, Fix: fixes[0]})
		return nil
	}
	fix := fixes[best]
	c := fix.Change
	if skip[c] {
		return nil
	}
	key := c.key()
	g, ok := groups[key]
	err := c.validate()
	var obj any
	if err == nil && !ok {
		obj, err = ObjectOf(fix)
	}
	if err != nil {
		plan.Manual = append(plan.Manual, ManualFix{Finding: ref, Fix: fix})
		return fmt.Errorf("%s: %w", ref, err)
	}
	if !ok {
		g = &PlannedObject{APIVersion: c.APIVersion, Kind: c.Kind, Namespace: c.Namespace, Name: c.Name, Object: obj, Create: c.Create}
		groups[key] = g
		*order = append(*order, key)
	}
	g.Changes = append(g.Changes, c)
	if !slices.Contains(g.Paths, path) {
		g.Paths = append(g.Paths, path)
	}
	g.Reasons = append(g.Reasons, ref+": "+fix.Title)
	g.WeakensSecurity = g.WeakensSecurity || fix.WeakensSecurity
	for _, n := range fix.Notes {
		if !slices.Contains(g.Notes, n) {
			g.Notes = append(g.Notes, n)
		}
	}
	return nil
}

// RenderPlan writes the plan as one multi-document YAML stream for
// `kubectl apply -f -`; everything that is not a manifest is a comment.
// With alternatives, the other fixes follow as commented-out documents.
func RenderPlan(w io.Writer, plan FixPlan, alternatives bool) error {
	var b strings.Builder
	if len(plan.Objects) == 0 && len(plan.Manual) == 0 {
		b.WriteString("# Nothing to fix: no affected ports in scope.\n")
	}
	for i, o := range plan.Objects {
		if i > 0 {
			b.WriteString("---\n")
		}
		for _, r := range o.Reasons {
			b.WriteString(comment(r))
		}
		if o.WeakensSecurity {
			b.WriteString("# SECURITY: this disables mTLS on a port; fix --apply needs --allow-plaintext\n")
		}
		for _, n := range o.Notes {
			b.WriteString(comment("note: " + n))
		}
		b.WriteString(o.Manifest())
	}
	for _, m := range plan.Manual {
		b.WriteString(comment(m.Finding + ": " + m.Fix.Title + " (no manifest)"))
		b.WriteString(comment("why: " + m.Fix.Why))
		if m.Fix.Command != "" {
			b.WriteString(comment("run: " + m.Fix.Command))
		}
	}
	if alternatives && len(plan.Alternatives) > 0 {
		b.WriteString("#\n# Alternatives (not applied; pick one instead of the fix above it):\n")
		for _, a := range plan.Alternatives {
			b.WriteString("#\n")
			b.WriteString(comment(a.Finding + ": " + a.Fix.Title))
			b.WriteString(comment("why: " + a.Fix.Why))
			for _, n := range a.Fix.Notes {
				b.WriteString(comment("note: " + n))
			}
			if a.Fix.Command != "" {
				b.WriteString(comment("run: " + a.Fix.Command))
			}
			for _, line := range strings.SplitAfter(strings.TrimSuffix(a.Fix.Manifest, "\n"), "\n") {
				if line != "" {
					b.WriteString("#   " + strings.TrimSuffix(line, "\n") + "\n")
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// comment makes one comment line from text that may hold anything
// (names, banners): no line break YAML knows (CR, LF, NEL, U+2028,
// U+2029) can end the comment early, and no character YAML forbids in a
// stream (controls, invalid UTF-8) can make the plan unparsable.
func comment(s string) string {
	return "# " + safetext.Line(s) + "\n"
}
