package cluster

import "github.com/serverfirst/kubectl-serverfirst/internal/target"

// UncoveredPort is a container port of a sidecar pod that no Service port
// targets. Istio builds no Service chain for it, so traffic to the pod IP
// on that port (clients that dial pod IPs, StatefulSet peers) goes to the
// inbound passthrough chain, which sniffs it whatever its protocol.
type UncoveredPort struct {
	Pod  PodRef
	Port ContainerPort
	// Inbound is how the pod's proxy treats the port (a Sidecar ingress
	// listener may declare it).
	Inbound InboundProtocol
	// Captured: istio-iptables redirects the port to the proxy at all;
	// CaptureReason says why or why not.
	Captured      bool
	CaptureReason string
}

// UncoveredPodPorts lists, pod by pod in inventory order, the TCP
// container ports of pods with a sidecar that no Service port targets (by
// number, or by name through the pod's named ports). The pods behind a
// Service come from its Backends.
func UncoveredPodPorts(inv *Inventory) []UncoveredPort {
	covered := map[PodRef]map[int32]bool{}
	podIndex := map[PodRef]*Pod{}
	for i := range inv.Pods {
		p := &inv.Pods[i]
		podIndex[PodRef{Namespace: p.Namespace, Name: p.Name}] = p
	}
	for _, svc := range inv.Services {
		for _, ref := range svc.Backends {
			p := podIndex[ref]
			if p == nil || !p.HasSidecar {
				continue
			}
			for _, sp := range svc.Ports {
				n, ok := target.ParsePort(sp.TargetPort)
				if !ok {
					if n, ok = p.ContainerPorts[sp.TargetPort]; !ok {
						continue
					}
				}
				if covered[ref] == nil {
					covered[ref] = map[int32]bool{}
				}
				covered[ref][n] = true
			}
		}
	}
	var out []UncoveredPort
	for i := range inv.Pods {
		p := &inv.Pods[i]
		if !p.HasSidecar {
			continue
		}
		ref := PodRef{Namespace: p.Namespace, Name: p.Name}
		seen := map[int32]bool{}
		for _, cp := range p.Ports {
			if cp.Protocol != "TCP" || covered[ref][cp.Number] || seen[cp.Number] {
				continue
			}
			seen[cp.Number] = true
			captured, why := InboundCaptured(p, uint32(cp.Number))
			out = append(out, UncoveredPort{
				Pod: ref, Port: cp, Inbound: InboundProtocolFor(inv, p, uint32(cp.Number), nil),
				Captured: captured, CaptureReason: why,
			})
		}
	}
	return out
}
