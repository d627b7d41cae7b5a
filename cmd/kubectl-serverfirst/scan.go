package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/scan"
)

// scanFlags are shared by scan and fix: both judge the same targets.
type scanFlags struct {
	static         bool
	vantage        string
	selfInMesh     string
	istioNamespace string
	external       []string
	timeout        time.Duration
	connectTimeout time.Duration
	limits         probeLimits
	probeImage     string
	noOutside      bool
	noDirect       bool
	direct         bool
	fromPods       []string

	// flags tells whether --timeout was given: otherwise the banner wait
	// follows the mesh's own timeouts.
	flags *pflag.FlagSet
}

func (f *scanFlags) add(cmd *cobra.Command) {
	d := probe.DefaultOptions()
	fl := cmd.Flags()
	f.flags = fl
	fl.BoolVar(&f.static, "static", false, "Judge from the cluster's objects only: no connection to any target (same as --vantage none)")
	fl.StringVar(&f.vantage, "vantage", "auto", "Where probes run from: pods, self, config, none or auto (see Vantages below)")
	fl.StringVar(&f.selfInMesh, "self-in-mesh", "auto", "With --vantage self: whether this process has a sidecar: true, false or auto")
	fl.StringVar(&f.istioNamespace, "istio-namespace", cluster.DefaultIstioNamespace, "Namespace of the Istio control plane and its mesh ConfigMap (istio, istio-<rev>)")
	fl.StringArrayVar(&f.external, "external", nil, "An external HOST:PORT that mesh clients use without a ServiceEntry; repeatable")
	fl.DurationVar(&f.timeout, "timeout", d.BannerTimeout, "With probes: how long to wait for a banner (unset: longer where the mesh could end a wait later)")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", d.ConnectTimeout, "With probes: how long to wait for the TCP handshake")
	f.limits.add(fl, "With probes: ")
	fl.StringVar(&f.probeImage, "probe-image", defaultProbeImage(), `With --vantage pods or --from-pod: the image that runs "kubectl-serverfirst agent"`)
	fl.BoolVar(&f.noOutside, "no-outside", false, "With --vantage pods or config: skip the path of clients without a sidecar (no external-to-mesh evidence)")
	fl.BoolVar(&f.noDirect, "no-direct", false, "With --vantage pods or config: skip the port-forwards to the servers (no direct proof: DEADLOCK becomes AT-RISK)")
	fl.BoolVar(&f.direct, "direct", false, "With --vantage self: also port-forward into each server's pod for the direct proof (see below)")
	fl.StringArrayVar(&f.fromPods, "from-pod", nil, "Also probe from this client pod (NAMESPACE/POD) with an ephemeral container; repeatable")
}

// scanOptions is the scan command: its flags, then what Complete and
// Validate resolve from them for Run.
type scanOptions struct {
	root *rootOptions
	scanFlags
	output  string
	showOK  bool
	failOn  string
	publish publishFlags
	files   fileFlags

	// Set by Complete and Validate.
	cmd            *cobra.Command
	failOnVerdicts map[report.Verdict]bool
	cfg            scan.Config
	externals      []target.ExternalTarget // -f
}

const scanExample = `  # What hangs in my namespace? (static: no connection to any target)
  kubectl serverfirst scan

  # The whole cluster, every port listed, wide:
  kubectl serverfirst scan -A -o wide

  # Prove it: dial every target from here (run inside a pod with a sidecar for the mesh path)
  kubectl serverfirst scan -n shop --vantage self --self-in-mesh true

  # In a pod with a sidecar: the mesh path from here, the direct path by port-forward
  kubectl serverfirst scan -A --vantage self --direct

  # Prove it without creating any pod: the sidecars' own config plus the direct port-forward
  kubectl serverfirst scan -n shop --vantage config

  # An external MySQL that mesh clients reach without a ServiceEntry:
  kubectl serverfirst scan -n shop --external 203.0.113.7:10000

  # CI gate: exit 3 when anything deadlocks or is at risk
  kubectl serverfirst scan -A --fail-on deadlock,delayed,at-risk -o json > report.json

  # Manifests in a pull request, no cluster (SARIF for code review):
  helm template shop charts/shop -n shop | kubectl serverfirst scan -f - -n shop --fail-on at-risk -o sarif

  # What will this change do to prod? (prod as it would be after applying new/)
  kubectl serverfirst scan -f new/ --context prod`

