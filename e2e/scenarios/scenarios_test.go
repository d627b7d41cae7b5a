// Package scenarios runs the built kubectl-serverfirst against the e2e
// world (a real API server, real istiod, a node agent running pods as
// processes in their own network namespaces, sidecars configured by
// istiod, real MariaDB/sshd/redis) and walks the seed's whole fix table: scan proves
// the deadlock, fix --apply repairs it, a second scan says OK.
package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// cli runs the built binary; it returns the exit code, never fails the test by itself.
func cli(ctx context.Context, t *testing.T, bin, kubeconfig string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, append(args, "--kubeconfig", kubeconfig)...)
	// fix --apply keeps its record under the state directory: the test's own.
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return out.String(), errOut.String(), code
}

func scanJSON(ctx context.Context, t *testing.T, bin, kc string, args ...string) report.Report {
	t.Helper()
	out, errOut, code := cli(ctx, t, bin, kc, append([]string{"scan", "--vantage", "pods", "-o", "json", "--timeout", "2s", "--connect-timeout", "2s"}, args...)...)
	if code != 0 {
		t.Fatalf("scan exited %d\n%s", code, errOut)
	}
	var r report.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("scan JSON: %v\n%s", err, out)
	}
	t.Logf("scan %v:\n%s", args, errOut)
	return r
}

func find(t *testing.T, r report.Report, kind, ns, name string, port int32) report.Finding {
	t.Helper()
	for _, f := range r.Findings {
		if f.Kind == kind && f.Namespace == ns && f.Name == name && f.Port == port {
			return f
		}
	}
	t.Fatalf("no finding %s %s/%s:%d", kind, ns, name, port)
	return report.Finding{}
}

func pathVerdict(f report.Finding, sc report.Scenario) report.Verdict {
	for _, p := range f.Paths {
		if p.Scenario == sc {
			return p.Verdict
		}
	}
	return ""
}

func hasDirectBanner(f report.Finding) bool {
	for _, e := range f.Evidence {
		if e.Outcome == "banner" && (e.Vantage == target.VantageDirect || e.Vantage == target.VantageOutsideClient && !f.ServerInMesh) {
			return true
		}
	}
	return false
}

func describe(f report.Finding) string {
	b, _ := json.MarshalIndent(struct {
		V report.Verdict
		S report.Scenario
		R string
		P []report.PathVerdict
		E []report.Evidence
	}{f.Verdict, f.Scenario, f.Reason, f.Paths, f.Evidence}, "", " ")
	return string(b)
}

type fixture struct {
	env *testenv.Env
	w   *world.World
	bin string
	kc  string
}

