package main

import (
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

func newJobCommand(streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "job",
		Short: "The scheduled in-cluster scan (CronJob)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newJobManifestsCommand(streams))
	return cmd
}

func newJobManifestsCommand(streams genericiooptions.IOStreams) *cobra.Command {
	o := publish.JobOptions{}
	cmd := &cobra.Command{
		Use:   "manifests [flags]",
		Short: "Print the manifests of a scheduled scan, for kubectl apply -f -",
		Long: `Print everything a scheduled scan needs as one YAML stream: its namespace,
ServiceAccount, read-only RBAC (the rules of deploy/rbac.yaml), the report
ConfigMap with a Role that may only get and update it, and a CronJob whose pod
has a sidecar (the mesh client's view). The pod meets PodSecurity "restricted",
starts after its proxy and stops it when done, so the Job completes.

--outside adds a CronJob without a sidecar (the view of clients outside the
mesh), reporting to NAME-outside. --shards N splits the targets between the N
pods of an Indexed Job; the last one to finish merges the report.

By default the scan hears a server only through the mesh (its own
sidecar), so a silent server-first port is AT-RISK, not DEADLOCK: the proof
needs the server's banner without a sidecar in the way too. --direct adds
it: a ClusterRole serverfirst-portforward (create on pods/portforward, a
powerful right: any port of any pod) bound to the scan's ServiceAccount,
and scan --direct, which port-forwards into each server's pod.

Nothing is applied: pipe it to kubectl apply -f -.`,
		Example: `  kubectl serverfirst job manifests | kubectl apply -f -
  kubectl serverfirst job manifests --schedule "0 * * * *" --shards 3 --outside | kubectl apply -f -
  kubectl serverfirst job manifests --direct | kubectl apply -f -    # proof, not only risk
  kubectl -n serverfirst get configmap serverfirst-report -o jsonpath='{.data.report\.md}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			header := "kubectl-serverfirst " + version + ": scheduled scan (kubectl serverfirst job manifests)\nApply with: kubectl apply -f -"
			return publish.RenderJobManifests(streams.Out, o, header)
		},
	}
	fl := cmd.Flags()
	// Its own -n/--namespace shadows the kubeconfig flag: here it is where
	// the scan's objects live, not what to scan (the job scans -A).
	fl.StringVarP(&o.Namespace, "namespace", "n", publish.DefaultJobNamespace, "Namespace of the scan's objects")
	fl.StringVar(&o.Schedule, "schedule", publish.DefaultSchedule, "Cron schedule of the scan")
	fl.IntVar(&o.Shards, "shards", 1, "Split the targets between this many pods (an Indexed Job)")
	fl.StringVar(&o.Image, "probe-image", defaultProbeImage(), "Image that runs kubectl-serverfirst")
	fl.BoolVar(&o.Outside, "outside", false, "Add a second CronJob without a sidecar (outside-client evidence)")
	fl.BoolVar(&o.Direct, "direct", false, "Grant port-forward into pods and scan with --direct: a deadlock proven, not only AT-RISK")
	fl.StringVar(&o.ReportName, "report-configmap", publish.DefaultReportName, "Name of the report ConfigMap in the job's namespace")
	fl.StringVar(&o.IstioNamespace, "istio-namespace", "istio-system", "Namespace of the mesh ConfigMap (for the mesh-config Role)")
	fl.StringVar(&o.MetricsFile, "metrics-file", publish.DefaultMetricsFile, "Where the scan writes Prometheus metrics in its pod (an emptyDir); empty for none")
	fl.StringVar(&o.Pushgateway, "pushgateway", "", "Pushgateway URL the scan pushes its metrics to")
	fl.DurationVar(&o.ActiveDeadline, "active-deadline", 20*time.Minute, "Longest a scan Job may run")
	return cmd
}
