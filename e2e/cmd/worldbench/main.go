// Command worldbench measures `scan -A --vantage pods` (and `--vantage
// config`) against the e2e world seeded with many namespaces of
// server-first Services, for `make bench` (hack/bench.sh): how many probe
// pods the scan creates, how many port-forwards and API requests it makes,
// and how long it takes, for the binary under test and for a "before"
// binary (hack/bench.sh builds the commit before probe pods were planned
// per client class), side by side, with issue 16's goals as met/missed
// lines:
//
//	pods <= 2 + 2 x (namespaces with their own client config)
//	wall <= 2 x (one probe pod's start + the banner wait)
//
// The figures come from outside the tool: probe pods from a watch on the
// API server (label app.kubernetes.io/component=probe), API requests and
// port-forwards from a counting reverse proxy the tool's kubeconfig points
// at, cross-checked with the API server's apiserver_request_total. The
// tool's own "probing with N probe pod(s)" line is printed beside them.
//
// It needs root and Istio's binaries (hack/test-deps.sh); without them it
// prints one "skipped" line and exits 0. It starts the e2e world: run it
// under the world lock where other worlds may run (flock /tmp/world.lock).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// probeSelector is the label every probe pod carries (cluster/vantage's
// LabelComponent=ComponentProbe), in the "before" binary too.
const probeSelector = "app.kubernetes.io/component=probe"

func main() {
	os.Exit(run(os.Args[1:]))
}

type options struct {
	after, before       string
	beforeName          string
	namespaces, servers int
	services, own       int
	scanArgs            []string
	compare             []namedBin
	outDir              string
	timeout             time.Duration
}

