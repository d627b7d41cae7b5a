package report

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// Small builders for hand-made inventories.

// tport is a TCP Service port with Istio's protocol decision filled in
// exactly as cluster.ConvertService does it.
func tport(name string, port int32, targetPort string, appProtocol string) cluster.ServicePort {
	var ap *string
	if appProtocol != "" {
		ap = &appProtocol
	}
	if targetPort == "" {
		targetPort = itoa(port)
	}
	return cluster.ServicePort{
		Name: name, Port: port, TargetPort: targetPort, Protocol: "TCP", AppProtocol: appProtocol,
		Resolved: cluster.ConvertProtocol(port, name, "TCP", ap),
	}
}

func uport(name string, port int32) cluster.ServicePort {
	return cluster.ServicePort{Name: name, Port: port, TargetPort: itoa(port), Protocol: "UDP",
		Resolved: cluster.ConvertProtocol(port, name, "UDP", nil)}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// pod is a running pod with the given sidecar, labels app=<app> and images.
func pod(ns, name, app string, sidecar bool, images ...string) cluster.Pod {
	return cluster.Pod{Namespace: ns, Name: name, Labels: map[string]string{"app": app}, IPs: []string{"10.0.0.1"},
		Phase: "Running", HasSidecar: sidecar, Images: images}
}

// svc is a Service selecting app=<app>, backed by the given pods.
func svc(ns, name, app string, backends []cluster.Pod, ports ...cluster.ServicePort) cluster.Service {
	s := cluster.Service{Namespace: ns, Name: name, Type: "ClusterIP", ClusterIP: "10.96.0.10",
		Selector: map[string]string{"app": app}, Ports: ports}
	for _, p := range backends {
		s.Backends = append(s.Backends, cluster.PodRef{Namespace: p.Namespace, Name: p.Name})
	}
	return s
}

// meshInv is an inventory with Istio installed and the given pods and Services.
func meshInv(pods []cluster.Pod, svcs ...cluster.Service) *cluster.Inventory {
	return &cluster.Inventory{
		IstioInstalled: true,
		Pods:           pods,
		Services:       svcs,
		Mesh:           cluster.MeshConfig{Found: true, Source: "istio-system/istio", RootNamespace: "istio-system"},
	}
}

func sePort(number uint32, name, protocol string) cluster.ServiceEntryPort {
	return cluster.ServiceEntryPort{Number: number, Name: name, Protocol: protocol, Resolved: cluster.ServiceEntryPortProtocol(protocol)}
}

func f64(v float64) *float64 { return &v }

func banner(firstByteMs float64, text, protocol string) probe.Result {
	return probe.Result{Outcome: probe.OutcomeBanner, ConnectMs: 0.5, FirstByteMs: f64(firstByteMs), Banner: text, Protocol: protocol}
}

func outcome(o probe.Outcome) probe.Result {
	return probe.Result{Outcome: o, ConnectMs: 0.5}
}

func silent() probe.Result { return outcome(probe.OutcomeSilent) }

const mysqlGreeting = "MySQL 8.4" // what matters is the protocol the prober names

func svcKey(ns, name string, port int32) target.TargetKey {
	return target.TargetKey{Kind: target.KindService, Namespace: ns, Name: name, Port: port}
}

func obs(k target.TargetKey, v target.Vantage, r probe.Result) target.Observation {
	return target.Observation{Target: k, Vantage: v, Result: r}
}

func fixTypes(f Finding) []string {
	out := []string{}
	for _, x := range f.Fixes {
		out = append(out, x.Type)
	}
	return out
}

// parseManifest parses one fix manifest into a generic object.
func parseManifest(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("manifest does not parse: %v\n%s", err, s)
	}
	return m
}

// path walks a parsed manifest: "spec", "ports", 0, "name".
func path(t *testing.T, obj any, keys ...any) any {
	t.Helper()
	cur := obj
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("at %v: not a map: %#v", k, cur)
			}
			cur = m[k]
		case int:
			l, ok := cur.([]any)
			if !ok || k >= len(l) {
				t.Fatalf("at %v: not a list long enough: %#v", k, cur)
			}
			cur = l[k]
		}
	}
	return cur
}

// portByNumber finds a Service (port) or ServiceEntry (number) port entry.
func portByNumber(t *testing.T, obj map[string]any, field string, n int) map[string]any {
	t.Helper()
	for _, it := range path(t, obj, "spec", "ports").([]any) {
		m := it.(map[string]any)
		if v, ok := m[field].(float64); ok && int(v) == n {
			return m
		}
	}
	t.Fatalf("no port %s=%d in %#v", field, n, obj)
	return nil
}

func onlyFinding(t *testing.T, r Report, k target.TargetKey) Finding {
	t.Helper()
	for _, f := range r.Findings {
		if f.Key() == k {
			return f
		}
	}
	t.Fatalf("no finding for %v in %d findings", k, len(r.Findings))
	return Finding{}
}

type engineCase struct {
	name    string
	in      Input
	key     target.TargetKey
	verdict Verdict
	// code is the rule that must give the verdict.
	code     Code
	scenario Scenario
	fixes    []string
	check    func(t *testing.T, f Finding)
}

