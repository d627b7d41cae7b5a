package vantage_test

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// ReadConfig checks pods/portforward once against the real API server:
// where the caller may not, one warning and no port-forward; where it may,
// the read is tried (this API server has no kubelet: the pod is not found).
func TestReadConfigRights(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx := context.Background()
	for _, ns := range []string{"a", "b"} {
		if _, err := env.CreateNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	create := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"create"}}}
	_, kc := asServiceAccount(t, env, "forward-in-a", create, "a")
	cfg := mustConfig(t, kc)
	kube := kubernetes.NewForConfigOrDie(cfg)
	inv := &cluster.Inventory{
		IstioInstalled: true,
		Pods: []cluster.Pod{
			{Namespace: "a", Name: "web", IPs: []string{"10.88.0.4"}, Phase: "Running", HasSidecar: true},
			{Namespace: "b", Name: "db", IPs: []string{"10.88.0.2"}, Phase: "Running", HasSidecar: true, Labels: map[string]string{"app": "db"}},
		},
		Services: []cluster.Service{{Namespace: "b", Name: "db", Type: "ClusterIP", ClusterIP: "10.96.0.9", Backends: []cluster.PodRef{{Namespace: "b", Name: "db"}},
			Ports: []cluster.ServicePort{{Name: "db", Port: 3306, TargetPort: "3306", Protocol: "TCP"}}}},
	}
	paths, warnings, dumps := vantage.ReadConfig(ctx, cfg, kube, inv, nil, vantage.ConfigOptions{Client: &vantage.Proxy{Namespace: "a", Pod: "web"}, Outside: true}, "the current user")
	if len(paths) != 0 {
		t.Errorf("paths %+v, want none (a/web's read fails, b is not readable)", paths)
	}
	joined := strings.Join(warnings, "\n")
	if len(warnings) != 2 || !strings.Contains(warnings[0], "cannot create pods/portforward in namespace(s) b") ||
		!strings.Contains(joined, "proxy config of a/web") || strings.Contains(joined, "b/db") {
		t.Errorf("warnings:\n%s\nwant one for namespace b and one for a/web's failed read", joined)
	}
	if dumps.Fetches() != 1 {
		t.Errorf("%d reads, want 1 (a/web only)", dumps.Fetches())
	}
}
