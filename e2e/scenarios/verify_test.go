package scenarios

import (
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// verification is the summary line fix --apply ends its verification with.
var verification = regexp.MustCompile(`verification: (\S+) from apply, (\d+) round\(s\), (\d+) API request\(s\)`)

// TestFixApplyVerifiesOnTheDemo: on the demo world, fix --apply --yes
// probes the paths it repaired again until the mesh took the change and
// exits 0 with every path verified by a probe; fix --undo then restores
// every object exactly; a fix a client's Sidecar resource overrides exits 4
// naming it.
func TestFixApplyVerifiesOnTheDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the e2e world; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	fx := start(t, ctx)
	ic, err := fx.env.IstioClient()
	if err != nil {
		t.Fatal(err)
	}
	if err := world.SeedDemo(ctx, fx.env.Client, ic); err != nil {
		t.Fatal(err)
	}
	if err := world.WaitPodsReady(ctx, fx.env.Client, world.DemoPods...); err != nil {
		t.Fatal(err)
	}
	if err := fx.w.WaitDemoListening(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fx.w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(fx.env.Config)
	if err != nil {
		t.Fatal(err)
	}
	state := func() map[string]string {
		t.Helper()
		s, err := testenv.ObjectState(ctx, dyn, testenv.FixKinds)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	seeded := state()
	record := filepath.Join(t.TempDir(), "fix-records.json")
	fix := func(args ...string) (string, int) {
		t.Helper()
		_, errOut, code := cli(ctx, t, fx.bin, fx.kc, append([]string{"fix", "-A", "--vantage", "pods", "--record", record, "--timeout", "2s", "--connect-timeout", "2s"}, args...)...)
		return errOut, code
	}

	errOut, code := fix("--apply", "--yes", "--allow-plaintext")
	t.Logf("fix --apply:\n%s", errOut)
	if code != 0 {
		t.Fatalf("fix --apply exited %d", code)
	}
	// Every path the demo's fixes repair, proven by a probe through the
	// path itself (no static re-judgement).
	for _, want := range []string{
		"verified  Service shop/orders-db:3307 (mesh-to-mesh): mesh-client silent -> banner ",
		"verified  Service shop/orders-db:3307 (external-to-mesh): outside-client silent -> banner ",
		"verified  Service legacy/ssh:2222 (mesh-to-external): mesh-client silent -> banner ",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("no line %q", want)
		}
	}
	if strings.Contains(errOut, "NOT TAKEN") || strings.Contains(errOut, "re-judged statically") {
		t.Errorf("a path was not verified by a probe")
	}
	m := verification.FindStringSubmatch(errOut)
	if m == nil {
		t.Fatal("no verification summary")
	}
	t.Logf("MEASURED: apply -> verified %s, %s round(s), %s API request(s) while verifying", m[1], m[2], m[3])

	// A scan right after says the same.
	r := scanJSON(ctx, t, fx.bin, fx.kc, "-A")
	for _, f := range r.Findings {
		if f.Verdict.Affected() {
			t.Errorf("after a verified fix, scan still finds %s\n%s", f.Verdict, describe(f))
		}
	}

	// Undo: every spec, label and annotation as seeded, the created
	// objects gone.
	errOut, code = fix("--undo", "--yes")
	t.Logf("fix --undo:\n%s", errOut)
	if code != 0 {
		t.Fatalf("fix --undo exited %d", code)
	}
	for _, d := range testenv.DiffStates(seeded, state()) {
		t.Error(d)
	}

	// A client namespace whose Sidecar resource gives port 3307 an egress
	// listener without a protocol: the Service fix cannot help its pods.
	fx.namespace(t, "clients", map[string]string{"istio-injection": "enabled"})
	fx.pod(t, "clients", "app", "docker.io/library/busybox:1.36", 8080)
	if _, err := ic.NetworkingV1().Sidecars("clients").Create(ctx, testenv.SniffingEgressSidecar(3307, "shop"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := world.WaitPodsReady(ctx, fx.env.Client, "clients/app"); err != nil {
		t.Fatal(err)
	}
	errOut, code = fix("--apply", "--yes", "--verify-timeout", "20s")
	t.Logf("fix --apply with a Sidecar in the way:\n%s", errOut)
	if code != 4 {
		t.Errorf("exit %d, want 4", code)
	}
	if !regexp.MustCompile(`NOT TAKEN Service shop/orders-db:3307 \(mesh-to-mesh\): .*\[SF0804\].*Sidecar clients/egress`).MatchString(errOut) {
		t.Errorf("the Sidecar in the way is not named")
	}
	errOut, code = fix("--undo", "--yes")
	if code != 0 {
		t.Fatalf("second fix --undo exited %d\n%s", code, errOut)
	}
	for _, d := range testenv.DiffStates(seeded, state()) {
		t.Error(d)
	}
}