func start(t *testing.T, ctx context.Context) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the e2e world needs root (CI=true: failing instead of skipping)")
		}
		t.Skip("the e2e world needs root")
	}
	if _, err := world.LocateIstioBinaries(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skip(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// Probe pods run the binary as uid 65532: its directory must be
	// readable by everyone, which t.TempDir's parent is not.
	binDir, err := os.MkdirTemp("", "serverfirst-scenarios-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bins, err := world.BuildBinaries(ctx, root, binDir)
	if err != nil {
		t.Fatal(err)
	}
	env := testenv.StartForTest(t, testenv.Options{})
	w, err := world.StartWorld(ctx, world.WorldOptions{Env: env, Binaries: bins, Logf: func(string, ...any) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	return &fixture{env: env, w: w, bin: bins.Serverfirst, kc: env.Kubeconfig}
}

func (fx *fixture) namespace(t *testing.T, name string, labels map[string]string) {
	t.Helper()
	if _, err := fx.env.CreateNamespace(context.Background(), name, labels); err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) pod(t *testing.T, ns, app, image string, port int32) {
	t.Helper()
	_, err := fx.env.Client.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{Name: "server", Image: image,
				Ports: []corev1.ContainerPort{{Name: "main", ContainerPort: port}},
				Env:   []corev1.EnvVar{{Name: "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", Value: "1"}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) service(t *testing.T, ns, name, app, portName string, port, target int32) {
	t.Helper()
	sel := map[string]string{"app": app}
	if app == "" {
		sel = map[string]string{"app": "nobody"}
	}
	_, err := fx.env.Client.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{
			Name: portName, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func (fx *fixture) podIP(t *testing.T, ns, name string) string {
	t.Helper()
	p, err := fx.env.Client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || p.Status.PodIP == "" {
		t.Fatalf("pod %s/%s has no IP: %v", ns, name, err)
	}
	return p.Status.PodIP
}

// TestFixTableEndToEnd walks every row of the fix table, plus the
// controls, through scan -> fix --apply -> scan.
func TestFixTableEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the e2e world; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	fx := start(t, ctx)
	injected := map[string]string{"istio-injection": "enabled"}

	// mesh-to-mesh: MariaDB on a sniffed port; the same pod on 3306 unnamed (well-known: OK).
	fx.namespace(t, "m2m", injected)
	fx.pod(t, "m2m", "db", "docker.io/library/mariadb:11", 3306)
	fx.service(t, "m2m", "db", "db", "db", 3307, 3306)
	fx.service(t, "m2m", "db-wk", "db", "", 3306, 3306)
	// An in-mesh HTTP port 2224 with no pods: its 0.0.0.0:2224 listener is
	// the collision trap. (2224 is in no hint catalogue, so nothing but the
	// ServiceEntry can repair the external server below.)
	fx.service(t, "m2m", "web", "", "http-web", 2224, 8080)
	// client-first control.
	fx.namespace(t, "cf", injected)
	fx.pod(t, "cf", "cache", "docker.io/library/redis:7", 6379)
	fx.service(t, "cf", "cache", "cache", "cache", 6380, 6379)
	// external-to-mesh: sshd declared TCP, in the mesh, PERMISSIVE.
	fx.namespace(t, "e2m", injected)
	fx.pod(t, "e2m", "ssh", "lscr.io/linuxserver/openssh-server:latest", 2222)
	fx.service(t, "e2m", "ssh", "ssh", "tcp-ssh", 2222, 2222)
	// STRICT: clients without a sidecar are rejected.
	fx.namespace(t, "strict", injected)
	fx.pod(t, "strict", "ssh", "lscr.io/linuxserver/openssh-server:latest", 2222)
	fx.service(t, "strict", "ssh", "ssh", "tcp-ssh", 2222, 2222)
	ic, err := fx.env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ic.SecurityV1().PeerAuthentications("strict").Create(ctx, &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       securityapi.PeerAuthentication{Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// mesh-to-external: two servers outside the mesh and the registry.
	fx.namespace(t, "outside", nil)
	fx.pod(t, "outside", "ext-ssh", "lscr.io/linuxserver/openssh-server:latest", 2224)
	fx.pod(t, "outside", "ext-ssh2", "lscr.io/linuxserver/openssh-server:latest", 2223)
	// A PodSecurity-restricted namespace with a sniffed target.
	fx.namespace(t, "locked", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"})
	fx.service(t, "locked", "nothing", "", "x", 9999, 9999)

	if err := world.WaitPodsReady(ctx, fx.env.Client, "m2m/db", "cf/cache", "e2m/ssh", "strict/ssh", "outside/ext-ssh", "outside/ext-ssh2"); err != nil {
		t.Fatal(err)
	}
	// No readiness probes: Ready comes before the daemons listen.
	for ref, port := range map[string]int{"m2m/db": 3306, "cf/cache": 6379, "e2m/ssh": 2222, "strict/ssh": 2222, "outside/ext-ssh": 2224, "outside/ext-ssh2": 2223} {
		ns, name, _ := strings.Cut(ref, "/")
		if err := fx.w.WaitListening(ctx, ns, name, port); err != nil {
			t.Fatal(err)
		}
	}
	extIP, ext2IP := fx.podIP(t, "outside", "ext-ssh"), fx.podIP(t, "outside", "ext-ssh2")
	// mesh-to-external with a ServiceEntry that leaves the protocol unset.
	if _, err := ic.NetworkingV1().ServiceEntries("m2m").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "ext-ssh"},
		Spec: networkingapi.ServiceEntry{
			Hosts: []string{"ssh.external.test"}, Addresses: []string{ext2IP}, Location: networkingapi.ServiceEntry_MESH_EXTERNAL,
			Resolution: networkingapi.ServiceEntry_STATIC, Ports: []*networkingapi.ServicePort{{Number: 2223, Name: "ssh"}},
			Endpoints: []*networkingapi.WorkloadEntry{{Address: ext2IP}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := fx.w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	external := extIP + ":2224"

	r := scanJSON(ctx, t, fx.bin, fx.kc, "-A", "--external", external)
	check := func(f report.Finding, verdict report.Verdict, scenario report.Scenario, directProof bool) {
		t.Helper()
		if f.Verdict != verdict || (scenario != "" && f.Scenario != scenario) {
			t.Errorf("%s/%s:%d: got %s %s, want %s %s\n%s", f.Namespace, f.Name, f.Port, f.Verdict, f.Scenario, verdict, scenario, describe(f))
		}
		if directProof && !hasDirectBanner(f) {
			t.Errorf("%s/%s:%d: no direct-path banner in the evidence\n%s", f.Namespace, f.Name, f.Port, describe(f))
		}
	}
	db := find(t, r, target.KindService, "m2m", "db", 3307)
	check(db, report.Deadlock, report.MeshToMesh, true)
	if v := pathVerdict(find(t, r, target.KindService, "m2m", "db-wk", 3306), report.MeshToMesh); v != report.OK {
		t.Errorf("3306 unnamed: mesh path %s, want OK", v)
	}
	check(find(t, r, target.KindService, "cf", "cache", 6380), report.ClientFirst, "", false)
	e2m := find(t, r, target.KindService, "e2m", "ssh", 2222)
	check(e2m, report.Deadlock, report.ExternalToMesh, true)
	if v := pathVerdict(e2m, report.MeshToMesh); v != report.OK {
		t.Errorf("e2m mesh path %s, want OK (declared TCP)", v)
	}
	check(find(t, r, target.KindService, "strict", "ssh", 2222), report.MTLSRejected, report.ExternalToMesh, false)
	check(find(t, r, target.KindExternal, "", extIP, 2224), report.Deadlock, report.MeshToExternal, true)
	check(find(t, r, target.KindServiceEntry, "m2m", "ext-ssh", 2223), report.Deadlock, report.MeshToExternal, true)
	locked := find(t, r, target.KindService, "locked", "nothing", 9999)
	outsideRan := false
	for _, e := range locked.Evidence {
		outsideRan = outsideRan || e.Vantage == target.VantageOutsideClient
	}
	if !outsideRan {
		t.Errorf("the restricted namespace did not admit the outside-client probe pod; warnings: %v", r.Warnings)
	}
	for _, w := range r.Warnings {
		if strings.Contains(w, "outside-client probe pod in locked") {
			t.Errorf("outside probe pod refused in the restricted namespace: %s", w)
		}
	}
	fx.assertNoProbePods(t, ctx)

	// Apply the tool's own fixes, including the one that disables mTLS.
	before := time.Now()
	out, errOut, code := cli(ctx, t, fx.bin, fx.kc, "fix", "-A", "--vantage", "pods", "--apply", "--yes", "--allow-plaintext", "--external", external, "--timeout", "2s", "--connect-timeout", "2s")
	if code != 0 {
		t.Fatalf("fix --apply exited %d\n%s\n%s", code, out, errOut)
	}
	t.Logf("fix --apply:\n%s", errOut)
	if err := fx.w.WaitSidecarsSynced(ctx, before); err != nil {
		t.Fatal(err)
	}
	r = scanJSON(ctx, t, fx.bin, fx.kc, "-A", "--external", external)
	check(find(t, r, target.KindService, "m2m", "db", 3307), report.OK, "", false)
	check(find(t, r, target.KindService, "e2m", "ssh", 2222), report.OK, "", false)
	check(find(t, r, target.KindExternal, "", extIP, 2224), report.OK, "", false)
	check(find(t, r, target.KindServiceEntry, "m2m", "ext-ssh", 2223), report.OK, "", false)
	// STRICT stays: fix never opens it on its own.
	check(find(t, r, target.KindService, "strict", "ssh", 2222), report.MTLSRejected, report.ExternalToMesh, false)
	check(find(t, r, target.KindService, "cf", "cache", 6380), report.ClientFirst, "", false)

	// Idempotent: a second fix finds nothing to apply.
	_, errOut, code = cli(ctx, t, fx.bin, fx.kc, "fix", "-A", "--vantage", "pods", "--apply", "--yes", "--allow-plaintext", "--external", external, "--timeout", "2s", "--connect-timeout", "2s")
	if code != 0 || strings.Contains(errOut, " applied") {
		t.Errorf("second fix --apply: exit %d, stderr:\n%s", code, errOut)
	}

	t.Run("DELAYED with a detection timeout", func(t *testing.T) {
		fx.namespace(t, "slow", injected)
		fx.pod(t, "slow", "db", "docker.io/library/mariadb:11", 3306)
		fx.service(t, "slow", "db", "db", "db", 3309, 3306)
		if _, err := fx.env.CreateNamespace(ctx, "istio-system", nil); err != nil && !strings.Contains(err.Error(), "exists") {
			t.Fatal(err)
		}
		// Updated: istiod's chart wrote it.
		cms := fx.env.Client.CoreV1().ConfigMaps("istio-system")
		mesh := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "istio"},
			Data:       map[string]string{"mesh": "protocolDetectionTimeout: 1s\n"},
		}
		_, err := cms.Create(ctx, mesh, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			var old *corev1.ConfigMap
			if old, err = cms.Get(ctx, "istio", metav1.GetOptions{}); err == nil {
				old.Data["mesh"] = mesh.Data["mesh"]
				_, err = cms.Update(ctx, old, metav1.UpdateOptions{})
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := world.WaitPodsReady(ctx, fx.env.Client, "slow/db"); err != nil {
			t.Fatal(err)
		}
		if err := fx.w.WaitListening(ctx, "slow", "db", 3306); err != nil {
			t.Fatal(err)
		}
		if err := fx.w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		r := scanJSON(ctx, t, fx.bin, fx.kc, "-n", "slow", "--no-outside", "--timeout", "4s")
		f := find(t, r, target.KindService, "slow", "db", 3309)
		if f.Verdict != report.Delayed || !hasDirectBanner(f) {
			t.Errorf("got %s, want DELAYED with direct proof\n%s", f.Verdict, describe(f))
		}
	})

	t.Run("Ctrl-C leaves no probe pod behind", func(t *testing.T) {
		cmd := exec.CommandContext(ctx, fx.bin, "scan", "-A", "--vantage", "pods", "--timeout", "20s", "--kubeconfig", fx.kc, "-o", "json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Interrupt once a probe pod exists (watch, no sleeping).
		w, err := fx.env.Client.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=probe"})
		if err != nil {
			t.Fatal(err)
		}
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning {
				break
			}
		}
		w.Stop()
		if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 130 {
			t.Errorf("scan after SIGINT: %v, want exit 130\n%s", err, stderr.String())
		}
		fx.assertNoProbePods(t, ctx)
	})
}

func (fx *fixture) assertNoProbePods(t *testing.T, ctx context.Context) {
	t.Helper()
	pods, err := fx.env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/component=probe"})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) > 0 {
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Namespace+"/"+p.Name)
		}
		t.Errorf("probe pods left behind: %v", names)
	}
}
