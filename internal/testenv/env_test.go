package testenv

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1"
	securityapi "istio.io/api/security/v1"
	typeapi "istio.io/api/type/v1beta1"
	istionet "istio.io/client-go/pkg/apis/networking/v1"
	istiosec "istio.io/client-go/pkg/apis/security/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func ctxForTest(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// clientFromKubeconfig proves a written kubeconfig works the way the CLI
// will load it.
func clientFromKubeconfig(t *testing.T, path string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatalf("load kubeconfig %s: %v", path, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestStartWithIstioCRDs(t *testing.T) {
	env := StartForTest(t, Options{})
	ctx := ctxForTest(t)

	nsList, err := clientFromKubeconfig(t, env.Kubeconfig).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list namespaces with the admin kubeconfig: %v", err)
	}
	got := map[string]bool{}
	for _, ns := range nsList.Items {
		got[ns.Name] = true
	}
	for _, want := range []string{"default", "kube-system"} {
		if !got[want] {
			t.Errorf("namespace %q missing from %v", want, got)
		}
	}
	if _, err := env.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Errorf("default/default ServiceAccount: %v", err)
	}

	if _, err := env.CreateNamespace(ctx, "shop", map[string]string{"istio-injection": "enabled"}); err != nil {
		t.Fatal(err)
	}
	ic, err := env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	se := &istionet.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "external-mysql", Namespace: "shop"},
		Spec: networkingapi.ServiceEntry{
			Hosts:      []string{"db.example.com"},
			Ports:      []*networkingapi.ServicePort{{Number: 3306, Name: "tcp-mysql", Protocol: "TCP"}},
			Resolution: networkingapi.ServiceEntry_DNS,
			Location:   networkingapi.ServiceEntry_MESH_EXTERNAL,
		},
	}
	if _, err := ic.NetworkingV1().ServiceEntries("shop").Create(ctx, se, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ServiceEntry: %v", err)
	}
	pa := &istiosec.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "shop"},
		Spec: securityapi.PeerAuthentication{
			Selector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "db"}},
			PortLevelMtls: map[uint32]*securityapi.PeerAuthentication_MutualTLS{
				3306: {Mode: securityapi.PeerAuthentication_MutualTLS_DISABLE},
			},
		},
	}
	if _, err := ic.SecurityV1().PeerAuthentications("shop").Create(ctx, pa, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create PeerAuthentication: %v", err)
	}

	// The dynamic client sees the same objects, with the fields intact.
	gvr := schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"}
	got1, err := env.Dynamic.Resource(gvr).Namespace("shop").Get(ctx, "external-mysql", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get ServiceEntry via dynamic client: %v", err)
	}
	ports, _, _ := unstructured.NestedSlice(got1.Object, "spec", "ports")
	if len(ports) != 1 || ports[0].(map[string]any)["protocol"] != "TCP" {
		t.Errorf("ServiceEntry ports = %v, want one TCP port", ports)
	}
	paList, err := ic.SecurityV1().PeerAuthentications("shop").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(paList.Items) != 1 || paList.Items[0].Spec.PortLevelMtls[3306].GetMode() != securityapi.PeerAuthentication_MutualTLS_DISABLE {
		t.Errorf("PeerAuthentications = %v, want db with port 3306 DISABLE", paList.Items)
	}
	// An invalid object is rejected by the CRD's schema validation, which
	// is what makes these CRDs a faithful stand-in for Istio's.
	bad := se.DeepCopy()
	bad.Name = "bad"
	bad.Spec.Ports[0].Number = 0
	if _, err := ic.NetworkingV1().ServiceEntries("shop").Create(ctx, bad, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
		t.Errorf("ServiceEntry with port 0: got %v, want Invalid", err)
	}
}

func TestStartWithoutIstioCRDs(t *testing.T) {
	env := StartForTest(t, Options{NoIstioCRDs: true})
	ctx := ctxForTest(t)

	groups, err := env.Client.Discovery().ServerGroups()
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range groups.Groups {
		if strings.HasSuffix(g.Name, ".istio.io") {
			t.Errorf("API group %s served without Istio's CRDs", g.Name)
		}
	}
	ic, err := env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	_, err = ic.NetworkingV1().ServiceEntries("default").List(ctx, metav1.ListOptions{})
	if !apierrors.IsNotFound(err) {
		t.Errorf("list ServiceEntries without CRDs: got %v, want NotFound", err)
	}
}

