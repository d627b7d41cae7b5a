package report

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func TestTCPPortName(t *testing.T) {
	long := strings.Repeat("a", 70)
	long62 := "x" + strings.Repeat("-", 3) + strings.Repeat("b", 60) // trimming lands on dashes
	cases := []struct {
		name     string
		existing []string
		want     string
	}{
		{"", nil, "tcp"},
		{"mysql", nil, "tcp-mysql"},
		{"MySQL", nil, "tcp-mysql"},
		{"smtp", nil, "tcp-smtp"},
		{"http-smtp", nil, "tcp-smtp"},
		{"HTTP", nil, "tcp"},
		{"http2", nil, "tcp"},
		{"grpc-web-mail", nil, "tcp-mail"},
		{"udp-dns", nil, "tcp-dns"},
		{"tcp", nil, "tcp"},
		{"tcp-db", nil, "tcp-db"},
		{"db_primary", nil, "tcp-db-primary"},
		{"-weird--name-", nil, "tcp-weird--name"},
		{"___", nil, "tcp"},
		{long, nil, "tcp-" + strings.Repeat("a", 59)},
		{long62, nil, ""}, // only validity is checked
		{"mysql", []string{"tcp-mysql"}, "tcp-mysql-2"},
		{"mysql", []string{"tcp-mysql", "tcp-mysql-2"}, "tcp-mysql-3"},
		{"", []string{"tcp"}, "tcp-2"},
		{long, []string{"tcp-" + strings.Repeat("a", 59)}, "tcp-" + strings.Repeat("a", 57) + "-2"},
	}
	for _, c := range cases {
		s := cluster.Service{Namespace: "ns", Name: "svc"}
		s.Ports = append(s.Ports, cluster.ServicePort{Name: c.name, Port: 1})
		for i, n := range c.existing {
			s.Ports = append(s.Ports, cluster.ServicePort{Name: n, Port: int32(100 + i)})
		}
		got := tcpPortName(c.name, s)
		if c.want != "" && got != c.want {
			t.Errorf("tcpPortName(%q, taken %v) = %q, want %q", c.name, c.existing, got, c.want)
		}
		if errs := validation.IsDNS1123Label(got); len(errs) > 0 {
			t.Errorf("tcpPortName(%q) = %q: not a DNS label: %v", c.name, got, errs)
		}
		if p := cluster.ConvertProtocol(1, got, "TCP", nil); p.Protocol != cluster.ProtocolTCP || p.Source != cluster.SourceName {
			t.Errorf("tcpPortName(%q) = %q does not declare TCP: %+v", c.name, got, p)
		}
		for _, n := range c.existing {
			if got == n {
				t.Errorf("tcpPortName(%q) = %q collides with an existing port", c.name, got)
			}
		}
	}
}

// mailInventory is one meshed SMTP/POP3 workload with two declared ports
// a client without a sidecar hangs on.
func mailInventory(pas ...cluster.PeerAuthentication) (*cluster.Inventory, []target.Observation) {
	p := pod("mail", "relay-0", "relay", true, "boky/postfix:4")
	p.Labels["tier"] = "edge"
	inv := meshInv([]cluster.Pod{p}, svc("mail", "relay", "relay", []cluster.Pod{p},
		tport("tcp-smtp", 25, "2525", ""), tport("tcp-pop3", 110, "1110", ""), tport("http-admin", 8080, "", "")))
	inv.PeerAuthentications = pas
	var o []target.Observation
	for _, port := range []int32{25, 110} {
		k := svcKey("mail", "relay", port)
		o = append(o, obs(k, target.VantageDirect, banner(2, "220 relay ESMTP\r\n", "smtp")), obs(k, target.VantageOutsideClient, silent()))
	}
	return inv, o
}

