package report

import (
	"slices"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// ALLOW_ANY_DYNAMIC_DNS is judged per port: the 15001 listener's HTTP
// inspector runs before every port's own listener (listener_builder.go
// buildVirtualOutboundListener; envoy active_tcp_socket.cc), so a declared
// server-first port's mesh clients wait 15s and are closed.
func TestDynamicDNSPerPort(t *testing.T) {
	dbKey := svcKey("shop", "db", 3306)
	cases := []struct {
		name    string
		edit    func(w *configWorld)
		key     target.TargetKey
		verdict Verdict
		paths   []Code
		fixes   []string
	}{
		{name: "ALLOW_ANY: declared TCP is fine",
			edit:    func(w *configWorld) { w.inv.Mesh.OutboundTrafficPolicy = cluster.OutboundAllowAny },
			verdict: OK, paths: []Code{"SF0109"}},
		{name: "ALLOW_ANY_DYNAMIC_DNS: declared TCP server-first waits on 15001",
			edit:    func(w *configWorld) {},
			verdict: AtRisk, paths: []Code{"SF0306", "SF0109"}, fixes: []string{FixSidecarResource}},
		{name: "a Sidecar's own outboundTrafficPolicy replaces the mesh's",
			edit: func(w *configWorld) {
				w.inv.Sidecars = []cluster.SidecarResource{{Namespace: "web", Name: "default", OutboundTrafficPolicy: "ALLOW_ANY"}}
			},
			verdict: OK, paths: []Code{"SF0109"}},
		{name: "a client that excludes the port never reaches 15001 (and meets the PERMISSIVE inspector instead)",
			edit: func(w *configWorld) {
				w.inv.Pods[0].Interception = cluster.ParseInterception(map[string]string{cluster.AnnotationExcludeOutboundPorts: "3306"})
			},
			verdict: AtRisk, paths: []Code{"SF0703", "SF0109"}},
		{name: "client-first port without hints: the inspector sees the client's bytes",
			edit: func(w *configWorld) {
				w.server.Images, w.server.PortImages, w.server.Ports = []string{"example/api"}, nil, nil
				w.inv.Pods[1] = w.server
				w.inv.Services = []cluster.Service{svc("shop", "api", "db", []cluster.Pod{w.server}, tport("tcp-api", 8080, "8080", ""))}
			},
			key: svcKey("shop", "api", 8080), verdict: OK, paths: []Code{"SF0109"}},
		{name: "a declared ServiceEntry port too",
			edit: func(w *configWorld) {
				w.inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "shop", Name: "mail", Hosts: []string{"smtp.example.com"}, Addresses: []string{"203.0.113.7"},
					Location: "MESH_EXTERNAL", Resolution: "STATIC", Ports: []cluster.ServiceEntryPort{sePort(25, "tcp-smtp", "TCP")}}}
			},
			key: target.TargetKey{Kind: target.KindServiceEntry, Namespace: "shop", Name: "mail", Port: 25}, verdict: AtRisk, paths: []Code{"SF0306", "SF0109"}, fixes: []string{FixSidecarResource}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := newConfigWorld()
			w.svc = svc("shop", "db", "db", []cluster.Pod{w.server}, tport("tcp-mysql", 3306, "3306", ""))
			w.inv = meshInv([]cluster.Pod{w.client, w.server}, w.svc)
			w.inv.Mesh.EnableAutoMTLS = true
			w.inv.Mesh.OutboundTrafficPolicy = cluster.OutboundAllowAnyDynamicDNS
			c.edit(w)
			key := c.key
			if key == (target.TargetKey{}) {
				key = dbKey
			}
			r := Build(Input{Inventory: w.inv, Static: true})
			f := onlyFinding(t, r, key)
			if f.Verdict != c.verdict {
				t.Errorf("verdict %s, want %s (%s)", f.Verdict, c.verdict, f.Reason)
			}
			assertPathCodes(t, f, c.paths...)
			types := fixTypes(f)
			for _, fx := range c.fixes {
				if !slices.Contains(types, fx) {
					t.Errorf("fixes %v lack %s", types, fx)
				}
			}
			if slices.Contains(c.paths, "SF0306") {
				for _, fix := range f.Fixes {
					if fix.Manifest != "" {
						parseManifest(t, fix.Manifest)
					}
				}
				if slices.ContainsFunc(f.Fixes, func(x Fix) bool { return x.Type == FixAppProtocol || x.Type == FixRename }) && key == dbKey {
					t.Errorf("fixes %v redeclare a declared port, which does not remove the 15001 inspector", types)
				}
			}
			// The per-port paths replace the report-wide warning.
			for _, warning := range r.Warnings {
				if strings.Contains(warning, "ALLOW_ANY_DYNAMIC_DNS") {
					t.Errorf("warning %q", warning)
				}
			}
		})
	}
}
