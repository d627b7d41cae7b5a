package scan

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// runLiveVantages runs probe pods, port-forwards and FromPods probes.
// What fails becomes a warning; the report rests on what arrived.
func runLiveVantages(ctx context.Context, clients Clients, cfg Config, inv *cluster.Inventory, po probe.Options, pods bool, reprobe target.Reprobe) ([]target.Observation, []string) {
	progress := cfg.progress()
	opts := vantage.RunOptions{
		Pod:      vantage.PodOptions{Image: cfg.ProbeImage, ScanID: vantage.NewScanID(), BannerTimeout: po.BannerTimeout, ConnectTimeout: po.ConnectTimeout},
		Probe:    po,
		Progress: func(s string) { fmt.Fprintln(progress, s) },
	}
	externals := cfg.External
	var obs []target.Observation
	var warnings []string
	if pods {
		plan := vantage.PlanProbesByClass(inv, externals, !cfg.NoOutside, vantage.OwnConfigIn(inv))
		if cfg.NoDirect {
			plan.Direct = nil
		}
		if reprobe != nil {
			plan = vantage.PlanReprobes(inv, externals, !cfg.NoOutside, reprobe)
		}
		namespaces := map[string]bool{}
		for _, p := range plan.Pods {
			namespaces[p.Namespace] = true
		}
		if n := vantage.SweepStale(ctx, clients.Kube, slices.Collect(maps.Keys(namespaces)), time.Now()); n > 0 {
			fmt.Fprintf(progress, "deleted %d probe pod(s) left by an interrupted scan\n", n)
		}
		fmt.Fprintf(progress, "probing with %d probe pod(s) (image %s) and %d port-forward(s)...\n", len(plan.Pods), cfg.ProbeImage, len(plan.Direct))
		o, w := vantage.Run(ctx, clients.REST, clients.Kube, plan, opts)
		obs, warnings = append(obs, o...), append(warnings, w...)
	}
	for _, fp := range cfg.FromPods {
		var targets []vantage.AgentTarget
		tasks := vantage.PlanSelfProbes(inv, externals, false)
		if reprobe != nil {
			// The pod's own sidecar decides its path: either kind.
			tasks = vantage.PlanSelfReprobes(inv, externals, false, reprobe)
		}
		for _, t := range tasks {
			targets = append(targets, vantage.AgentTarget{Key: t.Key.String(), Address: t.Target.String()})
		}
		fmt.Fprintf(progress, "probing %d targets from inside %s/%s (ephemeral container)...\n", len(targets), fp.Namespace, fp.Name)
		o, err := vantage.RunFromPod(ctx, clients.Kube, fp.Namespace, fp.Name, targets, opts.Pod)
		obs = append(obs, o...)
		if err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	return obs, warnings
}

// PlanSelfDirect is the direct half of FromSelf with Direct: a
// port-forward to a backend of each Service port the self plan dials (so a
// shard forwards to its own share only), in the namespaces where the
// caller may create pods/portforward. Where it may not, one warning says
// so instead of one failed port-forward per pod; inCluster words it for a
// ServiceAccount.
func PlanSelfDirect(ctx context.Context, kube kubernetes.Interface, inv *cluster.Inventory, externals []target.ExternalTarget, self []target.ProbeTask, inCluster bool) ([]vantage.DirectProbe, []string) {
	planned := map[target.TargetKey]bool{}
	for _, t := range self {
		planned[t.Key] = true
	}
	direct := vantage.KeepTargets(vantage.PlanProbes(inv, externals, false).Direct, func(k target.TargetKey) bool { return planned[k] })
	if len(direct) == 0 {
		return nil, nil
	}
	var namespaces []string
	for _, d := range direct {
		namespaces = append(namespaces, d.Namespace)
	}
	denied, err := vantage.PortForwardDenied(ctx, kube, namespaces)
	if err != nil || len(denied) == 0 {
		// A failed review tells nothing: try, and let each port-forward
		// say why it failed.
		return direct, nil
	}
	who := "the current user"
	if inCluster {
		who = "this ServiceAccount"
	}
	const hint = " (job manifests --direct grants it)"
	allowed := slices.DeleteFunc(direct, func(d vantage.DirectProbe) bool { return slices.Contains(denied, d.Namespace) })
	if len(allowed) == 0 {
		return nil, []string{"--direct: " + who + " cannot create pods/portforward; no direct proof, so deadlocks show as AT-RISK" + hint}
	}
	return allowed, []string{fmt.Sprintf("--direct: %s cannot create pods/portforward in namespace(s) %s; no direct proof there, so deadlocks there show as AT-RISK%s", who, vantage.NamespaceList(denied), hint)}
}

// startSelfDirect starts the direct half of FromSelf with Direct: wait
// returns its observations and warnings (a missing right among them).
func startSelfDirect(ctx context.Context, clients Clients, cfg Config, inv *cluster.Inventory, self []target.ProbeTask, po probe.Options) (wait func() ([]target.Observation, []string)) {
	progress := cfg.progress()
	pods, warnings := PlanSelfDirect(ctx, clients.Kube, inv, cfg.External, self, cfg.InCluster)
	if len(pods) == 0 {
		return func() ([]target.Observation, []string) { return nil, warnings }
	}
	fmt.Fprintf(progress, "port-forwarding to %d pod(s) for the direct path...\n", len(pods))
	var obs []target.Observation
	done := make(chan struct{})
	go func() {
		defer close(done)
		var w []string
		obs, w = cfg.runDirect()(ctx, clients.REST, clients.Kube, vantage.Plan{Direct: pods}, vantage.RunOptions{
			Probe:    po,
			Progress: func(s string) { fmt.Fprintln(progress, s) },
		})
		warnings = append(warnings, w...)
	}()
	return func() ([]target.Observation, []string) {
		<-done
		return obs, warnings
	}
}
