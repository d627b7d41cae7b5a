package cluster

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/labels"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func pa(ns, name string, age int, sel map[string]string, mode MTLSMode, ports map[uint32]MTLSMode) PeerAuthentication {
	return PeerAuthentication{Namespace: ns, Name: name, Selector: sel, Mode: mode, PortModes: ports, CreatedAt: t0.Add(time.Duration(age) * time.Second)}
}

func TestEffectiveMTLSMode(t *testing.T) {
	app := map[string]string{"app": "db"}
	other := map[string]string{"app": "web"}
	tests := []struct {
		name     string
		policies []PeerAuthentication
		ns       string
		labels   map[string]string
		port     uint32
		want     MTLSMode
	}{
		{"no policy: PERMISSIVE", nil, "app", app, 3306, MTLSPermissive},
		{"mesh STRICT", []PeerAuthentication{pa("istio-system", "default", 0, nil, MTLSStrict, nil)}, "app", app, 3306, MTLSStrict},
		{"mesh UNSET is PERMISSIVE", []PeerAuthentication{pa("istio-system", "default", 0, nil, MTLSUnset, nil)}, "app", app, 3306, MTLSPermissive},
		{"mesh empty mode is PERMISSIVE", []PeerAuthentication{pa("istio-system", "default", 0, nil, "", nil)}, "app", app, 3306, MTLSPermissive},
		{"namespace overrides mesh", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("app", "ns", 0, nil, MTLSDisable, nil),
		}, "app", app, 3306, MTLSDisable},
		{"namespace UNSET inherits mesh", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("app", "ns", 0, nil, MTLSUnset, nil),
		}, "app", app, 3306, MTLSStrict},
		{"another namespace's policy does not apply", []PeerAuthentication{
			pa("other", "ns", 0, nil, MTLSStrict, nil),
		}, "app", app, 3306, MTLSPermissive},
		{"workload overrides namespace", []PeerAuthentication{
			pa("app", "ns", 0, nil, MTLSStrict, nil),
			pa("app", "db", 0, app, MTLSPermissive, nil),
		}, "app", app, 3306, MTLSPermissive},
		{"workload policy for other pods", []PeerAuthentication{
			pa("app", "ns", 0, nil, MTLSStrict, nil),
			pa("app", "web", 0, other, MTLSDisable, nil),
		}, "app", app, 3306, MTLSStrict},
		{"selector must match every label", []PeerAuthentication{
			pa("app", "db", 0, map[string]string{"app": "db", "tier": "primary"}, MTLSDisable, nil),
		}, "app", app, 3306, MTLSPermissive},
		{"selector subset matches", []PeerAuthentication{
			pa("app", "db", 0, app, MTLSDisable, nil),
		}, "app", map[string]string{"app": "db", "tier": "primary"}, 3306, MTLSDisable},
		{"workload UNSET inherits namespace", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSPermissive, nil),
			pa("app", "ns", 0, nil, MTLSStrict, nil),
			pa("app", "db", 0, app, MTLSUnset, nil),
		}, "app", app, 3306, MTLSStrict},
		{"port-level DISABLE", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("app", "db", 0, app, MTLSUnset, map[uint32]MTLSMode{3306: MTLSDisable}),
		}, "app", app, 3306, MTLSDisable},
		{"port-level on another port", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("app", "db", 0, app, MTLSUnset, map[uint32]MTLSMode{3307: MTLSDisable}),
		}, "app", app, 3306, MTLSStrict},
		{"port-level UNSET inherits workload", []PeerAuthentication{
			pa("app", "db", 0, app, MTLSStrict, map[uint32]MTLSMode{3306: MTLSUnset}),
		}, "app", app, 3306, MTLSStrict},
		{"port-level UNSET inherits namespace through UNSET workload", []PeerAuthentication{
			pa("app", "ns", 0, nil, MTLSDisable, nil),
			pa("app", "db", 0, app, MTLSUnset, map[uint32]MTLSMode{3306: MTLSUnset}),
		}, "app", app, 3306, MTLSDisable},
		{"port-level is ignored on a namespace policy", []PeerAuthentication{
			pa("app", "ns", 0, nil, MTLSStrict, map[uint32]MTLSMode{3306: MTLSDisable}),
		}, "app", app, 3306, MTLSStrict},
		{"port-level is ignored on the mesh policy", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, map[uint32]MTLSMode{3306: MTLSDisable}),
		}, "app", app, 3306, MTLSStrict},
		{"oldest namespace policy wins", []PeerAuthentication{
			pa("app", "newer", 10, nil, MTLSDisable, nil),
			pa("app", "older", 5, nil, MTLSStrict, nil),
		}, "app", app, 3306, MTLSStrict},
		{"oldest mesh policy wins", []PeerAuthentication{
			pa("istio-system", "a-newer", 10, nil, MTLSDisable, nil),
			pa("istio-system", "z-older", 5, nil, MTLSStrict, nil),
		}, "app", app, 3306, MTLSStrict},
		{"oldest workload policy wins, with its port levels", []PeerAuthentication{
			pa("app", "newer", 10, app, MTLSStrict, map[uint32]MTLSMode{3306: MTLSDisable}),
			pa("app", "older", 5, map[string]string{"app": "db"}, MTLSStrict, nil),
		}, "app", app, 3306, MTLSStrict},
		{"tie broken by name", []PeerAuthentication{
			pa("app", "b", 0, nil, MTLSDisable, nil),
			pa("app", "a", 0, nil, MTLSStrict, nil),
		}, "app", app, 3306, MTLSStrict},
		{"oldest UNSET namespace policy still shadows a newer one", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("app", "older", 1, nil, MTLSUnset, nil),
			pa("app", "newer", 2, nil, MTLSDisable, nil),
		}, "app", app, 3306, MTLSStrict},
		{"selector policy in the root namespace is ignored", []PeerAuthentication{
			pa("istio-system", "db", 0, app, MTLSDisable, map[uint32]MTLSMode{3306: MTLSDisable}),
		}, "app", app, 3306, MTLSPermissive},
		{"selector policy in the root namespace is ignored for its own pods", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
			pa("istio-system", "db", 0, app, MTLSDisable, nil),
		}, "istio-system", app, 3306, MTLSStrict},
		{"workload in the root namespace: its namespace policy is the mesh policy", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSStrict, nil),
		}, "istio-system", app, 3306, MTLSStrict},
		{"custom root namespace", []PeerAuthentication{
			pa("istio-system", "default", 0, nil, MTLSDisable, nil),
			pa("mesh-root", "default", 0, nil, MTLSStrict, nil),
		}, "app", app, 3306, MTLSStrict},
		{"a policy in another namespace selecting the same labels", []PeerAuthentication{
			pa("other", "db", 0, app, MTLSDisable, nil),
		}, "app", app, 3306, MTLSPermissive},
		{"empty selector map is namespace-wide", []PeerAuthentication{
			pa("app", "ns", 0, map[string]string{}, MTLSDisable, nil),
		}, "app", nil, 3306, MTLSDisable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := "istio-system"
			if strings.HasPrefix(tt.name, "custom root") {
				root = "mesh-root"
			}
			got := EffectiveMTLSMode(tt.policies, root, tt.ns, tt.labels, tt.port)
			if got != tt.want {
				t.Errorf("EffectiveMTLSMode = %s, want %s", got, tt.want)
			}
			if o := istioMTLS(tt.policies, root, tt.ns, tt.labels, tt.port); o != tt.want {
				t.Errorf("oracle = %s, table says %s", o, tt.want)
			}
			// The order the API returned them in must not matter.
			rev := slices.Clone(tt.policies)
			slices.Reverse(rev)
			if got := EffectiveMTLSMode(rev, root, tt.ns, tt.labels, tt.port); got != tt.want {
				t.Errorf("reversed input: EffectiveMTLSMode = %s, want %s", got, tt.want)
			}
		})
	}
}