func TestBuildRules(t *testing.T) {
	const ns = "shop"
	meshDB := pod(ns, "db-0", "db", true, "docker.io/library/mysql:8.4")
	plainDB := pod(ns, "db-0", "db", false, "docker.io/library/mysql:8.4")
	meshNoHint := pod(ns, "app-0", "app", true, "ghcr.io/acme/app:1.0")
	meshMail := pod(ns, "mail-0", "mail", true, "ghcr.io/acme/relay:1")
	plainDB2 := pod("legacy", "client-0", "client", false) // a client without a sidecar

	withTimeout := func(inv *cluster.Inventory, d time.Duration) *cluster.Inventory {
		inv.Mesh.ProtocolDetectionTimeout = d
		return inv
	}

	dbKey := svcKey(ns, "orders", 3307)
	dbSvc := func(p cluster.Pod) cluster.Service {
		return svc(ns, "orders", "db", []cluster.Pod{p}, tport("db", 3307, "3307", ""))
	}

	cases := []engineCase{
		// --- static ---
		{
			name: "sniffed port, mysql image: AT-RISK mesh-to-mesh",
			code: "SF0102",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB))},
			key:  dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"image:mysql"}) {
					t.Errorf("hints %v", f.Hints)
				}
				if !f.ServerInMesh || f.MTLSMode != "PERMISSIVE" {
					t.Errorf("serverInMesh %v mtls %q", f.ServerInMesh, f.MTLSMode)
				}
				m := parseManifest(t, f.Fixes[0].Manifest)
				if path(t, m, "kind") != "Service" || path(t, m, "metadata", "name") != "orders" || path(t, m, "metadata", "namespace") != ns {
					t.Errorf("appProtocol manifest names the wrong object:\n%s", f.Fixes[0].Manifest)
				}
				if p := portByNumber(t, m, "port", 3307); p["appProtocol"] != "tcp" || p["name"] != "db" || p["protocol"] != "TCP" {
					t.Errorf("appProtocol manifest port %v", p)
				}
				if p := portByNumber(t, parseManifest(t, f.Fixes[1].Manifest), "port", 3307); p["name"] != "tcp-db" {
					t.Errorf("rename manifest port %v", p)
				}
				if c := f.Fixes[2].Command; !strings.Contains(c, `"path":"/spec/ports/0/port","value":3306`) || !strings.Contains(c, `"value":3307`) {
					t.Errorf("well-known-port command %s", c)
				}
				if len(f.Evidence) != 0 {
					t.Errorf("static finding has evidence %v", f.Evidence)
				}
			},
		},
		{
			name: "port name smtp, server without sidecar: AT-RISK mesh-to-external",
			code: "SF0102",
			in: Input{Inventory: meshInv([]cluster.Pod{pod(ns, "relay-0", "relay", false, "ghcr.io/acme/relay:1")},
				svc(ns, "relay", "relay", []cluster.Pod{pod(ns, "relay-0", "relay", false)}, tport("smtp", 2526, "", "")))},
			key: svcKey(ns, "relay", 2526), verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"name:smtp"}) {
					t.Errorf("hints %v", f.Hints)
				}
				if f.ServerInMesh || f.MTLSMode != "" {
					t.Errorf("serverInMesh %v mtls %q", f.ServerInMesh, f.MTLSMode)
				}
				if !strings.Contains(f.Fixes[2].Command, `"value":25}`) {
					t.Errorf("well-known port for smtp: %s", f.Fixes[2].Command)
				}
			},
		},
		{
			name: "port 110 unnamed: AT-RISK from the port number",
			code: "SF0102",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "mailbox", "app", []cluster.Pod{meshNoHint}, tport("", 110, "", "")))},
			key:  svcKey(ns, "mailbox", 110), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"port:110/pop3"}) {
					t.Errorf("hints %v", f.Hints)
				}
				if p := portByNumber(t, parseManifest(t, f.Fixes[1].Manifest), "port", 110); p["name"] != "tcp" {
					t.Errorf("rename of an unnamed port: %v", p)
				}
			},
		},
		{
			name: "port 143: AT-RISK imap",
			code: "SF0102",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "mailbox", "app", []cluster.Pod{meshNoHint}, tport("mailbox", 143, "", "")))},
			key:  svcKey(ns, "mailbox", 143), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"port:143/imap"}) {
					t.Errorf("hints %v", f.Hints)
				}
			},
		},
		{
			name: "port 4222 named client: AT-RISK nats",
			code: "SF0102",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "bus", "app", []cluster.Pod{meshNoHint}, tport("client", 4222, "", "")))},
			key:  svcKey(ns, "bus", 4222), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "Service name hint: AT-RISK",
			code: "SF0102",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "mariadb", "app", []cluster.Pod{meshNoHint}, tport("db", 3307, "", "")))},
			key:  svcKey(ns, "mariadb", 3307), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"service:mariadb"}) {
					t.Errorf("hints %v", f.Hints)
				}
			},
		},
		{
			name: "sniffed, nothing hints server-first: OK",
			code: "SF0107",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "api", "app", []cluster.Pod{meshNoHint}, tport("api", 8080, "", "")))},
			key:  svcKey(ns, "api", 8080), verdict: OK, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "tcp- name declares TCP: OK",
			code: "SF0109",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshDB}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("tcp-mysql", 3307, "", "")))},
			key:  dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if f.Protocol != "TCP" || f.ProtocolSource != "name" {
					t.Errorf("protocol %s/%s", f.Protocol, f.ProtocolSource)
				}
			},
		},
		{
			// The seed's third scenario without probes: a declared port,
			// PERMISSIVE, and clients without a sidecar in the cluster.
			name: "declared-TCP mysql under PERMISSIVE, pods without a sidecar exist: AT-RISK external-to-mesh",
			code: "SF0203",
			in: Input{Inventory: func() *cluster.Inventory {
				a, b, c := pod("batch", "report-0", "report", false), pod("batch", "report-1", "report", false), pod("legacy", "cron-0", "cron", false)
				done := pod("legacy", "job-0", "job", false)
				done.Phase = "Succeeded"
				amb := pod("ambient", "client-0", "client", false)
				inv := meshInv([]cluster.Pod{meshDB, a, b, c, done, amb}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("tcp-mysql", 3307, "", "")))
				inv.Namespaces = []cluster.Namespace{{Name: "ambient", Ambient: true}}
				return inv
			}()},
			key: dbKey, verdict: AtRisk, scenario: ExternalToMesh,
			fixes: []string{FixPeerAuthentication, FixExcludeInbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "3 pod(s) without a sidecar in 2 namespace(s): batch, legacy") {
					t.Errorf("reason %q does not say how many and where", f.Reason)
				}
				assertPathCodes(t, f, "SF0203", "SF0109")
				if f.Paths[1].Scenario != MeshToMesh || f.Paths[1].Verdict != OK {
					t.Errorf("mesh path %+v", f.Paths[1])
				}
			},
		},
		{
			name: "declared-TCP mysql under PERMISSIVE with protocolDetectionTimeout: AT-RISK external-to-mesh, delayed",
			code: "SF0204",
			in:   Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB, plainDB2}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("tcp-mysql", 3307, "", ""))), 2*time.Second)},
			key:  dbKey, verdict: AtRisk, scenario: ExternalToMesh,
			fixes: []string{FixPeerAuthentication, FixExcludeInbound},
		},
		{
			name: "declared-TCP mysql under PERMISSIVE, every pod in the mesh: OK, one path",
			code: "SF0109",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshDB}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("tcp-mysql", 3307, "", "")))},
			key:  dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) { assertPathCodes(t, f, "SF0109") },
		},
		{
			// Issue 13: the external-to-mesh path is listed in static mode
			// under STRICT too, as an outside probe would judge it
			// (SF0201/SF0202): rejected, with the mesh-client fix first.
			name: "declared-TCP mysql under STRICT with pods without a sidecar: MTLS-REJECTED external-to-mesh path, OK mesh path",
			code: "SF0205",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshDB, plainDB2}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("tcp-mysql", 3307, "", "")))
				inv.PeerAuthentications = []cluster.PeerAuthentication{{Namespace: ns, Name: "strict", Mode: cluster.MTLSStrict}}
				return inv
			}()},
			key: dbKey, verdict: MTLSRejected, scenario: ExternalToMesh, fixes: []string{FixMeshClient, FixPeerAuthentication, FixExcludeInbound},
			check: func(t *testing.T, f Finding) {
				assertPathCodes(t, f, "SF0205", "SF0109")
				if !strings.Contains(f.Reason, "1 pod(s) without a sidecar in 1 namespace(s): legacy") {
					t.Errorf("reason %q does not name the clients", f.Reason)
				}
			},
		},
		{
			name: "appProtocol tcp: OK",
			code: "SF0109",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshDB}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("db", 3307, "", "tcp")))},
			key:  dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if f.ProtocolSource != "appProtocol" {
					t.Errorf("source %s", f.ProtocolSource)
				}
			},
		},
		{
			name: "well-known 3306 unnamed: OK",
			code: "SF0109",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshDB}, svc(ns, "orders", "db", []cluster.Pod{meshDB}, tport("", 3306, "", "")))},
			key:  svcKey(ns, "orders", 3306), verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if f.Protocol != "TCP" || f.ProtocolSource != "well-known-port" {
					t.Errorf("protocol %s/%s", f.Protocol, f.ProtocolSource)
				}
			},
		},
		{
			name: "appProtocol trap: tcp-nats with nats.io/client is sniffed",
			code: "SF0104",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint},
				svc(ns, "nats", "app", []cluster.Pod{meshNoHint}, tport("tcp-nats", 4222, "", "nats.io/client"), tport("tcp-cluster", 6222, "", "")))},
			key: svcKey(ns, "nats", 4222), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !f.AppProtocolTrap || f.Protocol != "auto" {
					t.Errorf("trap %v protocol %s", f.AppProtocolTrap, f.Protocol)
				}
				if !strings.Contains(f.Reason, "nats.io/client") || !strings.Contains(f.Fixes[0].Title, "replace appProtocol") {
					t.Errorf("reason %q title %q", f.Reason, f.Fixes[0].Title)
				}
				m := parseManifest(t, f.Fixes[0].Manifest)
				if p := portByNumber(t, m, "port", 4222); p["appProtocol"] != "tcp" || p["name"] != "tcp-nats" {
					t.Errorf("port %v", p)
				}
				if p := portByNumber(t, m, "port", 6222); p["name"] != "tcp-cluster" || p["appProtocol"] != nil {
					t.Errorf("other port changed: %v", p)
				}
			},
		},
		{
			name: "HTTP-declared port named for mysql: AT-RISK",
			code: "SF0108",
			in: Input{Inventory: meshInv([]cluster.Pod{pod(ns, "db-0", "db", true, "bitnami/mariadb:11.4")},
				svc(ns, "orders", "db", []cluster.Pod{pod(ns, "db-0", "db", true)}, tport("http-mysql", 8080, "", "")))},
			key: svcKey(ns, "orders", 8080), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "declared HTTP") {
					t.Errorf("reason %q", f.Reason)
				}
				if p := portByNumber(t, parseManifest(t, f.Fixes[1].Manifest), "port", 8080); p["name"] != "tcp-mysql" {
					t.Errorf("rename %v", p)
				}
			},
		},
		{
			// Only the image hints: databases often carry an HTTP metrics
			// port beside the real one, so an HTTP port is not suspect on
			// the image alone.
			name: "HTTP-declared port, mariadb image only: OK",
			code: "SF0109",
			in: Input{Inventory: meshInv([]cluster.Pod{pod(ns, "db-0", "db", true, "bitnami/mariadb:11.4")},
				svc(ns, "orders", "db", []cluster.Pod{pod(ns, "db-0", "db", true)}, tport("http-metrics", 8080, "", "")))},
			key: svcKey(ns, "orders", 8080), verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"image:mariadb"}) {
					t.Errorf("hints %v", f.Hints)
				}
			},
		},
		{
			name: "UDP: OK",
			code: "SF0101",
			in:   Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "dns", "app", []cluster.Pod{meshNoHint}, uport("nats", 4222)))},
			key:  svcKey(ns, "dns", 4222), verdict: OK, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "Istio absent and no sidecars: OK despite hints",
			code: "SF0501",
			in: Input{Inventory: &cluster.Inventory{Pods: []cluster.Pod{plainDB},
				Services: []cluster.Service{dbSvc(plainDB)}}},
			key: dbKey, verdict: OK, scenario: MeshToExternal, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "not installed") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "Istio CRDs absent but a pod has a sidecar: still judged",
			code: "SF0102",
			in:   Input{Inventory: &cluster.Inventory{Pods: []cluster.Pod{meshDB}, Services: []cluster.Service{dbSvc(meshDB)}}},
			key:  dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},

		// --- active ---
		{
			name: "direct banner + mesh silent, server in mesh: DEADLOCK mesh-to-mesh",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.2, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: Deadlock, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if len(f.Evidence) != 2 || f.Evidence[0].Vantage != target.VantageDirect || f.Evidence[1].Outcome != "silent" {
					t.Errorf("evidence %+v", f.Evidence)
				}
				if !strings.Contains(f.Reason, "mysql banner") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "direct banner + mesh silent, server without sidecar: DEADLOCK mesh-to-external",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{plainDB}, dbSvc(plainDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.2, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: Deadlock, scenario: MeshToExternal,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS},
		},
		{
			name: "self in mesh counts as the mesh path",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.2, mysqlGreeting, "mysql")),
				{Target: dbKey, Vantage: target.VantageSelf, InMesh: true, Result: silent()},
			}},
			key: dbKey, verdict: Deadlock, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				// The evidence says the self probe went through a sidecar,
				// and ranks it as the mesh path, after the direct proof.
				if len(f.Evidence) != 2 || f.Evidence[1].Vantage != target.VantageSelf || f.Evidence[1].InMesh == nil || !*f.Evidence[1].InMesh {
					t.Errorf("evidence %+v", f.Evidence)
				}
				if f.Evidence[0].InMesh != nil {
					t.Errorf("direct evidence carries inMesh: %+v", f.Evidence[0])
				}
				if got := proofCell(f); !strings.Contains(got, "self(mesh) silent") {
					t.Errorf("proof cell %q", got)
				}
			},
		},
		{
			name: "mesh silent, no direct probe: AT-RISK, never DEADLOCK",
			code: "SF0406",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "no direct proof") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "mesh silent, direct refused: AT-RISK, never DEADLOCK",
			code: "SF0406",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, outcome(probe.OutcomeRefused)),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "direct silent + mesh silent: CLIENT-FIRST",
			code: "SF0405",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, silent()),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: ClientFirst, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "direct silent only, sniffed: CLIENT-FIRST",
			code: "SF0414",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, silent()),
			}},
			key: dbKey, verdict: ClientFirst, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "direct banner only: AT-RISK with the proof that the server speaks first",
			code: "SF0412",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "api", "app", []cluster.Pod{meshNoHint}, tport("api", 8080, "", ""))),
				Observations: []target.Observation{obs(svcKey(ns, "api", 8080), target.VantageDirect, banner(2, "220 mail ESMTP", "smtp"))}},
			key: svcKey(ns, "api", 8080), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "speaks first") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "HTTP-declared port, direct banner only: AT-RISK",
			code: "SF0413",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "api", "app", []cluster.Pod{meshNoHint}, tport("http-api", 8080, "", ""))),
				Observations: []target.Observation{obs(svcKey(ns, "api", 8080), target.VantageDirect, banner(2, "220 mail ESMTP", "smtp"))}},
			key: svcKey(ns, "api", 8080), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "declared HTTP") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "Istio absent, direct banner: still OK, nothing sniffs",
			code: "SF0501",
			in: Input{Inventory: &cluster.Inventory{Pods: []cluster.Pod{plainDB}, Services: []cluster.Service{dbSvc(plainDB)}},
				Observations: []target.Observation{obs(dbKey, target.VantageDirect, banner(1.2, mysqlGreeting, "mysql"))}},
			key: dbKey, verdict: OK, scenario: MeshToExternal, fixes: []string{},
		},
		{
			name: "mesh banner after 80% of protocolDetectionTimeout, direct fast: DELAYED",
			code: "SF0403",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, banner(4100, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: Delayed, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "5s") || !strings.Contains(f.Reason, "4.1s") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "mesh banner well before the detection timeout: OK",
			code: "SF0402",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, banner(3900, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "slow server, slow both ways: not DELAYED",
			code: "SF0402",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(4500, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, banner(4600, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "mesh banner fast: OK",
			code: "SF0402",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, banner(2.5, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "sniffed port, mysql image, protocolDetectionTimeout set: AT-RISK, delayed rather than hung",
			code: "SF0103",
			in:   Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second)},
			key:  dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "appProtocol trap with hints and protocolDetectionTimeout: AT-RISK",
			code: "SF0105",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshNoHint},
				svc(ns, "nats", "app", []cluster.Pod{meshNoHint}, tport("tcp-nats", 4222, "", "nats.io/client"))), 5*time.Second)},
			key: svcKey(ns, "nats", 4222), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "appProtocol trap without hints: AT-RISK, the declaration failed",
			code: "SF0106",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint},
				svc(ns, "api", "app", []cluster.Pod{meshNoHint}, tport("tcp-api", 9000, "", "acme.io/rpc")))},
			key: svcKey(ns, "api", 9000), verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixTLS},
		},
		{
			name: "mesh banner after the detection timeout, no direct probe: DELAYED",
			code: "SF0404",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), Observations: []target.Observation{
				obs(dbKey, target.VantageMeshClient, banner(4100, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: Delayed, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "mesh silent, no hints, no direct probe: CLIENT-FIRST",
			code: "SF0407",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc(ns, "api", "app", []cluster.Pod{meshNoHint}, tport("api", 8080, "", ""))),
				Observations: []target.Observation{obs(svcKey(ns, "api", 8080), target.VantageMeshClient, silent())}},
			key: svcKey(ns, "api", 8080), verdict: ClientFirst, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "direct banner, mesh path closed without a byte: AT-RISK, not DEADLOCK",
			code: "SF0408",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, outcome(probe.OutcomeClosed)),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			// The false DEADLOCK of issue 13: the probe gave up (3s)
			// before the mesh would have (5s).
			name: "mesh silent within a wait shorter than protocolDetectionTimeout: AT-RISK, never DEADLOCK",
			code: "SF0502",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), BannerWait: 3 * time.Second, Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "--timeout 7s") || !strings.Contains(f.Reason, "protocolDetectionTimeout 5s") {
					t.Errorf("reason %q does not say what to pass", f.Reason)
				}
			},
		},
		{
			name: "mesh silent, wait unknown, protocolDetectionTimeout set: AT-RISK",
			code: "SF0502",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "mesh silent past protocolDetectionTimeout: DEADLOCK",
			code: "SF0401",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), 5*time.Second), BannerWait: 7 * time.Second, Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
			}},
			key: dbKey, verdict: Deadlock, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
		},
		{
			name: "outside client silent within a wait shorter than the inbound timeout: AT-RISK",
			code: "SF0502",
			in: Input{Inventory: withTimeout(meshInv([]cluster.Pod{meshMail}, svc(ns, "mail", "mail", []cluster.Pod{meshMail}, tport("tcp-smtp", 2525, "", ""))), 4*time.Second),
				BannerWait: 4 * time.Second, Observations: []target.Observation{
					obs(svcKey(ns, "mail", 2525), target.VantageDirect, banner(3, "220 mail ESMTP\r\n", "smtp")),
					obs(svcKey(ns, "mail", 2525), target.VantageOutsideClient, silent()),
				}},
			key: svcKey(ns, "mail", 2525), verdict: AtRisk, scenario: ExternalToMesh,
			fixes: []string{FixPeerAuthentication, FixExcludeInbound},
		},
		{
			// ALLOW_ANY_DYNAMIC_DNS: the 15001 catch-all's HTTP inspector
			// waits Envoy's 15s even with protocolDetectionTimeout 0s.
			name: "external target, ALLOW_ANY_DYNAMIC_DNS, silent within 15s: AT-RISK",
			code: "SF0502",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshNoHint})
				inv.Mesh.OutboundTrafficPolicy = cluster.OutboundAllowAnyDynamicDNS
				return inv
			}(), External: []target.ExternalTarget{{Host: "db.example.com", Port: 10001}}, BannerWait: 3 * time.Second,
				Observations: []target.Observation{
					obs(target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, target.VantageOutsideClient, banner(5, mysqlGreeting, "mysql")),
					obs(target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, target.VantageMeshClient, silent()),
				}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "15s") || !strings.Contains(f.Reason, "--timeout 17s") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "outside client silent, direct banner, PERMISSIVE on a declared port: DEADLOCK external-to-mesh",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{meshMail}, svc(ns, "mail", "mail", []cluster.Pod{meshMail}, tport("tcp-smtp", 2525, "", ""))),
				Observations: []target.Observation{
					obs(svcKey(ns, "mail", 2525), target.VantageDirect, banner(3, "220 mail ESMTP Postfix\r\n", "smtp")),
					obs(svcKey(ns, "mail", 2525), target.VantageOutsideClient, silent()),
				}},
			key: svcKey(ns, "mail", 2525), verdict: Deadlock, scenario: ExternalToMesh,
			fixes: []string{FixPeerAuthentication, FixExcludeInbound},
			check: func(t *testing.T, f Finding) {
				if f.MTLSMode != "PERMISSIVE" || f.Protocol != "TCP" {
					t.Errorf("mtls %q protocol %q", f.MTLSMode, f.Protocol)
				}
				fix := f.Fixes[0]
				if !fix.WeakensSecurity {
					t.Error("peer-authentication fix does not say it weakens security")
				}
				m := parseManifest(t, fix.Manifest)
				if path(t, m, "apiVersion") != "security.istio.io/v1" || path(t, m, "kind") != "PeerAuthentication" ||
					path(t, m, "metadata", "namespace") != ns || path(t, m, "metadata", "labels", ManagedByLabel) != ManagerName {
					t.Errorf("manifest\n%s", fix.Manifest)
				}
				if path(t, m, "spec", "selector", "matchLabels", "app") != "mail" || path(t, m, "spec", "portLevelMtls", "2525", "mode") != "DISABLE" {
					t.Errorf("manifest\n%s", fix.Manifest)
				}
				if path(t, m, "spec", "mtls") != nil {
					t.Errorf("a new policy must not set a workload-wide mode:\n%s", fix.Manifest)
				}
			},
		},
		{
			name: "outside client reset under STRICT: MTLS-REJECTED",
			code: "SF0202",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshMail}, svc(ns, "mail", "mail", []cluster.Pod{meshMail}, tport("tcp-smtp", 2525, "", "")))
				inv.PeerAuthentications = []cluster.PeerAuthentication{{Namespace: ns, Name: "default", Mode: cluster.MTLSStrict}}
				return inv
			}(), Observations: []target.Observation{
				obs(svcKey(ns, "mail", 2525), target.VantageDirect, banner(3, "220 mail ESMTP\r\n", "smtp")),
				obs(svcKey(ns, "mail", 2525), target.VantageOutsideClient, outcome(probe.OutcomeReset)),
			}},
			key: svcKey(ns, "mail", 2525), verdict: MTLSRejected, scenario: ExternalToMesh,
			fixes: []string{FixMeshClient, FixPeerAuthentication, FixExcludeInbound},
			check: func(t *testing.T, f Finding) {
				if f.MTLSMode != "STRICT" {
					t.Errorf("mtls %q", f.MTLSMode)
				}
			},
		},
		{
			name: "outside client reset under PERMISSIVE: not MTLS-REJECTED",
			code: "SF0409",
			in: Input{Inventory: meshInv([]cluster.Pod{meshMail}, svc(ns, "mail", "mail", []cluster.Pod{meshMail}, tport("tcp-smtp", 2525, "", ""))),
				Observations: []target.Observation{
					obs(svcKey(ns, "mail", 2525), target.VantageOutsideClient, outcome(probe.OutcomeReset)),
				}},
			key: svcKey(ns, "mail", 2525), verdict: Unreachable, scenario: ExternalToMesh, fixes: []string{},
		},
		{
			name: "mesh and outside paths: the worst wins",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{meshMail}, svc(ns, "mail", "mail", []cluster.Pod{meshMail}, tport("tcp-smtp", 2525, "", ""))),
				Observations: []target.Observation{
					obs(svcKey(ns, "mail", 2525), target.VantageDirect, banner(3, "220 mail ESMTP\r\n", "smtp")),
					obs(svcKey(ns, "mail", 2525), target.VantageMeshClient, banner(4, "220 mail ESMTP\r\n", "smtp")),
					obs(svcKey(ns, "mail", 2525), target.VantageOutsideClient, silent()),
				}},
			key: svcKey(ns, "mail", 2525), verdict: Deadlock, scenario: ExternalToMesh,
			fixes: []string{FixPeerAuthentication, FixExcludeInbound},
		},
		{
			name: "mesh probes disagree: not DEADLOCK, and a note",
			code: "SF0402",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, banner(1.5, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageMeshClient, silent()),
				obs(dbKey, target.VantageMeshClient, banner(2, mysqlGreeting, "mysql")),
			}},
			key: dbKey, verdict: OK, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if len(f.Notes) == 0 || !strings.Contains(strings.Join(f.Notes, "\n"), "disagree") {
					t.Errorf("notes %v", f.Notes)
				}
				if len(f.Evidence) != 3 {
					t.Errorf("evidence %v", f.Evidence)
				}
			},
		},
		{
			name: "all refused: UNREACHABLE",
			code: "SF0410",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, outcome(probe.OutcomeRefused)),
				obs(dbKey, target.VantageMeshClient, outcome(probe.OutcomeRefused)),
			}},
			key: dbKey, verdict: Unreachable, scenario: MeshToMesh, fixes: []string{},
		},
		{
			name: "connect timeout through the mesh: UNREACHABLE",
			code: "SF0410",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageMeshClient, probe.Result{Outcome: probe.OutcomeConnectTimeout, ConnectMs: 3000, Error: "i/o timeout"}),
			}},
			key: dbKey, verdict: Unreachable, scenario: MeshToMesh, fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Reason, "i/o timeout") {
					t.Errorf("reason %q", f.Reason)
				}
			},
		},
		{
			name: "only the direct path, refused: static verdict kept, with a note",
			code: "SF0102",
			in: Input{Inventory: meshInv([]cluster.Pod{meshDB}, dbSvc(meshDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageDirect, outcome(probe.OutcomeRefused)),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToMesh,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS, FixExcludeInbound, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(strings.Join(f.Notes, "\n"), "could not connect") {
					t.Errorf("notes %v", f.Notes)
				}
			},
		},

		// --- ServiceEntries and external targets ---
		{
			name: "ServiceEntry port without protocol, smtp host: AT-RISK with a service-entry fix",
			code: "SF0102",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv(nil)
				inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "mail", Hosts: []string{"smtp.example.com"},
					Location: "MESH_EXTERNAL", Resolution: "DNS",
					Ports: []cluster.ServiceEntryPort{sePort(2525, "mail", ""), sePort(443, "https", "HTTPS")}}}
				return inv
			}()},
			key: target.TargetKey{Kind: target.KindServiceEntry, Namespace: ns, Name: "mail", Port: 2525}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.Hints, []string{"host:smtp", "port:2525/smtp"}) {
					t.Errorf("hints %v", f.Hints)
				}
				fix := f.Fixes[0]
				m := parseManifest(t, fix.Manifest)
				if path(t, m, "apiVersion") != "networking.istio.io/v1" || path(t, m, "kind") != "ServiceEntry" || path(t, m, "metadata", "name") != "mail" {
					t.Errorf("manifest\n%s", fix.Manifest)
				}
				if p := portByNumber(t, m, "number", 2525); p["protocol"] != "TCP" || p["name"] != "mail" {
					t.Errorf("port %v", p)
				}
				if p := portByNumber(t, m, "number", 443); p["protocol"] != "HTTPS" {
					t.Errorf("other port %v", p)
				}
				if h := path(t, m, "spec", "hosts"); !reflect.DeepEqual(h, []any{"smtp.example.com"}) {
					t.Errorf("hosts %v", h)
				}
				if !strings.Contains(strings.Join(fix.Notes, "\n"), "ISTIO_META_DNS_AUTO_ALLOCATE") {
					t.Errorf("no DNS note for a host-name ServiceEntry without addresses: %v", fix.Notes)
				}
			},
		},
		{
			name: "ServiceEntry with DNS auto-allocation: no DNS note",
			code: "SF0102",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv(nil)
				inv.Mesh.DNSCapture, inv.Mesh.DNSAutoAllocate = true, true
				inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "mail", Hosts: []string{"smtp.example.com"},
					Ports: []cluster.ServiceEntryPort{sePort(2525, "", "")}}}
				return inv
			}()},
			key: target.TargetKey{Kind: target.KindServiceEntry, Namespace: ns, Name: "mail", Port: 2525}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if strings.Contains(strings.Join(f.Fixes[0].Notes, "\n"), "ISTIO_META_DNS") {
					t.Errorf("DNS note although auto-allocation is on: %v", f.Fixes[0].Notes)
				}
				if p := portByNumber(t, parseManifest(t, f.Fixes[0].Manifest), "number", 2525); p["name"] != "tcp-2525" {
					t.Errorf("an unnamed ServiceEntry port gets a name: %v", p)
				}
			},
		},
		{
			name: "ServiceEntry declared TCP, no addresses, colliding with an in-mesh HTTP Service: AT-RISK",
			code: "SF0301",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", "")))
				inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "legacy-db", Hosts: []string{"mysql.legacy.example.com"},
					Location: "MESH_EXTERNAL", Resolution: "STATIC", Endpoints: []string{"192.0.2.7"},
					Ports: []cluster.ServiceEntryPort{sePort(10000, "tcp-db", "TCP")}}}
				return inv
			}()},
			key: target.TargetKey{Kind: target.KindServiceEntry, Namespace: ns, Name: "legacy-db", Port: 10000}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				if !reflect.DeepEqual(f.CollidesWith, []string{"web/frontend:http-web (HTTP)"}) {
					t.Errorf("collides with %v", f.CollidesWith)
				}
				m := parseManifest(t, f.Fixes[0].Manifest)
				if a := path(t, m, "spec", "addresses"); !reflect.DeepEqual(a, []any{"192.0.2.7"}) {
					t.Errorf("addresses %v\n%s", a, f.Fixes[0].Manifest)
				}
				if p := portByNumber(t, m, "number", 10000); p["protocol"] != "TCP" {
					t.Errorf("port %v", p)
				}
			},
		},
		{
			name: "ServiceEntry declared TCP with addresses, same collision: OK",
			code: "SF0109",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", "")))
				inv.ServiceEntries = []cluster.ServiceEntry{{Namespace: ns, Name: "legacy-db", Hosts: []string{"mysql.legacy.example.com"},
					Addresses: []string{"192.0.2.7"}, Ports: []cluster.ServiceEntryPort{sePort(10000, "tcp-db", "TCP")}}}
				return inv
			}()},
			key: target.TargetKey{Kind: target.KindServiceEntry, Namespace: ns, Name: "legacy-db", Port: 10000}, verdict: OK, scenario: MeshToExternal,
			fixes: []string{},
		},
		{
			name: "external target on a port an in-mesh HTTP Service uses: AT-RISK",
			code: "SF0302",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", ""))),
				External: []target.ExternalTarget{{Host: "db.example.com", Port: 10000}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				m := parseManifest(t, f.Fixes[0].Manifest)
				if path(t, m, "metadata", "namespace") != "istio-system" || path(t, m, "spec", "resolution") != "DNS" ||
					path(t, m, "spec", "location") != "MESH_EXTERNAL" || path(t, m, "spec", "ports", 0, "protocol") != "TCP" ||
					!reflect.DeepEqual(path(t, m, "spec", "hosts"), []any{"db.example.com"}) {
					t.Errorf("manifest\n%s", f.Fixes[0].Manifest)
				}
			},
		},
		{
			name: "external IP target colliding: ServiceEntry by address",
			code: "SF0302",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http", 10000, "", ""))),
				External: []target.ExternalTarget{{Host: "192.0.2.9", Port: 10000}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "192.0.2.9", Port: 10000}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
			check: func(t *testing.T, f Finding) {
				m := parseManifest(t, f.Fixes[0].Manifest)
				if !reflect.DeepEqual(path(t, m, "spec", "addresses"), []any{"192.0.2.9"}) || path(t, m, "spec", "resolution") != "NONE" {
					t.Errorf("manifest\n%s", f.Fixes[0].Manifest)
				}
			},
		},
		{
			name: "external target on a free port: OK",
			code: "SF0303",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", ""))),
				External: []target.ExternalTarget{{Host: "db.example.com", Port: 10001}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, verdict: OK, scenario: MeshToExternal,
			fixes: []string{},
			check: func(t *testing.T, f Finding) {
				if f.Protocol != "TCP" {
					t.Errorf("protocol %q", f.Protocol)
				}
			},
		},
		{
			name: "external target under REGISTRY_ONLY: AT-RISK, BlackHoleCluster",
			code: "SF0304",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshNoHint})
				inv.Mesh.OutboundTrafficPolicy = cluster.OutboundRegistryOnly
				return inv
			}(), External: []target.ExternalTarget{{Host: "db.example.com", Port: 10001}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
		},
		{
			name: "external target under ALLOW_ANY_DYNAMIC_DNS: AT-RISK, the catch-all inspects",
			code: "SF0305",
			in: Input{Inventory: func() *cluster.Inventory {
				inv := meshInv([]cluster.Pod{meshNoHint})
				inv.Mesh.OutboundTrafficPolicy = cluster.OutboundAllowAnyDynamicDNS
				return inv
			}(), External: []target.ExternalTarget{{Host: "db.example.com", Port: 10001}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10001}, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
		},
		{
			// A sniffed ClusterIP port binds its VIP, not 0.0.0.0: no collision.
			name: "external target on the port of a sniffed in-mesh Service: OK",
			code: "SF0303",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("web", 10000, "", ""))),
				External: []target.ExternalTarget{{Host: "db.example.com", Port: 10000}}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}, verdict: OK, scenario: MeshToExternal,
			fixes: []string{},
		},
		{
			name: "client without sidecar and server without one: that is the direct path",
			code: "SF0411",
			in: Input{Inventory: meshInv([]cluster.Pod{plainDB}, dbSvc(plainDB)), Observations: []target.Observation{
				obs(dbKey, target.VantageOutsideClient, banner(1.2, mysqlGreeting, "mysql")),
				obs(dbKey, target.VantageSelf, silent()),
			}},
			key: dbKey, verdict: AtRisk, scenario: MeshToExternal,
			fixes: []string{FixAppProtocol, FixRename, FixWellKnownPort, FixTLS},
			check: func(t *testing.T, f Finding) {
				if !strings.Contains(f.Notes[len(f.Notes)-1], "disagree") {
					t.Errorf("notes %v", f.Notes)
				}
			},
		},
		{
			name: "external target, direct banner + mesh silent: DEADLOCK mesh-to-external",
			code: "SF0401",
			in: Input{Inventory: meshInv([]cluster.Pod{meshNoHint}, svc("web", "frontend", "app", []cluster.Pod{meshNoHint}, tport("http-web", 10000, "", ""))),
				External: []target.ExternalTarget{{Host: "db.example.com", Port: 10000}},
				Observations: []target.Observation{
					obs(target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}, target.VantageOutsideClient, banner(5, mysqlGreeting, "mysql")),
					obs(target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}, target.VantageMeshClient, silent()),
				}},
			key: target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}, verdict: Deadlock, scenario: MeshToExternal,
			fixes: []string{FixServiceEntry, FixExcludeOutbound},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Build(c.in)
			f := onlyFinding(t, r, c.key)
			if f.Verdict != c.verdict {
				t.Errorf("verdict %s, want %s (reason: %s)", f.Verdict, c.verdict, f.Reason)
			}
			assertCode(t, f, c.code)
			if f.Scenario != c.scenario {
				t.Errorf("scenario %q, want %q", f.Scenario, c.scenario)
			}
			if got := fixTypes(f); !reflect.DeepEqual(got, c.fixes) {
				t.Errorf("fixes %v, want %v", got, c.fixes)
			}
			if f.Reason == "" {
				t.Error("empty reason")
			}
			for _, fix := range f.Fixes {
				if fix.Manifest != "" {
					parseManifest(t, fix.Manifest)
				}
			}
			if c.check != nil && !t.Failed() {
				c.check(t, f)
			}
			if r.Summary[f.Verdict] == 0 {
				t.Errorf("summary %v does not count %s", r.Summary, f.Verdict)
			}
			if r.Static != (len(c.in.Observations) == 0) {
				t.Errorf("static %v with %d observations", r.Static, len(c.in.Observations))
			}
		})
	}
}

