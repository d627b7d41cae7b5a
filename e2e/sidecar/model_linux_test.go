package sidecar

import (
	"strings"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// meshWorld is the fixture mesh on real sockets: client (sidecar), plain
// (no sidecar), server (sidecar, PERMISSIVE with DISABLE ports), strict
// (sidecar, STRICT) and ext (outside the mesh), each in its own netns.
type meshWorld struct {
	w                             *world
	client, plain, server, strict *podNS
	ext                           *podNS
	models                        []*modelProc
}

func newMeshWorld(t *testing.T, inv cluster.Inventory) *meshWorld {
	w := newWorld(t)
	m := &meshWorld{w: w}
	m.client = w.addPod("client", ipClient)
	m.plain = w.addPod("plain", ipPlain)
	m.server = w.addPod("server", ipServer)
	m.strict = w.addPod("strict", ipStrict)
	m.ext = w.addPod("ext", ipExt)
	m.server.serve(serverBannerPorts, serverClientFirstPorts)
	m.strict.serve([]int{3308}, []int{4308})
	m.ext.serve(extBannerPorts, extClientFirstPorts)
	m.plain.serve([]int{3308}, nil)
	m.client.serve([]int{10000}, nil) // only ever dialled over the client's loopback
	m.models = []*modelProc{
		m.client.startModel("app", "client", inv),
		m.server.startModel("app", "server", inv),
		m.strict.startModel("app", "strict", inv),
	}
	return m
}

// apply pushes inv to every sidecar and waits until all serve it.
func (m *meshWorld) apply(inv cluster.Inventory, generation uint64) {
	for _, mp := range m.models {
		mp.update(inv, generation)
	}
}

type probeCase struct {
	name string
	from func(*meshWorld) *podNS
	addr string
	send string
	want expect
	// peer, when set, is the client address the app must have seen:
	// 127.0.0.6 proves the connection went through the server's sidecar.
	peer string
	// direct, for hangs: the same server reached around the sidecars must
	// answer, or the hang proves nothing.
	direct     func(*meshWorld) *podNS
	directAddr string
}

func (m *meshWorld) run(t *testing.T, cases []probeCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := tc.from(m).exchange(tc.addr, tc.send, waitFor(tc.want))
			check(t, "through the mesh", r, tc.want)
			if tc.peer != "" && !strings.Contains(r.Got, "peer "+tc.peer+"\r\n") {
				t.Errorf("the app saw another peer than %s: %q", tc.peer, r.Got)
			}
			if tc.direct != nil {
				want := banner
				if tc.send != "" {
					want = pong
				}
				check(t, "direct path", tc.direct(m).exchange(tc.directAddr, tc.send, answerWait), want)
			}
		})
	}
}

var (
	fromClient = func(m *meshWorld) *podNS { return m.client }
	fromPlain  = func(m *meshWorld) *podNS { return m.plain }
	fromServer = func(m *meshWorld) *podNS { return m.server }
	fromStrict = func(m *meshWorld) *podNS { return m.strict }
)

