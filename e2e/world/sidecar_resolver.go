package world

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// SidecarResolver runs Istio's proxy containers as the sidecar model
// (e2e/cmd/sidecar-model), which reads the mesh from the inventory file at
// inventoryPath (written by an InventoryWriter):
//   - a container named istio-proxy, or any proxyv2 image
//     (docker.io/istio/proxyv2, gcr.io/istio-release/proxyv2, ...), becomes
//     `sidecar-model --inventory PATH --pod-namespace NS --pod-name NAME --pod-ip IP --capture true`,
//     started as root: the model installs istio-iptables' capture rules in
//     the pod's network namespace, then drops to uid/gid 1337 itself;
//   - a proxyv2 container whose args start with istio-iptables (the
//     istio-init init container of a pod injected by a real Istio, e.g.
//     pasted from `istioctl kube-inject`) becomes `sidecar-model --capture-only`.
//
// The pod's securityContext still decides the uid the node agent starts it
// with: the world's injector asks for uid 0 (see proxyContainer); an
// istio-proxy that asks for 1337 gets no capture unless an istio-init ran.
func SidecarResolver(modelBinary, inventoryPath string) ImageResolver {
	return IstioResolver(modelBinary, inventoryPath, "")
}

// IstioResolver is SidecarResolver for pods injected by a real istiod,
// whose proxyv2 containers carry pilot-agent's own arguments:
//   - `istio-iptables ARGS` (the istio-init container) runs as
//     `PILOT-AGENT istio-iptables ARGS` when pilotAgent is set: Istio's
//     own capture code with the arguments the injector wrote (so the
//     traffic.sidecar.istio.io/* annotations act as in Istio);
//   - with pilotAgent set, `proxy sidecar ...` (istio-proxy) runs the sidecar model with
//     `--capture false`, as the uid its securityContext asks for (1337 in
//     Istio's template): istio-init installed the rules.
func IstioResolver(modelBinary, inventoryPath, pilotAgent string) ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, _ string) (Command, error) {
		proxyImage := imageBase(c.Image) == "proxyv2"
		if !proxyImage && c.Name != cluster.ProxyContainerName {
			return Command{}, ErrUnknownImage
		}
		root := uint32(0)
		if proxyImage && len(c.Args) > 0 && c.Args[0] == "istio-iptables" {
			if pilotAgent != "" {
				return Command{Path: pilotAgent, Args: append([]string(nil), c.Args...), UID: &root, GID: &root}, nil
			}
			return Command{Path: modelBinary, Args: []string{"--capture-only"}, UID: &root, GID: &root}, nil
		}
		// The world's own injector writes the same `proxy sidecar` args
		// but no istio-init: only with pilot-agent (istiod's injection)
		// did an init container install the capture.
		if pilotAgent != "" && proxyImage && len(c.Args) > 0 && c.Args[0] == "proxy" {
			return Command{Path: modelBinary, Args: []string{
				"--inventory", inventoryPath,
				"--pod-namespace", pod.Namespace,
				"--pod-name", pod.Name,
				"--pod-ip", podIP,
				"--capture", "false",
			}}, nil
		}
		return Command{
			Path: modelBinary,
			Args: []string{
				"--inventory", inventoryPath,
				"--pod-namespace", pod.Namespace,
				"--pod-name", pod.Name,
				"--pod-ip", podIP,
				"--capture", "true",
			},
			UID: &root,
			GID: &root,
		}, nil
	}
}

// Binaries are the executables the world runs.
type Binaries struct {
	// Serverfirst is kubectl-serverfirst (./cmd/kubectl-serverfirst), run by
	// ServerfirstResolver for in-cluster probe pods and Jobs.
	Serverfirst string
	// SidecarModel is e2e/cmd/sidecar-model, run by SidecarResolver.
	SidecarModel string
}

// IstioProxyResolver runs the istio-proxy containers istiod injected
// (proxyv2 image, `proxy sidecar` args) as `istio-world proxy`: an ADS
// client of the pod's revision's istiod (xdsByRev: revision -> address
// pods reach it at; "default" for the default revision) with Envoy's
// connection semantics, as the uid the container asks for (1337). The
// capture is istio-init's (IstioResolver runs it through pilot-agent).
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

// BuildBinaries go-builds kubectl-serverfirst from the module at repoRoot and
// the sidecar model from the e2e module under it into outDir (created if needed). It always builds: the
// Go build cache makes an unchanged rebuild take a second or two, and a
// stale binary would test yesterday's code. The go command is the one on
// PATH, else $GOROOT/bin/go, else /usr/local/go/bin/go.
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
	b := Binaries{
		Serverfirst:  filepath.Join(abs, "kubectl-serverfirst"),
		SidecarModel: filepath.Join(abs, "sidecar-model"),
	}
	// One go command per module: the product builds in its own module (with
	// its own go.mod's versions, as shipped), the sidecar model in the e2e
	// module. With -o a directory each binary is named after its package's
	// folder. They go into a fresh folder, then are renamed into place: a
	// world still running the previous binaries (another testcluster) keeps
	// them intact, where overwriting a running executable fails with "text
	// file busy".
	tmp, err := os.MkdirTemp(abs, ".build-")
	if err != nil {
		return Binaries{}, err
	}
	defer os.RemoveAll(tmp)
	for _, build := range []struct{ dir, pkg string }{
		{repoRoot, "./cmd/kubectl-serverfirst"},
		{filepath.Join(repoRoot, "e2e"), "./cmd/sidecar-model"},
	} {
		var lastErr error
		for attempt := 0; attempt < 2; attempt++ { // once more after a transient build-cache error
			cmd := exec.CommandContext(ctx, goCmd, "build", "-o", tmp+string(filepath.Separator), build.pkg)
			cmd.Dir = build.dir
			output, err := cmd.CombinedOutput()
			if err == nil {
				lastErr = nil
				break
			}
			lastErr = fmt.Errorf("go build -o %s/ %s (in %s): %v\n%s", abs, build.pkg, build.dir, err, output)
			if ctx.Err() != nil {
				break
			}
		}
		if lastErr != nil {
			return Binaries{}, lastErr
		}
	}
	for _, p := range []string{b.Serverfirst, b.SidecarModel} {
		if err := os.Rename(filepath.Join(tmp, filepath.Base(p)), p); err != nil {
			return Binaries{}, err
		}
	}
	// Pods may run as any uid; the binaries live in a root-owned tree.
	for _, p := range []string{b.Serverfirst, b.SidecarModel} {
		_ = os.Chmod(p, 0o755)
	}
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
