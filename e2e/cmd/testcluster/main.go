// Command testcluster runs the e2e test environment (a real etcd and
// kube-apiserver on loopback, Istio's CRDs installed) until SIGINT or
// SIGTERM, for `make demo`, trying the tool by hand, and acceptance checks
// that drive it from outside:
//
//	go -C e2e run ./cmd/testcluster --kubeconfig /tmp/kc &
//	until [ -f /tmp/kc ]; do sleep 1; done
//	kubectl --kubeconfig /tmp/kc get ns
//
// The admin kubeconfig appears at --kubeconfig only once the API server is
// ready (written to a temp file, then renamed); it is removed on exit.
//
// With --world (root only) it also runs the e2e world beside the API
// server: real istiod (default and canary revisions: their injector is the
// API server's webhook, their xDS configures the sidecars), and a node
// agent that runs pods as local processes in their own network namespaces
// (e2e/world, e2e/README.md); Istio's binaries come from
// hack/testbins.sh. --seed demo
// creates the demo workloads (world.SeedDemo) and, with --world, waits for
// them to run before publishing the kubeconfig:
//
//	sudo go -C e2e run ./cmd/testcluster --kubeconfig /tmp/kc --world --seed demo
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("testcluster", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "where to write the admin kubeconfig once the API server is ready (required)")
	noCRDs := fs.Bool("no-istio-crds", false, "do not install Istio's CRDs (a cluster without Istio)")
	binDir := fs.String("bin-dir", "", "folder with kube-apiserver and etcd (default $"+testenv.EnvTestBin+" or .cache/testbin)")
	timeout := fs.Duration("start-timeout", 90*time.Second, "give up if the API server is not ready by then")
	withWorld := fs.Bool("world", false, "also run the e2e world: istiod, node agent running pods, sidecars configured by istiod (needs root and hack/testbins.sh's Istio binaries)")
	seed := fs.String("seed", "", `create workloads: "demo" (namespaces shop, legacy, batch; see e2e/README.md)`)
	stateDir := fs.String("state-dir", "", "with --world: keep the world's state (istiod logs, pod logs) here instead of a temp dir removed on exit; uid 1337 (the sidecars) must be able to reach it")
	worldBin := fs.String("world-bin-dir", "", "with --world: where to build kubectl-serverfirst (default .cache/world-bin in the repository)")
	readyTimeout := fs.Duration("seed-timeout", 3*time.Minute, "with --world --seed: give up if the seeded pods are not ready by then")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *kubeconfig == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "testcluster: usage: testcluster --kubeconfig PATH [--no-istio-crds] [--world [--state-dir DIR]] [--seed demo]")
		return 2
	}
	if *seed != "" && *seed != "demo" {
		fmt.Fprintf(os.Stderr, "testcluster: usage: --seed takes \"demo\", not %q\n", *seed)
		return 2
	}
	if *withWorld && *noCRDs {
		fmt.Fprintln(os.Stderr, "testcluster: usage: --world needs Istio's CRDs (drop --no-istio-crds)")
		return 2
	}
	if *withWorld && os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "testcluster: --world needs root: the node agent creates network namespaces, veths and iptables rules "+
			"(run as root, e.g. `sudo -E go -C e2e run ./cmd/testcluster ...`, or drop --world)")
		return 1
	}
	var istioBins world.IstioBinaries
	if *withWorld {
		var err error
		if istioBins, err = world.LocateIstioBinaries(""); err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: --world runs real istiod: %v\n", err)
			return 1
		}
	}

	// Catch signals before starting, so a Ctrl-C during start-up still tears
	// down whatever was started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	followGoRun()

	// The world's binaries build while the API server starts.
	type built struct {
		b   world.Binaries
		err error
	}
	binaries := make(chan built, 1)
	if *withWorld {
		go func() {
			b, err := buildWorldBinaries(ctx, *worldBin)
			binaries <- built{b, err}
		}()
	}

	env, err := testenv.Start(ctx, testenv.Options{NoIstioCRDs: *noCRDs, BinDir: *binDir, StartTimeout: *timeout})
	if errors.Is(err, testenv.ErrBinariesMissing) {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: start: %v\n", err)
		return 1
	}
	defer env.Stop()
	fmt.Fprintf(os.Stderr, "testcluster: state in %s\n", env.Dir)

	var w *world.World
	if *withWorld {
		began := time.Now()
		bb := <-binaries
		if bb.err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: %v\n", bb.err)
			return 1
		}
		w, err = world.StartWorld(ctx, world.WorldOptions{
			Env: env, StateDir: *stateDir, Binaries: bb.b, Istio: istioBins,
			Logf: func(format string, args ...any) { fmt.Fprintf(os.Stderr, "testcluster: world: "+format+"\n", args...) },
		})
		if err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: start the world: %v\n", err)
			return 1
		}
		defer w.Stop()
		istiods := ""
		for _, d := range w.Istiods {
			rev := d.Revision
			if rev == "" {
				rev = "default"
			}
			istiods += fmt.Sprintf(" [%s: xDS %s, webhook %s, debug %s, log %s]", rev, d.XDSAddr, d.WebhookURL, d.DebugURL, d.LogPath)
		}
		fmt.Fprintf(os.Stderr, "testcluster: world ready %v after the API server: istiod%s, node %s (netns %s)\n",
			time.Since(began).Round(time.Millisecond), istiods, w.Node.Name(), w.Node.NodeNetns())
		fmt.Fprintf(os.Stderr, "testcluster: world state in %s (pod logs under %s)\n", w.StateDir, filepath.Join(w.Node.StateDir(), "pods"))
	}
	if *seed == "demo" {
		began := time.Now()
		if err := seedDemo(ctx, env, w, !*noCRDs, *readyTimeout); err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: seed demo: %v\n", err)
			return 1
		}
		what := "created (no node: pods stay Pending)"
		if w != nil {
			what = "running"
		}
		fmt.Fprintf(os.Stderr, "testcluster: demo workloads %s in %v: %v\n", what, time.Since(began).Round(time.Millisecond), world.DemoPods)
	}

	if err := publish(env.Kubeconfig, *kubeconfig); err != nil {
		fmt.Fprintf(os.Stderr, "testcluster: %v\n", err)
		return 1
	}
	defer os.Remove(*kubeconfig)
	crds := "Istio CRDs installed"
	if *noCRDs {
		crds = "no Istio CRDs"
	}
	fmt.Fprintf(os.Stderr, "testcluster: ready in %v: %s, %s; kubeconfig %s; Ctrl-C to stop\n",
		env.StartupTime.Round(time.Millisecond), env.Host, crds, *kubeconfig)

	select {
	case <-ctx.Done():
		fmt.Fprintln(os.Stderr, "testcluster: stopping")
		if w != nil {
			if err := w.Stop(); err != nil {
				fmt.Fprintf(os.Stderr, "testcluster: stop the world: %v\n", err)
				env.Stop()
				return 1
			}
		}
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testcluster: stop: %v\n", err)
			return 1
		}
		return 0
	case <-env.Done():
		fmt.Fprintf(os.Stderr, "testcluster: etcd or kube-apiserver exited unexpectedly; last lines of its log:\n%s\n%s\n",
			env.LogTail("apiserver", 20), env.LogTail("etcd", 10))
		return 1
	}
}

