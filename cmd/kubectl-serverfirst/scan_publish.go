package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

// sidecarQuitURL is the Istio agent's endpoint that stops the proxy, so a
// Job's pod completes once the scan is done.
const sidecarQuitURL = "http://127.0.0.1:15020/quitquitquit"

// publishFlags are scan's flags for the scheduled in-cluster scan: where
// the report and metrics go, sharding, and the sidecar's exit.
type publishFlags struct {
	reportConfigMap string
	metricsFile     string
	pushgateway     string
	pushJob         string
	shard           string
	shards          int
	runID           string
	quitSidecarFlag bool
	reportMaxBytes  int

	// Resolved by complete.
	cmNamespace, cmName    string
	shardIndex, shardCount int
	shardPayload           *publish.Shard
	started                time.Time
	quit                   bool
	quitURL                string
}

func (p *publishFlags) add(cmd *cobra.Command, root *rootOptions) {
	fl := cmd.Flags()
	fl.BoolVar(&root.inCluster, "in-cluster", false, "Run as a Job inside the cluster: the pod's ServiceAccount, not a kubeconfig (see In a cluster)")
	fl.StringVar(&p.reportConfigMap, "report-configmap", "", "Also write the report into this ConfigMap (NAMESPACE/NAME), created if absent (see In a cluster)")
	fl.IntVar(&p.reportMaxBytes, "report-max-bytes", publish.DefaultBudget, "With --report-configmap: the most bytes the ConfigMap may take (see In a cluster)")
	fl.StringVar(&p.metricsFile, "metrics-file", "", "Also write Prometheus metrics to this file (node exporter textfile format, written atomically)")
	fl.StringVar(&p.pushgateway, "pushgateway", "", "Also push Prometheus metrics to this Pushgateway URL")
	fl.StringVar(&p.pushJob, "push-job", "kubectl-serverfirst", "With --pushgateway: the job label of the pushed group")
	fl.StringVar(&p.shard, "shard", "", "Probe only this share of the targets, INDEX/COUNT (0-based; see In a cluster)")
	fl.IntVar(&p.shards, "shards", 0, "Like --shard, with INDEX from $JOB_COMPLETION_INDEX (an Indexed Job's pods)")
	fl.StringVar(&p.runID, "run-id", "", "With sharding: the name the shards of one scan share (default $"+publish.RunIDEnv+")")
	fl.BoolVar(&p.quitSidecarFlag, "quit-sidecar", false, "When done, ask the pod's Istio sidecar to exit, so a Job completes (default true with --in-cluster)")
}

// minReportBytes leaves room for the ConfigMap's metadata, the summary and
// the note saying what was trimmed.
const minReportBytes = 4096

// complete resolves the flags before the scan; quitSidecar must run
// whatever it returns.
func (p *publishFlags) complete(fl *pflag.FlagSet, root *rootOptions) error {
	p.started = time.Now()
	p.quitURL = cmp.Or(root.hooks.sidecarQuitURL, sidecarQuitURL)
	p.quit = root.inCluster
	if fl.Changed("quit-sidecar") {
		p.quit = p.quitSidecarFlag
	}
	if p.reportConfigMap != "" {
		ns, name, ok := strings.Cut(p.reportConfigMap, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("--report-configmap %q: want NAMESPACE/NAME", p.reportConfigMap)
		}
		p.cmNamespace, p.cmName = ns, name
	}
	if fl.Changed("report-max-bytes") && (p.reportMaxBytes < minReportBytes || p.reportMaxBytes > publish.MaxObjectBytes) {
		return fmt.Errorf("--report-max-bytes %d: want %d..%d", p.reportMaxBytes, minReportBytes, publish.MaxObjectBytes)
	}
	switch {
	case p.shard != "" && p.shards != 0:
		return errors.New("--shard and --shards: give one")
	case p.shard != "":
		i, n, err := publish.ParseShard(p.shard)
		if err != nil {
			return fmt.Errorf("--shard: %w", err)
		}
		p.shardIndex, p.shardCount = i, n
	case p.shards < 0:
		return fmt.Errorf("--shards %d: want a positive count", p.shards)
	case p.shards > 0:
		env := os.Getenv("JOB_COMPLETION_INDEX")
		i, err := strconv.Atoi(env)
		if err != nil || i < 0 || i >= p.shards {
			return fmt.Errorf("--shards %d: $JOB_COMPLETION_INDEX is %q, want 0..%d (run in an Indexed Job, or use --shard INDEX/COUNT)", p.shards, env, p.shards-1)
		}
		p.shardIndex, p.shardCount = i, p.shards
	}
	if p.shardCount > 1 && p.runID == "" {
		p.runID = os.Getenv(publish.RunIDEnv)
	}
	return nil
}