func TestBuildIsPure(t *testing.T) {
	in := representativeInput()
	a, b := Build(in), Build(in)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("Build is not deterministic")
	}
}

func TestBuildSortsWorstFirst(t *testing.T) {
	r := Build(representativeInput())
	if len(r.Findings) < len(Verdicts) {
		t.Fatalf("only %d findings", len(r.Findings))
	}
	seen := map[Verdict]bool{}
	for i, f := range r.Findings {
		seen[f.Verdict] = true
		if i == 0 {
			continue
		}
		p := r.Findings[i-1]
		switch {
		case p.Verdict.Severity() < f.Verdict.Severity():
		case p.Verdict.Severity() > f.Verdict.Severity():
			t.Errorf("finding %d (%s) after a better one (%s)", i, f.Verdict, p.Verdict)
		case p.Namespace > f.Namespace,
			p.Namespace == f.Namespace && p.Kind > f.Kind,
			p.Namespace == f.Namespace && p.Kind == f.Kind && p.Name > f.Name,
			p.Namespace == f.Namespace && p.Kind == f.Kind && p.Name == f.Name && p.Port >= f.Port:
			t.Errorf("findings %d and %d out of order: %v then %v", i-1, i, p.Key(), f.Key())
		}
	}
	for _, v := range Verdicts {
		if !seen[v] {
			t.Errorf("the representative report has no %s finding", v)
		}
	}
	total := 0
	for _, n := range r.Summary {
		total += n
	}
	if total != len(r.Findings) {
		t.Errorf("summary counts %d of %d findings", total, len(r.Findings))
	}
}