func run(args []string) int {
	fs := flag.NewFlagSet("worldbench", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.after, "bin", "bin/kubectl-serverfirst", "the kubectl-serverfirst under test (after)")
	fs.StringVar(&o.before, "before", "", `a kubectl-serverfirst to compare with ("" = none)`)
	fs.StringVar(&o.beforeName, "before-name", "before", "what -before is, for the table")
	fs.IntVar(&o.namespaces, "namespaces", 50, "namespaces seeded")
	fs.IntVar(&o.services, "services", 4, "server-first Services per namespace")
	fs.IntVar(&o.servers, "servers", 4, "sshd pods per namespace; Service i selects pod i mod servers (= -services: a server each; 1: the Services share one)")
	fs.IntVar(&o.own, "own-config", 6, "namespaces given client config of their own (half a Sidecar, half a DestinationRule)")
	fs.Func("compare", "NAME=PATH: one more kubectl-serverfirst whose --vantage pods scan runs last (repeatable)", func(v string) error {
		name, path, ok := strings.Cut(v, "=")
		if !ok || name == "" || path == "" {
			return fmt.Errorf("want NAME=PATH, got %q", v)
		}
		o.compare = append(o.compare, namedBin{name, path})
		return nil
	})
	scanArgs := fs.String("scan-args", "", "extra arguments for every scan, space-separated (e.g. '--timeout 2s')")
	fs.StringVar(&o.outDir, "out", ".cache/bench/worldbench-runs", "where each scan's stdout and stderr are kept")
	fs.DurationVar(&o.timeout, "timeout", 40*time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.scanArgs = strings.Fields(*scanArgs)
	if o.own > o.namespaces || o.servers < 1 || o.services < 1 {
		fmt.Fprintln(os.Stderr, "worldbench: need -own-config <= -namespaces, -servers >= 1, -services >= 1")
		return 2
	}
	if os.Geteuid() != 0 {
		fmt.Println("world bench: skipped: needs root and hack/test-deps.sh (the e2e world creates network namespaces)")
		return 0
	}
	if _, err := world.LocateIstioBinaries(""); err != nil {
		fmt.Printf("world bench: skipped: needs root and hack/test-deps.sh (%v)\n", err)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if err := bench(ctx, o); err != nil {
		if errors.Is(err, testenv.ErrBinariesMissing) {
			fmt.Printf("world bench: skipped: needs root and hack/test-deps.sh (%v)\n", err)
			return 0
		}
		fmt.Fprintf(os.Stderr, "worldbench: %v\n", err)
		return 1
	}
	return 0
}

// result is one scan's figures.
type result struct {
	name         string
	kind         string
	wall         time.Duration
	exit         int
	probePods    int // pods with the probe label created (watch)
	peakPods     int // probe pods alive at once (watch)
	starts       []time.Duration
	toolPods     string // the tool's own "probing with N probe pod(s)" count
	toolForwards string
	requests     requestCounts
	metrics      metricDelta
	verdicts     map[string]int
	bannerWait   time.Duration
	warnings     int
}

func bench(ctx context.Context, o options) error {
	paths := []*string{&o.after, &o.before}
	for i := range o.compare {
		paths = append(paths, &o.compare[i].path)
	}
	for _, p := range paths {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return err
		}
		*p = abs
	}
	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	// Probe pods run the binary whose scan created them, as uid 65532:
	// the world's kubectl-serverfirst is a path in a folder everyone can
	// read, and each scan installs its own binary there first.
	podBin, err := os.MkdirTemp("", "serverfirst-worldbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(podBin)
	if err := os.Chmod(podBin, 0o755); err != nil {
		return err
	}
	bins := world.Binaries{Serverfirst: filepath.Join(podBin, "kubectl-serverfirst")}
	if err := install(o.after, bins.Serverfirst); err != nil {
		return err
	}

	began := time.Now()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer env.Stop()
	w, err := world.StartWorld(ctx, world.WorldOptions{Env: env, Binaries: bins, Logf: func(string, ...any) {}})
	if err != nil {
		return fmt.Errorf("start the world: %w", err)
	}
	defer w.Stop()
	fmt.Fprintf(os.Stderr, "worldbench: world up in %v\n", time.Since(began).Round(time.Millisecond))

	began = time.Now()
	pods, err := seed(ctx, env, o)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	if err := waitServers(ctx, w, pods); err != nil {
		return err
	}
	if err := w.WaitSidecarsSynced(ctx, began); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "worldbench: %d namespaces x %d Services on %d sshd pod(s) each running and synced in %v\n",
		o.namespaces, o.services, o.servers, time.Since(began).Round(time.Millisecond))

	proxy, err := startCountingProxy(env.Config)
	if err != nil {
		return err
	}
	defer proxy.Close()
	kc := filepath.Join(podBin, "kubeconfig")
	if err := writeKubeconfig(kc, proxy.URL); err != nil {
		return err
	}

	// The first run is one probe pod alone (a mesh client in a namespace
	// of the shared class, no outside client, no port-forward): its start
	// is the goal's "one probe pod's start", measured without the
	// contention of the runs it judges.
	alone := nsName(o.own % o.namespaces)
	runs := []scanRun{
		{oneProbePod, o.after, "one", []string{"-n", alone, "--vantage", "pods", "--no-outside", "--no-direct"}},
		{"after (pods)", o.after, "pods", []string{"-A", "--vantage", "pods"}},
		{"after (config)", o.after, "config", []string{"-A", "--vantage", "config"}},
	}
	if o.before != "" {
		runs = append(runs, scanRun{o.beforeName + " (pods)", o.before, "pods", []string{"-A", "--vantage", "pods"}})
	}
	for _, c := range o.compare {
		runs = append(runs, scanRun{c.name + " (pods)", c.path, "pods", []string{"-A", "--vantage", "pods"}})
	}
	var results []result
	for _, r := range runs {
		if err := install(r.bin, bins.Serverfirst); err != nil {
			return err
		}
		res, err := scan(ctx, env, proxy, kc, r, o)
		if err != nil {
			return fmt.Errorf("%s: %w", r.name, err)
		}
		results = append(results, res)
		fmt.Fprintf(os.Stderr, "worldbench: %s: %v, %d probe pods, %d API requests\n", r.name, res.wall.Round(time.Millisecond), res.probePods, res.requests.total)
	}
	printTable(os.Stdout, o, results)
	return nil
}

// scanRun is one scan the bench times: kind is "pods" (judged against the
// goals), "config" (must create no pod) or "one" (the single pod whose
// start the wall goal uses).
type scanRun struct {
	name, bin, kind string
	args            []string
}

const oneProbePod = "1 probe pod alone"

type namedBin struct{ name, path string }

// install puts a copy of src at dst by rename, so a pod that is starting
// the previous binary keeps an intact file.
func install(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Seeding. Every namespace has injection on and sshd pods (server-first:
// the SSH-2.0 banner) behind Services on ports whose names Istio does not
// know, so sidecars sniff them: mesh clients deadlock. The first own
// namespaces get client config of their own: a Sidecar resource (even) or
// a DestinationRule (odd), so the scan's plan has more than one class.

func nsName(i int) string { return fmt.Sprintf("bench-%02d", i) }

const sshPort = 2222

func seed(ctx context.Context, env *testenv.Env, o options) ([]string, error) {
	istio, err := env.IstioClient()
	if err != nil {
		return nil, err
	}
	var pods []string
	for i := range o.namespaces {
		ns := nsName(i)
		if _, err := env.CreateNamespace(ctx, ns, map[string]string{"istio-injection": "enabled"}); err != nil {
			return nil, err
		}
		// Services first: a sidecar that starts after them has them in
		// its first config.
		for s := range o.services {
			svc := &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ssh-%d", s), Namespace: ns},
				Spec: corev1.ServiceSpec{
					Selector: map[string]string{"app": fmt.Sprintf("sshd-%d", s%o.servers)},
					Ports: []corev1.ServicePort{{Name: fmt.Sprintf("shell-%d", s), Port: int32(2201 + s),
						TargetPort: intstr.FromInt32(sshPort), Protocol: corev1.ProtocolTCP}},
				},
			}
			if _, err := env.Client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
		}
		if i < o.own {
			if err := ownClientConfig(ctx, istio, ns, i); err != nil {
				return nil, err
			}
		}
		for p := range o.servers {
			name := fmt.Sprintf("sshd-%d", p)
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					ServiceAccountName:            "default",
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					Containers: []corev1.Container{{Name: "sshd", Image: "lscr.io/linuxserver/openssh-server:latest",
						Ports: []corev1.ContainerPort{{Name: "ssh", ContainerPort: sshPort}}}},
				},
			}
			if _, err := env.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				return nil, err
			}
			pods = append(pods, ns+"/"+name)
		}
	}
	return pods, nil
}

