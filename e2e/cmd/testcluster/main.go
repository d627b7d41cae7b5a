// Command testcluster runs the e2e test environment (a real etcd and
// kube-apiserver on loopback, Istio's CRDs installed) until SIGINT or
// SIGTERM, for `make demo`, trying the tool by hand, and acceptance checks
// that drive it from outside:
//
//	go run ./e2e/cmd/testcluster --kubeconfig /tmp/kc &
//	until [ -f /tmp/kc ]; do sleep 1; done
//	kubectl --kubeconfig /tmp/kc get ns
//
// The admin kubeconfig appears at --kubeconfig only once the API server is
// ready (written to a temp file, then renamed); it is removed on exit.
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

	"github.com/serverfirst/kubectl-serverfirst/e2e/testenv"
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
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *kubeconfig == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "testcluster: usage: testcluster --kubeconfig PATH [--no-istio-crds]")
		return 2
	}

	// Catch signals before starting, so a Ctrl-C during start-up still tears
	// down whatever was started.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	followGoRun()

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
