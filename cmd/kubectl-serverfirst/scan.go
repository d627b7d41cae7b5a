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
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
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

	// planFilter narrows the self-probe plan (scan --shard); observed
	// receives the observations the report rests on. Both are set by
	// scan's in-cluster flags only (scan_publish.go).
	planFilter func([]target.ProbeTask) []target.ProbeTask
	observed   *[]target.Observation
	// lastScan receives the scan's resolved settings (fix --apply).
	lastScan **scanRun

	// flags tells whether --timeout was given: otherwise the banner wait
	// follows the mesh's own timeouts.
	flags *pflag.FlagSet
}

func (f *scanFlags) add(cmd *cobra.Command) {
	d := probe.DefaultOptions()
	fl := cmd.Flags()
	f.flags = fl
	fl.BoolVar(&f.static, "static", false, "Judge from the cluster's objects only: no connection to any target (same as --vantage none)")
	fl.StringVar(&f.vantage, "vantage", "auto", `Where probes run from: "pods" (short-lived probe pods with and without a sidecar, plus a port-forward to each server for the direct path), "self" (dial targets from where this command runs), "none" (static verdicts), "auto" (self inside a pod, pods elsewhere)`)
	fl.StringVar(&f.selfInMesh, "self-in-mesh", "auto", `With --vantage self: does this process sit behind a sidecar? "true", "false", or "auto" (true inside a pod whose istio-proxy is found)`)
	fl.StringVar(&f.istioNamespace, "istio-namespace", cluster.DefaultIstioNamespace, "Namespace of the Istio control plane and its mesh ConfigMap (istio, istio-<rev>)")
	fl.StringArrayVar(&f.external, "external", nil, "An external HOST:PORT that mesh clients use without a ServiceEntry; checked for port collisions and probed with the rest. Repeatable")
	fl.DurationVar(&f.timeout, "timeout", d.BannerTimeout, "With probes: how long to wait for a banner (default: this, or longer where the mesh's protocolDetectionTimeout or Envoy's 15s catch-all timeout could end a wait later, so silence proves a hang)")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", d.ConnectTimeout, "With probes: how long to wait for the TCP handshake")
	f.limits.add(fl, "With probes: ")
	fl.StringVar(&f.probeImage, "probe-image", defaultProbeImage(), "With --vantage pods or --from-pod: the image that runs `kubectl-serverfirst agent`")
	fl.BoolVar(&f.noOutside, "no-outside", false, "With --vantage pods: skip the probe pod without a sidecar (no external-to-mesh evidence)")
	fl.BoolVar(&f.noDirect, "no-direct", false, "With --vantage pods: skip the port-forwards to the servers (no direct proof: DEADLOCK becomes AT-RISK)")
	fl.BoolVar(&f.direct, "direct", false, "With --vantage self (so with --in-cluster): also port-forward through the API server into a pod behind each probed Service port and listen on its loopback, past its sidecar: the direct half of a DEADLOCK proof (does the server speak first at all?); without it, silence through the mesh is only AT-RISK. Needs create on pods/portforward, a powerful right (job manifests --direct grants it); checked first, one warning without it. --vantage pods does this anyway")
	fl.StringArrayVar(&f.fromPods, "from-pod", nil, "Also probe from inside this existing client pod (NAMESPACE/POD) with an ephemeral container: the exact path that hangs. Repeatable")
}

type scanCmdFlags struct {
	scanFlags
	output  string
	showOK  bool
	failOn  string
	publish publishFlags
	files   fileFlags
}

const scanExample = `  # What hangs in my namespace? (static: no connection to any target)
  kubectl serverfirst scan

  # The whole cluster, every port listed, wide:
  kubectl serverfirst scan -A -o wide

  # Prove it: dial every target from here (run inside a pod with a sidecar for the mesh path)
  kubectl serverfirst scan -n shop --vantage self --self-in-mesh true

  # In a pod with a sidecar: the mesh path from here, the direct path by port-forward
  kubectl serverfirst scan -A --vantage self --direct

  # An external MySQL that mesh clients reach without a ServiceEntry:
  kubectl serverfirst scan -n shop --external 203.0.113.7:10000

  # CI gate: exit 3 when anything deadlocks or is at risk
  kubectl serverfirst scan -A --fail-on deadlock,delayed,at-risk -o json > report.json

  # Manifests in a pull request, no cluster (SARIF for code review):
  helm template shop charts/shop -n shop | kubectl serverfirst scan -f - -n shop --fail-on at-risk -o sarif

  # What will this change do to prod? (prod as it would be after applying new/)
  kubectl serverfirst scan -f new/ --context prod`

