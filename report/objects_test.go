package report

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// TestApplyConfigurationManifests: each kind's apply configuration, with
// its change applied, renders as the manifest fix prints (golden YAML),
// reads back as the same object, and names the object its change names.
func TestApplyConfigurationManifests(t *testing.T) {
	shop := svc("shop", "orders-db", "orders-db", nil, tport("db", 3307, "mysql", ""), tport("", 9090, "", "http"), uport("stats", 8125))
	pa := func(modes map[uint32]cluster.MTLSMode) any {
		return peerAuthenticationObject("z-older", "mail", map[string]string{"tier": "edge"}, cluster.MTLSPermissive, modes)
	}
	se := cluster.ServiceEntry{Namespace: "shop", Name: "smtp", Hosts: []string{"smtp.example.com"}, Endpoints: []string{"192.0.2.7"},
		Ports: []cluster.ServiceEntryPort{sePort(25, "", ""), sePort(465, "smtps", "TLS")}}
	for _, c := range []struct {
		name   string
		obj    func() any
		change Change
	}{
		{"service-appprotocol", func() any { return serviceObject(shop) },
			Change{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "orders-db", Port: "3307/TCP", Set: map[string]string{"appProtocol": "tcp"}}},
		{"service-rename", func() any { return serviceObject(shop) },
			Change{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "orders-db", Port: "9090/TCP", Set: map[string]string{"name": "tcp"}}},
		{"serviceentry-port-and-addresses", func() any { return serviceEntryObject(se) },
			Change{APIVersion: "networking.istio.io/v1", Kind: "ServiceEntry", Namespace: "shop", Name: "smtp", Port: "25",
				Set: map[string]string{"protocol": "TCP", "name": "tcp-25"}, Addresses: []string{"192.0.2.7"}}},
		{"peerauthentication-extended", func() any { return pa(map[uint32]cluster.MTLSMode{9090: cluster.MTLSStrict}) },
			Change{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication", Namespace: "mail", Name: "z-older", Port: "2525", Set: map[string]string{"mode": "DISABLE"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fix := withChange(Fix{}, c.obj(), &c.change)
			golden(t, "object-"+c.name+".yaml.golden", []byte(fix.Manifest))
			back, err := ObjectOf(fix)
			if err != nil {
				t.Fatal(err)
			}
			if got := manifestOf(back, c.change.Create); got != fix.Manifest {
				t.Errorf("reads back as\n%s", got)
			}
		})
	}

	// The headless Service that declares a pod port is only printed.
	t.Run("declare-pod-port", func(t *testing.T) {
		p := &cluster.Pod{Namespace: "ns", Name: "db-0", Labels: map[string]string{"app": "db", "x": "y"}}
		j := &judge{inv: &cluster.Inventory{}}
		golden(t, "object-declare-pod-port.yaml.golden", []byte(j.podPortFixes(Finding{Port: 3306, PortName: "mysql"}, p)[0].Manifest))
	})

	// The fixes that create objects, as the engine builds them: a
	// ServiceEntry for a host name (resolution DNS) and for an IP
	// (resolution NONE, the enum's zero: stated all the same).
	r := Build(representativeInput())
	web := pod("web", "app-0", "app", true, "ghcr.io/acme/app:1.0")
	ip := Build(Input{Inventory: meshInv([]cluster.Pod{web}, svc("web", "frontend", "app", []cluster.Pod{web}, tport("http-web", 25, "", ""))),
		External: []target.ExternalTarget{{Host: "192.0.2.9", Port: 25}}})
	ipFixes := 0
	for _, f := range ip.Findings {
		for _, fix := range f.Fixes {
			if fix.Change != nil && fix.Change.Create {
				ipFixes++
				golden(t, "object-created-serviceentry-ip.yaml.golden", []byte(fix.Manifest))
			}
		}
	}
	if ipFixes != 1 {
		t.Errorf("%d ServiceEntry fixes for the IP destination, want 1", ipFixes)
	}
	created := map[string]bool{}
	for _, f := range r.Findings {
		for _, fix := range f.Fixes {
			if c := fix.Change; c != nil && c.Create && !created[c.Kind] {
				created[c.Kind] = true
				t.Run("created-"+strings.ToLower(c.Kind), func(t *testing.T) {
					golden(t, "object-created-"+strings.ToLower(c.Kind)+".yaml.golden", []byte(fix.Manifest))
					if _, err := ObjectOf(fix); err != nil {
						t.Fatal(err)
					}
				})
			}
		}
	}
	if !created["ServiceEntry"] || !created["PeerAuthentication"] {
		t.Errorf("created kinds %v", created)
	}
}