// TestEffectiveMTLSModeRandom compares EffectiveMTLSMode with a
// transcription of Istio's selection (pilot/pkg/model/authentication.go
// sortConfigByCreationTime + getConfigsForWorkload) and
// pilot/pkg/security/authn/policy_applier.go ComposePeerAuthentication over
// random policy sets.
func TestEffectiveMTLSModeRandom(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	modes := []MTLSMode{MTLSStrict, MTLSPermissive, MTLSDisable, MTLSUnset}
	namespaces := []string{"istio-system", "app", "other"}
	selectors := []map[string]string{nil, {"app": "db"}, {"app": "web"}, {"app": "db", "v": "1"}}
	for i := 0; i < 20000; i++ {
		var ps []PeerAuthentication
		for j := rng.Intn(6); j > 0; j-- {
			var ports map[uint32]MTLSMode
			if rng.Intn(2) == 0 {
				ports = map[uint32]MTLSMode{uint32(3306 + rng.Intn(2)): modes[rng.Intn(len(modes))]}
			}
			ps = append(ps, pa(namespaces[rng.Intn(3)], fmt.Sprintf("p%d", rng.Intn(4)), rng.Intn(3),
				selectors[rng.Intn(len(selectors))], modes[rng.Intn(len(modes))], ports))
		}
		ps = uniqueNames(ps)
		ns := namespaces[rng.Intn(3)]
		labels := []map[string]string{{"app": "db"}, {"app": "db", "v": "1"}, nil}[rng.Intn(3)]
		got := EffectiveMTLSMode(ps, "istio-system", ns, labels, 3306)
		if want := istioMTLS(ps, "istio-system", ns, labels, 3306); got != want {
			t.Fatalf("policies %+v, workload %s %v: EffectiveMTLSMode = %s, Istio = %s", ps, ns, labels, got, want)
		}
	}
}

