package main

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// objectState is every object of the kinds fixes write.
func objectState(t *testing.T, dyn dynamic.Interface) map[string]string {
	t.Helper()
	s, err := testenv.ObjectState(context.Background(), dyn, testenv.FixKinds)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func diffStates(t *testing.T, want, got map[string]string) {
	t.Helper()
	for _, d := range testenv.DiffStates(want, got) {
		t.Error(d)
	}
}

func TestFixApplyVerifyUndo(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedShop(t, env)
	kc := env.Kubeconfig
	dyn, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(t.TempDir(), "records", "fix.json")
	before := objectState(t, dyn)

	t.Run("static fixes are verified by judging again, and recorded", func(t *testing.T) {
		// The external SMTP server makes the fix create a ServiceEntry.
		_, errOut, err := run(t, "", "fix", "-A", "--static", "--apply", "--yes", "--external", "relay.example.net:25", "--record", record, "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var verified []string
		for _, l := range strings.Split(errOut, "\n") {
			if strings.HasPrefix(l, "verified ") {
				verified = append(verified, l)
				if !strings.Contains(l, "re-judged statically (nothing probed it)") || !strings.Contains(l, "-> OK)") {
					t.Errorf("static path not said to be judged statically, or not OK: %q", l)
				}
			}
		}
		for _, want := range []string{"Service shop/orders-db:3307", "Service shop/mail:2525", "Service shop/queue:4222", "Service legacy/ftp:21", "ServiceEntry shop/ext-smtp:25", "External relay.example.net:25"} {
			if !strings.Contains(strings.Join(verified, "\n"), want) {
				t.Errorf("no verified line for %s:\n%s", want, errOut)
			}
		}
		if strings.Contains(errOut, "NOT TAKEN") || !strings.Contains(errOut, "path(s) verified") {
			t.Errorf("stderr:\n%s", errOut)
		}
		recs, err := report.ReadRecords(record)
		if err != nil || len(recs) != 1 {
			t.Fatalf("records %v, %v", recs, err)
		}
		for _, o := range recs[0].Objects {
			if o.Applying || o.UID == "" || len(o.Applied) == 0 || o.Created == (len(o.Previous) > 0) {
				t.Errorf("record of %s incomplete: %+v", o.Ref(), o)
			}
		}
		if fi, err := os.Stat(record); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("record file mode: %v %v", fi, err)
		}
	})

	t.Run("undo asks, then restores every object exactly", func(t *testing.T) {
		changed := objectState(t, dyn)
		if reflect.DeepEqual(changed, before) {
			t.Fatal("the fix changed nothing")
		}
		if _, _, err := run(t, "n\n", "fix", "--undo", "--record", record, "--kubeconfig", kc); err == nil {
			t.Fatal("undo without confirmation succeeded")
		}
		diffStates(t, changed, objectState(t, dyn))
		_, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if !strings.Contains(errOut, " deleted") || !strings.Contains(errOut, " restored") {
			t.Errorf("undo did not both delete created objects and restore changed ones:\n%s", errOut)
		}
		diffStates(t, before, objectState(t, dyn))
		if _, _, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc); err == nil || !strings.Contains(err.Error(), "nothing to undo") {
			t.Errorf("second undo: %v", err)
		}
	})

	t.Run("undo refuses an object changed since the fix", func(t *testing.T) {
		if _, errOut, err := run(t, "", "fix", "-n", "shop", "--static", "--apply", "--yes", "--no-verify", "--record", record, "--kubeconfig", kc); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		svc, err := env.Client.CoreV1().Services("shop").Get(context.Background(), "orders-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Spec.Ports[0].Name = "db-by-hand"
		if _, err := env.Client.CoreV1().Services("shop").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		changed := objectState(t, dyn)
		_, _, err = run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc)
		if err == nil || !strings.Contains(err.Error(), "Service shop/orders-db changed since the fix") || !strings.Contains(err.Error(), "nothing changed") {
			t.Errorf("undo over a hand edit: %v", err)
		}
		diffStates(t, changed, objectState(t, dyn))
		// Hand edit reverted: the undo goes through.
		svc, err = env.Client.CoreV1().Services("shop").Get(context.Background(), "orders-db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		svc.Spec.Ports[0].Name = "db"
		if _, err := env.Client.CoreV1().Services("shop").Update(context.Background(), svc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		diffStates(t, before, objectState(t, dyn))
	})

	t.Run("an apply stopped half-way is undone as far as it went", func(t *testing.T) {
		// The record says a ServiceEntry was about to be created when the
		// command stopped: it never was, so undo has nothing to delete.
		// A record for another API server is refused.
		for _, c := range []struct{ server, wantErr string }{
			{"https://elsewhere.example:6443", "went to https://elsewhere.example:6443"},
			{env.Config.Host, ""},
		} {
			if err := report.WriteRecords(record, []report.FixRecord{{Server: c.server, FieldManager: report.ManagerName, Objects: []report.RecordedObject{
				{APIVersion: "networking.istio.io/v1", Kind: "ServiceEntry", Namespace: "shop", Name: "never-created", Created: true, Applying: true},
			}}}); err != nil {
				t.Fatal(err)
			}
			_, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc)
			if c.wantErr == "" && err != nil || c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)) {
				t.Errorf("server %s: %v, want %q\n%s", c.server, err, c.wantErr, errOut)
			}
		}
		if recs, err := report.ReadRecords(record); err != nil || len(recs) != 0 {
			t.Errorf("records left: %v %v", recs, err)
		}
		diffStates(t, before, objectState(t, dyn))
	})

	t.Run("a fix a client's Sidecar overrides exits 4 naming it", func(t *testing.T) {
		ctx := context.Background()
		if _, err := env.CreateNamespace(ctx, "clients", map[string]string{"istio-injection": "enabled"}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.Client.CoreV1().Pods("clients").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "clients", Labels: map[string]string{"app": "app"},
				Annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}, {Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ic, err := env.IstioClient()
		if err != nil {
			t.Fatal(err)
		}
		// An egress listener on 3307 without a protocol: these clients sniff
		// the port whatever the Service declares.
		if _, err := ic.NetworkingV1().Sidecars("clients").Create(ctx, testenv.SniffingEgressSidecar(3307, "shop"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, errOut, err := run(t, "", "fix", "-A", "--static", "--apply", "--yes", "--record", record, "--kubeconfig", kc)
		if exitCode(err) != 4 {
			t.Fatalf("exit %d (%v), want 4\n%s", exitCode(err), err, errOut)
		}
		var notTaken string
		for _, l := range strings.Split(errOut, "\n") {
			if strings.HasPrefix(l, "NOT TAKEN Service shop/orders-db:3307") {
				notTaken = l
			}
		}
		if !strings.Contains(notTaken, "[SF0804]") || !strings.Contains(notTaken, "clients/egress") {
			t.Errorf("the line does not name the Sidecar in the way:\n%s", errOut)
		}
		t.Log(notTaken)
		// Applied although it did not take: undo still puts it back.
		if _, errOut, err := run(t, "", "fix", "--undo", "--yes", "--record", record, "--kubeconfig", kc); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		diffStates(t, before, objectState(t, dyn))
	})
}
