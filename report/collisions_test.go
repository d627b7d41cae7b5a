package report

import (
	"fmt"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// A ServiceEntry on a port that many HTTP Services share lists the first
// maxCollisionsListed of them and says how many there are, so the report
// stays linear in the number of entries.
func TestCollisionsListedUpToALimit(t *testing.T) {
	const ns = "shop"
	for _, n := range []int{1, maxCollisionsListed, maxCollisionsListed + 2} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			meshNoHint := pod(ns, "app-0", "app", true, "ghcr.io/acme/app:1.0")
			var svcs []cluster.Service
			for i := range n {
				svcs = append(svcs, svc(fmt.Sprintf("web-%02d", i), "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", "")))
			}
			inv := meshInv([]cluster.Pod{meshNoHint}, svcs...)
			inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "legacy-db", Hosts: []string{"mysql.legacy.example.com"},
				Location: "MESH_EXTERNAL", Resolution: "STATIC", Ports: []cluster.ServiceEntryPort{sePort(10000, "tcp-db", "TCP")}}}
			r := Build(Input{Inventory: inv, External: []target.ExternalTarget{{Host: "198.51.100.9", Port: 10000}}})
			for _, key := range []target.TargetKey{{Kind: target.KindServiceEntry, Namespace: ns, Name: "legacy-db", Port: 10000}, {Kind: target.KindExternal, Name: "198.51.100.9", Port: 10000}} {
				f := findingFor(t, r, key)
				wantListed, wantTotal := min(n, maxCollisionsListed), 0
				if n > maxCollisionsListed {
					wantTotal = n
				}
				if len(f.CollidesWith) != wantListed || f.CollidesWithTotal != wantTotal {
					t.Errorf("%s: %d listed, total %d; want %d, %d", key, len(f.CollidesWith), f.CollidesWithTotal, wantListed, wantTotal)
				}
				more := fmt.Sprintf("and %d more", n-maxCollisionsListed)
				if got := strings.Contains(f.Reason, more); got != (n > maxCollisionsListed) {
					t.Errorf("%s: reason %q; want %q in it: %v", key, f.Reason, more, n > maxCollisionsListed)
				}
			}
		})
	}
}

func findingFor(t *testing.T, r Report, key target.TargetKey) Finding {
	t.Helper()
	for _, f := range r.Findings {
		if f.Key() == key {
			return f
		}
	}
	t.Fatalf("no finding for %v", key)
	return Finding{}
}
