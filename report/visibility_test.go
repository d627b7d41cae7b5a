package report

import (
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// A ServiceEntry's exportTo hides it from other namespaces
// (serviceentry conversion.go convertServices, push_context.go
// initServiceRegistry): under REGISTRY_ONLY their clients are refused.
func TestServiceEntryExportTo(t *testing.T) {
	web := cluster.Pod{Namespace: "web", Name: "web-0", HasSidecar: true}
	shop := cluster.Pod{Namespace: "shop", Name: "shop-0", HasSidecar: true}
	key := target.TargetKey{Kind: target.KindServiceEntry, Namespace: "shop", Name: "mail", Port: 25}
	cases := []struct {
		name     string
		exportTo []string
		def      cluster.ExportToList
		policy   string
		verdict  Verdict
		paths    []Code
	}{
		{"public: one path", nil, "", cluster.OutboundRegistryOnly, OK, []Code{"SF0109"}},
		{"private under REGISTRY_ONLY: web is refused, the verdict speaks for shop", []string{"."}, "", cluster.OutboundRegistryOnly, OK, []Code{"SF1105", "SF0109"}},
		{"mesh default . under REGISTRY_ONLY", nil, ".", cluster.OutboundRegistryOnly, OK, []Code{"SF1105", "SF0109"}},
		{"exported to web by name", []string{".", "web"}, "", cluster.OutboundRegistryOnly, OK, []Code{"SF0109"}},
		{"private under ALLOW_ANY: web passes through unsniffed", []string{"."}, "", cluster.OutboundAllowAny, OK, []Code{"SF0109"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := meshInv([]cluster.Pod{web, shop})
			inv.Mesh.OutboundTrafficPolicy, inv.Mesh.DefaultServiceExportTo = c.policy, c.def
			inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "shop", Name: "mail", Hosts: []string{"smtp.example.com"}, Addresses: []string{"203.0.113.7"},
				Location: "MESH_EXTERNAL", Resolution: "STATIC", ExportTo: c.exportTo, Ports: []cluster.ServiceEntryPort{sePort(25, "tcp-smtp", "TCP")}}}
			f := onlyFinding(t, Build(Input{Inventory: inv, Static: true}), key)
			if f.Verdict != c.verdict {
				t.Errorf("verdict %s, want %s (%s)", f.Verdict, c.verdict, f.Reason)
			}
			assertPathCodes(t, f, c.paths...)
			for _, p := range f.Paths {
				if p.Code == "SF1105" && p.Clients != "web (1 pod)" {
					t.Errorf("SF1105 clients %q, want web only", p.Clients)
				}
			}
		})
	}
}

// An HTTP Service exported only to a namespace without mesh clients puts
// no 0.0.0.0 listener in any client: an external server-first target on
// its port passes through (SF0303), not collides (SF0302).
func TestExternalCollisionFollowsExportTo(t *testing.T) {
	web := cluster.Pod{Namespace: "web", Name: "web-0", HasSidecar: true}
	for _, c := range []struct {
		name     string
		exportTo []string
		code     Code
	}{
		{"public HTTP Service: collision", nil, "SF0302"},
		{"private to ops, no clients there: passthrough", []string{"."}, "SF0303"},
		{"exported to web: collision", []string{"web"}, "SF0302"},
	} {
		t.Run(c.name, func(t *testing.T) {
			admin := svc("ops", "admin", "admin", nil, tport("http-admin", 2525, "2525", ""))
			admin.ExportTo = c.exportTo
			inv := meshInv([]cluster.Pod{web}, admin)
			r := Build(Input{Inventory: inv, Static: true, External: []target.ExternalTarget{{Host: "smtp.example.com", Port: 2525}}})
			f := onlyFinding(t, r, target.TargetKey{Kind: target.KindExternal, Name: "smtp.example.com", Port: 2525})
			assertCode(t, f, c.code)
		})
	}
}
