package main

import (
	"sync/atomic"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/scan"
)

// rootOptions holds what every subcommand shares: the kubeconfig flags and
// the output streams (streams, not os.Stdout, so commands are testable).
type rootOptions struct {
	configFlags   *genericclioptions.ConfigFlags
	allNamespaces bool
	streams       genericiooptions.IOStreams
	// inCluster: use the pod's ServiceAccount (rest.InClusterConfig)
	// instead of the kubeconfig flags (scan --in-cluster).
	inCluster bool
	// requests counts the API requests of every client built (fix
	// --apply reports what verifying cost).
	requests atomic.Int64
	hooks    hooks
}

// hooks stand in for what a test cannot have; the zero value is the real
// thing.
type hooks struct {
	// runDirect replaces vantage.Run for the port-forwards of --direct
	// (the test API server has no kubelet to forward to).
	runDirect scan.RunDirectFunc
	// sidecarQuitURL replaces the Istio agent's quit endpoint.
	sidecarQuitURL string
}

// NewRootCommand builds the command tree. It has no side effects until a
// subcommand runs.
func NewRootCommand(streams genericiooptions.IOStreams) *cobra.Command {
	return newRootCommand(streams, hooks{})
}

func newRootCommand(streams genericiooptions.IOStreams, h hooks) *cobra.Command {
	opts := &rootOptions{
		configFlags: genericclioptions.NewConfigFlags(true),
		streams:     streams,
		hooks:       h,
	}
	cmd := &cobra.Command{
		Use:   "kubectl-serverfirst",
		Short: "Find and fix server-first protocols that deadlock behind a mesh sidecar",
		Long: `kubectl-serverfirst finds ports where a server-first protocol (MySQL, SMTP, FTP,
POP3, IMAP, SSH, NATS, ...) hangs behind an Istio/ASM sidecar that waits for the
client to speak first, proves it with an active probe, and prints the fix.

Installed on your PATH it is also the kubectl plugin "kubectl serverfirst".`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetIn(streams.In)
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)

	flags := cmd.PersistentFlags()
	opts.configFlags.AddFlags(flags)
	flags.BoolVarP(&opts.allNamespaces, "all-namespaces", "A", false,
		"Scan every namespace (overrides --namespace)")

	cmd.AddCommand(newVersionCommand(streams))
	cmd.AddCommand(newProbeCommand(streams))
	cmd.AddCommand(newScanCommand(opts))
	cmd.AddCommand(newFixCommand(opts))
	cmd.AddCommand(newExplainCommand(streams))
	cmd.AddCommand(newAgentCommand(streams))
	cmd.AddCommand(newReportCommand(opts))
	cmd.AddCommand(newJobCommand(streams))
	return cmd
}
