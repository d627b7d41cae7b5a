package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

type agentFlags struct {
	timeout, connectTimeout time.Duration
	limits                  probeLimits
	waitForProxy            bool
	quitProxy               bool
}

func newAgentCommand(streams genericiooptions.IOStreams) *cobra.Command {
	d := probe.DefaultOptions()
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent [KEY=HOST:PORT...]",
		Short: "Probe targets and print JSON lines (what probe pods run)",
		Long: `Probe each target passively (connect, wait for the first bytes, send nothing)
and print one JSON line per result, then a line {"done":true,"count":N}.

This is what the short-lived probe pods and --from-pod ephemeral containers run;
"scan" reads their logs. Targets come from the arguments and from the
` + vantage.TargetsEnv + ` environment variable, one KEY=HOST:PORT per line.
--quit-proxy then asks the pod's sidecar to exit (POST
127.0.0.1:15020/quitquitquit), so a probe pod can complete; never use it inside
someone else's pod.`,
		Hidden: false,
		RunE: func(cmd *cobra.Command, args []string) error {
			text := os.Getenv(vantage.TargetsEnv)
			for _, a := range args {
				text += "\n" + a
			}
			targets, err := vantage.DecodeTargets(text)
			if err != nil {
				return err
			}
			if err := f.limits.validate(); err != nil {
				return err
			}
			if f.waitForProxy {
				waitProxyReady(cmd.Context(), streams)
			}
			o := probe.DefaultOptions()
			o.BannerTimeout, o.ConnectTimeout = f.timeout, f.connectTimeout
			f.limits.apply(&o, len(targets), streams.ErrOut)
			pt := make([]probe.Target, len(targets))
			for i, t := range targets {
				pt[i], _ = probe.ParseTarget(t.Address)
			}
			results := probe.ProbeAll(cmd.Context(), pt, o)
			err = vantage.WriteAgentOutput(streams.Out, targets, results)
			if f.quitProxy {
				quitProxy(cmd.Context())
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.DurationVar(&f.timeout, "timeout", d.BannerTimeout, "How long to wait for the first byte")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", d.ConnectTimeout, "How long to wait for the TCP handshake")
	f.limits.add(fl, "")
	fl.BoolVar(&f.waitForProxy, "wait-for-proxy", false, "Wait (up to 60s) until the sidecar reports ready on 127.0.0.1:15021/healthz/ready")
	fl.BoolVar(&f.quitProxy, "quit-proxy", false, "When done, ask the sidecar to exit so a probe pod completes; never inside someone else's pod")
	return cmd
}

// waitProxyReady polls Istio's readiness port. A probe through a sidecar
// that is not ready yet would prove nothing.
func waitProxyReady(ctx context.Context, streams genericiooptions.IOStreams) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:15021/healthz/ready", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(streams.ErrOut, "warning: the sidecar did not report ready within 60s; probing anyway")
			return
		case <-tick.C:
		}
	}
}

func quitProxy(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://127.0.0.1:15020/quitquitquit", nil)
	if err != nil {
		return
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	} else if !errors.Is(err, context.DeadlineExceeded) {
		_ = err // no sidecar: nothing to stop
	}
}
