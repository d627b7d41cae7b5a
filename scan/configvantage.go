package scan

import (
	"context"
	"fmt"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

// gatherConfig is FromConfig: the sidecars' own config (their
// /config_dump, by port-forward to the admin port, or this pod's own on
// 127.0.0.1:15000) and the direct port-forwards; no pod is created. The
// client proxy is FromPods' first pod, else this pod's sidecar when the
// tool runs in one, else a sidecar pod of each target's namespace.
func gatherConfig(ctx context.Context, clients Clients, cfg Config, inv *cluster.Inventory, po probe.Options, reprobe target.Reprobe) ([]target.Observation, []target.ConfigPath, []string) {
	progress := cfg.progress()
	o := vantage.ConfigOptions{Outside: !cfg.NoOutside}
	switch {
	case len(cfg.FromPods) > 0:
		fp := cfg.FromPods[0]
		o.Client = &vantage.Proxy{Namespace: fp.Namespace, Pod: fp.Name}
		// Outside the scanned namespaces the inventory lacks the pod,
		// whose interception annotations decide whether its connections
		// meet its sidecar at all.
		if !slices.ContainsFunc(inv.Pods, func(p cluster.Pod) bool { return p.Namespace == fp.Namespace && p.Name == fp.Name }) {
			if pod, err := clients.Kube.CoreV1().Pods(fp.Namespace).Get(ctx, fp.Name, metav1.GetOptions{}); err == nil {
				cp := cluster.ConvertPod(pod, nil)
				o.ClientPod = &cp
			}
		}
	case cfg.InCluster && selfInMesh(cfg, inv):
		o.Client = &vantage.Proxy{Self: true}
	}
	planned := vantage.PlanSelfProbes(inv, cfg.External, false)
	if cfg.ShardCount > 1 {
		planned = publish.FilterPlan(planned, cfg.ShardIndex, cfg.ShardCount)
		keep := map[target.TargetKey]bool{}
		for _, t := range planned {
			keep[t.Key] = true
		}
		o.Keep = func(k target.TargetKey) bool { return keep[k] }
	}
	who := "the current user"
	if cfg.InCluster {
		who = "this ServiceAccount"
	}
	// The direct half runs alongside the config reads; a re-probe after
	// fix --apply skips it (no fix changes what the server sends).
	wait := func() ([]target.Observation, []string) { return nil, nil }
	if !cfg.NoDirect && reprobe == nil {
		wait = startSelfDirect(ctx, clients, cfg, inv, planned, po)
	}
	fmt.Fprintln(progress, "reading the sidecars' config (/config_dump by port-forward to their admin port)...")
	paths, warnings, dumps := vantage.ReadConfig(ctx, clients.REST, clients.Kube, inv, cfg.External, o, who)
	fmt.Fprintf(progress, "read %d proxy config(s), %d KB: %d client path(s) judged from config\n", dumps.Fetches(), (dumps.Bytes()+1023)/1024, len(paths))
	obs, w := wait()
	return obs, paths, append(warnings, w...)
}
