// Command kubectl-serverfirst finds service-mesh ports where a server-first
// protocol deadlocks against the sidecar's protocol sniffing, proves it with
// an active probe, and prints the fix. Installed on PATH it also works as the
// kubectl plugin `kubectl serverfirst`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	// Cloud auth providers (exec, oidc, ...) so the plugin works with any kubeconfig.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func main() {
	// Ctrl-C cancels the context: commands return what finished and clean up
	// what they created (probe pods) before the process exits.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Probes of silent targets hold a socket each for the whole banner
	// timeout: the prober's default pool is sized from this limit.
	probe.RaiseOpenFileLimit()

	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	root := NewRootCommand(streams)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// exitError carries a specific exit code (for example --fail-on findings)
// through cobra without printing a second message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitCode(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}
