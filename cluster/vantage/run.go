package vantage

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// Plan is every probe a live-cluster scan makes.
type Plan struct {
	Pods   []PodProbe
	Direct []DirectProbe
}

// PlanProbes spreads the targets over probe pods (a mesh client and an
// outside client in each namespace that has targets; external targets go
// with the first namespace) and the direct paths (a port-forward to the
// first running backend of each Service port).
func PlanProbes(inv *cluster.Inventory, externals []report.ExternalTarget, outside bool) Plan {
	return planFrom(report.PlanSelfProbes(inv, externals, false), inv, outside)
}

// PlanReprobes is the plan to probe some client paths again (fix --apply's
// verification): the probe pods' targets r wants, by target and whether
// the pod has a sidecar, pods left with none dropped, and no direct path
// (no fix changes what the server itself sends).
func PlanReprobes(inv *cluster.Inventory, externals []report.ExternalTarget, outside bool, r report.Reprobe) Plan {
	full := planFrom(report.PlanReprobes(inv, externals, false, r), inv, outside)
	var out Plan
	for _, pp := range full.Pods {
		var targets []AgentTarget
		for _, t := range pp.Targets {
			if k, ok := report.ParseTargetKey(t.Key); ok && r.Wants(k, pp.InMesh) {
				targets = append(targets, t)
			}
		}
		if len(targets) > 0 {
			pp.Targets = targets
			out.Pods = append(out.Pods, pp)
		}
	}
	return out
}

func planFrom(tasks []report.ProbeTask, inv *cluster.Inventory, outside bool) Plan {
	byNS := map[string][]AgentTarget{}
	var namespaces []string
	for _, t := range tasks {
		ns := t.Key.Namespace
		if _, ok := byNS[ns]; !ok && ns != "" {
			namespaces = append(namespaces, ns)
		}
		byNS[ns] = append(byNS[ns], AgentTarget{Key: t.Key.String(), Address: t.Target.String()})
	}
	sort.Strings(namespaces)
	if ext := byNS[""]; len(ext) > 0 {
		if len(namespaces) == 0 {
			namespaces = []string{"default"}
		}
		byNS[namespaces[0]] = append(byNS[namespaces[0]], ext...)
	}
	var plan Plan
	for _, ns := range namespaces {
		plan.Pods = append(plan.Pods, PodProbe{Namespace: ns, InMesh: true, Targets: byNS[ns]})
		if outside {
			plan.Pods = append(plan.Pods, PodProbe{Namespace: ns, InMesh: false, Targets: byNS[ns]})
		}
	}

	pods := map[string]*cluster.Pod{}
	for i := range inv.Pods {
		pods[inv.Pods[i].Namespace+"/"+inv.Pods[i].Name] = &inv.Pods[i]
	}
	direct := map[string]*DirectProbe{}
	for _, s := range inv.Services {
		for _, p := range s.Ports {
			if p.Protocol != "TCP" {
				continue
			}
			for _, ref := range s.Backends {
				pod := pods[ref.Namespace+"/"+ref.Name]
				if pod == nil || pod.Phase != "Running" {
					continue
				}
				port, ok := pod.ContainerPorts[p.TargetPort]
				if !ok {
					n, err := parsePort(p.TargetPort)
					if err != nil {
						continue
					}
					port = n
				}
				k := pod.Namespace + "/" + pod.Name
				d, ok := direct[k]
				if !ok {
					d = &DirectProbe{Namespace: pod.Namespace, Pod: pod.Name, Ports: map[int32][]report.TargetKey{}}
					direct[k] = d
				}
				d.Ports[port] = append(d.Ports[port], report.TargetKey{Kind: report.KindService, Namespace: s.Namespace, Name: s.Name, Port: p.Port})
				break
			}
		}
	}
	keys := make([]string, 0, len(direct))
	for k := range direct {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		plan.Direct = append(plan.Direct, *direct[k])
	}
	return plan
}

func parsePort(s string) (int32, error) {
	var n int32
	_, err := fmt.Sscanf(s, "%d", &n)
	if err != nil || n <= 0 || n > 65535 {
		return 0, fmt.Errorf("not a port: %q", s)
	}
	return n, nil
}

// RunOptions tune a live-cluster probe run.
type RunOptions struct {
	Pod         PodOptions
	Probe       probe.Options
	Concurrency int // probe pods / port-forwards at once
	// Progress, when set, receives one line per finished step.
	Progress func(string)
}

// Run executes a plan. Failures of single vantage points become warnings:
// the report then rests on whatever evidence did arrive.
func Run(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, plan Plan, o RunOptions) ([]report.Observation, []string) {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Pod.StartTimeout <= 0 {
		o.Pod.StartTimeout = 2 * time.Minute
	}
	var (
		mu       sync.Mutex
		obs      []report.Observation
		warnings []string
		wg       sync.WaitGroup
		sem      = make(chan struct{}, o.Concurrency)
	)
	collect := func(got []report.Observation, err error, what string) {
		mu.Lock()
		defer mu.Unlock()
		obs = append(obs, got...)
		if err != nil {
			warnings = append(warnings, err.Error())
		}
		if o.Progress != nil {
			status := fmt.Sprintf("%d results", len(got))
			if err != nil {
				status = "failed"
			}
			o.Progress(what + ": " + status)
		}
	}
	for _, p := range plan.Pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := RunProbePod(ctx, kube, p, o.Pod)
			collect(got, err, fmt.Sprintf("%s probe pod in %s", vantageOf(p.InMesh), p.Namespace))
		}()
	}
	for _, d := range plan.Direct {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := RunDirect(ctx, cfg, kube, d, o.Probe)
			collect(got, err, fmt.Sprintf("port-forward to %s/%s", d.Namespace, d.Pod))
		}()
	}
	wg.Wait()
	sort.Strings(warnings)
	return obs, warnings
}
