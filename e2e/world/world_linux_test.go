package world

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// requireWorld skips without root and the tools, except under CI=true,
// where a skipped network test would be a silent pass.
func requireWorld(t *testing.T) {
	t.Helper()
	if err := requireRoot(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skipf("%v", err)
	}
	if testing.Short() {
		t.Skip("the e2e world starts an API server and daemons; skipped with -short")
	}
}

func buildServerfirst(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "serverfirst-world-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// Pods may run as non-root: let them reach it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "kubectl-serverfirst")
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/kubectl-serverfirst")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kubectl-serverfirst: %v\n%s", err, b)
	}
	return out
}

// startWorld starts an API server and a node on it.
func startWorld(t *testing.T, resolver ImageResolver) (*testenv.Env, *Node) {
	t.Helper()
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	began := time.Now()
	node, err := StartNode(context.Background(), NodeOptions{
		Client:   env.Client,
		StateDir: t.TempDir(),
		Resolver: resolver,
		Logf:     t.Logf,
	})
	if err != nil {
		t.Fatalf("StartNode: %v", err)
	}
	t.Logf("node %s up in %v (kubelet 127.0.0.1:%d, netns %s)", node.Name(), time.Since(began).Round(time.Millisecond), node.KubeletPort(), node.NodeNetns())
	t.Cleanup(func() {
		if err := node.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
		if left := netnsWithPrefix(t, NetnsPrefix+node.net.tag); len(left) > 0 {
			t.Errorf("Stop left network namespaces: %v", left)
		}
	})
	return env, node
}

func netnsWithPrefix(t *testing.T, prefix string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			names = append(names, f[0])
		}
	}
	return names
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		if err != nil {
			last = err
			return false, nil
		}
		return ok, nil
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v (last error: %v)", what, err, last)
	}
}

func waitPod(t *testing.T, c kubernetes.Interface, ns, name string, timeout time.Duration, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	var lastStatus string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if ctx.Err() == nil {
				lastStatus = err.Error()
			}
			return false, nil
		}
		pod = p
		b, _ := json.Marshal(p.Status)
		lastStatus = string(b)
		return cond(p), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %v; last status: %s", ns, name, err, lastStatus)
	}
	return pod
}

func isReady(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning && podReady(p) }

func podLogs(t *testing.T, c kubernetes.Interface, ns, name, container string) string {
	t.Helper()
	b, err := c.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container}).DoRaw(context.Background())
	if err != nil {
		t.Fatalf("logs %s/%s/%s: %v", ns, name, container, err)
	}
	return string(b)
}