func newScanCommand(root *rootOptions) *cobra.Command {
	o := &scanOptions{root: root}
	cmd := &cobra.Command{
		Use:   "scan [flags]",
		Short: "Find Service and ServiceEntry ports where a server-first protocol hangs in the mesh",
		Long: `Read the Services, pods, ServiceEntries, PeerAuthentications and mesh config of
the current context, apply Istio's own rules, and judge every port:

  DEADLOCK       the server speaks first directly, nothing arrives through the mesh
  MTLS-REJECTED  STRICT mTLS closes a client without a sidecar
  DELAYED        the banner arrives through the mesh only after protocolDetectionTimeout
  AT-RISK        static evidence only: a sniffed port with server-first hints
  UNREACHABLE    no vantage point could connect
  CLIENT-FIRST   the server waits for the client: sniffing is harmless
  OK             declared TCP (or similar), or the banner arrives promptly

Static evidence: Istio's protocol for the port (port name, appProtocol,
well-known port, or sniffed), whether the server has a sidecar, its effective
mTLS mode, and hints from the port number, port name, Service name and images.
Active evidence (--vantage self, or automatically inside a pod): a passive
probe that connects and waits for the first bytes, sending nothing. From a
pod with a sidecar that is the mesh half of a DEADLOCK; --direct adds the
direct half, a port-forward into each server's pod (needs create on
pods/portforward). --vantage pods gathers both with probe pods.

Vantages (--vantage):
  pods   probe pods with and without a sidecar (running --probe-image's agent)
         and a port-forward to each server (--no-outside, --no-direct skip parts)
  self   dial from where this runs; --self-in-mesh auto: true inside a pod
         ($POD_NAME, else the host name) that has an istio-proxy
  config no pods: the sidecars' own Envoy config (/config_dump, by port-forward
         to their admin port 15000, never exec) and the direct port-forward:
         the listener Envoy picks, the inspector that waits for the client's
         first bytes, for how long. With the direct banner, a listener that
         waits forever is a DEADLOCK, the listener named; --from-pod names
         the client proxy
  none   static verdicts (same as --static)
  auto   self inside a pod, config elsewhere (no pod is created; --vantage pods
         for probe pods)
--direct (with self, so with --in-cluster) listens on each server pod's loopback,
past its sidecar; without it, silence through the mesh is only AT-RISK. Its
right is powerful (job manifests --direct grants it): checked first, one warning
where it is missing. --from-pod NAMESPACE/POD probes from inside that client pod
(an ephemeral container): the exact path that hangs.

Probes wait --timeout for a banner, or longer where the mesh's
protocolDetectionTimeout or Envoy's 15s catch-all timeout could end a wait later,
so that silence proves a hang. --per-ip-port 1 (the default) keeps a MySQL's
max_connect_errors and an SMTP server's per-client limits untouched. --external
HOST:PORT names a destination outside the cluster that mesh clients use without
a ServiceEntry: it is checked for port collisions and probed with the rest.

-f FILE|DIR|- judges manifests instead (helm template or kustomize build output,
a directory of YAML): workloads count as the pods they would create, with the
sidecar Istio's injector would give them (namespace labels in the files, or
--injected-namespaces), the mesh config from --mesh-config or an istio
ConfigMap in the files (Istio's defaults otherwise, said in the report). Alone,
-f contacts no API server and reads no kubeconfig; with an explicit --context,
--kubeconfig, --server or --cluster it judges that cluster as it would be after
applying the files (each object in them replaces its live version). Findings
name their file#document and line (-o sarif puts them on that line). A
directory is read recursively for *.yaml, *.yml and *.json; multi-document YAML
and List objects are read too.

In a cluster (--in-cluster, what job manifests sets up): the pod's
ServiceAccount instead of a kubeconfig, --vantage self and -o json unless given,
and the sidecar asked to exit when done (--quit-sidecar: POST
` + sidecarQuitURL + `).
--report-configmap NAMESPACE/NAME also writes report.json, report.md,
previous.json (the last report) and updated into that ConfigMap, created if
absent and kept under --report-max-bytes (1 MiB): past it report.json is gzipped,
then previous.json dropped, then report.md cut, then the least severe findings
trimmed, each step noted in the report (lower it if your API server or etcd
accepts less). --shard INDEX/COUNT (or --shards COUNT in an Indexed Job) probes
one share of the targets; with --report-configmap the shard is stored as
shard-INDEX.json and the last shard of a run (--run-id, default the Job's name)
merges them.

The table lists affected ports worst first and ends with what to run next;
-o json/yaml list every port in the documented schema (see README).
` + "`explain VERDICT`" + ` tells what a verdict means and how to fix it.

Exit status: 0 when the scan ran, whatever it found; 3 when a finding matches
--fail-on (deadlock, delayed, at-risk, mtls-rejected, unreachable); 1 on errors
(unreachable API server, bad flags, a -f path that does not exist); 130 on
Ctrl-C.
Read-only: nothing in the cluster is changed.`,
		Example: scanExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := o.Complete(cmd)
			// In a Job, the sidecar must be stopped however the scan ends.
			defer o.publish.quitSidecar(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	o.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&o.output, "output", "o", "table", "Output format: "+strings.Join(report.Formats, ", "))
	fl.BoolVar(&o.showOK, "show-ok", false, "List unaffected ports in the table too (-o wide always does)")
	fl.StringVar(&o.failOn, "fail-on", "", "Exit 3 when a finding has one of these verdicts, comma-separated (see Exit status below)")
	o.publish.add(cmd, root)
	o.files.add(cmd)
	return cmd
}

// Complete resolves what the flags leave open: the defaults --in-cluster
// changes, where the report is published, the shard, --fail-on.
func (o *scanOptions) Complete(cmd *cobra.Command) error {
	o.cmd = cmd
	fl := cmd.Flags()
	if err := o.publish.complete(fl, o.root); err != nil {
		return err
	}
	// --in-cluster changes two defaults: -o json, for the Job's log, and
	// --vantage self, for the Job's pod is the vantage.
	if o.root.inCluster {
		if !fl.Changed("output") {
			o.output = "json"
		}
		if !fl.Changed("vantage") && !o.static {
			o.vantage = "self"
		}
	}
	var err error
	o.failOnVerdicts, err = parseFailOn(o.failOn)
	return err
}

// Validate checks the flags together and builds the scan's Config.
func (o *scanOptions) Validate() error {
	if err := checkOutput(o.output); err != nil {
		return err
	}
	if len(o.files.paths) > 0 {
		return o.validateFiles()
	}
	cfg, err := o.config(o.root, o.cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	cfg.ShardIndex, cfg.ShardCount = o.publish.shardIndex, o.publish.shardCount
	o.cfg = cfg
	return nil
}

// Run scans, renders the report, publishes it and applies --fail-on.
func (o *scanOptions) Run(ctx context.Context) error {
	var res scan.Result
	if len(o.files.paths) > 0 {
		r, err := o.runFiles(ctx)
		if err != nil {
			return err
		}
		res.Report = r
	} else {
		s, err := newLiveScan(o.root, o.cfg)
		if err != nil {
			return err
		}
		if res, err = s.run(ctx); err != nil {
			return err
		}
	}
	r := o.publish.shardReport(res.Report, res.Observations)
	ro := report.RenderOptions{Color: colorWanted(o.root.streams.Out), ShowAll: o.showOK}
	if err := report.Render(o.root.streams.Out, o.output, r, ro); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	if err := o.publish.publish(ctx, o.root, r, o.cmd.ErrOrStderr()); err != nil {
		return err
	}
	return failOnFindings(r, o.failOnVerdicts)
}

func checkOutput(o string) error {
	if slices.Contains(report.Formats, o) {
		return nil
	}
	return fmt.Errorf("unknown output format %q: want one of %s", o, strings.Join(report.Formats, ", "))
}

func parseFailOn(s string) (map[report.Verdict]bool, error) {
	out := map[report.Verdict]bool{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, w := range strings.Split(s, ",") {
		v := report.Verdict(strings.ToUpper(strings.TrimSpace(w)))
		switch v {
		case report.Deadlock, report.Delayed, report.AtRisk, report.MTLSRejected, report.Unreachable:
			out[v] = true
		default:
			return nil, fmt.Errorf("--fail-on: unknown verdict %q: want deadlock, delayed, at-risk, mtls-rejected or unreachable", strings.TrimSpace(w))
		}
	}
	return out, nil
}

func failOnFindings(r report.Report, failOn map[report.Verdict]bool) error {
	n := 0
	for _, f := range r.Findings {
		if failOn[f.Verdict] {
			n++
		}
	}
	if n > 0 {
		return &exitError{code: 3, err: fmt.Errorf("%d finding(s) match --fail-on", n)}
	}
	return nil
}

// colorWanted: colour only on a terminal, never with NO_COLOR set.
func colorWanted(w io.Writer) bool {
	if _, ok := os.LookupEnv("NO_COLOR"); ok {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// clients builds the API clients from the kubeconfig flags.
func (o *rootOptions) clients() (cluster.Clients, *rest.Config, error) {
	cfg, err := o.restConfig()
	if err != nil {
		return cluster.Clients{}, nil, err
	}
	cfg.QPS, cfg.Burst = 50, 100
	cfg.UserAgent = "kubectl-serverfirst/" + version
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return countingTransport{rt, &o.requests} })
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return cluster.Clients{}, nil, err
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return cluster.Clients{}, nil, err
	}
	return cluster.Clients{Kube: kube, Istio: ic}, cfg, nil
}

// scanNamespaces: -A means all; otherwise -n, or the context's namespace.
func (o *rootOptions) scanNamespaces() ([]string, error) {
	if o.allNamespaces {
		return nil, nil
	}
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, fmt.Errorf("no usable kubeconfig: %w", err)
	}
	return []string{ns}, nil
}

// config checks the scan flags and turns them into a scan's settings
// (the namespaces are the clients', set by newLiveScan); progress
// receives the scan's progress lines.
func (f *scanFlags) config(root *rootOptions, progress io.Writer) (scan.Config, error) {
	if err := f.limits.validate(); err != nil {
		return scan.Config{}, err
	}
	externals, err := parseExternals(f.external)
	if err != nil {
		return scan.Config{}, err
	}
	from := f.vantage
	if f.static {
		from = "none"
	}
	switch from {
	case "auto":
		// Outside a pod the proxies' own config and the direct
		// port-forward prove a DEADLOCK without creating anything; probe
		// pods only when asked for (--vantage pods).
		from = "config"
		if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
			from = "self"
		}
	case "none", "self", "pods", "config":
	default:
		return scan.Config{}, fmt.Errorf("--vantage %q: want pods, self, config, none or auto", f.vantage)
	}
	if err := checkDirect(f, from); err != nil {
		return scan.Config{}, err
	}
	fromPods, err := parseFromPods(f.fromPods)
	if err != nil {
		return scan.Config{}, err
	}
	cfg := scan.Config{
		IstioNamespace: f.istioNamespace, From: scan.From(from), External: externals,
		Probe: f.probeOptions(), BannerTimeoutSet: f.flags != nil && f.flags.Changed("timeout"),
		ProbeImage: f.probeImage, NoOutside: f.noOutside, NoDirect: f.noDirect, Direct: f.direct, FromPods: fromPods,
		InCluster: root.inCluster, Progress: progress, RunDirect: root.hooks.runDirect,
	}
	if cfg.From == scan.FromSelf || cfg.From == scan.FromConfig {
		// The flag's value is checked before anything is read.
		if cfg.SelfInMesh, err = parseSelfInMesh(f.selfInMesh); err != nil {
			return scan.Config{}, err
		}
		cfg.Self = selfPod()
	}
	return cfg, nil
}

