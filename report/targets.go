package report

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// ProbeTask is one dial to make on behalf of one target.
type ProbeTask struct {
	Key     TargetKey
	Target  probe.Target
	Vantage Vantage
	InMesh  bool
}

// PlanSelfProbes lists what to dial from where the tool runs: each TCP
// Service port at its ClusterIP (the address clients use, so a client
// sidecar treats it as it would theirs; headless Services at their first
// ready pod), each ServiceEntry port at its first address or concrete host,
// and each external target.
func PlanSelfProbes(inv *cluster.Inventory, externals []ExternalTarget, inMesh bool) []ProbeTask {
	return planProbes(inv, externals, inMesh, nil)
}

// PlanReprobes is PlanSelfProbes for fix --apply's verification: only the
// targets of r, each of them even where worthProbing would skip it (the
// fix that declared the port is what is being verified).
func PlanReprobes(inv *cluster.Inventory, externals []ExternalTarget, inMesh bool, r Reprobe) []ProbeTask {
	var out []ProbeTask
	for _, t := range planProbes(inv, externals, inMesh, r) {
		if r[t.Key] != nil {
			out = append(out, t)
		}
	}
	return out
}

func planProbes(inv *cluster.Inventory, externals []ExternalTarget, inMesh bool, force Reprobe) []ProbeTask {
	var out []ProbeTask
	pods := map[string]cluster.Pod{}
	for _, p := range inv.Pods {
		pods[p.Namespace+"/"+p.Name] = p
	}
	add := func(key TargetKey, host string, port int) {
		out = append(out, ProbeTask{Key: key, Target: probe.Target{Host: host, Port: port}, Vantage: VantageSelf, InMesh: inMesh})
	}
	for _, s := range inv.Services {
		for _, p := range s.Ports {
			if p.Protocol != "TCP" {
				continue
			}
			key := TargetKey{Kind: KindService, Namespace: s.Namespace, Name: s.Name, Port: p.Port}
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
				port, ok := numericPort(p.TargetPort)
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
			add(TargetKey{Kind: KindServiceEntry, Namespace: se.Namespace, Name: se.Name, Port: int32(p.Number)}, host, int(p.Number))
		}
	}
	for _, t := range externals {
		add(TargetKey{Kind: KindExternal, Name: t.Host, Port: t.Port}, t.Host, int(t.Port))
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
	for _, ref := range s.Backends {
		if pod, ok := pods[ref.Namespace+"/"+ref.Name]; ok && pod.HasSidecar {
			return true
		}
	}
	return false
}

// RunPlan probes every task (passively: nothing is sent unless o.Payload
// says so) and returns the observations in task order.
func RunPlan(ctx context.Context, tasks []ProbeTask, o probe.Options) []Observation {
	targets := make([]probe.Target, len(tasks))
	for i, t := range tasks {
		targets[i] = t.Target
	}
	results := probe.ProbeAll(ctx, targets, o)
	out := make([]Observation, len(tasks))
	for i, t := range tasks {
		out[i] = Observation{Target: t.Key, Vantage: t.Vantage, InMesh: t.InMesh, Result: results[i]}
	}
	return out
}

// ParseTargetKey reads "Kind/namespace/name:port" (Service, ServiceEntry)
// or "External/host:port", the form agents and shards use to label results.
func ParseTargetKey(s string) (TargetKey, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return TargetKey{}, false
	}
	port, err := strconv.Atoi(s[i+1:])
	if err != nil || port <= 0 || port > 65535 {
		return TargetKey{}, false
	}
	parts := strings.Split(s[:i], "/")
	switch {
	case len(parts) == 3 && (parts[0] == KindService || parts[0] == KindServiceEntry):
		return TargetKey{Kind: parts[0], Namespace: parts[1], Name: parts[2], Port: int32(port)}, true
	case len(parts) == 2 && parts[0] == KindExternal:
		return TargetKey{Kind: KindExternal, Name: parts[1], Port: int32(port)}, true
	}
	return TargetKey{}, false
}

// String is the form ParseTargetKey reads.
func (k TargetKey) String() string {
	if k.Kind == KindExternal {
		return KindExternal + "/" + k.Name + ":" + strconv.Itoa(int(k.Port))
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name + ":" + strconv.Itoa(int(k.Port))
}
