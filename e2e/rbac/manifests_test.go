package rbac

import (
	"bytes"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestManifestsInventoryEqualsLive: this package's seed (slices, a
// selector PeerAuthentication, a mesh config with a detection timeout, a
// Secret and a ConfigMap to ignore) exported as `kubectl get -o yaml`
// would and read back as manifests (scan -f) gives the inventory a live
// Load gives, but for where the mesh config and the warnings came from.
func TestManifestsInventoryEqualsLive(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seed(t, env)
	live, err := cluster.Load(ctxFor(t), clients(t, env.Config), cluster.LoadOptions{})
	must(t, err)
	manifest, err := env.ExportManifests(ctxFor(t))
	must(t, err)
	m, err := cluster.ReadManifests([]string{"-"}, bytes.NewReader(manifest), cluster.ManifestOptions{})
	must(t, err)
	files := m.Inventory(nil)
	if !strings.HasPrefix(files.Mesh.Source, "istio-system/istio (stdin#") {
		t.Errorf("mesh source %q, want the ConfigMap and its document", files.Mesh.Source)
	}
	if len(m.Warnings()) != 0 {
		t.Errorf("warnings reading an exported cluster: %q", m.Warnings())
	}
	files.Mesh.Source, live.Mesh.Source = "", ""
	files.Warnings, live.Warnings = nil, nil
	if len(live.Services) == 0 || len(live.PeerAuthentications) == 0 || live.Mesh.ProtocolDetectionTimeout == 0 {
		t.Fatalf("the seed lost what it tests: %+v", live)
	}
	assertSame(t, "scan -f of the exported objects", files, live)
}
