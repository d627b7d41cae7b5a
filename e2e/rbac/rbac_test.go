// Package rbac tests deploy/rbac.yaml against a real API server: the
// ServiceAccount it creates must see exactly what an admin sees, with no
// warning, and must not be able to change or read anything else.
package rbac

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

const appLabel = "app.kubernetes.io/name"

func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// readManifest parses deploy/rbac.yaml into its objects.
func readManifest(t *testing.T) []*unstructured.Unstructured {
	t.Helper()
	root, err := testenv.RepoRoot()
	must(t, err)
	f, err := os.Open(filepath.Join(root, "deploy", "rbac.yaml"))
	must(t, err)
	defer f.Close()
	objs, err := testenv.DecodeManifests(f)
	if err != nil {
		t.Fatalf("deploy/rbac.yaml: %v", err)
	}
	return objs
}

// apply server-side-applies every object.
func apply(t *testing.T, env *testenv.Env, objs []*unstructured.Unstructured) {
	t.Helper()
	must(t, env.Apply(ctxFor(t), objs))
}

func clients(t *testing.T, cfg *rest.Config) cluster.Clients {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	ic, err := istioclient.NewForConfig(cfg)
	must(t, err)
	return cluster.Clients{Kube: kube, Istio: ic}
}

func configFromKubeconfig(t *testing.T, path string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	must(t, err)
	return cfg
}

// seed makes a small mesh: two namespaces, Services, pods with and without
// sidecars, slices, a ServiceEntry, PeerAuthentications, the mesh config,
// and a ConfigMap and a Secret the scanner has no business reading.
func seed(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := ctxFor(t)
	kube := env.Client
	ic, err := env.IstioClient()
	must(t, err)
	for ns, labels := range map[string]map[string]string{
		"istio-system": nil,
		"shop":         {"istio-injection": "enabled"},
		"legacy":       nil,
	} {
		_, err := env.CreateNamespace(ctx, ns, labels)
		must(t, err)
	}
	_, err = kube.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Data:       map[string]string{"mesh": "protocolDetectionTimeout: 1s\n"},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = kube.CoreV1().ConfigMaps("shop").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "app-config"},
		Data:       map[string]string{"password": "hunter2"},
	}, metav1.CreateOptions{})
	must(t, err)
	_, err = kube.CoreV1().Secrets("shop").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		StringData: map[string]string{"password": "hunter2"},
	}, metav1.CreateOptions{})
	must(t, err)

	for _, s := range []*corev1.Service{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mysql"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "mysql"},
			Ports:    []corev1.ServicePort{{Name: "mysql-main", Port: 3307, TargetPort: intstr.FromString("mysql")}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "smtp"}, Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "smtp"},
			Ports:    []corev1.ServicePort{{Name: "smtp", Port: 587}},
		}},
	} {
		_, err := kube.CoreV1().Services(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		must(t, err)
	}
	for _, p := range []*corev1.Pod{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "mysql-0", Labels: map[string]string{"app": "mysql"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "mysql", Image: "mariadb:11", Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306}}},
				{Name: "istio-proxy", Image: "istio/proxyv2"},
			}}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "legacy", Name: "smtp-0", Labels: map[string]string{"app": "smtp"}}, Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "smtp", Image: "postfix"}}}},
	} {
		created, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		must(t, err)
		created.Status.Phase = corev1.PodRunning
		created.Status.PodIP = "127.0.0.5"
		created.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.5"}}
		_, err = kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		must(t, err)
	}
	_, err = kube.DiscoveryV1().EndpointSlices("shop").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "mysql-a", Labels: map[string]string{discoveryv1.LabelServiceName: "mysql"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.1.0.5"}, TargetRef: &corev1.ObjectReference{Kind: "Pod", Name: "mysql-0"}}},
	}, metav1.CreateOptions{})
	must(t, err)

	se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "ext-db"}}
	se.Spec.Hosts = []string{"db.example.com"}
	se.Spec.Resolution = networkingapi.ServiceEntry_DNS
	se.Spec.Ports = []*networkingapi.ServicePort{{Number: 3306, Name: "mysql", Protocol: "TCP"}}
	_, err = ic.NetworkingV1().ServiceEntries("shop").Create(ctx, se, metav1.CreateOptions{})
	must(t, err)

	for _, p := range []struct {
		ns, name string
		sel      map[string]string
		mode     securityapi.PeerAuthentication_MutualTLS_Mode
	}{
		{"istio-system", "default", nil, securityapi.PeerAuthentication_MutualTLS_STRICT},
		{"shop", "mysql", map[string]string{"app": "mysql"}, securityapi.PeerAuthentication_MutualTLS_PERMISSIVE},
	} {
		obj := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name}}
		obj.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: p.mode}
		if p.sel != nil {
			obj.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: p.sel}
		}
		_, err := ic.SecurityV1().PeerAuthentications(p.ns).Create(ctx, obj, metav1.CreateOptions{})
		must(t, err)
	}
}