// publish copies the kubeconfig to dst through a temp file in dst's folder
// and a rename, so a watcher never reads a half-written file.
func publish(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".testcluster-kubeconfig-*")
	if err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	return nil
}

// buildWorldBinaries builds kubectl-serverfirst for the world's pods, into
// dir or the repository's .cache/world-bin.
func buildWorldBinaries(ctx context.Context, dir string) (world.Binaries, error) {
	root, err := testenv.RepoRoot()
	if err != nil {
		return world.Binaries{}, fmt.Errorf("find the repository to build the world's binaries: %w", err)
	}
	if dir == "" {
		dir = filepath.Join(root, ".cache", "world-bin")
	}
	return world.BuildBinaries(ctx, root, dir)
}

// seedDemo creates the demo workloads and, with a world, waits for them.
func seedDemo(ctx context.Context, env *testenv.Env, w *world.World, withIstio bool, timeout time.Duration) error {
	var istio istioclient.Interface // nil: no Istio CRDs, no PeerAuthentication
	if withIstio {
		var err error
		if istio, err = istioclient.NewForConfig(env.Config); err != nil {
			return err
		}
	}
	if err := world.SeedDemo(ctx, env.Client, istio); err != nil {
		return err
	}
	if w == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	if err := world.WaitPodsReady(ctx, env.Client, world.DemoPods...); err != nil {
		return err
	}
	if err := w.WaitDemoListening(ctx); err != nil {
		return err
	}
	// Every sidecar serves a config that has every demo object.
	return w.WaitSidecarsSynced(ctx, began)
}