func TestPeerAuthenticationFixExtendsOldestWorkloadPolicy(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	inv, o := mailInventory(
		// Mesh-wide and namespace-wide policies are not extended.
		cluster.PeerAuthentication{Namespace: "istio-system", Name: "default", Mode: cluster.MTLSPermissive, CreatedAt: t0.Add(-time.Hour)},
		cluster.PeerAuthentication{Namespace: "mail", Name: "ns-default", Mode: cluster.MTLSPermissive, CreatedAt: t0.Add(-time.Hour)},
		// A workload policy elsewhere, and one that does not select the pods.
		cluster.PeerAuthentication{Namespace: "other", Name: "relay", Selector: map[string]string{"app": "relay"}, CreatedAt: t0.Add(-time.Hour)},
		cluster.PeerAuthentication{Namespace: "mail", Name: "imap", Selector: map[string]string{"app": "imap"}, CreatedAt: t0.Add(-time.Hour)},
		// Two policies select the pods: Istio applies the older one only.
		cluster.PeerAuthentication{Namespace: "mail", Name: "a-newer", Selector: map[string]string{"app": "relay"}, Mode: cluster.MTLSStrict, CreatedAt: t0.Add(time.Hour)},
		cluster.PeerAuthentication{Namespace: "mail", Name: "z-older", Selector: map[string]string{"tier": "edge"}, Mode: cluster.MTLSPermissive,
			PortModes: map[uint32]cluster.MTLSMode{9090: cluster.MTLSStrict, 15000: cluster.MTLSUnset}, CreatedAt: t0},
	)
	r := Build(Input{Inventory: inv, Observations: o})
	f := onlyFinding(t, r, svcKey("mail", "relay", 25))
	if f.Verdict != Deadlock || f.Scenario != ExternalToMesh || len(f.Fixes) != 2 || f.Fixes[1].Type != FixExcludeInbound {
		t.Fatalf("verdict %s scenario %s fixes %v", f.Verdict, f.Scenario, fixTypes(f))
	}
	fix := f.Fixes[0]
	if fix.Type != FixPeerAuthentication || !fix.WeakensSecurity {
		t.Errorf("fix %+v", fix)
	}
	m := parseManifest(t, fix.Manifest)
	if path(t, m, "metadata", "name") != "z-older" || path(t, m, "metadata", "namespace") != "mail" {
		t.Errorf("does not extend the oldest workload policy:\n%s", fix.Manifest)
	}
	if path(t, m, "metadata", "labels") != nil {
		t.Errorf("labels an object the tool does not own:\n%s", fix.Manifest)
	}
	if !reflect.DeepEqual(path(t, m, "spec", "selector", "matchLabels"), map[string]any{"tier": "edge"}) {
		t.Errorf("selector changed:\n%s", fix.Manifest)
	}
	if path(t, m, "spec", "mtls", "mode") != "PERMISSIVE" {
		t.Errorf("workload mode not kept:\n%s", fix.Manifest)
	}
	// UNSET is the zero value of Istio's enum, which protobuf JSON
	// leaves out: the port is kept, inheriting as it did.
	want := map[string]any{
		"2525":  map[string]any{"mode": "DISABLE"},
		"9090":  map[string]any{"mode": "STRICT"},
		"15000": map[string]any{},
	}
	if got := path(t, m, "spec", "portLevelMtls"); !reflect.DeepEqual(got, want) {
		t.Errorf("portLevelMtls %v, want %v", got, want)
	}
	if !strings.Contains(strings.Join(fix.Notes, "\n"), "mail/z-older") {
		t.Errorf("notes do not say which policy is extended: %v", fix.Notes)
	}

	// The plan merges both ports into the one existing policy.
	plan := Plan(r)
	var pas []PlannedObject
	for _, obj := range plan.Objects {
		if obj.Kind == "PeerAuthentication" {
			pas = append(pas, obj)
		}
	}
	if len(pas) != 1 || pas[0].Name != "z-older" || !pas[0].WeakensSecurity {
		t.Fatalf("planned PeerAuthentications %+v", pas)
	}
	want["1110"] = map[string]any{"mode": "DISABLE"}
	if got := path(t, parseManifest(t, pas[0].Manifest()), "spec", "portLevelMtls"); !reflect.DeepEqual(got, want) {
		t.Errorf("merged portLevelMtls %v, want %v", got, want)
	}
}