// comparable drops what legitimately differs between two Loads of the same
// objects (nothing but the timestamps' monotonic readings).
func comparable(inv *cluster.Inventory) string {
	c := *inv
	c.PeerAuthentications = slices.Clone(inv.PeerAuthentications)
	for i := range c.PeerAuthentications {
		c.PeerAuthentications[i].CreatedAt = c.PeerAuthentications[i].CreatedAt.UTC()
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	return string(b)
}

func assertSame(t *testing.T, what string, got, want *cluster.Inventory) {
	t.Helper()
	if g, w := comparable(got), comparable(want); g != w {
		t.Errorf("%s: inventory differs from the admin's\ngot:\n%s\nwant:\n%s", what, g, w)
	}
}

func TestRBAC(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seed(t, env)
	objs := readManifest(t)

	t.Run("manifest", func(t *testing.T) {
		kinds := map[string]int{}
		for _, o := range objs {
			kinds[o.GetKind()]++
			if o.GetLabels()[appLabel] != "kubectl-serverfirst" {
				t.Errorf("%s %s lacks %s: kubectl-serverfirst", o.GetKind(), o.GetName(), appLabel)
			}
			if o.GetKind() != "ClusterRole" && o.GetKind() != "Role" {
				continue
			}
			var role rbacv1.ClusterRole // Role has the same rules field
			must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role))
			for _, r := range role.Rules {
				if !slices.Equal(r.Verbs, []string{"get", "list"}) {
					t.Errorf("%s %s grants %v on %v: only get and list", o.GetKind(), o.GetName(), r.Verbs, r.Resources)
				}
				if slices.Contains(r.Resources, "*") || slices.Contains(r.APIGroups, "*") || slices.Contains(r.Resources, "secrets") {
					t.Errorf("%s %s is too broad: %+v", o.GetKind(), o.GetName(), r)
				}
				if o.GetKind() == "ClusterRole" && slices.Contains(r.Resources, "configmaps") {
					t.Errorf("ClusterRole %s grants configmaps cluster-wide", o.GetName())
				}
			}
		}
		want := map[string]int{"Namespace": 1, "ServiceAccount": 1, "ClusterRole": 1, "ClusterRoleBinding": 1, "Role": 1, "RoleBinding": 1}
		if !reflect.DeepEqual(kinds, want) {
			t.Errorf("kinds = %v, want %v", kinds, want)
		}
	})

	apply(t, env, objs)
	apply(t, env, objs) // applying again is harmless
	saPath, err := env.KubeconfigFor("serverfirst", "serverfirst")
	must(t, err)
	saCfg := configFromKubeconfig(t, saPath)

	t.Run("the ServiceAccount sees what the admin sees", func(t *testing.T) {
		for _, opts := range []cluster.LoadOptions{{}, {Namespaces: []string{"shop"}}, {Namespaces: []string{"shop", "legacy"}}} {
			admin, err := cluster.Load(ctxFor(t), clients(t, env.Config), opts)
			must(t, err)
			sa, err := waitForLoad(ctxFor(t), clients(t, saCfg), opts, func(inv *cluster.Inventory) bool { return len(inv.Warnings) == 0 })
			must(t, err)
			if len(sa.Warnings) != 0 {
				t.Errorf("%+v: warnings as the ServiceAccount: %q", opts, sa.Warnings)
			}
			assertSame(t, "ServiceAccount", sa, admin)
			if !sa.Mesh.Found || len(sa.PeerAuthentications) == 0 || len(sa.ServiceEntries) != 1 || len(sa.Pods) == 0 {
				t.Errorf("%+v: the ServiceAccount's inventory is thin: %+v", opts, sa)
			}
		}
	})

	t.Run("the ServiceAccount can read nothing else and change nothing", func(t *testing.T) {
		ctx := ctxFor(t)
		kube, err := kubernetes.NewForConfig(saCfg)
		must(t, err)
		for what, call := range map[string]func() error{
			"list ConfigMaps in an app namespace": func() error { _, err := kube.CoreV1().ConfigMaps("shop").List(ctx, metav1.ListOptions{}); return err },
			"list ConfigMaps cluster-wide":        func() error { _, err := kube.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{}); return err },
			"list Secrets":                        func() error { _, err := kube.CoreV1().Secrets("shop").List(ctx, metav1.ListOptions{}); return err },
			"list Secrets in istio-system": func() error {
				_, err := kube.CoreV1().Secrets("istio-system").List(ctx, metav1.ListOptions{})
				return err
			},
			"watch pods": func() error {
				w, err := kube.CoreV1().Pods("").Watch(ctx, metav1.ListOptions{})
				if err == nil {
					w.Stop()
				}
				return err
			},
			"delete a pod": func() error { return kube.CoreV1().Pods("shop").Delete(ctx, "mysql-0", metav1.DeleteOptions{}) },
			"create a Service": func() error {
				_, err := kube.CoreV1().Services("shop").Create(ctx, &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 1}}},
				}, metav1.CreateOptions{})
				return err
			},
			"patch a ConfigMap in istio-system": func() error {
				_, err := kube.CoreV1().ConfigMaps("istio-system").Patch(ctx, "istio", "application/merge-patch+json", []byte(`{"data":{"x":"y"}}`), metav1.PatchOptions{})
				return err
			},
		} {
			if err := call(); !apierrors.IsForbidden(err) {
				t.Errorf("%s: err = %v, want Forbidden", what, err)
			}
		}
	})

	t.Run("a ClusterRole without peerauthentications: one warning", func(t *testing.T) {
		ctx := ctxFor(t)
		var role rbacv1.ClusterRole
		for _, o := range objs {
			if o.GetKind() == "ClusterRole" {
				must(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &role))
			}
		}
		role.ObjectMeta = metav1.ObjectMeta{Name: "serverfirst-reader-no-pa"}
		role.Rules = slices.DeleteFunc(role.Rules, func(r rbacv1.PolicyRule) bool { return slices.Contains(r.Resources, "peerauthentications") })
		_, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{})
		must(t, err)
		subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: "no-pa", Namespace: "serverfirst"}}
		_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "serverfirst-reader-no-pa"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   subject,
		}, metav1.CreateOptions{})
		must(t, err)
		_, err = env.Client.RbacV1().RoleBindings("istio-system").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-pa-meshconfig"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "serverfirst-meshconfig-reader"},
			Subjects:   subject,
		}, metav1.CreateOptions{})
		must(t, err)
		path, err := env.KubeconfigFor("serverfirst", "no-pa")
		must(t, err)
		for _, opts := range []cluster.LoadOptions{{}, {Namespaces: []string{"shop"}}} {
			inv, err := waitForLoad(ctx, clients(t, configFromKubeconfig(t, path)), opts, func(inv *cluster.Inventory) bool { return len(inv.Warnings) <= 1 })
			if err != nil {
				t.Fatalf("%+v: %v", opts, err)
			}
			if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "peerauthentications") || !strings.Contains(inv.Warnings[0], "mTLS") {
				t.Errorf("%+v: warnings %q, want exactly one about peerauthentications and mTLS", opts, inv.Warnings)
			}
			admin, err := cluster.Load(ctx, clients(t, env.Config), opts)
			must(t, err)
			admin.PeerAuthentications, admin.Warnings = nil, inv.Warnings
			assertSame(t, "without PeerAuthentications", inv, admin)
		}
	})

	t.Run("a namespaced user with a Role", func(t *testing.T) {
		ctx := ctxFor(t)
		_, err := env.Client.RbacV1().Roles("shop").Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "scanner"},
			Rules: []rbacv1.PolicyRule{
				// A Role can grant GET on its own Namespace object.
				{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "destinationrules", "sidecars"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: []string{"get", "list"}},
			},
		}, metav1.CreateOptions{})
		must(t, err)
		_, err = env.Client.RbacV1().RoleBindings("shop").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "dev-scanner"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "scanner"},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "dev"}},
		}, metav1.CreateOptions{})
		must(t, err)
		devCfg, err := env.ConfigForUser("dev")
		must(t, err)
		opts := cluster.LoadOptions{Namespaces: []string{"shop"}}
		admin, err := cluster.Load(ctx, clients(t, env.Config), opts)
		must(t, err)

		t.Run("shop only", func(t *testing.T) {
			inv, err := waitForLoad(ctx, clients(t, devCfg), opts, func(inv *cluster.Inventory) bool { return len(inv.Warnings) <= 5 })
			must(t, err)
			// Nothing in istio-system is readable: the mesh-wide policy, the
			// root namespace's DestinationRules and Sidecars and the mesh
			// config are unknown, and Load says so, once each.
			wantWarnings := []string{
				"cannot list configmaps in namespace istio-system (forbidden): the mesh config is unknown, Istio defaults are assumed",
				"cannot list destinationrules.networking.istio.io in namespace istio-system (forbidden): client TLS is judged from auto mTLS alone, as if no DestinationRule set tls",
				"cannot list peerauthentications.security.istio.io in namespace istio-system (forbidden): mTLS modes are assumed PERMISSIVE, which may be wrong",
				// The admin counts the pods without a sidecar in other
				// namespaces; this user cannot, and is told so.
				"cannot list pods in all namespaces (forbidden): clients without a sidecar outside the scanned namespaces (shop) are not counted, so the external-to-mesh path of PERMISSIVE ports may have more clients than the report says",
				"cannot list sidecars.networking.istio.io in namespace istio-system (forbidden): every client is judged with Istio's default scope (a listener for every visible service) and the Services' inbound protocols",
			}
			if !slices.Equal(inv.Warnings, wantWarnings) {
				t.Errorf("warnings =\n%q\nwant\n%q", inv.Warnings, wantWarnings)
			}
			want := *admin
			want.Warnings = wantWarnings
			want.UnmeshedElsewhere, want.UnmeshedElsewhereUnknown = nil, true
			want.PeerAuthentications = slices.DeleteFunc(slices.Clone(admin.PeerAuthentications), func(p cluster.PeerAuthentication) bool { return p.Namespace == "istio-system" })
			want.Mesh = cluster.DefaultMeshConfig("istio-system")
			want.Mesh.Source = "Istio defaults (not allowed to read ConfigMaps in istio-system)"
			assertSame(t, "namespaced user", inv, &want)
		})

		t.Run("plus the mesh config Role", func(t *testing.T) {
			_, err := env.Client.RbacV1().RoleBindings("istio-system").Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: "dev-meshconfig"},
				RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "serverfirst-meshconfig-reader"},
				Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "dev"}},
			}, metav1.CreateOptions{})
			must(t, err)
			inv, err := waitForLoad(ctx, clients(t, devCfg), opts, func(inv *cluster.Inventory) bool { return inv.Mesh.Found })
			must(t, err)
			// The mesh config is readable now; the root namespace's policies
			// (PeerAuthentications, DestinationRules, Sidecars) still are not.
			if len(inv.Warnings) != 4 || slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.Contains(w, "configmaps") }) {
				t.Errorf("warnings = %q, want only the root namespace's PeerAuthentications, DestinationRules and Sidecars, and the pods of other namespaces", inv.Warnings)
			}
			if inv.Mesh != admin.Mesh {
				t.Errorf("mesh = %+v, want %+v", inv.Mesh, admin.Mesh)
			}
		})

		t.Run("another namespace", func(t *testing.T) {
			inv, err := cluster.Load(ctx, clients(t, devCfg), cluster.LoadOptions{Namespaces: []string{"legacy"}})
			if err != nil {
				t.Fatalf("a forbidden namespace must be warnings, not an error: %v", err)
			}
			for _, res := range []string{"namespaces", "services", "pods", "endpointslices", "serviceentries"} {
				if !slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.Contains(w, "cannot list "+res) }) {
					t.Errorf("no warning for %s in %q", res, inv.Warnings)
				}
			}
			if len(inv.Services) != 0 || len(inv.Pods) != 0 {
				t.Errorf("read what it may not: %+v", inv)
			}
		})

		t.Run("all namespaces", func(t *testing.T) {
			inv, err := cluster.Load(ctx, clients(t, devCfg), cluster.LoadOptions{})
			if err != nil {
				t.Fatalf("forbidden cluster-wide LISTs must be warnings, not an error: %v", err)
			}
			if len(inv.Warnings) < 6 {
				t.Errorf("warnings = %q, want one per cluster-wide LIST", inv.Warnings)
			}
		})
	})
}

// waitForLoad retries Load until ok, for up to 10 s: the RBAC authorizer's
// informer takes a moment to see a new binding. It returns the last result
// either way, for the caller to judge.
func waitForLoad(ctx context.Context, c cluster.Clients, opts cluster.LoadOptions, ok func(*cluster.Inventory) bool) (*cluster.Inventory, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		inv, err := cluster.Load(ctx, c, opts)
		if err != nil || ok(inv) {
			return inv, err
		}
		select {
		case <-ctx.Done():
			return inv, nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