func TestVerdictSeverity(t *testing.T) {
	for i, v := range Verdicts {
		if v.Severity() != i {
			t.Errorf("%s severity %d", v, v.Severity())
		}
	}
	if Verdict("NOPE").Severity() != len(Verdicts) {
		t.Error("unknown verdict is not ranked last")
	}
	affected := map[Verdict]bool{Deadlock: true, MTLSRejected: true, Delayed: true, AtRisk: true}
	for _, v := range Verdicts {
		if v.Affected() != affected[v] {
			t.Errorf("%s affected %v", v, v.Affected())
		}
	}
}

func TestBuildAmbientAndWarnings(t *testing.T) {
	inv := meshInv(nil)
	inv.Warnings = []string{"cannot list peerauthentications"}
	inv.Namespaces = []cluster.Namespace{{Name: "amb", Ambient: true}, {Name: "plain"}}
	r := Build(Input{Inventory: inv})
	if len(r.Warnings) != 2 || !strings.Contains(r.Warnings[1], "amb") {
		t.Errorf("warnings %v", r.Warnings)
	}
	if len(inv.Warnings) != 1 {
		t.Error("Build changed the inventory's warnings")
	}
	if !r.Static || len(r.Findings) != 0 {
		t.Errorf("static %v findings %d", r.Static, len(r.Findings))
	}
	if r := Build(Input{}); len(r.Findings) != 0 || r.Summary == nil {
		t.Errorf("nil inventory: %+v", r)
	}
}

