package cluster

import (
	"cmp"
	"k8s.io/apimachinery/pkg/labels"
	"strings"
)

// EffectiveMTLSMode is the inbound mTLS mode Istio applies to a workload
// port (the container port, i.e. the Service targetPort), following
// pilot's ComposePeerAuthentication: the oldest policy of each level wins
// (ties broken by name), levels apply mesh (root namespace, no selector),
// then namespace (no selector), then workload (selector matching the pod
// labels, not in the root namespace), then the workload policy's
// portLevelMtls; UNSET inherits from the level above; with no policy at
// all the mode is PERMISSIVE.
func EffectiveMTLSMode(policies []PeerAuthentication, rootNamespace, namespace string, podLabels map[string]string, port uint32) MTLSMode {
	var mesh, ns, workload *PeerAuthentication
	older := func(a, b *PeerAuthentication) bool {
		return b == nil || cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.Name, b.Name)) < 0
	}
	for i := range policies {
		p := &policies[i]
		switch {
		case len(p.Selector) == 0 && p.Namespace == rootNamespace:
			if older(p, mesh) {
				mesh = p
			}
		case len(p.Selector) == 0 && p.Namespace == namespace:
			if older(p, ns) {
				ns = p
			}
		case len(p.Selector) > 0 && p.Namespace == namespace && p.Namespace != rootNamespace && labels.ValidatedSetSelector(p.Selector).Matches(labels.Set(podLabels)):
			if older(p, workload) {
				workload = p
			}
		}
	}
	mode := MTLSPermissive
	for _, p := range []*PeerAuthentication{mesh, ns, workload} {
		if p != nil && p.Mode != MTLSUnset && p.Mode != "" {
			mode = p.Mode
		}
	}
	if workload != nil {
		if m, ok := workload.PortModes[port]; ok && m != MTLSUnset && m != "" {
			mode = m
		}
	}
	return mode
}
