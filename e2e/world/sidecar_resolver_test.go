package world

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

func TestSidecarResolver(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-db-0"}}
	r := SidecarResolver("/bin/sidecar-model", "/state/inventory.json")
	run := []string{"--inventory", "/state/inventory.json", "--pod-namespace", "shop", "--pod-name", "orders-db-0", "--pod-ip", "10.88.0.5", "--capture", "true"}
	tests := []struct {
		name     string
		c        corev1.Container
		wantArgs []string // nil: ErrUnknownImage
	}{
		{"injected", corev1.Container{Name: "istio-proxy", Image: DefaultProxyImage, Args: []string{"proxy", "sidecar"}}, run},
		{"any name, proxyv2 image", corev1.Container{Name: "proxy", Image: "gcr.io/istio-release/proxyv2:1.20.0"}, run},
		{"istio-proxy, other image", corev1.Container{Name: "istio-proxy", Image: "example.com/envoy:1"}, run},
		{"digest", corev1.Container{Name: "x", Image: "docker.io/istio/proxyv2@sha256:abc"}, run},
		{"istio-init", corev1.Container{Name: "istio-init", Image: DefaultProxyImage, Args: []string{"istio-iptables", "-p", "15001"}}, []string{"--capture-only"}},
		{"mariadb", corev1.Container{Name: "db", Image: "mariadb:11"}, nil},
		{"proxyv2 lookalike", corev1.Container{Name: "db", Image: "example.com/proxyv2-exporter:1"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := r(pod, &tc.c, "10.88.0.5", "/state/pod")
			if tc.wantArgs == nil {
				if !errors.Is(err, ErrUnknownImage) {
					t.Fatalf("err = %v, want ErrUnknownImage", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Path != "/bin/sidecar-model" || strings.Join(cmd.Args, " ") != strings.Join(tc.wantArgs, " ") {
				t.Errorf("command = %s %v, want %v", cmd.Path, cmd.Args, tc.wantArgs)
			}
			if cmd.UID == nil || *cmd.UID != 0 || cmd.GID == nil || *cmd.GID != 0 {
				t.Errorf("uid/gid = %v/%v, want root (the model drops to 1337 itself)", cmd.UID, cmd.GID)
			}
		})
	}
	// In a Chain it comes first and leaves other images to the next.
	chain := Chain(r, func(*corev1.Pod, *corev1.Container, string, string) (Command, error) {
		return Command{Path: "next"}, nil
	})
	if cmd, _ := chain(pod, &corev1.Container{Name: "db", Image: "mariadb:11"}, "", ""); cmd.Path != "next" {
		t.Errorf("chain passed mariadb to %q", cmd.Path)
	}
}

func TestBuildBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out := t.TempDir()
	began := time.Now()
	b, err := BuildBinaries(ctx, root, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built in %v", time.Since(began).Round(time.Millisecond))
	for _, p := range []string{b.Serverfirst, b.SidecarModel} {
		if filepath.Dir(p) != out {
			t.Errorf("%s not in %s", p, out)
		}
		fi, err := os.Stat(p)
		if err != nil || fi.Mode()&0o111 == 0 {
			t.Errorf("%s: %v %v", p, fi, err)
		}
	}
	// The model answers its own usage.
	outp, _ := exec.CommandContext(ctx, b.SidecarModel, "--help").CombinedOutput()
	if !strings.Contains(string(outp), "-inventory string") {
		t.Errorf("sidecar-model --help:\n%s", outp)
	}
}

func TestShortSockets(t *testing.T) {
	long := "/tmp/serverfirst-world-861151557/node/pods/shop_orders-db_96c0305f-2a7d-499f-ad20-77a26550b6be/daemons/mariadb/mysqld.sock"
	inner := func(*corev1.Pod, *corev1.Container, string, string) (Command, error) {
		return Command{Path: "mariadbd", Args: []string{"--port=3306", "--socket=" + long, "--socket=/short.sock"}}, nil
	}
	cmd, err := shortSockets(inner)(&corev1.Pod{}, &corev1.Container{}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := strings.CutPrefix(cmd.Args[1], "--socket=")
	if len(got) > 100 || !strings.HasSuffix(got, ".sock") || cmd.Args[0] != "--port=3306" || cmd.Args[2] != "--socket=/short.sock" {
		t.Errorf("args = %v", cmd.Args)
	}
	unknown := func(*corev1.Pod, *corev1.Container, string, string) (Command, error) {
		return Command{}, ErrUnknownImage
	}
	if _, err := shortSockets(unknown)(&corev1.Pod{}, &corev1.Container{}, "", ""); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("err = %v", err)
	}
}
