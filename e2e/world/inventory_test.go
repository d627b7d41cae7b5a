package world

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/e2e/sidecar"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

func TestInventoryWriter(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	istio, err := env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	clients := cluster.Clients{Kube: env.Client, Istio: istio}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := env.CreateNamespace(ctx, "shop", map[string]string{"istio-injection": "enabled"}); err != nil {
		t.Fatal(err)
	}
	createService := func(name string, port int32, portName string) {
		t.Helper()
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": name},
				Ports:    []corev1.ServicePort{{Name: portName, Port: port}},
			},
		}
		if _, err := env.Client.CoreV1().Services("shop").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createService("orders-db", 3307, "db")

	path := filepath.Join(t.TempDir(), "inventory.json")
	w := NewInventoryWriter(clients, path)
	if w.Generation() != 0 || !w.Synced().IsZero() {
		t.Fatalf("fresh writer: generation %d synced %v", w.Generation(), w.Synced())
	}
	before := time.Now()
	if err := w.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Generation() != 1 || w.Synced().Before(before) || w.Written().Before(w.Synced()) {
		t.Fatalf("after Sync: generation %d synced %v written %v (before %v)", w.Generation(), w.Synced(), w.Written(), before)
	}
	inv := readInventory(t, path)
	svc := findService(inv, "shop", "orders-db")
	if svc == nil || len(svc.Ports) != 1 || !svc.Ports[0].Resolved.Sniffed() {
		t.Fatalf("orders-db in the file: %+v", svc)
	}
	if !inv.IstioInstalled {
		t.Errorf("IstioInstalled false with the CRDs installed")
	}

	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(runCtx, time.Hour); close(done) }() // only kicks move it

	// A change, then WaitSynced: the file has it.
	createService("cache", 6380, "cache")
	changedAt := time.Now()
	written, err := w.WaitSynced(ctx, changedAt)
	if err != nil {
		t.Fatal(err)
	}
	if !written.After(changedAt) || w.Generation() < 2 {
		t.Errorf("written %v, change at %v, generation %d", written, changedAt, w.Generation())
	}
	if findService(readInventory(t, path), "shop", "cache") == nil {
		t.Errorf("the rewritten file lacks shop/cache")
	}
	// What a sidecar model reads is the same inventory.
	if got, err := (sidecar.FileSource{Path: path}).Load(ctx); err != nil || findService(got, "shop", "cache") == nil {
		t.Errorf("sidecar.FileSource: %v", err)
	}
	// No temp file left beside it.
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the inventory", len(entries))
	}

	// A deadline with nothing running: a clear error.
	stopRun()
	<-done
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancelShort()
	if _, err := w.WaitSynced(short, time.Now()); err == nil || !strings.Contains(err.Error(), "not rewritten") {
		t.Errorf("WaitSynced without Run: %v", err)
	}
}

func TestInventoryWriterErrors(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	istio, err := env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	clients := cluster.Clients{Kube: env.Client, Istio: istio}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// An unwritable path fails the first sync, and RunInventoryWriter says so.
	bad := filepath.Join(t.TempDir(), "missing-dir", "inventory.json")
	if err := RunInventoryWriter(ctx, clients, bad, time.Second); err == nil || !strings.Contains(err.Error(), "inventory writer") {
		t.Fatalf("RunInventoryWriter on %s: %v", bad, err)
	}
	w := NewInventoryWriter(clients, bad)
	_ = w.Sync(ctx)
	if w.LastError() == nil || w.Generation() != 0 {
		t.Errorf("LastError %v generation %d", w.LastError(), w.Generation())
	}

	// Without Istio's CRDs the file is still written, saying so.
	good := filepath.Join(t.TempDir(), "inventory.json")
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- RunInventoryWriter(runCtx, clients, good, 50*time.Millisecond) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := os.ReadFile(good); err == nil && len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("RunInventoryWriter wrote nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if inv := readInventory(t, good); inv.IstioInstalled {
		t.Errorf("IstioInstalled true without the CRDs")
	}
	stop()
	if err := <-errc; err != nil {
		t.Errorf("RunInventoryWriter after cancel: %v", err)
	}
}

func readInventory(t *testing.T, path string) *cluster.Inventory {
	t.Helper()
	inv, err := (sidecar.FileSource{Path: path}).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func findService(inv *cluster.Inventory, ns, name string) *cluster.Service {
	for i := range inv.Services {
		if inv.Services[i].Namespace == ns && inv.Services[i].Name == name {
			return &inv.Services[i]
		}
	}
	return nil
}
