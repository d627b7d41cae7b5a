package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// The verdict grid (issue 13 part 8): every combination of what decides a
// server-first port's fate on the server's side (how the Service declares
// the port, the DestinationRule's TLS mode, the PeerAuthentication mode for
// the port, whether the pod's inbound capture skips it), called from every
// kind of client (a plain mesh client, one whose outbound capture skips
// the port, one whose Sidecar resource declares the port TCP, one whose
// Sidecar hides the server's namespace, one without a sidecar). Real istiod
// configures every sidecar; a real sshd answers behind every port. For
// each cell the test asks three judges and wants them to agree:
//   - the world: does the SSH banner arrive through the mesh?
//   - scan --static: the verdict of the path those clients take;
//   - scan --vantage config --from-pod: the path as the sidecars' own
//     /config_dump decides it.
// No cell's outcome is written down by hand: the grid is generated and
// real Istio is the referee.

var (
	gridDecls = []struct{ name, portName string }{
		{"auto", "ssh-x"}, // a name Istio does not know: sniffed
		{"tcp", "tcp-ssh"},
		{"http", "http-ssh"},
	}
	gridDR       = []string{"", "DISABLE", "ISTIO_MUTUAL"} // "" = no rule: auto mTLS
	gridPA       = []string{"PERMISSIVE", "STRICT", "DISABLE"}
	gridExcluded = []bool{false, true} // excludeInboundPorts on the server pod
)

// gridCell is one server-side combination: its own Service, port numbers
// and DestinationRule.
type gridCell struct {
	decl, portName, dr, pa string
	excluded               bool
	service                string
	port, target           int32
}

func gridCells() []gridCell {
	var out []gridCell
	for _, d := range gridDecls {
		for _, dr := range gridDR {
			for _, pa := range gridPA {
				for _, ex := range gridExcluded {
					i := int32(len(out))
					out = append(out, gridCell{decl: d.name, portName: d.portName, dr: dr, pa: pa, excluded: ex,
						service: fmt.Sprintf("c%02d", i), port: 21000 + i, target: 22000 + i})
				}
			}
		}
	}
	return out
}

// server is the cell's server pod.
func (c gridCell) server() string {
	if c.excluded {
		return "srv-" + c.decl + "-excl"
	}
	return "srv-" + c.decl
}

func (c gridCell) String() string {
	dr := c.dr
	if dr == "" {
		dr = "no-DR"
	}
	s := fmt.Sprintf("%s %s/%s/%s", c.service, c.decl, dr, c.pa)
	if c.excluded {
		s += "/excluded-inbound"
	}
	return s
}

// gridClient is one kind of client: its namespace (each kind has its own,
// so a path's clients name it) and pod.
type gridClient struct {
	name, ns string
	meshed   bool
}

var gridClients = []gridClient{
	{"plain", "grid-plain", true},
	{"no-outbound", "grid-noout", true},
	{"sidecar-tcp", "grid-sctcp", true},
	{"sidecar-hidden", "grid-hidden", true},
	{"outside", "grid-out", false},
}

const gridServerNS = "grid-srv"

