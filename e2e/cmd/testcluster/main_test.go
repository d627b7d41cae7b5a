package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// The test binary doubles as the command: run as a child with this variable
// set, it is testcluster itself (same main package, same run()), which
// spares a separate `go build` of the command.
const asCommand = "SERVERFIRST_TESTCLUSTER_AS_COMMAND"

func TestMain(m *testing.M) {
	if os.Getenv(asCommand) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), asCommand+"=1")
	return cmd
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"no kubeconfig", nil, 2, "usage"},
		{"stray argument", []string{"--kubeconfig", "x", "extra"}, 2, "usage"},
		{"unknown flag", []string{"--nope"}, 2, "flag provided but not defined"},
		{"bad seed", []string{"--kubeconfig", "x", "--seed", "prod"}, 2, `--seed takes "demo"`},
		{"world without Istio", []string{"--kubeconfig", "x", "--world", "--no-istio-crds"}, 2, "--world needs Istio's CRDs"},
		{"binaries missing", []string{"--kubeconfig", filepath.Join(t.TempDir(), "kc"), "--bin-dir", t.TempDir()}, 1, "run `make test-deps`"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := command(ctx, tc.args...).CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != tc.wantCode {
				t.Fatalf("exit = %v, want code %d; output:\n%s", err, tc.wantCode, out)
			}
			if !strings.Contains(string(out), tc.wantErr) {
				t.Errorf("output lacks %q:\n%s", tc.wantErr, out)
			}
		})
	}
}

func TestRunUntilSIGINT(t *testing.T) {
	if _, _, err := testenv.Binaries(""); err != nil {
		testenv.StartForTest(t, testenv.Options{}) // skips, or fails under CI
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	tc := startUntilReady(ctx, t, kubeconfig)
	stderr := tc.stderr
	var stateDir string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if d, found := strings.CutPrefix(line, "testcluster: state in "); found {
			stateDir = d
		}
	}
	if stateDir == "" {
		t.Fatalf("no state dir reported:\n%s", stderr.String())
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig at ready: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("use the published kubeconfig: %v", err)
	}
	if _, err := cs.Discovery().ServerResourcesForGroupVersion("networking.istio.io/v1"); err != nil {
		t.Errorf("Istio CRDs not served: %v", err)
	}
	if pids, _ := testenv.PIDsMentioning(stateDir); len(pids) != 2 {
		t.Errorf("processes under %s while running: %v, want etcd and kube-apiserver", stateDir, pids)
	}

	tc.interrupt(ctx, t)
	if !strings.Contains(stderr.String(), "testcluster: stopping") {
		t.Errorf("no orderly stop in output:\n%s", stderr.String())
	}
	if _, err := os.Stat(stateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir %s after exit: %v, want removed", stateDir, err)
	}
	if _, err := os.Stat(kubeconfig); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kubeconfig %s after exit: %v, want removed", kubeconfig, err)
	}
	if pids, _ := testenv.PIDsMentioning(stateDir); len(pids) != 0 {
		t.Errorf("processes left after exit: %v", pids)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(kubeconfig), ".testcluster-kubeconfig-*")); len(left) != 0 {
		t.Errorf("temp kubeconfig files left: %v", left)
	}
}

// started is a running testcluster.
type started struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	exited chan error // Wait's result; whoever takes it puts it back
}

