package world

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// TestSeedDemoManifestsJudgedAsLive: the demo's objects, seeded into a
// bare API server, exported as `kubectl get -o yaml` would and read back
// as manifests (scan -f) give the inventory and every port's verdict,
// code, reason and fixes that the live static scan gives.
func TestSeedDemoManifestsJudgedAsLive(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ic, err := env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := SeedDemo(ctx, env.Client, ic); err != nil {
		t.Fatal(err)
	}
	live, err := cluster.Load(ctx, cluster.Clients{Kube: env.Client, Istio: ic}, cluster.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := env.ExportManifests(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cluster.ReadManifests([]string{"-"}, bytes.NewReader(manifest), cluster.ManifestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	files := m.Inventory(nil)
	if len(m.Warnings()) != 0 {
		t.Errorf("warnings reading the exported demo: %q", m.Warnings())
	}

	liveReport := report.Build(report.Input{Inventory: live, Static: true})
	filesReport := report.Build(report.Input{Inventory: files, Static: true})
	if len(liveReport.Findings) < 4 {
		t.Fatalf("the demo has %d ports: the seed lost what it tests", len(liveReport.Findings))
	}
	if len(filesReport.Findings) != len(liveReport.Findings) {
		t.Fatalf("%d ports from the files, %d live", len(filesReport.Findings), len(liveReport.Findings))
	}
	for i, want := range liveReport.Findings {
		got := filesReport.Findings[i]
		if got.Key() != want.Key() || got.Verdict != want.Verdict || got.Code != want.Code || got.Reason != want.Reason || got.Scenario != want.Scenario || !sameJSON(got.Fixes, want.Fixes) || !sameJSON(got.Hints, want.Hints) {
			t.Errorf("%s: live %s %s %q, from the files %s %s %s %q", want.Key(), want.Verdict, want.Code, want.Reason, got.Key(), got.Verdict, got.Code, got.Reason)
		}
	}

	files.Mesh.Source, live.Mesh.Source = "", ""
	files.Warnings, live.Warnings = nil, nil
	if !sameJSON(files, live) {
		a, _ := json.MarshalIndent(files, "", " ")
		b, _ := json.MarshalIndent(live, "", " ")
		t.Errorf("inventory from the files differs from the live one:\n%s\n---\n%s", a, b)
	}
}

func sameJSON(a, b any) bool {
	x, errX := json.Marshal(a)
	y, errY := json.Marshal(b)
	return errX == nil && errY == nil && bytes.Equal(x, y)
}