func TestBuildNamedTargetPort(t *testing.T) {
	p := pod("shop", "mail-0", "mail", true, "postfix")
	p.ContainerPorts = map[string]int32{"smtp": 2525}
	inv := meshInv([]cluster.Pod{p}, svc("shop", "mail", "mail", []cluster.Pod{p}, tport("tcp-mail", 25, "smtp", "")))
	inv.PeerAuthentications = []cluster.PeerAuthentication{{Namespace: "shop", Name: "mail", Selector: map[string]string{"app": "mail"},
		Mode: cluster.MTLSPermissive, PortModes: map[uint32]cluster.MTLSMode{2525: cluster.MTLSStrict}}}
	r := Build(Input{Inventory: inv})
	f := onlyFinding(t, r, svcKey("shop", "mail", 25))
	if f.TargetPort != "2525" || f.MTLSMode != "STRICT" {
		t.Errorf("targetPort %q mtls %q", f.TargetPort, f.MTLSMode)
	}
	// An unknown named targetPort: mTLS is judged without the port, and said so.
	inv.Services[0].Ports[0].TargetPort = "nope"
	f = onlyFinding(t, Build(Input{Inventory: inv}), svcKey("shop", "mail", 25))
	if f.TargetPort != "nope" || f.MTLSMode != "PERMISSIVE" || !strings.Contains(strings.Join(f.Notes, "\n"), `"nope"`) {
		t.Errorf("targetPort %q mtls %q notes %v", f.TargetPort, f.MTLSMode, f.Notes)
	}
}

