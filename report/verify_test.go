package report

import (
	"reflect"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func TestVerifyChecks(t *testing.T) {
	db := target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3307}
	ext := target.TargetKey{Kind: target.KindExternal, Name: "203.0.113.7", Port: 25}
	fb := func(v float64) *float64 { return &v }
	yes := true
	meshSilent := Evidence{Vantage: target.VantageMeshClient, Outcome: "silent"}
	meshBanner := Evidence{Vantage: target.VantageMeshClient, Outcome: "banner", FirstByteMs: fb(1.8)}
	direct := Evidence{Vantage: target.VantageDirect, Outcome: "banner", FirstByteMs: fb(0.4)}
	outsideSilent := Evidence{Vantage: target.VantageOutsideClient, Outcome: "silent"}
	selfBanner := Evidence{Vantage: target.VantageSelf, InMesh: &yes, Outcome: "banner", FirstByteMs: fb(12)}
	finding := func(k target.TargetKey, v Verdict, code Code, reason string, paths []PathVerdict, ev ...Evidence) Finding {
		return Finding{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Port: k.Port, ServerInMesh: true, Verdict: v, Code: code, Reason: reason, Paths: paths, Evidence: ev}
	}
	before := Report{Findings: []Finding{
		finding(db, Deadlock, "SF0101", "deadlock", []PathVerdict{
			{Scenario: MeshToMesh, Verdict: Deadlock, Code: "SF0101"},
			{Scenario: ExternalToMesh, Verdict: Deadlock, Code: "SF0101"},
		}, direct, meshSilent, outsideSilent),
		finding(ext, AtRisk, "SF0201", "sniffed", nil),
	}}
	cases := []struct {
		name    string
		path    PathKey
		after   Report
		line    string
		took    bool
		settled bool
	}{
		{"mesh path took", PathKey{db, MeshToMesh},
			Report{Findings: []Finding{finding(db, OK, "SF0001", "ok", []PathVerdict{{Scenario: MeshToMesh, Verdict: OK}}, direct, meshBanner, outsideSilent)}},
			"verified  Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> banner 1.8ms (DEADLOCK -> OK)", true, true},
		{"outside path still silent: waits", PathKey{db, ExternalToMesh},
			Report{Findings: []Finding{finding(db, Deadlock, "SF0101", "deadlock", []PathVerdict{{Scenario: MeshToMesh, Verdict: OK}, {Scenario: ExternalToMesh, Verdict: Deadlock, Code: "SF0101", Reason: "nothing arrives"}}, direct, meshBanner, outsideSilent)}},
			"NOT TAKEN Service shop/orders-db:3307 (external-to-mesh): outside-client silent -> silent (DEADLOCK -> DEADLOCK); still in the way [SF0101]: nothing arrives", false, false},
		{"banner arrives but config still in the way: settled, not taken", PathKey{db, MeshToMesh},
			Report{Findings: []Finding{finding(db, AtRisk, "SF0804", "x", []PathVerdict{{Scenario: MeshToMesh, Verdict: AtRisk, Code: "SF0804", Reason: "Sidecar clients/egress sniffs", Clients: "clients (1 pod)"}, {Scenario: MeshToMesh, Verdict: OK}}, meshBanner)}},
			"NOT TAKEN Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> banner 1.8ms (DEADLOCK -> AT-RISK); still in the way [SF0804]: Sidecar clients/egress sniffs (clients: clients (1 pod))", false, true},
		{"static", PathKey{ext, MeshToExternal},
			Report{Findings: []Finding{finding(ext, OK, "SF0002", "declared", nil)}},
			"verified  External 203.0.113.7:25 (mesh-to-external): re-judged statically (nothing probed it) (AT-RISK -> OK)", true, true},
		{"a vantage that changed", PathKey{db, MeshToMesh},
			Report{Findings: []Finding{finding(db, OK, "SF0001", "ok", []PathVerdict{{Scenario: MeshToMesh, Verdict: OK}}, selfBanner)}},
			"verified  Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> self (in the mesh) banner 12ms (DEADLOCK -> OK)", true, true},
		{"gone", PathKey{db, MeshToMesh}, Report{},
			"NOT TAKEN Service shop/orders-db:3307 (mesh-to-mesh): re-judged statically (nothing probed it) (DEADLOCK -> gone); the target is no longer in the scan", false, true},
		{"unreachable is no proof", PathKey{db, MeshToMesh},
			Report{Findings: []Finding{finding(db, Unreachable, "SF0301", "refused", []PathVerdict{{Scenario: MeshToMesh, Verdict: Unreachable, Code: "SF0301", Reason: "refused"}}, Evidence{Vantage: target.VantageMeshClient, Outcome: "refused"})}},
			"NOT TAKEN Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> refused (DEADLOCK -> UNREACHABLE); still in the way [SF0301]: refused", false, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			checks := CheckPaths([]PathKey{c.path}, before, c.after)
			if len(checks) != 1 {
				t.Fatalf("%d checks", len(checks))
			}
			ch := checks[0]
			if got := ch.Line(); got != c.line {
				t.Errorf("line\n got %s\nwant %s", got, c.line)
			}
			if ch.Took() != c.took || ch.Settled() != c.settled || AllSettled(checks) != c.settled {
				t.Errorf("took %v settled %v, want %v %v", ch.Took(), ch.Settled(), c.took, c.settled)
			}
			var b strings.Builder
			if err := RenderChecks(&b, checks); err != nil {
				t.Fatal(err)
			}
			summary := "all 1 path(s) verified\n"
			if !c.took {
				summary = "1 of 1 path(s) not taken\n"
			}
			if b.String() != c.line+"\n"+summary {
				t.Errorf("render:\n%s", b.String())
			}
		})
	}
}

func TestReprobeMerge(t *testing.T) {
	db := target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3307}
	other := target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "cache", Port: 6380}
	r := ReprobeFor([]PathKey{{db, MeshToMesh}})
	if !r.Wants(db, true) || r.Wants(db, false) || r.Wants(other, true) {
		t.Fatalf("wants: %v", r)
	}
	obs := func(k target.TargetKey, v target.Vantage, inMesh bool, o probe.Outcome) target.Observation {
		return target.Observation{Target: k, Vantage: v, InMesh: inMesh, Result: probe.Result{Outcome: o}}
	}
	old := []target.Observation{
		obs(db, target.VantageDirect, false, probe.OutcomeBanner),
		obs(db, target.VantageMeshClient, true, probe.OutcomeSilent),
		obs(db, target.VantageSelf, true, probe.OutcomeSilent),
		obs(db, target.VantageOutsideClient, false, probe.OutcomeSilent),
		obs(other, target.VantageMeshClient, true, probe.OutcomeSilent),
	}
	fresh := []target.Observation{obs(db, target.VantageMeshClient, true, probe.OutcomeBanner)}
	want := []target.Observation{old[0], old[3], old[4], fresh[0]}
	if got := r.Merge(old, fresh); !reflect.DeepEqual(got, want) {
		t.Errorf("merge:\n got %+v\nwant %+v", got, want)
	}
}

func TestAppliedPaths(t *testing.T) {
	a := PathKey{target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "db", Port: 1}, MeshToMesh}
	b := PathKey{target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "db", Port: 1}, ExternalToMesh}
	got := AppliedPaths([]PlannedObject{{Paths: []PathKey{a, b}}, {Paths: []PathKey{b}}})
	if !reflect.DeepEqual(got, []PathKey{a, b}) {
		t.Errorf("got %v", got)
	}
}
