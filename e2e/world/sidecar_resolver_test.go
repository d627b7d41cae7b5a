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

// TestIstioResolvers: istiod's injected containers run as Istio's own
// code or the world's xDS sidecar: istio-init as pilot-agent's
// istio-iptables with the injector's arguments (root), istio-proxy as
// `istio-world proxy` against its revision's istiod; everything else is
// left to the next resolver.
func TestIstioResolvers(t *testing.T) {
	const image = "docker.io/istio/proxyv2:1.28.0"
	xds := map[string]string{"default": "10.88.0.1:15010", "canary": "10.88.0.1:15011"}
	r := Chain(IstioProxyResolver("/bin/istio-world", xds), IstioInitResolver("/bin/pilot-agent"))
	pod := func(rev string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "orders-db-0"}}
		if rev != "" {
			p.Labels = map[string]string{"istio.io/rev": rev}
		}
		return p
	}
	tests := []struct {
		name     string
		rev      string
		c        corev1.Container
		wantPath string // "": ErrUnknownImage
		wantArgs []string
		wantRoot bool
	}{
		{"istio-proxy", "", corev1.Container{Name: "istio-proxy", Image: image, Args: []string{"proxy", "sidecar", "--domain", "x"}},
			"/bin/istio-world", []string{"proxy", "--xds", "10.88.0.1:15010"}, false},
		{"istio-proxy of canary", "canary", corev1.Container{Name: "istio-proxy", Image: image, Args: []string{"proxy", "sidecar"}},
			"/bin/istio-world", []string{"proxy", "--xds", "10.88.0.1:15011"}, false},
		{"istio-init", "", corev1.Container{Name: "istio-init", Image: image, Args: []string{"istio-iptables", "-p", "15001"}},
			"/bin/pilot-agent", []string{"istio-iptables", "-p", "15001"}, true},
		{"digest image", "", corev1.Container{Name: "x", Image: "gcr.io/istio-release/proxyv2@sha256:abc", Args: []string{"istio-iptables"}},
			"/bin/pilot-agent", []string{"istio-iptables"}, true},
		{"istio-proxy, other image", "", corev1.Container{Name: "istio-proxy", Image: "example.com/envoy:1", Args: []string{"proxy", "sidecar"}}, "", nil, false},
		{"mariadb", "", corev1.Container{Name: "db", Image: "mariadb:11"}, "", nil, false},
		{"proxyv2 lookalike", "", corev1.Container{Name: "db", Image: "example.com/proxyv2-exporter:1", Args: []string{"proxy"}}, "", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd, err := r(pod(tc.rev), &tc.c, "10.88.0.5", "/state/pod")
			if tc.wantPath == "" {
				if !errors.Is(err, ErrUnknownImage) {
					t.Fatalf("err = %v, want ErrUnknownImage", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cmd.Path != tc.wantPath || strings.Join(cmd.Args, " ") != strings.Join(tc.wantArgs, " ") {
				t.Errorf("command = %s %v, want %s %v", cmd.Path, cmd.Args, tc.wantPath, tc.wantArgs)
			}
			if root := cmd.UID != nil && *cmd.UID == 0; root != tc.wantRoot {
				t.Errorf("uid %v, want root %v (istio-proxy runs as the uid its securityContext asks for)", cmd.UID, tc.wantRoot)
			}
		})
	}
	if _, err := r(pod("nightly"), &corev1.Container{Name: "istio-proxy", Image: image, Args: []string{"proxy", "sidecar"}}, "10.88.0.5", ""); err == nil || errors.Is(err, ErrUnknownImage) {
		t.Errorf("istio-proxy of a revision without istiod: %v, want an error naming it", err)
	}
}

func TestBuildBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kubectl-serverfirst")
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
	if filepath.Dir(b.Serverfirst) != out {
		t.Errorf("%s not in %s", b.Serverfirst, out)
	}
	fi, err := os.Stat(b.Serverfirst)
	if err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("%s: %v %v", b.Serverfirst, fi, err)
	}
	// It is the CLI: it answers its usage.
	outp, _ := exec.CommandContext(ctx, b.Serverfirst, "--help").CombinedOutput()
	if !strings.Contains(string(outp), "scan") {
		t.Errorf("kubectl-serverfirst --help:\n%s", outp)
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