// TestVerdictGrid checks the static verdict of every path of the grid
// against the world's probes and against the sidecars' own config.
func TestVerdictGrid(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the e2e world; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	fx := start(t, ctx)
	cells := gridCells()
	fx.seedGrid(t, ctx, cells)

	static := gridScan(ctx, t, fx, "scan", "--static", "-A")
	// The world: the banner through the mesh, from every client.
	seen := fx.gridProbe(t, ctx, cells)

	var mismatches, cfgMismatches int
	var table strings.Builder
	fmt.Fprintf(&table, "%-40s", "cell")
	for _, cl := range gridClients {
		fmt.Fprintf(&table, " %-26s", cl.name)
	}
	table.WriteString("\n")
	configReports := map[string]report.Report{}
	for _, cl := range gridClients {
		if cl.meshed {
			configReports[cl.name] = gridScan(ctx, t, fx, "scan", "--vantage", "config", "-n", gridServerNS, "--from-pod", cl.ns+"/client")
		}
	}
	for _, c := range cells {
		f, ok := findingOf(static, c)
		if !ok {
			t.Errorf("%s: no static finding", c)
			continue
		}
		fmt.Fprintf(&table, "%-40s", c.String())
		for _, cl := range gridClients {
			p := clientPath(f, cl)
			got := seen[gridKey{c.service, cl.name}]
			cell := fmt.Sprintf("%s %s %s", p.Verdict, p.Code, got)
			if wantBanner(p.Verdict) != (got == outcomeBanner) {
				mismatches++
				cell += " !"
				t.Errorf("%s from %s: static %s %s (%s) but the world's probe saw %s", c, cl.name, p.Verdict, p.Code, p.Reason, got)
			}
			if cl.meshed {
				cf, ok := findingOf(configReports[cl.name], c)
				var cp report.PathVerdict
				if ok {
					cp = configPath(cf, cl)
				}
				switch {
				case !ok || cp.Verdict == "":
					cfgMismatches++
					cell += " c:none"
					t.Errorf("%s from %s: the config scan judged no path from the proxies' config: %+v", c, cl.name, cf.Paths)
				case wantBanner(cp.Verdict) != wantBanner(p.Verdict):
					cfgMismatches++
					cell += " c:" + string(cp.Code)
					t.Errorf("%s from %s: static %s %s but the proxies' config says %s %s (%s)", c, cl.name, p.Verdict, p.Code, cp.Verdict, cp.Code, cp.Reason)
				}
			}
			fmt.Fprintf(&table, " %-26s", cell)
		}
		table.WriteString("\n")
	}
	t.Logf("verdict grid: %d cells x %d clients; %d disagree with the world, %d with the proxies' config\n%s",
		len(cells), len(gridClients), mismatches, cfgMismatches, table.String())
}

// wantBanner says whether a path's verdict claims the server's first bytes
// reach a client that sends nothing first.
func wantBanner(v report.Verdict) bool { return v == report.OK || v == report.Delayed }

func gridScan(ctx context.Context, t *testing.T, fx *fixture, args ...string) report.Report {
	t.Helper()
	out, errOut, code := cli(ctx, t, fx.bin, fx.kc, append(args, "-o", "json")...)
	if code != 0 {
		t.Fatalf("%v exited %d\n%s", args, code, errOut)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v: JSON: %v\n%s\n%s", args, err, out, errOut)
	}
	return r
}

func findingOf(r report.Report, c gridCell) (report.Finding, bool) {
	for _, f := range r.Findings {
		if f.Kind == "Service" && f.Namespace == gridServerNS && f.Name == c.service && f.Port == c.port {
			return f, true
		}
	}
	return report.Finding{}, false
}

// clientPath is the path the client's kind takes: a path that names the
// client's namespace, else the scenario's general path, else (for clients
// without a sidecar) the port's own mesh path, else the finding's verdict.
func clientPath(f report.Finding, cl gridClient) report.PathVerdict {
	sc := report.MeshToMesh
	if !cl.meshed {
		sc = report.ExternalToMesh
	}
	var general *report.PathVerdict
	for i, p := range f.Paths {
		if p.Scenario != sc {
			continue
		}
		if strings.Contains(p.Clients, cl.ns+" (") {
			return p
		}
		if p.Clients == "" && general == nil {
			general = &f.Paths[i]
		}
	}
	if general == nil && !cl.meshed {
		// No path for clients without a sidecar: the port's own verdict
		// stands for them (the engine lists that path only where it
		// differs).
		for i, p := range f.Paths {
			if p.Scenario == report.MeshToMesh && p.Clients == "" {
				general = &f.Paths[i]
				break
			}
		}
	}
	if general != nil {
		return *general
	}
	return report.PathVerdict{Scenario: sc, Verdict: f.Verdict, Code: f.Code, Reason: "(no path: the finding's verdict)"}
}

