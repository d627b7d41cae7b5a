package world

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
)

// IstioInitResolver runs the istio-init init container istiod injects
// (proxyv2 image, args `istio-iptables ARGS`) as `PILOT-AGENT
// istio-iptables ARGS`, as root in the pod's network namespace: Istio's
// own capture code with the arguments the injector wrote, so the
// traffic.sidecar.istio.io/* annotations act as in Istio.
func IstioInitResolver(pilotAgent string) ImageResolver {
	return func(_ *corev1.Pod, c *corev1.Container, _, _ string) (Command, error) {
		if imageBase(c.Image) != "proxyv2" || len(c.Args) == 0 || c.Args[0] != "istio-iptables" {
			return Command{}, ErrUnknownImage
		}
		root := uint32(0)
		return Command{Path: pilotAgent, Args: append([]string(nil), c.Args...), UID: &root, GID: &root}, nil
	}
}

// Binaries are the executables of this repository the world runs (Istio's
// are IstioBinaries).
type Binaries struct {
	// Serverfirst is kubectl-serverfirst (./cmd/kubectl-serverfirst), run by
	// ServerfirstResolver for in-cluster probe pods and Jobs.
	Serverfirst string
}

// IstioProxyResolver runs the istio-proxy containers istiod injected
// (proxyv2 image, `proxy sidecar` args) as `istio-world proxy`: an ADS
// client of the pod's revision's istiod (xdsByRev: revision -> address
// pods reach it at; "default" for the default revision) with Envoy's
// connection semantics, as the uid the container asks for (1337). The
// capture is istio-init's (IstioInitResolver runs it through pilot-agent).
func IstioProxyResolver(istioWorld string, xdsByRev map[string]string) ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, _ string) (Command, error) {
		if imageBase(c.Image) != "proxyv2" || len(c.Args) == 0 || c.Args[0] != "proxy" {
			return Command{}, ErrUnknownImage
		}
		rev := pod.Labels["istio.io/rev"]
		if rev == "" {
			rev = "default"
		}
		addr, ok := xdsByRev[rev]
		if !ok {
			return Command{}, fmt.Errorf("istio-proxy of revision %q: no istiod of that revision runs", rev)
		}
		return Command{Path: istioWorld, Args: []string{"proxy", "--xds", addr}}, nil
	}
}

// IstioBinaries are Istio's own programs, built by hack/testbins.sh from
// e2e/tools/istio (see LocateIstioBinaries).
type IstioBinaries struct {
	// PilotDiscovery is istiod; PilotAgent runs istio-iptables.
	PilotDiscovery, PilotAgent string
	// IstioWorld is e2e/tools/istio/cmd/istio-world: it renders Istio's
	// charts and speaks xDS as a pod's pilot-agent.
	IstioWorld string
}

// BuildBinaries go-builds kubectl-serverfirst from the module at repoRoot
// into outDir (created if needed). It always builds: the Go build cache
// makes an unchanged rebuild take a second or two, and a stale binary
// would test yesterday's code. The go command is the one on PATH, else
// $GOROOT/bin/go, else /usr/local/go/bin/go.
func BuildBinaries(ctx context.Context, repoRoot, outDir string) (Binaries, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return Binaries{}, err
	}
	goCmd, err := goCommand()
	if err != nil {
		return Binaries{}, err
	}
	abs, err := filepath.Abs(outDir)
	if err != nil {
		return Binaries{}, err
	}
	b := Binaries{Serverfirst: filepath.Join(abs, "kubectl-serverfirst")}
	// Built into a fresh folder, then renamed into place: a world still
	// running the previous binary (another testcluster) keeps it intact,
	// where overwriting a running executable fails with "text file busy".
	tmp, err := os.MkdirTemp(abs, ".build-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(tmp)
	built := filepath.Join(tmp, "kubectl-serverfirst")
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ { // once more after a transient build-cache error
		cmd := exec.CommandContext(ctx, goCmd, "build", "-o", built, "./cmd/kubectl-serverfirst")
		cmd.Dir = repoRoot
		output, err := cmd.CombinedOutput()
		if err == nil {
			lastErr = nil
			break
		}
		lastErr = fmt.Errorf("go build -o %s ./cmd/kubectl-serverfirst: %v\n%s", b.Serverfirst, err, output)
		if ctx.Err() != nil {
			break
		}
	}
	if lastErr != nil {
		return Binaries{}, lastErr
	}
	if err := os.Rename(built, b.Serverfirst); err != nil {
		return Binaries{}, err
	}
	// Pods may run as any uid; the binary lives in a root-owned tree.
	_ = os.Chmod(b.Serverfirst, 0o755)
	return b, nil
}

func goCommand() (string, error) {
	if p, err := exec.LookPath("go"); err == nil {
		return p, nil
	}
	for _, p := range []string{filepath.Join(os.Getenv("GOROOT"), "bin", "go"), "/usr/local/go/bin/go"} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("no go command on PATH or in /usr/local/go/bin: cannot build the world's binaries")
}