// ownClientConfig gives namespace ns client config of its own: a Sidecar
// resource (i even) or a DestinationRule for one of its Services (i odd).
// Neither changes a verdict (the Sidecar keeps the namespace's own
// Services in scope, the DestinationRule only bounds connections), but
// either makes the namespace's sidecars a class of their own.
func ownClientConfig(ctx context.Context, istio istioclient.Interface, ns string, i int) error {
	if i%2 == 0 {
		sc := &networkingv1.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		sc.Spec.Egress = []*networkingapi.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}}
		_, err := istio.NetworkingV1().Sidecars(ns).Create(ctx, sc, metav1.CreateOptions{})
		return err
	}
	dr := &networkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "ssh-0", Namespace: ns}}
	dr.Spec.Host = "ssh-0." + ns + ".svc.cluster.local"
	dr.Spec.TrafficPolicy = &networkingapi.TrafficPolicy{ConnectionPool: &networkingapi.ConnectionPoolSettings{
		Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: 100}}}
	_, err := istio.NetworkingV1().DestinationRules(ns).Create(ctx, dr, metav1.CreateOptions{})
	return err
}

// waitServers waits until every sshd pod is Ready and listens.
func waitServers(ctx context.Context, w *world.World, pods []string) error {
	if err := world.WaitPodsReady(ctx, w.Kube, pods...); err != nil {
		return err
	}
	for _, ref := range pods {
		ns, name, _ := strings.Cut(ref, "/")
		if err := w.WaitListening(ctx, ns, name, sshPort); err != nil {
			return err
		}
	}
	return nil
}
