package cluster

import "testing"

// An empty selector, which labels.ValidatedSetSelector (like
// labels.SelectorFromSet) matches with every label set, means what each
// API says it means: a Service with `selector: {}` is backed by no pod (the
// endpoints controller skips it), a PeerAuthentication with empty
// matchLabels is namespace-wide, while a Sidecar or DestinationRule whose
// workload selector is present but empty is a workload-scoped one that
// every pod of its namespace matches (as SelectSidecar and Lookup model
// pilot: the selector is set, and its labels are a subset of the pod's).
func TestEmptySelector(t *testing.T) {
	none, empty, db := map[string]string(nil), map[string]string{}, map[string]string{"app": "db"}
	pod := Pod{Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db"}}
	for _, c := range []struct {
		name string
		got  func() string
		want string
	}{
		{"Service: no selector, no backends", func() string { return serviceBackends(none, pod) }, ""},
		{"Service: an empty selector selects no pod", func() string { return serviceBackends(empty, pod) }, ""},
		{"Service: a matching selector", func() string { return serviceBackends(db, pod) }, "shop/db-0"},
		{"PeerAuthentication: empty matchLabels is namespace-wide", func() string {
			return string(EffectiveMTLSMode([]PeerAuthentication{
				pa("shop", "ns", 1, nil, MTLSPermissive, nil),
				pa("shop", "empty", 2, empty, MTLSStrict, nil),
			}, "istio-system", "shop", pod.Labels, 3306))
		}, string(MTLSPermissive)},
		{"Sidecar: an empty workload selector beats the namespace-wide one", func() string {
			s, _ := SelectSidecar([]SidecarResource{
				{Namespace: "shop", Name: "ns", CreatedAt: t0},
				{Namespace: "shop", Name: "empty", Selector: empty, CreatedAt: t0.Add(1)},
			}, "istio-system", &pod)
			return s.Name
		}, "empty"},
		{"DestinationRule: an empty workload selector matches every client of its namespace", func() string {
			idx := NewDestinationRuleIndex([]DestinationRule{
				{Namespace: "shop", Name: "all", Host: "db", CreatedAt: t0},
				{Namespace: "shop", Name: "empty", Host: "db", Selector: empty, CreatedAt: t0},
			}, "istio-system")
			d, _ := idx.Lookup("shop", pod.Labels, ServiceHostname("shop", "db"), "shop")
			return d.Name
		}, "empty"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.got(); got != c.want {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}

// serviceBackends builds an inventory of one Service with selector and no
// EndpointSlice, and one pod, and names the Service's backends.
func serviceBackends(selector map[string]string, pod Pod) string {
	var inv Inventory
	build(&inv, nil, []Service{{Namespace: "shop", Name: "db", Selector: selector}}, nil, []loadedPod{{Pod: pod}}, nil, nil)
	out := ""
	for _, b := range inv.Services[0].Backends {
		out += b.Namespace + "/" + b.Name
	}
	return out
}
