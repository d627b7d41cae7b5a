package main

import (
	"context"
	"fmt"
	"io"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// gatherConfig is --vantage config: the sidecars' own config (their
// /config_dump, by port-forward to the admin port, or this pod's own on
// 127.0.0.1:15000) and the direct port-forwards, no pod created. The
// client proxy is --from-pod's pod, else this pod's sidecar when the tool
// runs in one, else a sidecar pod of each target's namespace.
func (s *scanRun) gatherConfig(ctx context.Context, inv *cluster.Inventory, reprobe report.Reprobe, progress io.Writer) ([]report.Observation, []report.ConfigPath, []string) {
	f := s.f
	o := vantage.ConfigOptions{Outside: !f.noOutside}
	switch {
	case len(s.fromPods) > 0:
		o.Client = &vantage.Proxy{Namespace: s.fromPods[0].namespace, Pod: s.fromPods[0].name}
	case s.root.inCluster:
		if inMesh, _ := selfInMesh(f.selfInMesh, inv); inMesh {
			o.Client = &vantage.Proxy{Self: true}
		}
	}
	planned := report.PlanSelfProbes(inv, s.externals, false)
	if f.planFilter != nil {
		planned = f.planFilter(planned)
		keep := map[report.TargetKey]bool{}
		for _, t := range planned {
			keep[t.Key] = true
		}
		o.Keep = func(k report.TargetKey) bool { return keep[k] }
	}
	who := "the current user"
	if s.root.inCluster {
		who = "this ServiceAccount"
	}
	// The direct half runs alongside the config reads; a re-probe after
	// fix --apply skips it (no fix changes what the server sends).
	wait := func() ([]report.Observation, []string) { return nil, nil }
	if !f.noDirect && reprobe == nil {
		wait = startSelfDirect(ctx, s.cfg, s.clients.Kube, inv, s.externals, planned, f, s.root.inCluster, progress)
	}
	fmt.Fprintln(progress, "reading the sidecars' config (/config_dump by port-forward to their admin port)...")
	paths, warnings, dumps := vantage.ReadConfig(ctx, s.cfg, s.clients.Kube, inv, s.externals, o, who)
	fmt.Fprintf(progress, "read %d proxy config(s), %d KB: %d client path(s) judged from config\n", dumps.Fetches(), (dumps.Bytes()+1023)/1024, len(paths))
	obs, w := wait()
	return obs, paths, append(warnings, w...)
}
