package scan

import (
	"context"
	"fmt"
	"slices"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

// Result is what one scan found.
type Result struct {
	// Report holds the findings and every warning: the inventory's, then
	// the scan's own (a vantage that failed, a wait the mesh lengthened).
	Report report.Report
	// Observations are the probe results the report rests on: a shard
	// stores them, and fix --apply's verification keeps those it does not
	// probe again.
	Observations []target.Observation
}

// Run is the whole pipeline: inventory -> targets -> probes -> report.
// Failures of single vantages become warnings in the report; the error is
// the inventory's (the API server unreachable, say).
func Run(ctx context.Context, clients Clients, cfg Config) (Result, error) {
	inv, err := load(ctx, clients, cfg)
	if err != nil {
		return Result{}, err
	}
	in := gather(ctx, clients, cfg, inv, nil)
	return Result{Report: report.Build(in), Observations: in.Observations}, nil
}

// Reprobe judges the scan again with only the client paths r names
// probed again, from the scan's own vantages and without the direct path
// (no fix changes what the server itself sends): fix --apply's
// verification. before are the first scan's observations; those of the
// paths not probed again carry over. A static scan is judged from the
// objects alone.
func Reprobe(ctx context.Context, clients Clients, cfg Config, r target.Reprobe, before []target.Observation) (report.Report, error) {
	inv, err := load(ctx, clients, cfg)
	if err != nil {
		return report.Report{}, err
	}
	in := report.Input{Inventory: inv, External: cfg.External, Static: true}
	if !cfg.Static() {
		cfg.Progress = nil
		in = gather(ctx, clients, cfg, inv, r)
		in.Observations = r.Merge(before, in.Observations)
	}
	return report.Build(in), nil
}

// load reads the inventory of the scan's namespaces.
func load(ctx context.Context, clients Clients, cfg Config) (*cluster.Inventory, error) {
	return cluster.Load(ctx, clients.Clients, cluster.LoadOptions{Namespaces: cfg.Namespaces, IstioNamespace: cfg.IstioNamespace})
}

// gather probes from the scan's vantages. reprobe, when set, narrows the
// probes to some client paths (by target and whether the client has a
// sidecar) and skips the direct path: fix --apply's verification.
func gather(ctx context.Context, clients Clients, cfg Config, inv *cluster.Inventory, reprobe target.Reprobe) report.Input {
	progress := cfg.progress()
	in := report.Input{Inventory: inv, External: cfg.External, Static: cfg.Static()}
	o := cfg.Probe
	// Silence proves a hang only past the mesh's own timeouts: unless the
	// user chose, every probe below waits that long.
	if !in.Static {
		var note string
		o.BannerTimeout, in.BannerWaitWhy, note = report.BannerWait(inv.Mesh, cfg.Probe.BannerTimeout, cfg.BannerTimeoutSet)
		in.BannerWait = o.BannerTimeout
		if note != "" {
			in.Warnings = append(in.Warnings, note)
		}
	}
	if cfg.From == FromSelf {
		inMesh := selfInMesh(cfg, inv)
		plan := vantage.PlanSelfProbes(inv, cfg.External, inMesh)
		if cfg.ShardCount > 1 {
			plan = publish.FilterPlan(plan, cfg.ShardIndex, cfg.ShardCount)
		}
		if reprobe != nil {
			plan = slices.DeleteFunc(vantage.PlanSelfReprobes(inv, cfg.External, inMesh, reprobe), func(t target.ProbeTask) bool { return !reprobe.Wants(t.Key, t.InMesh) })
		}
		fmt.Fprintf(progress, "probing %d targets from here (%s)...\n", len(plan), map[bool]string{true: "in the mesh", false: "outside the mesh"}[inMesh])
		// Direct: the port-forwards run alongside the dials from here.
		wait := func() ([]target.Observation, []string) { return nil, nil }
		if cfg.Direct && reprobe == nil {
			wait = startSelfDirect(ctx, clients, cfg, inv, plan, o)
		}
		in.Observations = vantage.RunSelf(ctx, plan, o)
		direct, warnings := wait()
		in.Observations = append(in.Observations, direct...)
		in.Warnings = append(in.Warnings, warnings...)
	}
	if cfg.From == FromPods || len(cfg.FromPods) > 0 {
		obs, warnings := runLiveVantages(ctx, clients, cfg, inv, o, cfg.From == FromPods, reprobe)
		in.Observations = append(in.Observations, obs...)
		in.Warnings = append(in.Warnings, warnings...)
	}
	return in
}

// selfInMesh is Config.SelfInMesh when given; else whether the pod this
// process runs in (Config.Self, found in the inventory) has a sidecar. A
// process in no pod the inventory holds is outside the mesh.
func selfInMesh(cfg Config, inv *cluster.Inventory) bool {
	if cfg.SelfInMesh != nil {
		return *cfg.SelfInMesh
	}
	for _, p := range inv.Pods {
		if p.Name == cfg.Self.Name && (cfg.Self.Namespace == "" || p.Namespace == cfg.Self.Namespace) {
			return p.HasSidecar
		}
	}
	return false
}

// RunManifests judges manifests (scan -f): alone when live is nil, else
// over the live cluster's inventory as it would be after applying them
// (each object in them replaces its live version). Only cfg's namespaces,
// Istio namespace and external targets count: nothing is probed.
func RunManifests(ctx context.Context, m *cluster.Manifests, live *Clients, cfg Config) (report.Report, error) {
	var base *cluster.Inventory
	if live != nil {
		var err error
		if base, err = load(ctx, *live, cfg); err != nil {
			return report.Report{}, err
		}
	}
	r := report.Build(report.Input{Inventory: m.Inventory(base), External: cfg.External, Static: true})
	report.AttachSources(&r, m)
	return r, nil
}