// uniqueNames drops a policy whose namespace/name is taken, as the API would.
func uniqueNames(ps []PeerAuthentication) []PeerAuthentication {
	seen := map[string]bool{}
	var out []PeerAuthentication
	for _, p := range ps {
		if k := p.Namespace + "/" + p.Name; !seen[k] {
			seen[k] = true
			out = append(out, p)
		}
	}
	return out
}

// istioMTLS is the oracle, transcribed from Istio rather than derived
// from EffectiveMTLSMode.
func istioMTLS(policies []PeerAuthentication, root, ns string, podLabels map[string]string, port uint32) MTLSMode {
	sorted := slices.Clone(policies)
	slices.SortFunc(sorted, func(a, b PeerAuthentication) int {
		if r := a.CreatedAt.Compare(b.CreatedAt); r != 0 {
			return r
		}
		if r := strings.Compare(a.Name, b.Name); r != 0 {
			return r
		}
		return strings.Compare(a.Namespace, b.Namespace)
	})
	// getConfigsForWorkload: the workload namespace, then the root.
	var configs []*PeerAuthentication
	for _, n := range slices.Compact([]string{ns, root}) {
		for i := range sorted {
			c := &sorted[i]
			if c.Namespace == n && labels.ValidatedSetSelector(c.Selector).Matches(labels.Set(podLabels)) {
				configs = append(configs, c)
			}
		}
	}
	// ComposePeerAuthentication.
	var meshCfg, nsCfg, wlCfg *PeerAuthentication
	for _, c := range configs {
		if len(c.Selector) == 0 {
			if c.Namespace == root {
				if meshCfg == nil || c.CreatedAt.Before(meshCfg.CreatedAt) {
					meshCfg = c
				}
			} else if nsCfg == nil || c.CreatedAt.Before(nsCfg.CreatedAt) {
				nsCfg = c
			}
		} else if c.Namespace != root {
			if wlCfg == nil || c.CreatedAt.Before(wlCfg.CreatedAt) {
				wlCfg = c
			}
		}
	}
	unset := func(m MTLSMode) bool { return m == MTLSUnset || m == "" }
	out := MTLSPermissive
	if meshCfg != nil && !unset(meshCfg.Mode) {
		out = meshCfg.Mode
	}
	if nsCfg != nil && !unset(nsCfg.Mode) {
		out = nsCfg.Mode
	}
	if wlCfg != nil && !unset(wlCfg.Mode) {
		out = wlCfg.Mode
	}
	if wlCfg != nil && wlCfg.PortModes != nil {
		if m, ok := wlCfg.PortModes[port]; ok && !unset(m) {
			return m
		}
	}
	return out
}