// TestServiceAccountKubeconfigRBAC is the pattern RBAC tests follow: a
// ServiceAccount kubeconfig is denied until a Role grants the verb.
func TestServiceAccountKubeconfigRBAC(t *testing.T) {
	env := StartForTest(t, Options{NoIstioCRDs: true})
	ctx := ctxForTest(t)
	if _, err := env.CreateNamespace(ctx, "rbac", nil); err != nil {
		t.Fatal(err)
	}
	path, err := env.KubeconfigFor("rbac", "scanner")
	if err != nil {
		t.Fatal(err)
	}
	sa := clientFromKubeconfig(t, path)

	// The token authenticates as the ServiceAccount (not as admin).
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, "system:serviceaccount:rbac:scanner"; got != want {
		t.Errorf("authenticated as %q, want %q", got, want)
	}
	if _, err := sa.CoreV1().Secrets("rbac").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("list secrets before any Role: got %v, want Forbidden", err)
	}

	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "secret-reader", Namespace: "rbac"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"list"}}},
	}
	if _, err := env.Client.RbacV1().Roles("rbac").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "scanner-reads-secrets", Namespace: "rbac"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "secret-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: "rbac", Name: "scanner"}},
	}
	if _, err := env.Client.RbacV1().RoleBindings("rbac").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The RBAC authorizer reads bindings through an informer: poll until
	// it has seen this one, within the test's deadline.
	err = poll(ctx, "RoleBinding to take effect", func() (bool, string, error) {
		_, err := sa.CoreV1().Secrets("rbac").List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) {
			return false, err.Error(), nil
		}
		return true, "", err
	})
	if err != nil {
		t.Fatalf("list secrets after binding the Role: %v", err)
	}
	// The grant is exactly the Role: other namespaces stay forbidden.
	if _, err := sa.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets in default: got %v, want Forbidden", err)
	}
}

func TestUserKubeconfigCarriesGroups(t *testing.T) {
	env := StartForTest(t, Options{NoIstioCRDs: true})
	ctx := ctxForTest(t)
	tests := []struct {
		user      string
		groups    []string
		wantNSErr func(error) bool
	}{
		{"alice", nil, apierrors.IsForbidden},
		{"root", []string{"system:masters"}, func(err error) bool { return err == nil }},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			path, err := env.KubeconfigForUser(tc.user, tc.groups...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = clientFromKubeconfig(t, path).CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if !tc.wantNSErr(err) {
				t.Errorf("list namespaces as %s %v: unexpected result %v", tc.user, tc.groups, err)
			}
		})
	}
}

// TestLoopbackAddresses pins down the API server behaviour the package
// comment promises: loopback pod IPs are fine, loopback EndpointSlice
// addresses are not. If a Kubernetes upgrade changes either, e2e tests that
// rely on it must change too.
func TestLoopbackAddresses(t *testing.T) {
	env := StartForTest(t, Options{NoIstioCRDs: true})
	ctx := ctxForTest(t)
	if _, err := env.CreateNamespace(ctx, "net", nil); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "net"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "mariadb:11"}}},
	}
	pod, err := env.Client.CoreV1().Pods("net").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod without a controller-manager: %v", err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.PodIP = "127.0.0.2"
	pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.2"}}
	if _, err := env.Client.CoreV1().Pods("net").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Errorf("loopback pod IP in status: %v", err)
	}

	for _, tc := range []struct {
		addr    string
		wantErr bool
	}{
		{"127.0.0.2", true},
		{"10.0.0.7", false}, // only stored, never dialled
	} {
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{GenerateName: "db-", Namespace: "net"},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{tc.addr}}},
		}
		_, err := env.Client.DiscoveryV1().EndpointSlices("net").Create(ctx, slice, metav1.CreateOptions{})
		if gotErr := err != nil; gotErr != tc.wantErr {
			t.Errorf("EndpointSlice address %s: err = %v, want error: %v", tc.addr, err, tc.wantErr)
		}
	}
}