func TestPeerAuthenticationFixNewPolicy(t *testing.T) {
	inv, o := mailInventory()
	r := Build(Input{Inventory: inv, Observations: o})
	f := onlyFinding(t, r, svcKey("mail", "relay", 25))
	m := parseManifest(t, f.Fixes[0].Manifest)
	if path(t, m, "metadata", "labels", ManagedByLabel) != ManagerName ||
		!reflect.DeepEqual(path(t, m, "spec", "selector", "matchLabels"), map[string]any{"app": "relay"}) ||
		path(t, m, "spec", "mtls") != nil ||
		!reflect.DeepEqual(path(t, m, "spec", "portLevelMtls"), map[string]any{"2525": map[string]any{"mode": "DISABLE"}}) {
		t.Errorf("manifest\n%s", f.Fixes[0].Manifest)
	}
	if errs := validation.IsDNS1123Subdomain(path(t, m, "metadata", "name").(string)); len(errs) > 0 {
		t.Errorf("name: %v", errs)
	}
	// Istio applies only the oldest workload policy to a pod: two ports of
	// one workload must end up in one policy, not two.
	plan := Plan(r)
	var pas []PlannedObject
	for _, obj := range plan.Objects {
		if obj.Kind == "PeerAuthentication" {
			pas = append(pas, obj)
		}
	}
	if len(pas) != 1 {
		t.Fatalf("%d PeerAuthentications for one workload: %v", len(pas), pas)
	}
	want := map[string]any{"2525": map[string]any{"mode": "DISABLE"}, "1110": map[string]any{"mode": "DISABLE"}}
	if got := path(t, parseManifest(t, pas[0].Manifest()), "spec", "portLevelMtls"); !reflect.DeepEqual(got, want) {
		t.Errorf("merged portLevelMtls %v, want %v", got, want)
	}

	// Without a selector there is no workload to select: no manifest.
	inv.Services[0].Selector = nil
	f = onlyFinding(t, Build(Input{Inventory: inv, Observations: o}), svcKey("mail", "relay", 25))
	if len(f.Fixes) != 0 {
		t.Errorf("fix without a selector: %+v", f.Fixes)
	}
}

