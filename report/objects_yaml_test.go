package report

import (
	"strconv"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// awkwardStrings are names, label keys and values and protocols around the
// edges of what YAML writes plainly: words it reads as booleans or null,
// numbers, leading and inner punctuation, digits that sort as numbers,
// characters it must quote or escape, a long one.
var awkwardStrings = []string{
	"db", "orders-db", "a", "Y", "n", "yes", "No", "ON", "off", "True", "FALSE", "null", "NULL", "yEs", "nulls",
	"123", "1e3", "0x1f", "-db", ".db", "_db", "db_1", "db.v2", "app.kubernetes.io/name", "a/b", "tcp", "TCP", "UDP", "",
	"a:b", "a b", "a#b", "a'b", "a\"b", "é", "a\u2028b", "~", "<<", "app2", "app10", "app-x", "appx", "App", "a_b", "a-b",
	"kubernetes.io/h2c", "nats.io/client", "x123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890",
}

// TestDirectManifestsMatchToYAML: the Service and PeerAuthentication fix
// manifests written directly are byte for byte what toYAML writes for the
// apply configuration with the change applied, over every awkward string
// in every position; and the plain cases take the direct path.
func TestDirectManifestsMatchToYAML(t *testing.T) {
	direct := 0
	checkService := func(svc cluster.Service, c Change) {
		t.Helper()
		got, ok := serviceManifest(svc, &c)
		if !ok {
			return
		}
		direct++
		if want := withChange(Fix{}, serviceObject(svc), &c).Manifest; got != want {
			t.Errorf("Service %q/%q ports %+v, change %+v: manifest\n%s\nwant (toYAML)\n%s", svc.Namespace, svc.Name, svc.Ports, c, got, want)
		}
	}
	base := svc("shop", "orders-db", "orders-db", nil, tport("db", 3307, "mysql", ""), tport("", 9090, "", "http"), uport("stats", 8125))
	change := func(port string, set map[string]string) Change {
		return Change{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "orders-db", Port: port, Set: set}
	}
	checkService(base, change("3307/TCP", map[string]string{"appProtocol": "tcp"}))
	checkService(base, change("9090/TCP", map[string]string{"name": "tcp"}))
	checkService(base, change("8125/UDP", map[string]string{"name": "tcp-stats"}))
	checkService(base, change("1/TCP", map[string]string{"name": "unused"}))
	if direct != 4 {
		t.Errorf("%d of 4 plain Services written directly", direct)
	}
	for _, s := range awkwardStrings {
		named := base
		named.Name = s
		checkService(named, change("3307/TCP", map[string]string{"appProtocol": "tcp"}))
		named = base
		named.Namespace = s
		checkService(named, change("3307/TCP", map[string]string{"name": "tcp"}))
		checkService(base, change("3307/TCP", map[string]string{"name": s}))
		checkService(base, change("9090/TCP", map[string]string{"appProtocol": s}))
		ports := base
		ports.Ports = []cluster.ServicePort{{Name: s, Port: 80, Protocol: s, TargetPort: s, AppProtocol: s}, tport("web", 8080, s, "")}
		checkService(ports, change("80/"+s, map[string]string{"name": "tcp"}))
		checkService(ports, change("8080/TCP", map[string]string{"appProtocol": "tcp"}))
	}
	if direct < 4+len(awkwardStrings) {
		t.Errorf("only %d Services written directly: the awkward strings barely reach the direct writer", direct)
	}
	for _, tp := range []string{"0", "-5", "+7", "007", "2147483647", "2147483648", "-2147483649", "1.5", "http"} {
		ports := base
		ports.Ports = []cluster.ServicePort{tport("db", 3307, tp, "")}
		checkService(ports, change("3307/TCP", map[string]string{"appProtocol": "tcp"}))
	}

	direct = 0
	checkPA := func(name, ns string, managed bool, selector map[string]string, mode cluster.MTLSMode, portModes map[uint32]cluster.MTLSMode, port, set string) {
		t.Helper()
		c := Change{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication", Namespace: ns, Name: name, Port: port, Set: map[string]string{"mode": set}}
		got, ok := peerAuthenticationManifest(name, ns, managed, selector, mode, portModes, &c)
		if !ok {
			return
		}
		direct++
		obj := peerAuthenticationObject(name, ns, selector, mode, portModes)
		if managed {
			obj.WithLabels(map[string]string{ManagedByLabel: ManagerName})
		}
		if want := withChange(Fix{}, obj, &c).Manifest; got != want {
			t.Errorf("PeerAuthentication %q/%q selector %v mode %q ports %v, change %s=%s: manifest\n%s\nwant (toYAML)\n%s", ns, name, selector, mode, portModes, port, set, got, want)
		}
	}
	app := map[string]string{"app": "relay"}
	checkPA("serverfirst-relay", "mail", true, app, "", nil, "2525", "DISABLE")
	checkPA("z-older", "mail", false, map[string]string{"tier": "edge", "app": "x", "app.kubernetes.io/name": "web"}, cluster.MTLSPermissive,
		map[uint32]cluster.MTLSMode{9090: cluster.MTLSStrict, 10: cluster.MTLSDisable, 100000: cluster.MTLSPermissive, 9: cluster.MTLSStrict, 2025: cluster.MTLSStrict}, "2525", "DISABLE")
	if direct != 2 {
		t.Errorf("%d of 2 plain PeerAuthentications written directly", direct)
	}
	for _, s := range awkwardStrings {
		checkPA(s, "mail", true, app, "", nil, "2525", "DISABLE")
		checkPA("x", s, false, app, cluster.MTLSStrict, nil, "2525", "DISABLE")
		checkPA("x", "mail", false, map[string]string{s: "v"}, "", nil, "2525", "DISABLE")
		checkPA("x", "mail", false, map[string]string{"app": s}, "", nil, "2525", "DISABLE")
		checkPA("x", "mail", false, map[string]string{"app": "v", s: "w", "app1": "z"}, "", nil, "2525", "DISABLE")
		checkPA("x", "mail", false, app, cluster.MTLSMode(s), map[uint32]cluster.MTLSMode{80: cluster.MTLSMode(s)}, "2525", "DISABLE")
		checkPA("x", "mail", false, app, "", nil, "2525", s)
		checkPA("x", "mail", false, app, "", nil, s, "DISABLE")
	}
	if direct < 2+len(awkwardStrings) {
		t.Errorf("only %d PeerAuthentications written directly: the awkward strings barely reach the direct writer", direct)
	}
	// Port numbers in YAML's order (it sorts digit runs as numbers).
	for a := uint32(1); a < 40000; a = a*3 + 1 {
		modes := map[uint32]cluster.MTLSMode{}
		for b := a; b < 100000; b = b*7 + 3 {
			modes[b] = cluster.MTLSStrict
		}
		checkPA("x", "mail", false, app, cluster.MTLSUnset, modes, strconv.Itoa(int(a*11)), "DISABLE")
	}
	for _, m := range []cluster.MTLSMode{cluster.MTLSUnset, cluster.MTLSDisable, cluster.MTLSPermissive, cluster.MTLSStrict, ""} {
		checkPA("x", "mail", false, app, m, map[uint32]cluster.MTLSMode{3306: m}, "9090", "DISABLE")
	}
}
