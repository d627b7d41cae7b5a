package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
	"github.com/serverfirst/kubectl-serverfirst/scan"
)

// seedSidecars creates server pods that sit behind a "sidecar": each pod's
// IP is 127.0.0.2, where a silent listener stands in for a sidecar that
// waits for the client's bytes, and the server itself listens on the same
// port of 127.0.0.1, the pod's loopback, which a port-forward reaches. So
// the scan's self probe hears the mesh path and the stand-in port-forward
// (fakePortForward) the direct path, dialling loopback only.
func seedSidecars(t *testing.T, env *testenv.Env, ns string, servers map[string]func(net.Conn)) {
	t.Helper()
	seedSidecarsWith(t, env, ns, func(func(net.Conn)) func(net.Conn) { return waitForClient }, servers)
}

// seedSidecarsWith is seedSidecars with another stand-in sidecar: given
// the server's handler, it returns what a client of the pod IP meets.
func seedSidecarsWith(t *testing.T, env *testenv.Env, ns string, sidecarFor func(server func(net.Conn)) func(net.Conn), servers map[string]func(net.Conn)) {
	t.Helper()
	ctx := context.Background()
	if _, err := env.CreateNamespace(ctx, ns, map[string]string{"istio-injection": "enabled"}); err != nil {
		t.Fatal(err)
	}
	for name, handle := range servers {
		addr := listenLoopback(t, handle)
		_, p, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(p)
		// The kernel gave 127.0.0.1:port to us alone, so no wildcard
		// listener holds the port: 127.0.0.2:port is free.
		sidecar, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", p))
		if err != nil {
			t.Fatal(err)
		}
		serve(t, sidecar, sidecarFor(handle))
		pod, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Labels: map[string]string{"app": name},
				Annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: name, Image: name + ":1", Ports: []corev1.ContainerPort{{Name: "main", ContainerPort: int32(port)}}},
				{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0"},
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = "127.0.0.2"
		pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.2"}}
		if _, err := env.Client.CoreV1().Pods(ns).UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		// Headless, an unnamed port: the sidecar sniffs it.
		_, err = env.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// serve accepts on ln until the test ends.
func serve(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}

// fakePortForward replaces the port-forwards (the test API server has no
// kubelet): it probes each planned pod port on 127.0.0.1, where the pod's
// loopback is in seedSidecars, and records what was planned.
type fakePortForward struct {
	runDirect scan.RunDirectFunc

	mu      sync.Mutex
	calls   int
	targets []string // TargetKey strings, sorted
	pods    []string
}

func newFakePortForward(t *testing.T) *fakePortForward {
	f := &fakePortForward{}
	f.runDirect = func(ctx context.Context, _ *rest.Config, _ kubernetes.Interface, plan vantage.Plan, o vantage.RunOptions) ([]target.Observation, []string) {
		f.mu.Lock()
		f.calls++
		f.mu.Unlock()
		if len(plan.Pods) > 0 {
			t.Errorf("--direct planned %d probe pods", len(plan.Pods))
		}
		var obs []target.Observation
		for _, d := range plan.Direct {
			f.mu.Lock()
			f.pods = append(f.pods, d.Namespace+"/"+d.Pod)
			f.mu.Unlock()
			for port, keys := range d.Ports {
				r := probe.ProbeAll(ctx, []probe.Target{{Host: "127.0.0.1", Port: int(port)}}, o.Probe)[0]
				r.Target = fmt.Sprintf("%s/%s:%d", d.Namespace, d.Pod, port)
				r.Address = "port-forward " + r.Target
				for _, k := range keys {
					f.mu.Lock()
					f.targets = append(f.targets, k.String())
					f.mu.Unlock()
					obs = append(obs, target.Observation{Target: k, Vantage: target.VantageDirect, Result: r})
				}
			}
		}
		return obs, nil
	}
	return f
}

// run runs the CLI with the fake in place of the port-forwards.
func (f *fakePortForward) run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	return runWith(t, hooks{runDirect: f.runDirect}, stdin, args...)
}

func (f *fakePortForward) reset() (calls int, targets, pods []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls, targets, pods = f.calls, f.targets, f.pods
	sort.Strings(targets)
	sort.Strings(pods)
	f.calls, f.targets, f.pods = 0, nil, nil
	return
}

// bindRules grants ServiceAccount sa of namespace "default" the rules of
// a new ClusterRole name, cluster-wide or (with namespaces) there only, and
// returns its kubeconfig.
func bindRules(t *testing.T, env *testenv.Env, sa, name string, rules []rbacv1.PolicyRule, namespaces ...string) string {
	t.Helper()
	ctx := context.Background()
	if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ref := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}
	sub := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: sa}}
	if len(namespaces) == 0 {
		if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: sub}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range namespaces {
		if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: sub}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	kc, err := env.KubeconfigFor("default", sa)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

func directWarnings(r report.Report) []string {
	var out []string
	for _, w := range r.Warnings {
		if strings.HasPrefix(w, "--direct") || strings.Contains(w, "port-forward") {
			out = append(out, w)
		}
	}
	return out
}

func TestScanDirectFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--vantage", "self", "--direct", "--no-direct"}, "--direct and --no-direct: give one"},
		{[]string{"--vantage", "pods", "--direct", "--no-direct"}, "--direct and --no-direct: give one"},
		{[]string{"--direct", "--static"}, "--direct and --static: a static scan probes nothing, drop one"},
		{[]string{"--direct", "--vantage", "none"}, "--direct and --vantage none: a static scan probes nothing, drop one"},
	} {
		for _, cmd := range []string{"scan", "fix"} {
			_, _, err := run(t, "", append([]string{cmd}, c.args...)...)
			if err == nil || err.Error() != c.want || exitCode(err) != 1 {
				t.Errorf("%s %v: err = %v, want %q", cmd, c.args, err, c.want)
			}
		}
	}
	// Accepted: --vantage pods port-forwards anyway, and self or auto add it.
	for _, v := range []string{"pods", "self", "auto"} {
		if err := checkDirect(&scanFlags{direct: true, vantage: v}, v); err != nil {
			t.Errorf("--direct --vantage %s: %v", v, err)
		}
	}
}

// TestScanDirectAgainstAPIServer: scan --vantage self --direct merges the
// port-forward evidence with its own, so silence through the mesh plus a
// banner on the pod's loopback is DEADLOCK; without the right it says so
// once and stays AT-RISK; shards forward to their own targets only.
func TestScanDirectAgainstAPIServer(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	for _, ns := range []string{"istio-system", "serverfirst"} {
		if _, err := env.CreateNamespace(context.Background(), ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	// Five servers whose names hint at a server-first protocol, one
	// that speaks first with no hint (orders), one that waits (cache).
	seedSidecars(t, env, "app", map[string]func(net.Conn){
		"postfix": greet("220 mail.example ESMTP\r\n"), "vsftpd": greet("220 ftp ready\r\n"), "openssh": greet("SSH-2.0-OpenSSH_9.2\r\n"),
		"mariadb": greet("J\x00\x00\x00\x0a8.0.36\x00"), "dovecot": greet("+OK POP3 ready\r\n"), "orders": greet("J\x00\x00\x00\x0a8.0.36\x00"),
		"cache": waitForClient,
	})
	seedSidecars(t, env, "other", map[string]func(net.Conn){"imap": greet("* OK IMAP4rev1 ready\r\n")})
	fake := newFakePortForward(t)
	scanArgs := []string{"scan", "-n", "app", "--vantage", "self", "--self-in-mesh", "true", "--timeout", "1s", "-o", "json"}

	var all []string
	t.Run("the direct half makes DEADLOCK", func(t *testing.T) {
		out, errOut, err := fake.run(t, "", append(scanArgs, "--kubeconfig", env.Kubeconfig, "--direct")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		v := verdicts(r)
		for _, name := range []string{"postfix", "vsftpd", "openssh", "mariadb", "dovecot", "orders"} {
			got := ""
			for k, s := range v {
				if strings.HasPrefix(k, "Service/app/"+name+":") {
					got = s
				}
			}
			if !strings.HasPrefix(got, "DEADLOCK ") || !strings.Contains(got, "direct=banner/") || !strings.Contains(got, "self=silent/") {
				t.Errorf("%s: %q, want DEADLOCK from a direct banner and silence from here", name, got)
			}
		}
		if r.Summary[report.Deadlock] != 6 || r.Summary[report.ClientFirst] != 1 {
			t.Errorf("summary %v, want 6 DEADLOCK and the client-first cache", r.Summary)
		}
		if w := directWarnings(r); len(w) != 0 {
			t.Errorf("warnings %v", w)
		}
		if !strings.Contains(errOut, "port-forwarding to 7 pod(s) for the direct path") {
			t.Errorf("stderr: %s", errOut)
		}
		var pods []string
		_, all, pods = fake.reset()
		if len(all) != 7 || len(pods) != 7 {
			t.Errorf("forwarded to %v (%v), want the 7 Services of app", all, pods)
		}
	})

	// Silence through the mesh alone: AT-RISK where a hint suggests a
	// server-first protocol, CLIENT-FIRST where none does (orders).
	withoutDirect := func(t *testing.T, r report.Report) {
		t.Helper()
		if r.Summary[report.Deadlock] != 0 || r.Summary[report.AtRisk] != 5 || r.Summary[report.ClientFirst] != 2 {
			t.Errorf("summary %v, want 5 AT-RISK and 2 CLIENT-FIRST", r.Summary)
		}
	}

	t.Run("without --direct: AT-RISK, no port-forward", func(t *testing.T) {
		out, errOut, err := fake.run(t, "", append(scanArgs, "--kubeconfig", env.Kubeconfig)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		withoutDirect(t, decodeReport(t, out))
		if calls, _, _ := fake.reset(); calls != 0 {
			t.Errorf("port-forwarded %d times without --direct", calls)
		}
	})

	reader := publish.ReaderRules()
	portForward := rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create"}}

	t.Run("without the right: one warning, AT-RISK", func(t *testing.T) {
		kc := bindRules(t, env, "reader", "reader", reader)
		out, errOut, err := fake.run(t, "", append(scanArgs, "--kubeconfig", kc, "--direct")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		want := "--direct: the current user cannot create pods/portforward; no direct proof, so deadlocks show as AT-RISK (job manifests --direct grants it)"
		if w := directWarnings(r); len(w) != 1 || w[0] != want {
			t.Errorf("warnings %q, want one: %q", w, want)
		}
		withoutDirect(t, r)
		if calls, _, _ := fake.reset(); calls != 0 {
			t.Errorf("port-forwarded %d times without the right", calls)
		}
		// In the Job, the same words name the ServiceAccount.
		clients, _, err := (&rootOptions{configFlags: configFlagsFor(kc)}).clients()
		if err != nil {
			t.Fatal(err)
		}
		inv, err := cluster.Load(context.Background(), clients, cluster.LoadOptions{Namespaces: []string{"app"}})
		if err != nil {
			t.Fatal(err)
		}
		pods, w := scan.PlanSelfDirect(context.Background(), clients.Kube, inv, nil, vantage.PlanSelfProbes(inv, nil, true), true)
		if len(pods) != 0 || len(w) != 1 || w[0] != "--direct: this ServiceAccount cannot create pods/portforward; no direct proof, so deadlocks show as AT-RISK (job manifests --direct grants it)" {
			t.Errorf("in the Job: pods %v, warnings %q", pods, w)
		}
	})

	t.Run("the right in some namespaces: forwards there, names the rest", func(t *testing.T) {
		bindRules(t, env, "app-only", "app-only-reader", reader)
		kc := bindRules(t, env, "app-only", "app-only-forwarder", []rbacv1.PolicyRule{portForward}, "app")
		out, errOut, err := fake.run(t, "", "scan", "-A", "--vantage", "self", "--self-in-mesh", "true", "--timeout", "1s", "-o", "json", "--kubeconfig", kc, "--direct")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		// Only the seeded loopback servers are dialled (not the API
		// server's Service, say).
		if !strings.Contains(errOut, "probing 8 targets from here") {
			t.Errorf("stderr: %s", errOut)
		}
		r := decodeReport(t, out)
		want := "--direct: the current user cannot create pods/portforward in namespace(s) other; no direct proof there, so deadlocks there show as AT-RISK (job manifests --direct grants it)"
		if w := directWarnings(r); len(w) != 1 || w[0] != want {
			t.Errorf("warnings %q, want one: %q", w, want)
		}
		_, targets, _ := fake.reset()
		if !slices.Equal(targets, all) {
			t.Errorf("forwarded to %v, want app's %v", targets, all)
		}
		v := verdicts(r)
		for k, s := range v {
			if strings.HasPrefix(k, "Service/other/imap:") && !strings.HasPrefix(s, "AT-RISK ") {
				t.Errorf("%s: %s, want AT-RISK", k, s)
			}
		}
		if r.Summary[report.Deadlock] != 6 {
			t.Errorf("summary %v, want app's 6 DEADLOCK", r.Summary)
		}
	})

	t.Run("shards forward to their own targets", func(t *testing.T) {
		var union []string
		for i := range 3 {
			out, errOut, err := fake.run(t, "", append(scanArgs, "--kubeconfig", env.Kubeconfig, "--direct", "--shard", fmt.Sprintf("%d/3", i), "--run-id", "direct")...)
			if err != nil {
				t.Fatalf("shard %d: %v\n%s", i, err, errOut)
			}
			_, targets, _ := fake.reset()
			for _, k := range targets {
				key, ok := target.ParseTargetKey(k)
				if !ok || publish.ShardOf(key, 3) != i {
					t.Errorf("shard %d forwarded to %s, owned by shard %d", i, k, publish.ShardOf(key, 3))
				}
			}
			union = append(union, targets...)
			for k, s := range verdicts(decodeReport(t, out)) {
				if !strings.HasPrefix(k, "Service/app/cache:") && !strings.HasPrefix(s, "DEADLOCK ") {
					t.Errorf("shard %d: %s is %s, want DEADLOCK", i, k, s)
				}
			}
		}
		sort.Strings(union)
		if !slices.Equal(union, all) {
			t.Errorf("shards forwarded to %v together, want each of %v once", union, all)
		}
	})

	t.Run("the real port-forward is tried, not refused", func(t *testing.T) {
		kc := bindRules(t, env, "forwarder", "forwarder", append(slices.Clone(reader), portForward))
		out, errOut, err := run(t, "", append(scanArgs, "--kubeconfig", kc, "--direct")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		// "create" alone: the WebSocket attempt is refused, SPDY is not.
		// No kubelet behind this API server: each port-forward fails past
		// authorization, at the pod that no node runs.
		w := directWarnings(decodeReport(t, out))
		if len(w) != 7 {
			t.Errorf("warnings %q, want one failed port-forward per pod", w)
		}
		for _, s := range w {
			if !strings.HasPrefix(s, "port-forward to app/") || !strings.Contains(s, "does not have a host assigned") {
				t.Errorf("warning %q", s)
			}
		}
	})
}
