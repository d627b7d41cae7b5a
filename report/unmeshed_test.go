package report

import (
	"slices"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// A -n scan counts clients without a sidecar outside its namespaces from
// the loader's cluster-wide metadata count, and says so when it could not.
func TestUnmeshedElsewhere(t *testing.T) {
	server := pod("shop", "db-0", "db", true, "mariadb:11")
	cases := []struct {
		name      string
		elsewhere map[string]int
		unknown   bool
		ambientNS bool
		code      Code
		paths     []Code
		who       string
		note      bool
	}{
		{name: "no clients without a sidecar anywhere", code: "SF0109", paths: []Code{"SF0109"}},
		{name: "clients elsewhere", elsewhere: map[string]int{"legacy": 3, "batch": 1}, code: "SF0203", paths: []Code{"SF0203", "SF0109"},
			who: "4 pod(s) without a sidecar in 2 namespace(s): batch, legacy"},
		{name: "an ambient namespace elsewhere does not count", elsewhere: map[string]int{"amb": 2}, ambientNS: true, code: "SF0109", paths: []Code{"SF0109"}},
		{name: "not countable: said on the finding", unknown: true, code: "SF0109", paths: []Code{"SF0109"}, note: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := meshInv([]cluster.Pod{server}, svc("shop", "db", "db", []cluster.Pod{server}, tport("tcp-mysql", 3306, "3306", "")))
			inv.UnmeshedElsewhere, inv.UnmeshedElsewhereUnknown = c.elsewhere, c.unknown
			if c.ambientNS {
				inv.Namespaces = append(inv.Namespaces, cluster.Namespace{Name: "amb", Ambient: true})
			}
			f := onlyFinding(t, Build(Input{Inventory: inv, Static: true}), svcKey("shop", "db", 3306))
			assertCode(t, f, c.code)
			assertPathCodes(t, f, c.paths...)
			if c.who != "" && !strings.Contains(f.Reason, c.who) {
				t.Errorf("reason %q does not name %q", f.Reason, c.who)
			}
			noted := slices.ContainsFunc(f.Notes, func(n string) bool { return strings.Contains(n, "outside the scanned namespaces were not counted") })
			if noted != c.note {
				t.Errorf("note %v, want %v: %q", noted, c.note, f.Notes)
			}
		})
	}
}