// TestPlanFromSavedReport: a report written as JSON (and as YAML) and read
// back plans exactly as the report it came from.
func TestPlanFromSavedReport(t *testing.T) {
	r := Build(representativeInput())
	want := renderPlan(t, Plan(r), true)
	for _, format := range []string{"json", "yaml"} {
		back, err := ReadReport([]byte(render(t, format, r, RenderOptions{})))
		if err != nil {
			t.Fatal(err)
		}
		plan, err := PlanSkipping(back, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := renderPlan(t, plan, true); got != want {
			t.Errorf("%s: the saved report plans differently:\n%s\nwant\n%s", format, got, want)
		}
		if len(plan.Manual) != len(Plan(r).Manual) {
			t.Errorf("%s: %d manual fixes, want %d", format, len(plan.Manual), len(Plan(r).Manual))
		}
	}
}

func TestReadReportRefuses(t *testing.T) {
	saved := render(t, "json", Build(representativeInput()), RenderOptions{})
	for _, c := range []struct{ name, doc, want string }{
		{"not JSON", "<html>", "not a kubectl-serverfirst report"},
		{"another document", `{"kind": "Service", "spec": {}}`, "not a kubectl-serverfirst report"},
		{"a newer schema", strings.Replace(saved, `"schemaVersion": 1`, `"schemaVersion": 7`, 1), "report schema 7 is newer than this kubectl-serverfirst reads (1)"},
		{"no schema: an older report", strings.Replace(saved, `,
  "schemaVersion": 1`, "", 1), "report has no schemaVersion"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ReadReport([]byte(c.doc))
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %v, want one line with %q", err, c.want)
			}
		})
	}

	// A hand-edited change is refused with the finding named, and the
	// fix is left to the user.
	r, err := ReadReport([]byte(saved))
	if err != nil {
		t.Fatal(err)
	}
	for i := range r.Findings {
		for j := range r.Findings[i].Fixes {
			if c := r.Findings[i].Fixes[j].Change; c != nil && c.Kind == "Service" {
				c.Set = map[string]string{"clusterIP": "None"}
			}
		}
	}
	plan, err := PlanSkipping(r, nil)
	if err == nil || !strings.Contains(err.Error(), `sets "clusterIP", not a field fix changes on a Service`) {
		t.Errorf("edited change: %v", err)
	}
	for _, o := range plan.Objects {
		if o.Kind == "Service" {
			t.Errorf("an edited change was planned: %s", o.Ref())
		}
	}
}

// TestDrift: fix --from applies a change only where the object still
// holds what the report saw.
func TestDrift(t *testing.T) {
	r := Build(representativeInput())
	plan := Plan(r)
	find := func(kind, name string) PlannedObject {
		for _, o := range plan.Objects {
			if o.Kind == kind && o.Name == name {
				return o
			}
		}
		t.Fatalf("no planned %s %s", kind, name)
		return PlannedObject{}
	}
	relay := find("Service", "relay") // port 587 gets appProtocol; port 25 is repeated
	// asScanned is the object as the API server would return it at the
	// scan: the manifest without the fixes' fields, numbers as int64.
	asScanned := func(o PlannedObject, edit func(spec map[string]any)) map[string]any {
		m, err := plainJSON(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range o.Changes {
			e, _ := changedEntry(m, c)
			for k := range c.Set {
				if w, ok := c.Was[k]; ok {
					e[k] = w
				} else {
					delete(e, k)
				}
			}
		}
		m["metadata"].(map[string]any)["resourceVersion"] = "42"
		if edit != nil {
			edit(m["spec"].(map[string]any))
		}
		var b bytes.Buffer
		_ = json.NewEncoder(&b).Encode(m)
		var out map[string]any
		dec := json.NewDecoder(&b)
		dec.UseNumber()
		_ = dec.Decode(&out)
		return out
	}
	port := func(spec map[string]any, i int) map[string]any { return spec["ports"].([]any)[i].(map[string]any) }
	for _, c := range []struct {
		name    string
		obj     PlannedObject
		current map[string]any
		skipped int // -1: all of the object's changes
		want    string
	}{
		{"unchanged", relay, asScanned(relay, nil), 0, ""},
		{"already applied", relay, func() map[string]any { m, _ := plainJSON(relay.Object); return m }(), 0, ""},
		{"a field the fix sets was changed by hand", relay, asScanned(relay, func(s map[string]any) { port(s, 1)["appProtocol"] = "smtp-x" }), 1,
			`port 587/TCP appProtocol is "smtp-x" now, the report saw ""`},
		{"another field the manifest repeats changed", relay, asScanned(relay, func(s map[string]any) { port(s, 1)["targetPort"] = 1587 }), -1,
			"spec.ports[1].targetPort is 1587 now, the report saw 587"},
		{"a port added since is no drift", relay, asScanned(relay, func(s map[string]any) {
			s["ports"] = append(s["ports"].([]any), map[string]any{"name": "new", "port": 2525, "protocol": "TCP"})
		}), 0, ""},
		{"the fix's port is gone", relay, asScanned(relay, func(s map[string]any) { s["ports"] = s["ports"].([]any)[:1] }), -1, "port 587/TCP is gone"},
		{"deleted", relay, nil, -1, "it was deleted since the report"},
		{"created since the report", find("PeerAuthentication", "serverfirst-relay"), map[string]any{"spec": map[string]any{}}, -1, "it exists now"},
		{"to be created, absent", find("PeerAuthentication", "serverfirst-relay"), nil, 0, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			drift := c.obj.Drift(c.current)
			if c.skipped < 0 {
				c.skipped = len(c.obj.Changes)
			}
			if len(drift) != c.skipped {
				t.Errorf("%d changes skipped (%v), want %d", len(drift), drift, c.skipped)
			}
			reasons := strings.Join(slices.Collect(maps.Values(drift)), "\n")
			if c.want != "" && !strings.Contains(reasons, c.want) {
				t.Errorf("reasons %q, want %q", reasons, c.want)
			}
		})
	}
}