func TestWorld(t *testing.T) {
	requireWorld(t)
	t.Parallel()
	bin := buildServerfirst(t)
	env, node := startWorld(t, Chain(ServerfirstResolver(bin), DaemonResolver(), HostCommandResolver()))
	ctx := context.Background()
	cs := env.Client
	const ns = "shop"
	if _, err := env.CreateNamespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}

	db := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns, Labels: map[string]string{"app": "db"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "mariadb", Image: "docker.io/library/mariadb:11",
			Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
				TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("mysql")}}, PeriodSeconds: 1},
		}}},
	}
	cache := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cache", Namespace: ns, Labels: map[string]string{"app": "cache"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "redis", Image: "redis:7", Ports: []corev1.ContainerPort{{ContainerPort: 6379}},
		}}},
	}
	for _, p := range []*corev1.Pod{db, cache} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "db"}, Ports: []corev1.ServicePort{{
			Name: "mysql", Port: 3307, TargetPort: intstr.FromString("mysql"),
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	began := time.Now()
	dbPod := waitPod(t, cs, ns, "db", 2*time.Minute, isReady)
	t.Logf("db Running and Ready in %v at %s", time.Since(began).Round(time.Millisecond), dbPod.Status.PodIP)
	cachePod := waitPod(t, cs, ns, "cache", time.Minute, isReady)
	for _, p := range []*corev1.Pod{dbPod, cachePod} {
		if ip := net.ParseIP(p.Status.PodIP); ip == nil || !node.net.cidr.Contains(ip) {
			t.Errorf("%s: pod IP %q not in %s", p.Name, p.Status.PodIP, node.net.cidr)
		}
		if p.Spec.NodeName != node.Name() {
			t.Errorf("%s: nodeName %q", p.Name, p.Spec.NodeName)
		}
		if node.PodNetns(ns, p.Name) == "" {
			t.Errorf("%s: no netns", p.Name)
		}
	}
	if dbPod.Status.PodIP == cachePod.Status.PodIP {
		t.Errorf("both pods got %s", dbPod.Status.PodIP)
	}

	// EndpointSlice for the Service, with the named port resolved.
	waitFor(t, 30*time.Second, "EndpointSlice of db", func(ctx context.Context) (bool, error) {
		l, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=db"})
		if err != nil || len(l.Items) != 1 {
			return false, err
		}
		s := l.Items[0]
		if s.Labels[discoveryv1.LabelManagedBy] != ManagedBy || len(s.Endpoints) != 1 || len(s.Ports) != 1 {
			return false, fmt.Errorf("slice %+v", s)
		}
		e := s.Endpoints[0]
		ok := e.Addresses[0] == dbPod.Status.PodIP && e.TargetRef != nil && e.TargetRef.Name == "db" &&
			e.Conditions.Ready != nil && *e.Conditions.Ready && *s.Ports[0].Port == 3306
		return ok, nil
	})

	slice, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "db-world", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rules := nodeNAT(t, node); !strings.Contains(rules, svc.Spec.ClusterIP+"/32") || !strings.Contains(rules, dbPod.Status.PodIP+":3306") {
		t.Errorf("no DNAT %s:3307 -> %s:3306 in the node's rules:\n%s", svc.Spec.ClusterIP, dbPod.Status.PodIP, rules)
	}

	// A throw-away client pod probes the ClusterIP through kube-proxy's DNAT.
	client := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: ns},
		Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{
			Name: "probe", Image: "ghcr.io/serverfirst/kubectl-serverfirst:dev",
			Args:            []string{"probe", "--timeout", "20s", "-o", "json", "$(TARGET)"},
			Env:             []corev1.EnvVar{{Name: "TARGET", Value: svc.Spec.ClusterIP + ":3307"}},
			SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](65532)},
		}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, client, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	done := waitPod(t, cs, ns, "probe", time.Minute, func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	})
	logs := podLogs(t, cs, ns, "probe", "probe")
	t.Logf("probe pod %s in %v: %s", done.Status.Phase, time.Since(began).Round(time.Millisecond), strings.TrimSpace(logs))
	if done.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("probe pod %s", done.Status.Phase)
	}
	if st := done.Status.ContainerStatuses; len(st) != 1 || st[0].State.Terminated == nil || st[0].State.Terminated.ExitCode != 0 {
		t.Errorf("probe container status %+v", st)
	}
	var res struct {
		Results []struct{ Outcome, Protocol, Banner string } `json:"results"`
	}
	if err := json.Unmarshal([]byte(logs), &res); err != nil || len(res.Results) != 1 {
		t.Fatalf("probe output: %v\n%s", err, logs)
	}
	if r := res.Results[0]; r.Outcome != "banner" || r.Protocol != "mysql" || !strings.Contains(r.Banner, "MariaDB") {
		t.Errorf("probe through ClusterIP: %+v, want a MariaDB banner", r)
	}

	// Port-forward through the API server to the pod, as kubectl does.
	banner := portForwardBanner(t, env, ns, "db", 3306, false)
	if !strings.Contains(banner, "MariaDB") {
		t.Errorf("port-forward banner %q does not name MariaDB", banner)
	}

	// An ephemeral container in the cache pod's netns, as kubectl debug adds.
	cur, err := cs.CoreV1().Pods(ns).Get(ctx, "cache", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Spec.EphemeralContainers = append(cur.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{
			Name: "debug", Image: "debian:12",
			Command: []string{"sh", "-c", "echo debug in $POD_NAME at $INSTANCE_IP; ip -4 -o addr show eth0"},
		},
	})
	if _, err := cs.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, "cache", cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPod(t, cs, ns, "cache", 30*time.Second, func(p *corev1.Pod) bool {
		s := p.Status.EphemeralContainerStatuses
		return len(s) == 1 && s[0].State.Terminated != nil
	})
	dbg := podLogs(t, cs, ns, "cache", "debug")
	if want := "debug in cache at " + cachePod.Status.PodIP; !strings.Contains(dbg, want) || !strings.Contains(dbg, cachePod.Status.PodIP+"/") {
		t.Errorf("debug logs %q, want %q and eth0 with the pod IP", dbg, want)
	}

	// Nothing about db changed since: its slice was not rewritten.
	if again, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "db-world", metav1.GetOptions{}); err != nil || again.ResourceVersion != slice.ResourceVersion {
		t.Errorf("EndpointSlice rewritten without a change (resourceVersion %s -> %s, %v)", slice.ResourceVersion, again.ResourceVersion, err)
	}

	// Deleting pods removes them and their namespaces.
	dbNetns := node.PodNetns(ns, "db")
	for _, name := range []string{"db", "cache", "probe"} {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	began = time.Now()
	waitFor(t, time.Minute, "pods deleted", func(ctx context.Context) (bool, error) {
		l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil && len(l.Items) == 0, err
	})
	t.Logf("pods gone in %v", time.Since(began).Round(time.Millisecond))
	waitFor(t, 10*time.Second, "db netns removed", func(context.Context) (bool, error) {
		_, err := os.Stat(dbNetns)
		return os.IsNotExist(err), nil
	})
	waitFor(t, 10*time.Second, "EndpointSlice emptied", func(ctx context.Context) (bool, error) {
		s, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "db-world", metav1.GetOptions{})
		return err == nil && len(s.Endpoints) == 0, err
	})
	if err := cs.CoreV1().Services(ns).Delete(ctx, "db", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "EndpointSlice deleted", func(ctx context.Context) (bool, error) {
		_, err := cs.DiscoveryV1().EndpointSlices(ns).Get(ctx, "db-world", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	waitFor(t, 10*time.Second, "DNAT rule removed", func(context.Context) (bool, error) {
		return !strings.Contains(nodeNAT(t, node), svc.Spec.ClusterIP), nil
	})
}

// nodeNAT is the node namespace's nat table.
func nodeNAT(t *testing.T, node *Node) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", node.NodeNetns(), "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

// portForwardBanner forwards a local port to the pod through the API server
// (SPDY, as client-go's tools/portforward does) and reads the first line.
// With websocket, it dials as kubectl and the product do: SPDY tunnelled
// over a websocket to the API server, falling back to plain SPDY.
func portForwardBanner(t *testing.T, env *testenv.Env, ns, pod string, port int, websocket bool) string {
	t.Helper()
	transport, upgrader, err := spdy.RoundTripperFor(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(env.Host + fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/portforward", ns, pod))
	if err != nil {
		t.Fatal(err)
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	if websocket {
		ws, err := portforward.NewSPDYOverWebsocketDialer(u, env.Config)
		if err != nil {
			t.Fatal(err)
		}
		fellBack := false
		// client-go's WebSocket dialer reports a refused upgrade with
		// k8s.io/streaming's error type (see cluster/vantage/direct.go).
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			fellBack = httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
			return fellBack
		})
		defer func() {
			if fellBack {
				t.Errorf("websocket port-forward fell back to SPDY")
			}
		}()
	}
	stop, ready := make(chan struct{}), make(chan struct{})
	defer close(stop)
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stop, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("port-forward: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("port-forward not ready in 30s")
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v: %v", ports, err)
	}
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", ports[0].Local), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 512)
	n, err := bufio.NewReader(c).Read(buf)
	if n == 0 {
		t.Fatalf("port-forward read: %v", err)
	}
	return string(buf[:n])
}

func hostPod(name string, restart corev1.RestartPolicy, inits []corev1.Container, ctrs ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "life", Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{RestartPolicy: restart, InitContainers: inits, Containers: ctrs},
	}
}

func sh(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "debian:12", Command: []string{"sh", "-c", script}}
}

func containerStatus(sts []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range sts {
		if sts[i].Name == name {
			return &sts[i]
		}
	}
	return nil
}

// TestWorldLifecycle covers init containers, native and classic sidecars,
// restart policies, followed logs, sshd with a websocket port-forward, and
// Cleanup of a crashed run.
func TestWorldLifecycle(t *testing.T) {
	requireWorld(t)
	t.Parallel()
	env, node := startWorld(t, Chain(DaemonResolver(), HostCommandResolver()))
	ctx := context.Background()
	cs := env.Client
	if _, err := env.CreateNamespace(ctx, "life", nil); err != nil {
		t.Fatal(err)
	}
	always := corev1.ContainerRestartPolicyAlways
	proxy := sh("istio-proxy", "echo proxy up; exec sleep 1000")
	nativeProxy := proxy
	nativeProxy.RestartPolicy = &always
	pods := []*corev1.Pod{
		// A native sidecar does not keep a finished Job pod alive.
		hostPod("native", corev1.RestartPolicyNever,
			[]corev1.Container{sh("init", "echo init ran"), nativeProxy},
			sh("main", "echo main ran; exit 0")),
		// A classic sidecar does: the pod stays Running, main reports terminated.
		hostPod("classic", corev1.RestartPolicyNever, nil, sh("main", "exit 3"), proxy),
		// A failing init container fails a Never pod; main never starts.
		hostPod("badinit", corev1.RestartPolicyNever, []corev1.Container{sh("init", "exit 1")}, sh("main", "echo never")),
		// OnFailure restarts a failing container.
		hostPod("crash", corev1.RestartPolicyOnFailure, nil, sh("main", "echo crashing; exit 2")),
		// Followed logs.
		hostPod("ticker", corev1.RestartPolicyAlways, nil, sh("main", "for i in 1 2 3; do echo tick $i; sleep 0.2; done; exec sleep 1000")),
		{
			ObjectMeta: metav1.ObjectMeta{Name: "ssh", Namespace: "life"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "sshd", Image: "linuxserver/openssh-server", Ports: []corev1.ContainerPort{{ContainerPort: 2222}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(2222)}}},
			}}},
		},
	}
	for _, p := range pods {
		if _, err := cs.CoreV1().Pods("life").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	native := waitPod(t, cs, "life", "native", time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	if s := containerStatus(native.Status.ContainerStatuses, "main"); s == nil || s.State.Terminated == nil || s.State.Terminated.ExitCode != 0 {
		t.Errorf("native: main status %+v", s)
	}
	if got := podLogs(t, cs, "life", "native", "init"); got != "init ran\n" {
		t.Errorf("native: init logs %q", got)
	}
	if got := podLogs(t, cs, "life", "native", "istio-proxy"); got != "proxy up\n" {
		t.Errorf("native: sidecar logs %q", got)
	}

	classic := waitPod(t, cs, "life", "classic", time.Minute, func(p *corev1.Pod) bool {
		s := containerStatus(p.Status.ContainerStatuses, "main")
		return s != nil && s.State.Terminated != nil
	})
	if classic.Status.Phase != corev1.PodRunning || containerStatus(classic.Status.ContainerStatuses, "main").State.Terminated.ExitCode != 3 ||
		containerStatus(classic.Status.ContainerStatuses, "istio-proxy").State.Running == nil {
		t.Errorf("classic: phase %s, statuses %+v", classic.Status.Phase, classic.Status.ContainerStatuses)
	}

	bad := waitPod(t, cs, "life", "badinit", time.Minute, func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed })
	if s := containerStatus(bad.Status.ContainerStatuses, "main"); s == nil || s.State.Waiting == nil {
		t.Errorf("badinit: main status %+v, want waiting", s)
	}

	waitPod(t, cs, "life", "crash", time.Minute, func(p *corev1.Pod) bool {
		s := containerStatus(p.Status.ContainerStatuses, "main")
		return s != nil && s.RestartCount >= 1 && s.LastTerminationState.Terminated != nil && s.LastTerminationState.Terminated.ExitCode == 2
	})

	waitPod(t, cs, "life", "ticker", time.Minute, isReady)
	rc, err := cs.CoreV1().Pods("life").GetLogs("ticker", &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(rc)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if sc.Text() == "tick 3" {
			break
		}
	}
	rc.Close()
	if strings.Join(lines, ",") != "tick 1,tick 2,tick 3" {
		t.Errorf("followed logs %q", lines)
	}
	tail, err := cs.CoreV1().Pods("life").GetLogs("ticker", &corev1.PodLogOptions{TailLines: ptr.To[int64](1)}).DoRaw(ctx)
	if err != nil || string(tail) != "tick 3\n" {
		t.Errorf("tailLines=1: %q, %v", tail, err)
	}

	waitPod(t, cs, "life", "ssh", time.Minute, isReady)
	if banner := portForwardBanner(t, env, "life", "ssh", 2222, true); !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Errorf("sshd banner over port-forward: %q", banner)
	}

	// SMTP, when an MTA is installed (hack/test-deps.sh does not).
	if _, err := lookPath("exim4"); err != nil {
		t.Logf("no exim4 (apt-get install exim4-daemon-light): SMTP part skipped")
	} else {
		smtp := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "mail", Namespace: "life"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: "exim", Image: "docker.io/namshi/smtp", Ports: []corev1.ContainerPort{{ContainerPort: 2525}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(2525)}}},
			}}},
		}
		if _, err := cs.CoreV1().Pods("life").Create(ctx, smtp, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitPod(t, cs, "life", "mail", time.Minute, isReady)
		if banner := portForwardBanner(t, env, "life", "mail", 2525, true); !strings.HasPrefix(banner, "220 ") || !strings.Contains(banner, "ESMTP") {
			t.Errorf("exim banner over port-forward: %q", banner)
		}
	}

	// Everything goes with Stop, and Cleanup removes a dead run's leftovers.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	stale := fmt.Sprintf("%s%dx1-node", NetnsPrefix, dead.Process.Pid)
	if out, err := exec.Command("ip", "netns", "add", stale).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	if err := Cleanup(""); err != nil {
		t.Errorf("Cleanup: %v", err)
	}
	if left := netnsWithPrefix(t, stale); len(left) != 0 {
		exec.Command("ip", "netns", "del", stale).Run()
		t.Errorf("Cleanup left %v", left)
	}
	if len(netnsWithPrefix(t, NetnsPrefix+node.net.tag)) < 2 {
		t.Errorf("Cleanup removed a live node's namespaces")
	}
	began := time.Now()
	if err := node.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	t.Logf("Stop with running pods took %v", time.Since(began).Round(time.Millisecond))
	if left := netnsWithPrefix(t, NetnsPrefix+node.net.tag); len(left) > 0 {
		t.Errorf("Stop left %v", left)
	}
	if err := node.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}