// liveScan is a scan ready to run against the cluster: fix --apply
// probes again with the very same settings.
type liveScan struct {
	root    *rootOptions
	clients scan.Clients
	cfg     scan.Config
}

func newLiveScan(root *rootOptions, cfg scan.Config) (*liveScan, error) {
	clients, rc, err := root.clients()
	if err != nil {
		return nil, err
	}
	if cfg.Namespaces, err = root.scanNamespaces(); err != nil {
		return nil, err
	}
	return &liveScan{root: root, clients: scan.Clients{Clients: clients, REST: rc}, cfg: cfg}, nil
}

func (s *liveScan) run(ctx context.Context) (scan.Result, error) {
	res, err := scan.Run(ctx, s.clients, s.cfg)
	if err != nil {
		return res, apiError(s.clients.REST.Host, err)
	}
	return res, nil
}

// reprobe is scan.Reprobe: the paths r names probed again.
func (s *liveScan) reprobe(ctx context.Context, r target.Reprobe, before []target.Observation) (report.Report, error) {
	after, err := scan.Reprobe(ctx, s.clients, s.cfg, r, before)
	if err != nil {
		return after, apiError(s.clients.REST.Host, err)
	}
	return after, nil
}

// probeOptions are the prober's defaults with the scan's timeouts and
// concurrency, for every vantage the scan dials from.
func (f *scanFlags) probeOptions() probe.Options {
	o := probe.DefaultOptions()
	o.BannerTimeout, o.ConnectTimeout = f.timeout, f.connectTimeout
	f.limits.apply(&o, 0, io.Discard)
	return o
}

