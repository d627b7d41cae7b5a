package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

func newReportCommand(root *rootOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Work with stored reports (merge the shards of a sharded scan)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newReportMergeCommand(root))
	return cmd
}

type mergeFlags struct {
	configMap string
	publish   bool
	output    string
}

func newReportMergeCommand(root *rootOptions) *cobra.Command {
	f := &mergeFlags{}
	cmd := &cobra.Command{
		Use:   "merge [FILE...] [--configmap NAMESPACE/NAME [--publish]]",
		Short: "Merge the shards of a sharded scan into one report",
		Long: `Merge the shards of a sharded scan (scan --shard INDEX/COUNT, or the
pods of an Indexed Job) into one report: every target is judged by the shard
that probed it, so the result is the report one scan would have given.

Shards come from files ("-" is standard input): shard payloads, or the JSON
reports that scan --shard -o json prints; or from the shard-N.json keys of a
report ConfigMap (--configmap), where a scheduled scan leaves them when one of
its shards did not finish (a complete run merges by itself). Missing shards
are named in the report's warnings. --publish writes the merged report back
into the ConfigMap as the scan would.`,
		Example: `  # The shards a failed run left behind:
  kubectl serverfirst report merge --configmap serverfirst/serverfirst-report -o table

  # Shards run by hand:
  kubectl serverfirst scan -A --vantage self --shard 0/2 -o json > s0.json
  kubectl serverfirst scan -A --vantage self --shard 1/2 -o json > s1.json
  kubectl serverfirst report merge s0.json s1.json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(f.output); err != nil {
				return err
			}
			if len(args) == 0 && f.configMap == "" {
				return errors.New("report merge: give shard files or --configmap NAMESPACE/NAME")
			}
			if f.publish && f.configMap == "" {
				return errors.New("--publish needs --configmap")
			}
			var shards []publish.Shard
			for _, a := range args {
				b, err := readArg(a, root.streams.In)
				if err != nil {
					return err
				}
				sh, err := publish.DecodeShard(b)
				if err != nil {
					return fmt.Errorf("%s: %w", a, err)
				}
				shards = append(shards, sh)
			}
			var sink publish.ConfigMapSink
			if f.configMap != "" {
				ns, name, ok := strings.Cut(f.configMap, "/")
				if !ok || ns == "" || name == "" {
					return fmt.Errorf("--configmap %q: want NAMESPACE/NAME", f.configMap)
				}
				cfg, err := root.restConfig()
				if err != nil {
					return err
				}
				kube, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					return err
				}
				sink = publish.ConfigMapSink{Client: kube, Namespace: ns, Name: name}
				cm, err := sink.Read(cmd.Context())
				if err != nil {
					return err
				}
				found, errs := publish.ShardsIn(cm)
				for _, e := range errs {
					fmt.Fprintf(cmd.ErrOrStderr(), "warning: ConfigMap %s: %v\n", sink.Ref(), e)
				}
				if len(found) == 0 && len(args) == 0 {
					return fmt.Errorf("ConfigMap %s holds no shard keys (a complete run merges itself into report.json)", sink.Ref())
				}
				shards = append(shards, found...)
			}
			merged, err := publish.Merge(shards)
			if err != nil {
				return err
			}
			o := report.RenderOptions{Color: colorWanted(root.streams.Out)}
			if err := report.Render(root.streams.Out, f.output, merged, o); err != nil {
				return err
			}
			if !f.publish {
				return nil
			}
			var md bytes.Buffer
			if err := report.Render(&md, "markdown", merged, report.RenderOptions{}); err != nil {
				return err
			}
			res, err := sink.Publish(cmd.Context(), merged, md.Bytes(), time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "merged report of %d shard(s) written to ConfigMap %s\n", len(shards), sink.Ref())
			logNotes(cmd.ErrOrStderr(), res.Notes)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configMap, "configmap", "", "Read the shard-N.json keys of this report ConfigMap (NAMESPACE/NAME)")
	fl.BoolVar(&f.publish, "publish", false, "Write the merged report into the --configmap (report.json, report.md, previous.json)")
	fl.StringVarP(&f.output, "output", "o", "json", "Output format: "+strings.Join(report.Formats, ", "))
	fl.BoolVar(&root.inCluster, "in-cluster", false, "Use the pod's ServiceAccount instead of a kubeconfig")
	return cmd
}

func readArg(path string, stdin io.Reader) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(stdin)
	}
	return os.ReadFile(path)
}