// shardReport keeps the shard's own part of the report (and its raw
// observations, for the ConfigMap).
func (p *publishFlags) shardReport(r report.Report, observed []target.Observation) report.Report {
	if p.shardCount <= 1 {
		return r
	}
	sh := publish.NewShard(p.runID, p.shardIndex, p.shardCount, r, observed, time.Now())
	p.shardPayload = &sh
	return sh.Report
}

// publish writes the report and metrics where the flags say. Every
// failure is returned (the Job fails loudly), after trying the rest.
func (p *publishFlags) publish(ctx context.Context, root *rootOptions, r report.Report, log io.Writer) error {
	now := time.Now()
	var errs []error
	if p.cmName != "" {
		if err := p.writeConfigMap(ctx, root, r, now, log); err != nil {
			errs = append(errs, err)
		}
	}
	if p.metricsFile != "" || p.pushgateway != "" {
		m := publish.NewMetrics()
		m.Observe(r, now.Sub(p.started), now)
		if p.metricsFile != "" {
			if err := m.WriteTextfile(p.metricsFile); err != nil {
				errs = append(errs, err)
			}
		}
		if p.pushgateway != "" {
			var grouping map[string]string
			if p.shardCount > 1 {
				grouping = map[string]string{"shard": strconv.Itoa(p.shardIndex)}
			}
			if err := m.PushGrouped(ctx, p.pushgateway, p.pushJob, grouping); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (p *publishFlags) writeConfigMap(ctx context.Context, root *rootOptions, r report.Report, now time.Time, log io.Writer) error {
	cfg, err := root.restConfig()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	sink := publish.ConfigMapSink{Client: kube, Namespace: p.cmNamespace, Name: p.cmName, Budget: p.reportMaxBytes}
	if p.shardPayload != nil {
		res, err := sink.PublishShard(ctx, *p.shardPayload, now)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "shard %d/%d of run %q written to ConfigMap %s (shards present: %v)\n", p.shardIndex, p.shardCount, p.runID, sink.Ref(), res.Present)
		logNotes(log, res.Shard.Notes)
		if res.Merged {
			fmt.Fprintf(log, "all %d shards present: merged report written to ConfigMap %s\n", p.shardCount, sink.Ref())
			logNotes(log, res.Report.Notes)
		}
		return nil
	}
	var md bytes.Buffer
	if err := report.Render(&md, "markdown", r, report.RenderOptions{}); err != nil {
		return err
	}
	res, err := sink.Publish(ctx, r, md.Bytes(), now)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "report written to ConfigMap %s (%d bytes)\n", sink.Ref(), res.Bytes)
	logNotes(log, res.Notes)
	return nil
}

func logNotes(w io.Writer, notes []string) {
	for _, n := range notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

// quitSidecar asks the Istio agent to stop the proxy. No sidecar
// (connection refused) is not an error; anything else is a warning.
func (p *publishFlags) quitSidecar(ctx context.Context, log io.Writer) {
	if p == nil || !p.quit {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.quitURL, nil)
	if err != nil {
		fmt.Fprintf(log, "warning: cannot stop the sidecar: %v\n", err)
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return // no sidecar in this pod
	}
	if err != nil {
		fmt.Fprintf(log, "warning: cannot stop the sidecar (POST %s): %v\n", p.quitURL, err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(log, "warning: the sidecar did not stop (POST %s): %s\n", p.quitURL, resp.Status)
		return
	}
	fmt.Fprintf(log, "sidecar stopped (POST %s)\n", p.quitURL)
}

// restConfig is the pod's ServiceAccount with --in-cluster, else the
// kubeconfig flags.
func (o *rootOptions) restConfig() (*rest.Config, error) {
	if o.inCluster {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("--in-cluster: not inside a pod with a ServiceAccount token: %w", err)
		}
		return cfg, nil
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("no usable kubeconfig: %w", err)
	}
	return cfg, nil
}
