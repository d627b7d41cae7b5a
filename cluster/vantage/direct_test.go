package vantage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func TestKeepTargets(t *testing.T) {
	key := func(name string, port int32) target.TargetKey {
		return target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: name, Port: port}
	}
	in := []vantage.DirectProbe{
		{Namespace: "shop", Pod: "db-0", Ports: map[int32][]target.TargetKey{3306: {key("db", 3306), key("db-alias", 3307)}, 9104: {key("db-metrics", 9104)}}},
		{Namespace: "shop", Pod: "web-0", Ports: map[int32][]target.TargetKey{8080: {key("web", 80)}}},
	}
	got := vantage.KeepTargets(in, func(k target.TargetKey) bool { return k.Name == "db-alias" })
	want := []vantage.DirectProbe{{Namespace: "shop", Pod: "db-0", Ports: map[int32][]target.TargetKey{3306: {key("db-alias", 3307)}}}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("KeepTargets = %v, want %v", got, want)
	}
	if len(in[0].Ports[3306]) != 2 || len(in[0].Ports) != 2 {
		t.Errorf("the input was changed: %v", in)
	}
	if got := vantage.KeepTargets(in, func(target.TargetKey) bool { return false }); got != nil {
		t.Errorf("nothing kept: %v", got)
	}
}

// asServiceAccount binds the rules to a new ServiceAccount (cluster-wide,
// or in namespaces when given) and returns its client and config.
func asServiceAccount(t *testing.T, env *testenv.Env, name string, rules []rbacv1.PolicyRule, namespaces ...string) (kubernetes.Interface, string) {
	t.Helper()
	ctx := context.Background()
	if len(rules) > 0 {
		if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ref := rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name}
	sub := []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: name}}
	switch {
	case len(rules) == 0:
	case len(namespaces) == 0:
		if _, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: sub}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	default:
		for _, ns := range namespaces {
			if _, err := env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: sub}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	kc, err := env.KubeconfigFor("default", name)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(mustConfig(t, kc)), kc
}

func mustConfig(t *testing.T, kc string) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestPortForwardRights: the review answers per namespace, and the
// port-forward itself works with "create" alone (WebSocket refused, SPDY
// taken), as the review assumes. The pod does not exist: an API server
// that answers "not found" has authorized the request.
func TestPortForwardRights(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx := context.Background()
	for _, ns := range []string{"a", "b", "c"} {
		if _, err := env.CreateNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	create := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create"}}}
	forward := func(kc string, ns string) error {
		cfg := mustConfig(t, kc)
		_, err := vantage.RunDirect(ctx, cfg, kubernetes.NewForConfigOrDie(cfg), vantage.DirectProbe{Namespace: ns, Pod: "nowhere", Ports: map[int32][]target.TargetKey{80: nil}}, probe.Options{})
		return err
	}

	none, noneKC := asServiceAccount(t, env, "none", nil)
	if denied, err := vantage.PortForwardDenied(ctx, none, []string{"b", "a", "b"}); err != nil || !slices.Equal(denied, []string{"a", "b"}) {
		t.Errorf("no rights: denied %v (%v), want [a b]", denied, err)
	}
	if err := forward(noneKC, "a"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("no rights: port-forward %v, want forbidden", err)
	}

	some, someKC := asServiceAccount(t, env, "some", create, "a", "c")
	if denied, err := vantage.PortForwardDenied(ctx, some, []string{"a", "b", "c"}); err != nil || !slices.Equal(denied, []string{"b"}) {
		t.Errorf("create in a and c: denied %v (%v), want [b]", denied, err)
	}
	if err := forward(someKC, "b"); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("create in a and c: port-forward in b: %v, want forbidden", err)
	}
	if err := forward(someKC, "a"); err == nil || !strings.Contains(err.Error(), `"nowhere" not found`) {
		t.Errorf("create in a: port-forward in a: %v, want the pod not found (authorized through the SPDY fallback)", err)
	}

	all, _ := asServiceAccount(t, env, "all", create)
	if denied, err := vantage.PortForwardDenied(ctx, all, []string{"a", "b"}); err != nil || denied != nil {
		t.Errorf("create everywhere: denied %v (%v)", denied, err)
	}
}