// startUntilReady starts testcluster --kubeconfig kubeconfig args... and
// returns once the kubeconfig appears: the readiness signal users rely
// on. Whatever the test does next, the command is killed when it ends.
func startUntilReady(ctx context.Context, t *testing.T, kubeconfig string, args ...string) *started {
	t.Helper()
	tc := &started{cmd: command(ctx, append([]string{"--kubeconfig", kubeconfig}, args...)...), stderr: &syncBuffer{}, exited: make(chan error, 1)}
	tc.cmd.Stderr = tc.stderr
	if err := tc.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { tc.exited <- tc.cmd.Wait() }()
	t.Cleanup(func() {
		_ = tc.cmd.Process.Kill()
		<-tc.exited
	})
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(kubeconfig); err == nil {
			return tc
		}
		select {
		case err := <-tc.exited:
			tc.exited <- err // for the cleanup
			t.Fatalf("testcluster exited before writing the kubeconfig: %v\n%s", err, tc.stderr.String())
		case <-ctx.Done():
			t.Fatalf("no kubeconfig: %v\n%s", ctx.Err(), tc.stderr.String())
		case <-tick.C:
		}
	}
}

// interrupt sends SIGINT, as Ctrl-C would, and requires exit 0.
func (tc *started) interrupt(ctx context.Context, t *testing.T) {
	t.Helper()
	if err := tc.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-tc.exited:
		tc.exited <- err
		if err != nil {
			t.Fatalf("testcluster after SIGINT: %v, want exit 0\n%s", err, tc.stderr.String())
		}
	case <-ctx.Done():
		t.Fatalf("testcluster still running after SIGINT: %v\n%s", ctx.Err(), tc.stderr.String())
	}
}

// syncBuffer is the child's stderr: written by os/exec's copier goroutine,
// read by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestWorldSeedDemo runs `testcluster --world --seed demo` as a user would
// and checks the published kubeconfig leads to a running demo (sidecars
// injected where Istio would), then that SIGINT tears everything down.
func TestWorldSeedDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs the e2e world; skipped with -short")
	}
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("--world needs root (CI=true: failing instead of skipping)")
		}
		t.Skip("--world needs root")
	}
	if _, _, err := testenv.Binaries(""); err != nil {
		testenv.StartForTest(t, testenv.Options{}) // skips, or fails under CI
	}
	if _, err := world.LocateIstioBinaries(""); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	began := time.Now()
	tc := startUntilReady(ctx, t, kubeconfig, "--world", "--seed", "demo")
	stderr := tc.stderr
	t.Logf("kubeconfig published %v after start (binaries, API server, world, demo running)", time.Since(began).Round(time.Millisecond))
	var worldDir string
	for _, line := range strings.Split(stderr.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, "testcluster: world state in "); ok {
			worldDir, _, _ = strings.Cut(rest, " ")
		}
	}
	if worldDir == "" {
		t.Fatalf("no world state dir reported:\n%s", stderr.String())
	}
	if _, err := os.Stat(filepath.Join(worldDir, "istiod", "istiod.log")); err != nil {
		t.Errorf("istiod's log: %v", err)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"shop/orders-db", "shop/cache", "shop/web", "legacy/ssh", "batch/report"} {
		ns, name, _ := strings.Cut(ref, "/")
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sidecar := false
		// istiod injects a native sidecar here: an init container.
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			sidecar = sidecar || c.Name == "istio-proxy"
		}
		if p.Status.Phase != "Running" || sidecar != (ns == "shop") {
			t.Errorf("%s: phase %s, sidecar %v", ref, p.Status.Phase, sidecar)
		}
	}
	svc, err := cs.CoreV1().Services("shop").Get(ctx, "orders-db", metav1.GetOptions{})
	if err != nil || svc.Spec.Ports[0].Port != 3307 || svc.Spec.Ports[0].Name != "db" {
		t.Errorf("shop/orders-db: %v %v", svc, err)
	}

	pid := tc.cmd.Process.Pid
	tc.interrupt(ctx, t)
	if _, err := os.Stat(worldDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("world state %s after exit: %v, want removed", worldDir, err)
	}
	if left, _ := filepath.Glob(fmt.Sprintf("/run/netns/sfw-%dx*", pid)); len(left) != 0 {
		t.Errorf("network namespaces left: %v", left)
	}
	if pids, _ := testenv.PIDsMentioning(worldDir); len(pids) != 0 {
		t.Errorf("processes left: %v", pids)
	}
}