func TestPlanMergesServicePorts(t *testing.T) {
	p := pod("mail", "box-0", "box", true, "ghcr.io/acme/box:1")
	inv := meshInv([]cluster.Pod{p}, svc("mail", "box", "box", []cluster.Pod{p},
		tport("pop", 110, "1110", ""), tport("imap", 143, "1143", ""), tport("http-web", 8080, "web", ""), uport("syslog", 514)))
	r := Build(Input{Inventory: inv})
	var affected []Finding
	for _, f := range r.Findings {
		if f.Verdict.Affected() {
			affected = append(affected, f)
		}
	}
	if len(affected) != 2 {
		t.Fatalf("%d affected findings", len(affected))
	}
	// Each fix alone lists every port, with only its own change.
	for _, f := range affected {
		m := parseManifest(t, f.Fixes[0].Manifest)
		if n := len(path(t, m, "spec", "ports").([]any)); n != 4 {
			t.Errorf("%s: fix lists %d ports, want 4", TargetName(f), n)
		}
		for _, port := range []int{110, 143} {
			want := any(nil)
			if int32(port) == f.Port {
				want = "tcp"
			}
			if got := portByNumber(t, m, "port", port)["appProtocol"]; got != want {
				t.Errorf("%s: port %d appProtocol %v, want %v", TargetName(f), port, got, want)
			}
		}
	}
	plan := Plan(r)
	if len(plan.Objects) != 1 {
		t.Fatalf("%d documents, want 1: %+v", len(plan.Objects), plan.Objects)
	}
	obj := plan.Objects[0]
	if obj.Ref() != "Service mail/box" || len(obj.Reasons) != 2 || obj.WeakensSecurity {
		t.Errorf("object %s reasons %v", obj.Ref(), obj.Reasons)
	}
	m := parseManifest(t, obj.Manifest())
	ports := path(t, m, "spec", "ports").([]any)
	if len(ports) != 4 {
		t.Fatalf("merged document lists %d ports, want 4:\n%s", len(ports), obj.Manifest())
	}
	for _, want := range []struct {
		port        int
		name        string
		appProtocol any
		targetPort  any
		protocol    string
	}{
		{110, "pop", "tcp", float64(1110), "TCP"},
		{143, "imap", "tcp", float64(1143), "TCP"},
		{8080, "http-web", nil, "web", "TCP"},
		{514, "syslog", nil, float64(514), "UDP"},
	} {
		got := portByNumber(t, m, "port", want.port)
		if got["name"] != want.name || got["appProtocol"] != want.appProtocol || got["targetPort"] != want.targetPort || got["protocol"] != want.protocol {
			t.Errorf("port %d: %v", want.port, got)
		}
	}
	// The other fixes are offered as alternatives, the chosen one is not.
	for _, a := range plan.Alternatives {
		if a.Fix.Type == FixAppProtocol {
			t.Errorf("the applied fix is also an alternative: %+v", a)
		}
	}
	if len(plan.Alternatives) != 8 { // rename, tls, excludeInboundPorts and excludeOutboundPorts, twice
		t.Errorf("%d alternatives", len(plan.Alternatives))
	}
}

func TestPlanMergesServiceEntryPorts(t *testing.T) {
	inv := meshInv(nil)
	inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "shop", Name: "mail", Hosts: []string{"mail.example.com"},
		Endpoints: []string{"192.0.2.1", "2001:db8::1"}, Location: "MESH_EXTERNAL", Resolution: "STATIC",
		Ports: []cluster.ServiceEntryPort{sePort(25, "smtp", ""), sePort(110, "", ""), {Number: 443, Name: "https", Protocol: "HTTPS", TargetPort: 8443,
			Resolved: cluster.ServiceEntryPortProtocol("HTTPS")}}}}
	r := Build(Input{Inventory: inv})
	for _, port := range []int32{25, 110} {
		f := onlyFinding(t, r, target.TargetKey{Kind: target.KindServiceEntry, Namespace: "shop", Name: "mail", Port: port})
		if f.Verdict != AtRisk || !reflect.DeepEqual(fixTypes(f), []string{FixServiceEntry, FixExcludeOutbound}) {
			t.Fatalf("port %d: %s %v", port, f.Verdict, fixTypes(f))
		}
		m := parseManifest(t, f.Fixes[0].Manifest)
		if n := len(path(t, m, "spec", "ports").([]any)); n != 3 {
			t.Errorf("port %d: fix lists %d ports, want 3", port, n)
		}
		if a := path(t, m, "spec", "addresses"); !reflect.DeepEqual(a, []any{"192.0.2.1", "2001:db8::1"}) {
			t.Errorf("addresses from the IP endpoints: %v", a)
		}
		if strings.Contains(strings.Join(f.Fixes[0].Notes, "\n"), "ISTIO_META_DNS") {
			t.Errorf("DNS note although addresses are given: %v", f.Fixes[0].Notes)
		}
	}
	plan := Plan(r)
	if len(plan.Objects) != 1 {
		t.Fatalf("%d documents, want 1", len(plan.Objects))
	}
	m := parseManifest(t, plan.Objects[0].Manifest())
	if p := portByNumber(t, m, "number", 25); p["protocol"] != "TCP" || p["name"] != "smtp" {
		t.Errorf("port 25 %v", p)
	}
	if p := portByNumber(t, m, "number", 110); p["protocol"] != "TCP" || p["name"] != "tcp-110" {
		t.Errorf("port 110 %v", p)
	}
	if p := portByNumber(t, m, "number", 443); p["protocol"] != "HTTPS" || p["name"] != "https" || p["targetPort"] != float64(8443) {
		t.Errorf("port 443 %v", p)
	}
	if h := path(t, m, "spec", "hosts"); !reflect.DeepEqual(h, []any{"mail.example.com"}) {
		t.Errorf("hosts %v", h)
	}
}