// configPath is the path a config scan from the client's pod judged from
// the proxies' own config (an SF10xx code, its clients named after the
// pod).
func configPath(f report.Finding, cl gridClient) report.PathVerdict {
	for _, p := range f.Paths {
		if p.Scenario == report.MeshToMesh && strings.HasPrefix(string(p.Code), "SF10") && strings.Contains(p.Clients, cl.ns+"/client") {
			return p
		}
	}
	return report.PathVerdict{}
}

const (
	outcomeBanner = "banner"
	outcomeSilent = "silent"
	outcomeClosed = "closed"
)

type gridKey struct{ service, client string }

// gridProbe dials every cell's ClusterIP from every client and says what
// came first: the banner, silence for the whole wait, or a closed
// connection. The wait (4 s) is longer than anything in this mesh config
// that could end a wait with the banner: no protocolDetectionTimeout is
// set, so a sniffing listener waits forever or for Envoy's 15 s, and 4 s
// of silence means the banner is not coming soon; a banner that would come
// after a timeout is the DELAYED verdict, which no cell here gives.
func (fx *fixture) gridProbe(t *testing.T, ctx context.Context, cells []gridCell) map[gridKey]string {
	t.Helper()
	ips := map[string]string{}
	for _, c := range cells {
		svc, err := fx.env.Client.CoreV1().Services(gridServerNS).Get(ctx, c.service, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		ips[c.service] = svc.Spec.ClusterIP
	}
	var mu sync.Mutex
	out := map[gridKey]string{}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, c := range cells {
		for _, cl := range gridClients {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				got := firstBytes(ctx, fx.w, cl.ns, "client", net.JoinHostPort(ips[c.service], strconv.Itoa(int(c.port))), 4*time.Second)
				mu.Lock()
				out[gridKey{c.service, cl.name}] = got
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return out
}

// firstBytes dials addr from the pod and says what came first within
// wait: the banner, other bytes, silence or a closed connection.
func firstBytes(ctx context.Context, w *world.World, ns, pod, addr string, wait time.Duration) string {
	conn, err := w.DialFrom(ctx, ns, pod, addr)
	if err != nil {
		return "dial: " + err.Error()
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	var got []byte
	b := make([]byte, 64)
	for len(got) < 8 {
		var n int
		n, err = conn.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			break
		}
	}
	var ne net.Error
	switch {
	case strings.HasPrefix(string(got), "SSH-"):
		return outcomeBanner
	case len(got) > 0:
		return fmt.Sprintf("bytes %q", got)
	case errors.As(err, &ne) && ne.Timeout():
		return outcomeSilent
	}
	return outcomeClosed
}

// seedGrid creates the server pods, one Service, DestinationRule and port
// each per cell, the PeerAuthentications, the clients and their Sidecars,
// and returns once every daemon listens and every sidecar has the config.
func (fx *fixture) seedGrid(t *testing.T, ctx context.Context, cells []gridCell) {
	t.Helper()
	injected := map[string]string{"istio-injection": "enabled"}
	fx.namespace(t, gridServerNS, injected)
	for _, cl := range gridClients {
		if cl.meshed {
			fx.namespace(t, cl.ns, injected)
		} else {
			fx.namespace(t, cl.ns, nil)
		}
	}
	ic, err := fx.env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	kube := fx.env.Client
	before := time.Now()

	// A server pod per port declaration and capture (sshd listens on at
	// most 16 ports): the -excl ones skip their ports in inbound capture.
	var servicePorts []string
	var refs []string
	excludes := map[string]bool{} // server pod -> its ports skip inbound capture
	for _, c := range cells {
		excludes[c.server()] = c.excluded
	}
	for _, app := range slices.Sorted(maps.Keys(excludes)) {
		ex := excludes[app]
		refs = append(refs, gridServerNS+"/"+app)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: gridServerNS, Labels: map[string]string{"app": app}, Annotations: map[string]string{}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    []corev1.Container{{Name: "server", Image: "lscr.io/linuxserver/openssh-server:latest"}},
			},
		}
		pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: gridServerNS}}
		pa.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
		pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
		pa.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{}
		var excluded []string
		for _, c := range cells {
			if c.server() != app {
				continue
			}
			pod.Spec.Containers[0].Ports = append(pod.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: c.target})
			pa.Spec.PortLevelMtls[uint32(c.target)] = &securityapi.PeerAuthentication_MutualTLS{
				Mode: securityapi.PeerAuthentication_MutualTLS_Mode(securityapi.PeerAuthentication_MutualTLS_Mode_value[c.pa])}
			excluded = append(excluded, strconv.Itoa(int(c.target)))
		}
		if ex {
			pod.Annotations["traffic.sidecar.istio.io/excludeInboundPorts"] = strings.Join(excluded, ",")
		}
		if _, err := kube.CoreV1().Pods(gridServerNS).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := ic.SecurityV1().PeerAuthentications(gridServerNS).Create(ctx, pa, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cells {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: c.service, Namespace: gridServerNS},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": c.server()}, Ports: []corev1.ServicePort{{
				Name: c.portName, Port: c.port, TargetPort: intstr.FromInt32(c.target), Protocol: corev1.ProtocolTCP}}},
		}
		if _, err := kube.CoreV1().Services(gridServerNS).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		servicePorts = append(servicePorts, strconv.Itoa(int(c.port)))
		if c.dr == "" {
			continue
		}
		dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: c.service, Namespace: gridServerNS}}
		dr.Spec.Host = c.service + "." + gridServerNS + ".svc.cluster.local"
		dr.Spec.TrafficPolicy = &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{
			Mode: networkingapi.ClientTLSSettings_TLSmode(networkingapi.ClientTLSSettings_TLSmode_value[c.dr])}}
		if _, err := ic.NetworkingV1().DestinationRules(gridServerNS).Create(ctx, dr, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The clients' Sidecars: one declares every cell's port TCP for the
	// server's namespace, one sees only its own namespace and istio-system.
	tcp := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "grid-sctcp"}}
	for _, c := range cells {
		tcp.Spec.Egress = append(tcp.Spec.Egress, &networkingapi.IstioEgressListener{
			Port:  &networkingapi.SidecarPort{Number: uint32(c.port), Protocol: "TCP", Name: fmt.Sprintf("tcp-%d", c.port)},
			Hosts: []string{gridServerNS + "/*"},
		})
	}
	tcp.Spec.Egress = append(tcp.Spec.Egress, &networkingapi.IstioEgressListener{Hosts: []string{"./*", "istio-system/*"}})
	hidden := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "grid-hidden"}}
	hidden.Spec.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}}
	for _, sc := range []*networkingv1.Sidecar{tcp, hidden} {
		if _, err := ic.NetworkingV1().Sidecars(sc.Namespace).Create(ctx, sc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range gridClients {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: cl.ns, Labels: map[string]string{"app": "client"}, Annotations: map[string]string{}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers:                    []corev1.Container{{Name: "app", Image: "docker.io/library/busybox:1.36", Command: []string{"sleep", "infinity"}}},
			},
		}
		if cl.name == "no-outbound" {
			pod.Annotations["traffic.sidecar.istio.io/excludeOutboundPorts"] = strings.Join(servicePorts, ",")
		}
		if _, err := kube.CoreV1().Pods(cl.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		refs = append(refs, cl.ns+"/client")
	}
	if err := world.WaitPodsReady(ctx, kube, refs...); err != nil {
		t.Fatal(err)
	}
	for _, c := range cells {
		if err := fx.w.WaitListening(ctx, gridServerNS, c.server(), int(c.target)); err != nil {
			t.Fatal(err)
		}
	}
	if err := fx.w.WaitSidecarsSynced(ctx, before); err != nil {
		t.Fatal(err)
	}
	t.Logf("grid seeded: %d cells, %d clients, in force %v after the first write", len(cells), len(gridClients), time.Since(before).Round(time.Millisecond))
}
