package cluster_test

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestLoadUnmeshedElsewhere: a -n scan counts the clients without a
// sidecar in the other namespaces from one paged LIST of pod metadata, and
// a user who may not list pods cluster-wide gets a warning instead (never
// the generic "sidecars and images are unknown": the scan's own pods were
// read).
func TestLoadUnmeshedElsewhere(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{})
	seed(t, env)

	t.Run("admin, -n shop", func(t *testing.T) {
		var rc requestCounter
		inv, err := cluster.Load(testCtx(t), clientsFor(t, rc.wrap(env.Config)), cluster.LoadOptions{Namespaces: []string{"shop"}})
		must(t, err)
		// Outside shop: amb/app-0, legacy/smtp-1 and mesh-off/app-0 have no
		// sidecar annotation and are not finished; canary/app-0 has
		// Succeeded; legacy/smtp-0 carries sidecar.istio.io/status.
		want := map[string]int{"amb": 1, "legacy": 1, "mesh-off": 1}
		if !reflect.DeepEqual(inv.UnmeshedElsewhere, want) || inv.UnmeshedElsewhereUnknown {
			t.Errorf("UnmeshedElsewhere = %v (unknown %v), want %v", inv.UnmeshedElsewhere, inv.UnmeshedElsewhereUnknown, want)
		}
		var cluster []string
		for _, u := range rc.urls {
			if u.Path == "/api/v1/pods" {
				cluster = append(cluster, u.RawQuery)
				if u.Query().Get("limit") != "500" || u.Query().Get("fieldSelector") != "status.phase!=Succeeded,status.phase!=Failed" {
					t.Errorf("cluster-wide pod LIST %s: want limit=500 and the phase selector", u)
				}
			}
		}
		if len(cluster) != 1 {
			t.Errorf("cluster-wide pod LISTs %q, want one", cluster)
		}
	})

	t.Run("all namespaces: no extra LIST", func(t *testing.T) {
		var rc requestCounter
		inv, err := cluster.Load(testCtx(t), clientsFor(t, rc.wrap(env.Config)), cluster.LoadOptions{})
		must(t, err)
		if inv.UnmeshedElsewhere != nil || inv.UnmeshedElsewhereUnknown {
			t.Errorf("UnmeshedElsewhere = %v (unknown %v) on a cluster-wide scan", inv.UnmeshedElsewhere, inv.UnmeshedElsewhereUnknown)
		}
		if n := rc.snapshot()["GET /api/v1/pods"]; n != 1 {
			t.Errorf("%d cluster-wide pod LISTs, want the one full LIST", n)
		}
	})

	t.Run("a user of namespace shop only", func(t *testing.T) {
		ctx := testCtx(t)
		_, err := env.Client.RbacV1().Roles("shop").Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "scanner", Namespace: "shop"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods", "configmaps"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
				{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "destinationrules", "sidecars"}, Verbs: []string{"list"}},
				{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: []string{"list"}},
			},
		}, metav1.CreateOptions{})
		must(t, err)
		_, err = env.Client.RbacV1().RoleBindings("shop").Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "scanner", Namespace: "shop"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "scanner"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "shop-scanner", APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{})
		must(t, err)
		cfg, err := env.ConfigForUser("shop-scanner")
		must(t, err)
		inv, err := cluster.Load(ctx, clientsFor(t, cfg), cluster.LoadOptions{Namespaces: []string{"shop"}})
		must(t, err)
		if inv.UnmeshedElsewhere != nil || !inv.UnmeshedElsewhereUnknown {
			t.Errorf("UnmeshedElsewhere = %v (unknown %v), want unknown", inv.UnmeshedElsewhere, inv.UnmeshedElsewhereUnknown)
		}
		if len(inv.Pods) == 0 {
			t.Error("the scan's own pods were not read")
		}
		want := "cannot list pods in all namespaces (forbidden): clients without a sidecar outside the scanned namespaces (shop) are not counted"
		if !slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.HasPrefix(w, want) }) {
			t.Errorf("warnings %q lack %q", inv.Warnings, want)
		}
		if slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.Contains(w, "sidecars and images are unknown") }) {
			t.Errorf("warnings %q say the pods are unknown, but the scan's own were read", inv.Warnings)
		}
	})
}
