package vantage

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// PlanSelfProbes lists what to dial from where the tool runs: each TCP
// Service port at its ClusterIP (the address clients use, so a client
// sidecar treats it as it would theirs; headless Services at their first
// ready pod), each ServiceEntry port at its first address or concrete host,
// and each external target.
func PlanSelfProbes(inv *cluster.Inventory, externals []target.ExternalTarget, inMesh bool) []target.ProbeTask {
	return planProbes(inv, externals, inMesh, nil)
}

// PlanSelfReprobes is PlanSelfProbes for fix --apply's verification: only the
// targets of r, each of them even where worthProbing would skip it (the
// fix that declared the port is what is being verified).
func PlanSelfReprobes(inv *cluster.Inventory, externals []target.ExternalTarget, inMesh bool, r target.Reprobe) []target.ProbeTask {
	var out []target.ProbeTask
	for _, t := range planProbes(inv, externals, inMesh, r) {
		if r[t.Key] != nil {
			out = append(out, t)
		}
	}
	return out
}

func planProbes(inv *cluster.Inventory, externals []target.ExternalTarget, inMesh bool, force target.Reprobe) []target.ProbeTask {
	var out []target.ProbeTask
	pods := map[string]cluster.Pod{}
	for _, p := range inv.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	add := func(key target.TargetKey, host string, port int) {
		out = append(out, target.ProbeTask{Key: key, Target: probe.Target{Host: host, Port: port}, Vantage: target.VantageSelf, InMesh: inMesh})
	}
	for _, s := range inv.Services {
		for _, p := range s.Ports {
			if p.Protocol != "TCP" {
				continue
			}
			key := target.TargetKey{Kind: target.KindService, Namespace: s.Namespace, Name: s.Name, Port: p.Port}
			if force[key] == nil && !worthProbing(s, p, pods) {
				continue
			}
			if s.ClusterIP != "" && s.ClusterIP != "None" {
				add(key, s.ClusterIP, int(p.Port))
				continue
			}
			for _, ref := range s.Backends {
				pod, ok := pods[ref.Namespace+"/"+ref.Name]
				if !ok || len(pod.IPs) == 0 {
					continue
				}
				port, ok := target.ParsePort(p.TargetPort)
				if !ok {
					port, ok = pod.ContainerPorts[p.TargetPort]
				}
				if ok {
					add(key, pod.IPs[0], int(port))
					break
				}
			}
		}
	}
	for _, se := range inv.ServiceEntries {
		host := ""
		for _, a := range se.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				host = ip.String()
				break
			}
		}
		if host == "" {
			for _, h := range se.Hosts {
				if !strings.Contains(h, "*") {
					host = h
					break
				}
			}
		}
		if host == "" {
			continue
		}
		for _, p := range se.Ports {
			add(target.TargetKey{Kind: target.KindServiceEntry, Namespace: se.Namespace, Name: se.Name, Port: int32(p.Number)}, host, int(p.Number))
		}
	}
	for _, t := range externals {
		add(target.TargetKey{Kind: target.KindExternal, Name: t.Host, Port: t.Port}, t.Host, int(t.Port))
	}
	return out
}

// worthProbing: a port whose protocol is declared (not HTTP) and whose
// servers have no sidecar cannot make any client wait, so dialing it adds
// nothing but noise (the API server's own Service, say).
func worthProbing(s cluster.Service, p cluster.ServicePort, pods map[string]cluster.Pod) bool {
	if p.Resolved.Sniffed() || p.Resolved.Protocol.HTTPFamily() {
		return true
	}
	return slices.ContainsFunc(s.Backends, func(ref cluster.PodRef) bool { return pods[ref.Namespace+"/"+ref.Name].HasSidecar })
}

// RunSelf probes every task from where the tool runs (passively: nothing is sent unless o.Payload
// says so) and returns the observations in task order.
func RunSelf(ctx context.Context, tasks []target.ProbeTask, o probe.Options) []target.Observation {
	targets := make([]probe.Target, len(tasks))
	for i, t := range tasks {
		targets[i] = t.Target
	}
	results := probe.ProbeAll(ctx, targets, o)
	out := make([]target.Observation, len(tasks))
	for i, t := range tasks {
		out[i] = target.Observation{Target: t.Key, Vantage: t.Vantage, InMesh: t.InMesh, Result: results[i]}
	}
	return out
}