// checkDirect: --direct adds port-forwards to --vantage self; --vantage
// pods makes them anyway (accepted, redundant); a static scan has no
// probe for them to complete.
func checkDirect(f *scanFlags, vantage string) error {
	switch {
	case !f.direct:
		return nil
	case f.noDirect:
		return errors.New("--direct and --no-direct: give one")
	case f.static:
		return errors.New("--direct and --static: a static scan probes nothing, drop one")
	case vantage == "none":
		return errors.New("--direct and --vantage none: a static scan probes nothing, drop one")
	}
	return nil
}

// parseSelfInMesh reads --self-in-mesh; auto is nil (scan looks up the
// pod it runs in).
func parseSelfInMesh(flag string) (*bool, error) {
	switch flag {
	case "true", "false":
		v := flag == "true"
		return &v, nil
	case "auto":
		return nil, nil
	}
	return nil, fmt.Errorf("--self-in-mesh %q: want true, false or auto", flag)
}

// selfPod names the pod this process may run in: $POD_NAME (else the host
// name, a pod's default) in $POD_NAMESPACE (any namespace when unset).
func selfPod() scan.PodRef {
	name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
	if name == "" {
		name, _ = os.Hostname()
	}
	return scan.PodRef{Namespace: ns, Name: name}
}

func parseExternals(list []string) ([]target.ExternalTarget, error) {
	var out []target.ExternalTarget
	for _, s := range list {
		t, err := probe.ParseTarget(s)
		if err != nil {
			return nil, fmt.Errorf("--external: %w", err)
		}
		out = append(out, target.ExternalTarget{Host: t.Host, Port: int32(t.Port)})
	}
	return out, nil
}

// defaultProbeImage is the release image of this very version.
func defaultProbeImage() string {
	tag := version
	if tag == "" || tag == "dev" {
		tag = "latest"
	}
	return "ghcr.io/serverfirst/kubectl-serverfirst:" + tag
}

func parseFromPods(list []string) ([]scan.PodRef, error) {
	var out []scan.PodRef
	for _, s := range list {
		ns, name, ok := strings.Cut(s, "/")
		if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
			return nil, fmt.Errorf("--from-pod %q: want NAMESPACE/POD", s)
		}
		out = append(out, scan.PodRef{Namespace: ns, Name: name})
	}
	return out, nil
}

// apiError turns a failure to reach the API server into one clear line.
func apiError(host string, err error) error {
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr), errors.As(err, &netErr):
		return fmt.Errorf("cannot reach the API server at %s: %v", host, rootCause(err))
	case errors.Is(err, context.Canceled):
		return &exitError{code: 130, err: errors.New("interrupted")}
	}
	return err
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// countingTransport counts the requests that go through it.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.next.RoundTrip(r)
}
