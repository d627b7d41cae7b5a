package vantage

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// Plan is every probe a live-cluster scan makes.
type Plan struct {
	Pods   []PodProbe
	Direct []DirectProbe
}

// PlanProbes spreads the targets over probe pods (a mesh client and an
// outside client in each namespace that has targets; external targets go
// with the first namespace) and the direct paths (a port-forward to the
// first running backend of each Service port). It is PlanProbesByClass
// with no facts about client configuration: every namespace is a class of
// its own.
func PlanProbes(inv *cluster.Inventory, externals []target.ExternalTarget, outside bool) Plan {
	return PlanProbesByClass(inv, externals, outside, nil)
}

// OwnClientConfig reports whether the sidecars of a namespace's clients get
// configuration of their own for the targets: a Sidecar resource or a
// DestinationRule in that namespace. nil means unknown, which keeps every
// namespace apart.
type OwnClientConfig func(namespace string) bool

// ClientClass names the client configuration that a probe pod created in
// namespace ns stands for. Namespaces with the same class get the same
// sidecar configuration for every target (same injection revision, no
// configuration of their own), so one mesh-client pod and one outside-client
// pod serve them all; a namespace with configuration of its own, or when
// own is nil, is a class by itself.
func ClientClass(ns cluster.Namespace, own OwnClientConfig) string {
	// Ambient namespaces are flagged, not judged: keep them apart.
	if own == nil || own(ns.Name) || ns.Ambient {
		return "namespace " + ns.Name
	}
	switch {
	case ns.Revision != "":
		return "revision " + ns.Revision
	case ns.Labels["istio-injection"] == "disabled":
		// No injector webhook selects this namespace, whatever the pod's
		// label says (Istio's namespace and object selectors).
		return "injection disabled"
	}
	// The pod asks for a sidecar by label: without a namespace revision the
	// default injector serves it, whether or not the namespace has
	// injection on.
	return "default revision"
}

// OwnConfigIn is the OwnClientConfig the inventory shows: a namespace
// other than the root has configuration of its own for its clients when it
// holds a Sidecar resource or a DestinationRule (Istio looks for a client's
// DestinationRule in the client's namespace first). The root namespace's
// mesh-wide defaults apply to every namespace alike, so they split nothing.
func OwnConfigIn(inv *cluster.Inventory) OwnClientConfig {
	own := map[string]bool{}
	for _, s := range inv.Sidecars {
		own[s.Namespace] = true
	}
	for _, dr := range inv.DestinationRules {
		own[dr.Namespace] = true
	}
	delete(own, inv.Mesh.RootNamespace)
	return func(ns string) bool { return own[ns] }
}

// PlanProbesByClass is PlanProbes with one pair of probe pods per client
// class (ClientClass) instead of per namespace: a class's pods run in its
// first namespace (in name order) and probe the targets of all its
// namespaces.
func PlanProbesByClass(inv *cluster.Inventory, externals []target.ExternalTarget, outside bool, own OwnClientConfig) Plan {
	return planFrom(PlanSelfProbes(inv, externals, false), inv, outside, own)
}