// representativeInput is a small cluster with one finding of every verdict
// (and every scenario), used by the sorting, plan and golden-file tests.
func representativeInput() Input {
	const shop, mail, web = "shop", "mail", "web"
	db := pod(shop, "orders-db-0", "orders-db", true, "docker.io/library/mysql:8.4")
	legacy := pod(shop, "legacy-db-0", "legacy-db", false, "bitnami/mariadb:11.4", "prom/mysqld-exporter:0.15")
	legacy.PortImages = map[int32]string{3306: "bitnami/mariadb:11.4", 9104: "prom/mysqld-exporter:0.15"}
	relay := pod(mail, "relay-0", "relay", true, "boky/postfix:4")
	imap := pod(mail, "imap-0", "imap", true, "dovecot/dovecot:2.3")
	pg := pod(shop, "pg-0", "pg", true, "postgres:17")
	front := pod(web, "frontend-0", "frontend", true, "ghcr.io/acme/frontend:2")
	nats := pod(web, "nats-0", "nats", true, "nats:2.10")
	gone := pod(shop, "gone-0", "gone", true, "ghcr.io/acme/gone:1")
	inv := meshInv([]cluster.Pod{db, legacy, relay, imap, pg, front, nats, gone},
		svc(shop, "orders-db", "orders-db", []cluster.Pod{db}, tport("db", 3307, "3306", "")),
		svc(shop, "legacy-db", "legacy-db", []cluster.Pod{legacy}, tport("mysql-legacy", 3308, "3306", "mysql.com/x"), tport("metrics", 9104, "", "")),
		svc(shop, "pg", "pg", []cluster.Pod{pg}, tport("pg", 5432, "", "")),
		svc(shop, "gone", "gone", []cluster.Pod{gone}, tport("app", 2526, "", "")),
		svc(mail, "relay", "relay", []cluster.Pod{relay}, tport("tcp-smtp", 25, "2525", ""), tport("submission", 587, "", "")),
		svc(mail, "imap", "imap", []cluster.Pod{imap}, tport("imap", 143, "", "")),
		svc(web, "frontend", "frontend", []cluster.Pod{front}, tport("http-web", 10000, "8080", "")),
		svc(web, "nats", "nats", []cluster.Pod{nats}, tport("tcp-nats", 4222, "", "nats.io/client"), uport("gossip", 6222)),
	)
	inv.Mesh.ProtocolDetectionTimeout = 5 * time.Second
	inv.PeerAuthentications = []cluster.PeerAuthentication{
		{Namespace: "istio-system", Name: "default", Mode: cluster.MTLSPermissive, CreatedAt: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Namespace: mail, Name: "imap-strict", Selector: map[string]string{"app": "imap"}, Mode: cluster.MTLSStrict,
			CreatedAt: time.Date(2025, 2, 1, 0, 0, 0, 0, time.UTC)},
	}
	inv.ServiceEntries = []cluster.ServiceEntry{
		{Namespace: shop, Name: "smtp-provider", Hosts: []string{"smtp.example.com"}, Location: "MESH_EXTERNAL", Resolution: "DNS",
			Ports: []cluster.ServiceEntryPort{sePort(587, "submission", ""), sePort(465, "smtps", "TLS")}},
	}
	inv.Warnings = []string{"no istio ConfigMap readable: assuming Istio's defaults"}
	k := func(ns, name string, port int32) target.TargetKey { return svcKey(ns, name, port) }
	ext := target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}
	wait, why, _ := BannerWait(inv.Mesh, 3*time.Second, false) // as a plain scan waits
	return Input{
		Inventory:     inv,
		BannerWait:    wait,
		BannerWaitWhy: why,
		External:      []target.ExternalTarget{{Host: "db.example.com", Port: 10000}, {Host: "192.0.2.50", Port: 3306}},
		Observations: []target.Observation{
			// DEADLOCK mesh-to-mesh
			obs(k(shop, "orders-db", 3307), target.VantageDirect, banner(1.3, "J\x00\x00\x00\n8.4.2\x00", "mysql")),
			obs(k(shop, "orders-db", 3307), target.VantageMeshClient, silent()),
			// DEADLOCK external-to-mesh (declared port, PERMISSIVE)
			obs(k(mail, "relay", 25), target.VantageDirect, banner(2.1, "220 relay ESMTP Postfix\r\n", "smtp")),
			obs(k(mail, "relay", 25), target.VantageOutsideClient, silent()),
			// DELAYED
			obs(k(mail, "relay", 587), target.VantageDirect, banner(2.2, "220 relay ESMTP Postfix\r\n", "smtp")),
			obs(k(mail, "relay", 587), target.VantageMeshClient, banner(5003, "220 relay ESMTP Postfix\r\n", "smtp")),
			// MTLS-REJECTED
			obs(k(mail, "imap", 143), target.VantageDirect, banner(1.1, "* OK [CAPABILITY IMAP4rev1] Dovecot ready.\r\n", "imap")),
			obs(k(mail, "imap", 143), target.VantageOutsideClient, outcome(probe.OutcomeReset)),
			// CLIENT-FIRST
			obs(k(shop, "pg", 5432), target.VantageDirect, silent()),
			obs(k(shop, "pg", 5432), target.VantageMeshClient, silent()),
			// UNREACHABLE
			obs(k(shop, "gone", 2526), target.VantageDirect, probe.Result{Outcome: probe.OutcomeRefused, ConnectMs: 0.2, Error: "connection refused"}),
			obs(k(shop, "gone", 2526), target.VantageMeshClient, probe.Result{Outcome: probe.OutcomeConnectTimeout, ConnectMs: 3000, Error: "i/o timeout"}),
			// OK through the mesh
			obs(k(shop, "legacy-db", 3308), target.VantageDirect, banner(1.0, "J\x00\x00\x00\n11.4.2-MariaDB\x00", "mysql")),
			obs(k(shop, "legacy-db", 3308), target.VantageMeshClient, banner(9.0, "J\x00\x00\x00\n11.4.2-MariaDB\x00", "mysql")),
			// external, DEADLOCK mesh-to-external
			obs(ext, target.VantageOutsideClient, banner(12, "J\x00\x00\x00\n8.0.36\x00", "mysql")),
			obs(ext, target.VantageMeshClient, silent()),
		},
	}
}