func newScanCommand(root *rootOptions) *cobra.Command {
	f := &scanCmdFlags{}
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

-f FILE|DIR|- judges manifests instead (helm template or kustomize build output,
a directory of YAML): workloads count as the pods they would create, with the
sidecar Istio's injector would give them (namespace labels in the files, or
--injected-namespaces), the mesh config from --mesh-config or an istio
ConfigMap in the files (Istio's defaults otherwise, said in the report). Alone,
-f contacts no API server and reads no kubeconfig; with an explicit --context,
--kubeconfig, --server or --cluster it judges that cluster as it would be after
applying the files (each object in them replaces its live version). Findings
name their file#document and line (-o sarif puts them on that line).

The table lists affected ports worst first and ends with what to run next;
-o json/yaml list every port in the documented schema (see README).
` + "`explain VERDICT`" + ` tells what a verdict means and how to fix it.

Exit status: 0 when the scan ran, whatever it found; 3 when a finding matches
--fail-on; 1 on errors (unreachable API server, bad flags, a -f path that does
not exist); 130 on Ctrl-C.
Read-only: nothing in the cluster is changed.`,
		Example: scanExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// In a Job, the sidecar must be stopped however the scan ends.
			pub, err := f.publish.prepare(cmd, root, &f.scanFlags, &f.output)
			defer pub.quitSidecar(cmd.Context(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			failOn, err := parseFailOn(f.failOn)
			if err != nil {
				return err
			}
			if err := checkOutput(f.output); err != nil {
				return err
			}
			var r report.Report
			if len(f.files.paths) > 0 {
				r, err = runFileScan(cmd, root, &f.scanFlags, &f.files, cmd.ErrOrStderr())
			} else {
				r, err = runScan(cmd.Context(), root, &f.scanFlags, cmd.ErrOrStderr())
			}
			if err != nil {
				return err
			}
			r = pub.shardReport(r)
			o := report.RenderOptions{Color: colorWanted(root.streams.Out), ShowAll: f.showOK}
			if err := report.Render(root.streams.Out, f.output, r, o); err != nil {
				return err
			}
			if cmd.Context().Err() != nil {
				return &exitError{code: 130, err: errors.New("interrupted")}
			}
			if err := pub.publish(cmd.Context(), root, r, cmd.ErrOrStderr()); err != nil {
				return err
			}
			return failOnFindings(r, failOn)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVarP(&f.output, "output", "o", "table", "Output format: "+strings.Join(report.Formats, ", "))
	fl.BoolVar(&f.showOK, "show-ok", false, "List unaffected ports in the table too (-o wide always does)")
	fl.StringVar(&f.failOn, "fail-on", "", "Exit 3 when a finding has one of these verdicts, comma-separated: deadlock, delayed, at-risk, mtls-rejected, unreachable")
	f.publish.add(cmd, root)
	f.files.add(cmd)
	return cmd
}

func checkOutput(o string) error {
	for _, f := range report.Formats {
		if o == f {
			return nil
		}
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

// runScan is the whole pipeline: inventory -> targets -> probes -> report.
func runScan(ctx context.Context, root *rootOptions, f *scanFlags, progress io.Writer) (report.Report, error) {
	s, err := prepareScan(root, f)
	if err != nil {
		return report.Report{}, err
	}
	inv, err := s.load(ctx)
	if err != nil {
		return report.Report{}, err
	}
	in := s.gather(ctx, inv, nil, progress)
	if f.observed != nil {
		*f.observed = in.Observations
	}
	if f.lastScan != nil {
		*f.lastScan = s
	}
	return report.Build(in), nil
}

// scanRun is one scan's settings, resolved: fix --apply probes again
// with the very same vantages.
type scanRun struct {
	root      *rootOptions
	f         *scanFlags
	vantage   string // pods, self or none
	externals []target.ExternalTarget
	fromPods  []podRef
	clients   cluster.Clients
	cfg       *rest.Config
}

func prepareScan(root *rootOptions, f *scanFlags) (*scanRun, error) {
	if err := f.limits.validate(); err != nil {
		return nil, err
	}
	externals, err := parseExternals(f.external)
	if err != nil {
		return nil, err
	}
	vantage := f.vantage
	if f.static {
		vantage = "none"
	}
	switch vantage {
	case "auto":
		vantage = "pods"
		if os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
			vantage = "self"
		}
	case "none", "self", "pods":
	default:
		return nil, fmt.Errorf("--vantage %q: want pods, self, none or auto", f.vantage)
	}
	if err := checkDirect(f, vantage); err != nil {
		return nil, err
	}
	fromPods, err := parseFromPods(f.fromPods)
	if err != nil {
		return nil, err
	}
	if vantage == "self" {
		// The flag's value is checked before anything is read.
		if _, err := selfInMesh(f.selfInMesh, &cluster.Inventory{}); err != nil {
			return nil, err
		}
	}
	clients, cfg, err := root.clients()
	if err != nil {
		return nil, err
	}
	return &scanRun{root: root, f: f, vantage: vantage, externals: externals, fromPods: fromPods, clients: clients, cfg: cfg}, nil
}

// static: the scan probes nothing.
func (s *scanRun) static() bool { return s.vantage == "none" && len(s.fromPods) == 0 }

// load reads the inventory of the scan's namespaces.
func (s *scanRun) load(ctx context.Context) (*cluster.Inventory, error) {
	namespaces, err := s.root.scanNamespaces()
	if err != nil {
		return nil, err
	}
	inv, err := cluster.Load(ctx, s.clients, cluster.LoadOptions{Namespaces: namespaces, IstioNamespace: s.f.istioNamespace})
	if err != nil {
		return nil, apiError(s.cfg.Host, err)
	}
	return inv, nil
}

// gather probes from the scan's vantages. reprobe, when set, narrows the
// probes to some client paths (by target and whether the client has a
// sidecar) and skips the direct path: fix --apply's verification.
func (s *scanRun) gather(ctx context.Context, inv *cluster.Inventory, reprobe target.Reprobe, progress io.Writer) report.Input {
	f := s.f
	in := report.Input{Inventory: inv, External: s.externals, Static: s.static()}
	// Silence proves a hang only past the mesh's own timeouts: unless the
	// user chose, every probe below waits that long.
	if !in.Static {
		var note string
		f.timeout, in.BannerWaitWhy, note = report.BannerWait(inv.Mesh, f.timeout, f.flags != nil && f.flags.Changed("timeout"))
		in.BannerWait = f.timeout
		if note != "" {
			inv.Warnings = append(inv.Warnings, note)
		}
	}
	if s.vantage == "self" {
		inMesh, _ := selfInMesh(f.selfInMesh, inv) // checked by prepareScan
		o := f.probeOptions()
		plan := vantage.PlanSelfProbes(inv, s.externals, inMesh)
		if f.planFilter != nil {
			plan = f.planFilter(plan)
		}
		if reprobe != nil {
			plan = slices.DeleteFunc(vantage.PlanSelfReprobes(inv, s.externals, inMesh, reprobe), func(t target.ProbeTask) bool { return !reprobe.Wants(t.Key, t.InMesh) })
		}
		fmt.Fprintf(progress, "probing %d targets from here (%s)...\n", len(plan), map[bool]string{true: "in the mesh", false: "outside the mesh"}[inMesh])
		// --direct: the port-forwards run alongside the dials from here.
		wait := func() ([]target.Observation, []string) { return nil, nil }
		if f.direct && reprobe == nil {
			wait = startSelfDirect(ctx, s.cfg, s.clients.Kube, inv, s.externals, plan, f, s.root.inCluster, progress)
		}
		in.Observations = vantage.RunSelf(ctx, plan, o)
		direct, warnings := wait()
		in.Observations = append(in.Observations, direct...)
		inv.Warnings = append(inv.Warnings, warnings...)
	}
	if s.vantage == "pods" || len(s.fromPods) > 0 {
		obs, warnings := runLiveVantages(ctx, s.cfg, s.clients, inv, s.externals, f, s.vantage == "pods", s.fromPods, reprobe, progress)
		in.Observations = append(in.Observations, obs...)
		inv.Warnings = append(inv.Warnings, warnings...)
	}
	return in
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

func selfInMesh(flag string, inv *cluster.Inventory) (bool, error) {
	switch flag {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "auto":
		name, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE")
		if name == "" {
			name, _ = os.Hostname()
		}
		for _, p := range inv.Pods {
			if p.Name == name && (ns == "" || p.Namespace == ns) {
				return p.HasSidecar, nil
			}
		}
		return false, nil
	}
	return false, fmt.Errorf("--self-in-mesh %q: want true, false or auto", flag)
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

// configFlagsFor is the flags a --kubeconfig PATH would give (tests).
func configFlagsFor(kubeconfig string) *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	f.KubeConfig = &kubeconfig
	return f
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