func TestServiceEntryFixHostNameEndpoints(t *testing.T) {
	// DNS endpoints are not addresses: the fix must say what else is needed.
	inv := meshInv(nil)
	inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "shop", Name: "mail", Hosts: []string{"mail.example.com"},
		Endpoints: []string{"192.0.2.1", "mx.example.com"}, Ports: []cluster.ServiceEntryPort{sePort(25, "smtp", "")}}}
	f := onlyFinding(t, Build(Input{Inventory: inv}), target.TargetKey{Kind: target.KindServiceEntry, Namespace: "shop", Name: "mail", Port: 25})
	m := parseManifest(t, f.Fixes[0].Manifest)
	if path(t, m, "spec", "addresses") != nil {
		t.Errorf("addresses from mixed endpoints:\n%s", f.Fixes[0].Manifest)
	}
	if !strings.Contains(strings.Join(f.Fixes[0].Notes, "\n"), "IST0134") {
		t.Errorf("notes %v", f.Fixes[0].Notes)
	}
}

func TestPlanNothingToFix(t *testing.T) {
	p := pod("shop", "api-0", "api", true, "ghcr.io/acme/api:1")
	r := Build(Input{Inventory: meshInv([]cluster.Pod{p}, svc("shop", "api", "api", []cluster.Pod{p}, tport("http", 80, "8080", "")))})
	plan := Plan(r)
	if len(plan.Objects)+len(plan.Manual)+len(plan.Alternatives) != 0 {
		t.Errorf("plan %+v", plan)
	}
	var b strings.Builder
	if err := RenderPlan(&b, plan, true); err != nil || !strings.HasPrefix(b.String(), "# Nothing to fix") {
		t.Errorf("%q %v", b.String(), err)
	}
}

func TestPlanManualFix(t *testing.T) {
	// A ServiceEntry already declared TCP, colliding, with no address
	// known: the only fix is advice.
	inv := meshInv(nil, svc("web", "frontend", "frontend", nil, tport("http", 3307, "", "")))
	inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: "shop", Name: "db", Hosts: []string{"mysql.example.com"},
		Ports: []cluster.ServiceEntryPort{sePort(3307, "tcp", "TCP")}}}
	r := Build(Input{Inventory: inv})
	f := onlyFinding(t, r, target.TargetKey{Kind: target.KindServiceEntry, Namespace: "shop", Name: "db", Port: 3307})
	if f.Verdict != AtRisk || len(f.Fixes) != 2 || f.Fixes[0].Manifest != "" || f.Fixes[1].Type != FixExcludeOutbound {
		t.Fatalf("%s %+v", f.Verdict, f.Fixes)
	}
	plan := Plan(r)
	if len(plan.Objects) != 0 || len(plan.Manual) != 1 || len(plan.Alternatives) != 1 || plan.Alternatives[0].Fix.Type != FixExcludeOutbound {
		t.Fatalf("plan %+v", plan)
	}
}

func TestFixesNeverChangeInput(t *testing.T) {
	in := representativeInput()
	before := Build(in)
	Plan(before)
	after := Build(in)
	if !reflect.DeepEqual(before, after) {
		t.Error("Plan or Build changed the inventory")
	}
	_ = probe.OutcomeBanner
}
