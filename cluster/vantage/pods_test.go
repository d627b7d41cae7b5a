package vantage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// The probe pods must be admitted where PodSecurity "restricted" is
// enforced: the real API server's admission decides, not our reading of
// the standard.
func TestProbePodsMeetRestrictedPodSecurity(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx := context.Background()
	if _, err := env.CreateNamespace(ctx, "locked", map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil {
		t.Fatal(err)
	}
	o := vantage.PodOptions{Image: "ghcr.io/serverfirst/kubectl-serverfirst:test", ScanID: "abc123", BannerTimeout: 3 * time.Second, ConnectTimeout: 3 * time.Second}
	for _, inMesh := range []bool{true, false} {
		pod := vantage.ProbePodSpec(vantage.PodProbe{Namespace: "locked", InMesh: inMesh, Targets: []vantage.AgentTarget{{Key: "Service/locked/db:3306", Address: "10.96.0.5:3306"}}}, o)
		created, err := env.Client.CoreV1().Pods("locked").Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("inMesh=%v: the restricted namespace refused the probe pod: %v", inMesh, err)
		}
		if created.Labels[vantage.LabelScan] != "abc123" || created.Labels[vantage.LabelComponent] != vantage.ComponentProbe {
			t.Errorf("labels = %v", created.Labels)
		}
		if want := map[bool]string{true: "true", false: "false"}[inMesh]; created.Labels["sidecar.istio.io/inject"] != want {
			t.Errorf("inMesh=%v: sidecar.istio.io/inject = %q", inMesh, created.Labels["sidecar.istio.io/inject"])
		}
		if !strings.HasPrefix(created.GenerateName, "serverfirst-probe-") {
			t.Errorf("GenerateName = %q", created.GenerateName)
		}
	}
}