// PlanReprobes is the plan to probe some client paths again (fix --apply's
// verification): the probe pods' targets r wants, by target and whether
// the pod has a sidecar, pods left with none dropped, and no direct path
// (no fix changes what the server itself sends).
func PlanReprobes(inv *cluster.Inventory, externals []target.ExternalTarget, outside bool, r target.Reprobe) Plan {
	full := planFrom(PlanSelfReprobes(inv, externals, false, r), inv, outside, nil)
	var out Plan
	for _, pp := range full.Pods {
		var targets []AgentTarget
		for _, t := range pp.Targets {
			if k, ok := target.ParseTargetKey(t.Key); ok && r.Wants(k, pp.InMesh) {
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

// planFrom spreads probe tasks over one pair of probe pods per client class
// (own as in PlanProbesByClass) and plans the direct paths.
func planFrom(tasks []target.ProbeTask, inv *cluster.Inventory, outside bool, own OwnClientConfig) Plan {
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
	nsByName := map[string]cluster.Namespace{}
	for _, ns := range inv.Namespaces {
		nsByName[ns.Name] = ns
	}
	// Classes in the order of their first namespace.
	var classes []string
	home := map[string]string{}           // class -> namespace its pods run in
	targets := map[string][]AgentTarget{} // class -> targets
	for _, name := range namespaces {
		ns, ok := nsByName[name]
		if !ok {
			ns = cluster.Namespace{Name: name}
		}
		c := ClientClass(ns, own)
		if _, seen := home[c]; !seen {
			classes = append(classes, c)
			home[c] = name
		}
		targets[c] = append(targets[c], byNS[name]...)
	}
	var plan Plan
	for _, c := range classes {
		plan.Pods = append(plan.Pods, PodProbe{Namespace: home[c], InMesh: true, Targets: targets[c]})
		if outside {
			plan.Pods = append(plan.Pods, PodProbe{Namespace: home[c], InMesh: false, Targets: targets[c]})
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
					n, ok := target.ParsePort(p.TargetPort)
					if !ok {
						continue
					}
					port = n
				}
				k := pod.Namespace + "/" + pod.Name
				d, ok := direct[k]
				if !ok {
					d = &DirectProbe{Namespace: pod.Namespace, Pod: pod.Name, Ports: map[int32][]target.TargetKey{}}
					direct[k] = d
				}
				d.Ports[port] = append(d.Ports[port], target.TargetKey{Kind: target.KindService, Namespace: s.Namespace, Name: s.Name, Port: p.Port})
				break
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(direct)) {
		plan.Direct = append(plan.Direct, *direct[k])
	}
	return plan
}

// DefaultPodConcurrency is how many probe pods a run keeps alive at once
// by default: every pair of a scan of up to eight client classes starts
// at once.
const DefaultPodConcurrency = 16

// RunOptions tune a live-cluster probe run.
type RunOptions struct {
	Pod   PodOptions
	Probe probe.Options
	// Concurrency bounds the port-forwards at once; 0 means 4.
	Concurrency int
	// PodConcurrency bounds the probe pods alive at once; 0 means
	// DefaultPodConcurrency. Pods have a bound of their own: a scan has
	// one pair per client class but one port-forward per server pod, and
	// pods that queued behind those port-forwards (or behind each other,
	// four at a time) made a scan take several rounds of pod start plus
	// banner wait instead of one.
	PodConcurrency int
	// Progress, when set, receives one line per finished step.
	Progress func(string)
}

// Run executes a plan. Failures of single vantage points become warnings:
// the report then rests on whatever evidence did arrive.
func Run(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, plan Plan, o RunOptions) ([]target.Observation, []string) {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.PodConcurrency <= 0 {
		o.PodConcurrency = DefaultPodConcurrency
	}
	if o.Pod.StartTimeout <= 0 {
		o.Pod.StartTimeout = 2 * time.Minute
	}
	var (
		mu       sync.Mutex
		obs      []target.Observation
		warnings []string
		wg       sync.WaitGroup
		sem      = make(chan struct{}, o.Concurrency)
		podSem   = make(chan struct{}, o.PodConcurrency)
	)
	collect := func(got []target.Observation, err error, what string) {
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
		wg.Go(func() {
			podSem <- struct{}{}
			defer func() { <-podSem }()
			got, err := RunProbePod(ctx, kube, p, o.Pod)
			collect(got, err, fmt.Sprintf("%s probe pod in %s", vantageOf(p.InMesh), p.Namespace))
		})
	}
	for _, d := range plan.Direct {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			got, err := RunDirect(ctx, cfg, kube, d, o.Probe)
			collect(got, err, fmt.Sprintf("port-forward to %s/%s", d.Namespace, d.Pod))
		})
	}
	wg.Wait()
	sort.Strings(warnings)
	return obs, warnings
}
