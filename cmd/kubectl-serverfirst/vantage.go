package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// defaultProbeImage is the release image of this very version.
func defaultProbeImage() string {
	tag := version
	if tag == "" || tag == "dev" {
		tag = "latest"
	}
	return "ghcr.io/serverfirst/kubectl-serverfirst:" + tag
}

type podRef struct{ namespace, name string }

func parseFromPods(list []string) ([]podRef, error) {
	var out []podRef
	for _, s := range list {
		ns, name, ok := strings.Cut(s, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("--from-pod %q: want NAMESPACE/POD", s)
		}
		out = append(out, podRef{ns, name})
	}
	return out, nil
}

// runLiveVantages runs probe pods, port-forwards and --from-pod probes.
// What fails becomes a warning; the report rests on what arrived.
func runLiveVantages(ctx context.Context, cfg *rest.Config, clients cluster.Clients, inv *cluster.Inventory, externals []report.ExternalTarget,
	f *scanFlags, pods bool, fromPods []podRef, progress io.Writer) ([]report.Observation, []string) {
	po := probe.DefaultOptions()
	po.BannerTimeout, po.ConnectTimeout, po.Concurrency = f.timeout, f.connectTimeout, f.concurrency
	opts := vantage.RunOptions{
		Pod:   vantage.PodOptions{Image: f.probeImage, ScanID: vantage.NewScanID(), BannerTimeout: f.timeout, ConnectTimeout: f.connectTimeout},
		Probe: po,
		Progress: func(s string) {
			fmt.Fprintln(progress, s)
		},
	}
	var obs []report.Observation
	var warnings []string
	if pods {
		plan := vantage.PlanProbes(inv, externals, !f.noOutside)
		if f.noDirect {
			plan.Direct = nil
		}
		namespaces := map[string]bool{}
		for _, p := range plan.Pods {
			namespaces[p.Namespace] = true
		}
		var nsList []string
		for ns := range namespaces {
			nsList = append(nsList, ns)
		}
		if n := vantage.SweepStale(ctx, clients.Kube, nsList, time.Now()); n > 0 {
			fmt.Fprintf(progress, "deleted %d probe pod(s) left by an interrupted scan\n", n)
		}
		fmt.Fprintf(progress, "probing with %d probe pod(s) (image %s) and %d port-forward(s)...\n", len(plan.Pods), f.probeImage, len(plan.Direct))
		o, w := vantage.Run(ctx, cfg, clients.Kube, plan, opts)
		obs, warnings = append(obs, o...), append(warnings, w...)
	}
	for _, fp := range fromPods {
		var targets []vantage.AgentTarget
		for _, t := range report.PlanSelfProbes(inv, externals, false) {
			targets = append(targets, vantage.AgentTarget{Key: t.Key.String(), Address: t.Target.String()})
		}
		fmt.Fprintf(progress, "probing %d targets from inside %s/%s (ephemeral container)...\n", len(targets), fp.namespace, fp.name)
		o, err := vantage.RunFromPod(ctx, clients.Kube, fp.namespace, fp.name, targets, opts.Pod)
		obs = append(obs, o...)
		if err != nil {
			warnings = append(warnings, err.Error())
		}
	}
	return obs, warnings
}