func TestSidecarModel(t *testing.T) {
	inv := testInventory()
	m := newMeshWorld(t, inv)

	t.Run("no detection timeout", func(t *testing.T) {
		m.run(t, []probeCase{
			{name: "mesh to mesh, auto port: deadlock", from: fromClient, addr: vipDB + ":3307", want: hang,
				direct: fromServer, directAddr: "127.0.0.1:3307"},
			{name: "mesh to mesh, declared TCP: banner", from: fromClient, addr: vipDBTCP + ":3308", want: banner, peer: "127.0.0.6"},
			{name: "mesh to STRICT, declared TCP: mTLS accepted", from: fromClient, addr: vipStrict + ":3308", want: banner, peer: "127.0.0.6"},
			{name: "mesh to a sidecar-less pod's TCP Service: banner", from: fromClient, addr: vipPlain + ":3308", want: banner, peer: ipClient},
			{name: "mesh to a pod IP: passthrough is plaintext, server's TLS inspector waits", from: fromClient, addr: ipServer + ":3308", want: hang,
				direct: fromServer, directAddr: "127.0.0.1:3308"},
			{name: "outside to PERMISSIVE declared TCP: TLS inspector deadlock", from: fromPlain, addr: ipServer + ":3308", want: hang,
				direct: fromServer, directAddr: "127.0.0.1:3308"},
			{name: "outside to PERMISSIVE auto port: deadlock", from: fromPlain, addr: ipServer + ":3307", want: hang,
				direct: fromServer, directAddr: "127.0.0.1:3307"},
			{name: "outside to a DISABLE port: banner", from: fromPlain, addr: ipServer + ":3309", want: banner, peer: "127.0.0.6"},
			{name: "outside to STRICT, client speaks: reset", from: fromPlain, addr: ipStrict + ":4308", send: "PING\r\n", want: rejected},
			// Envoy's TLS inspector has nothing to inspect and no timeout, so
			// STRICT hangs a silent client rather than rejecting it.
			{name: "outside to STRICT, silent client: TLS inspector waits", from: fromPlain, addr: ipStrict + ":3308", want: hang,
				direct: fromStrict, directAddr: "127.0.0.1:3308"},
			{name: "collision: unknown IP on an HTTP Service's port: deadlock", from: fromClient, addr: ipExt + ":10000", want: hang,
				direct: fromPlain, directAddr: ipExt + ":10000"},
			{name: "unknown IP on a free port: passthrough banner", from: fromClient, addr: ipExt + ":3310", want: banner, peer: ipClient},
			{name: "loopback is never captured", from: fromClient, addr: "127.0.0.1:10000", want: banner, peer: "127.0.0.1"},

			{name: "client-first: mesh to mesh auto", from: fromClient, addr: vipDB + ":4307", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: mesh to mesh TCP", from: fromClient, addr: vipDBTCP + ":4308", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: mesh to STRICT", from: fromClient, addr: vipStrict + ":4308", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: mesh to a pod IP", from: fromClient, addr: ipServer + ":4307", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: outside to PERMISSIVE TCP", from: fromPlain, addr: ipServer + ":4308", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: outside to PERMISSIVE auto", from: fromPlain, addr: ipServer + ":4307", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: outside to DISABLE", from: fromPlain, addr: ipServer + ":4309", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
			{name: "client-first: collision port", from: fromClient, addr: ipExt + ":11000", send: "PING\r\n", want: pong, peer: ipClient},
		})
	})

	t.Run("the proxy's uid bypasses capture", func(t *testing.T) {
		check(t, "uid 1337 to the collision port", m.client.exchangeAsProxyUID(ipExt+":10000", "", answerWait), banner)
		check(t, "uid 0 to the collision port", m.client.exchange(ipExt+":10000", "", hangWait), hang)
	})

	t.Run("detection timeout 200ms: delay instead of deadlock", func(t *testing.T) {
		slow := testInventory()
		slow.Mesh.ProtocolDetectionTimeout = 200 * time.Millisecond
		m.apply(slow, 2)
		m.run(t, []probeCase{
			{name: "mesh to mesh, auto port", from: fromClient, addr: vipDB + ":3307", want: banner, peer: "127.0.0.6"},
			{name: "outside to PERMISSIVE declared TCP", from: fromPlain, addr: ipServer + ":3308", want: banner, peer: "127.0.0.6"},
			{name: "outside to PERMISSIVE auto port", from: fromPlain, addr: ipServer + ":3307", want: banner, peer: "127.0.0.6"},
			{name: "collision", from: fromClient, addr: ipExt + ":10000", want: banner, peer: ipClient},
			{name: "outside to STRICT, silent client: closed after the timeout", from: fromPlain, addr: ipStrict + ":3308", want: rejected},
			{name: "client-first: mesh to mesh auto", from: fromClient, addr: vipDB + ":4307", send: "PING\r\n", want: pong, peer: "127.0.0.6"},
		})
	})

	t.Run("the tool's fixes take effect on refresh", func(t *testing.T) {
		fixed := testInventory()
		fixed.Services[0].Ports[0].Name = "tcp-db" // rename the port
		fixed.Services[0].Ports[0].Resolved = tcpByName()
		fixed.ServiceEntries = []cluster.ServiceEntry{{Namespace: "app", Name: "ext-db", Hosts: []string{"ext-db.example"},
			Addresses: []string{ipExt}, Location: "MESH_EXTERNAL", Resolution: "STATIC", Endpoints: []string{ipExt},
			Ports: []cluster.ServiceEntryPort{{Number: 10000, Name: "tcp-db", Protocol: "TCP",
				Resolved: cluster.ResolvedProtocol{Protocol: cluster.ProtocolTCP, Source: cluster.SourceProtocol}}}}}
		fixed.PeerAuthentications[1].PortModes[3308] = cluster.MTLSDisable
		m.apply(fixed, 3)
		m.run(t, []probeCase{
			{name: "renamed port: mesh to mesh banner", from: fromClient, addr: vipDB + ":3307", want: banner, peer: "127.0.0.6"},
			{name: "TCP ServiceEntry with the address: collision gone", from: fromClient, addr: ipExt + ":10000", want: banner, peer: ipClient},
			{name: "portLevelMtls DISABLE: outside client gets the banner", from: fromPlain, addr: ipServer + ":3308", want: banner, peer: "127.0.0.6"},
			{name: "untouched ports still deadlock", from: fromPlain, addr: ipServer + ":3307", want: hang,
				direct: fromServer, directAddr: "127.0.0.1:3307"},
		})
	})
}

func TestCaptureInstallsAndRemovesCleanly(t *testing.T) {
	w := newWorld(t)
	p := w.addPod("cap", "10.77.0.50")
	c := DefaultCapture()
	ctx := t.Context()
	for i := 0; i < 2; i++ { // a restarted sidecar must not stack rules
		if err := c.Apply(ctx, p.path); err != nil {
			t.Fatal(err)
		}
	}
	save, err := runIn(ctx, p.path, "", "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	for _, rule := range strings.Split(strings.TrimSpace(c.Rules()), "\n") {
		if !strings.HasPrefix(rule, "-A ") {
			continue
		}
		if n := countRule(save, rule); n != 1 {
			t.Errorf("rule %q installed %d times, want once\n%s", rule, n, save)
		}
	}
	if err := c.Remove(ctx, p.path); err != nil {
		t.Fatal(err)
	}
	save, err = runIn(ctx, p.path, "", "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(save, "ISTIO_") {
		t.Fatalf("rules left after Remove:\n%s", save)
	}
}

// countRule matches iptables-save's normalised output loosely: same words,
// in any order, since the tool prints matches in its own order and adds the
// implicit "-m tcp".
func countRule(save, rule string) int {
	want := strings.Fields(rule)
	n := 0
	for _, line := range strings.Split(save, "\n") {
		got := strings.Fields(strings.ReplaceAll(line, " -m tcp ", " "))
		if len(got) != len(want) {
			continue
		}
		if sameWords(got, want) {
			n++
		}
	}
	return n
}

func sameWords(a, b []string) bool {
	m := map[string]int{}
	for _, w := range a {
		m[w]++
	}
	for _, w := range b {
		m[w]--
	}
	for _, v := range m {
		if v != 0 {
			return false
		}
	}
	return true
}