func TestStopLeavesNothingBehind(t *testing.T) {
	if _, _, err := Binaries(""); err != nil {
		StartForTest(t, Options{}) // skips or fails with the usual message
	}
	env, err := Start(context.Background(), Options{NoIstioCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	pids, err := PIDsMentioning(env.Dir)
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if len(pids) != 2 {
		t.Errorf("processes mentioning %s while running: %v, want etcd and kube-apiserver", env.Dir, pids)
	}
	stopBegan := time.Now()
	if err := env.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("started in %v, stopped in %v", env.StartupTime, time.Since(stopBegan))
	if err := env.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if pids, _ := PIDsMentioning(env.Dir); len(pids) != 0 {
		t.Errorf("processes left after Stop: %v", pids)
	}
	if _, err := os.Stat(env.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after Stop: %v, want it removed", env.Dir, err)
	}
	select {
	case <-env.Done():
	default:
		t.Error("Done not closed after Stop")
	}
}

// TestStartFailureShowsLog makes kube-apiserver refuse its flags: Start
// must fail fast, say why from the log, and clean up.
func TestStartFailureShowsLog(t *testing.T) {
	if _, _, err := Binaries(""); err != nil {
		StartForTest(t, Options{})
	}
	// A temp dir of this test's own: other packages' tests start servers
	// in the shared one at the same time.
	t.Setenv("TMPDIR", t.TempDir())
	before := tempDirs(t)
	_, err := Start(context.Background(), Options{NoIstioCRDs: true, ExtraAPIServerArgs: []string{"--no-such-flag=1"}})
	if err == nil {
		t.Fatal("Start with a bad flag succeeded")
	}
	for _, want := range []string{"kube-apiserver exited during start-up", "no-such-flag"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	for d := range tempDirs(t) {
		if !before[d] {
			t.Errorf("temp dir %s left behind", d)
		}
	}
}

func tempDirs(t *testing.T) map[string]bool {
	t.Helper()
	matches, err := filepath.Glob(filepath.Join(os.TempDir(), "serverfirst-testenv-*"))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, d := range matches {
		m[d] = true
	}
	return m
}

func TestBinaries(t *testing.T) {
	full := t.TempDir()
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(full, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	half := t.TempDir()
	if err := os.WriteFile(filepath.Join(half, "etcd"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	notExec := t.TempDir()
	for _, name := range []string{"kube-apiserver", "etcd"} {
		if err := os.WriteFile(filepath.Join(notExec, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, dir, envDir string
		wantErr           bool
	}{
		{"explicit dir", full, "", false},
		{"env var", "", full, false},
		{"explicit dir wins over env", half, full, true},
		{"one binary missing", half, "", true},
		{"not executable", notExec, "", true},
		{"empty dir", t.TempDir(), "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvTestBin, tc.envDir)
			api, etcd, err := Binaries(tc.dir)
			if tc.wantErr {
				if !errors.Is(err, ErrBinariesMissing) || !strings.Contains(err.Error(), "make test-deps") {
					t.Errorf("err = %v, want ErrBinariesMissing naming make test-deps", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(api) != "kube-apiserver" || filepath.Base(etcd) != "etcd" {
				t.Errorf("got %s, %s", api, etcd)
			}
		})
	}
}

func TestIstioCRDFileFromModule(t *testing.T) {
	t.Setenv(EnvIstioCRDs, "")
	f, err := IstioCRDFile()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"name: serviceentries.networking.istio.io", "name: peerauthentications.security.istio.io"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("%s lacks %q", f, want)
		}
	}
}

func TestRemoveStaleDirs(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	old := time.Now().Add(-time.Hour)
	mk := func(name string, mtime time.Time) string {
		d := filepath.Join(tmp, name)
		if err := os.MkdirAll(filepath.Join(d, "etcd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(d, mtime, mtime); err != nil {
			t.Fatal(err)
		}
		return d
	}
	stale := mk("serverfirst-testenv-1", old)
	fresh := mk("serverfirst-testenv-2", time.Now())
	inUse := mk("serverfirst-testenv-3", old)
	other := mk("someone-else-4", old)

	// A live process naming inUse on its command line, as etcd would.
	holder := exec.Command("sh", "-c", "read x", inUse)
	stdin, err := holder.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); _ = holder.Wait() }()

	removeStaleDirs()
	for _, tc := range []struct {
		dir      string
		wantGone bool
	}{{stale, true}, {fresh, false}, {inUse, false}, {other, false}} {
		_, err := os.Stat(tc.dir)
		if gone := errors.Is(err, os.ErrNotExist); gone != tc.wantGone {
			t.Errorf("%s: gone = %v, want %v", filepath.Base(tc.dir), gone, tc.wantGone)
		}
	}
}
