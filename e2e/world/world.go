package world

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/e2e/sidecar"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// WorldOptions configures StartWorld.
type WorldOptions struct {
	// Env is the API server to run against. Without it, Config is used.
	Env    *testenv.Env
	Config *rest.Config
	// StateDir holds the inventory file and the node's per-pod state
	// (logs, daemon data). "" means a fresh temp dir, removed by Stop; a
	// given one is kept.
	StateDir string
	// Binaries run in pods: the sidecar model for istio-proxy containers,
	// kubectl-serverfirst for its own image (see BuildBinaries).
	Binaries Binaries
	// Revisions are installed besides the default one (see
	// InjectorOptions); nil means {"canary"}, so revision-labelled
	// namespaces can be tried. Use an empty non-nil slice for none.
	Revisions []string
	// InventoryEvery is how often the inventory file is rewritten; 0 means 1s.
	InventoryEvery time.Duration
	// Istio, when its binaries are set, makes the world run real istiod
	// (one per revision) instead of the world's own injector, and
	// pilot-agent's istio-iptables for istio-init containers. Off (zero)
	// by default until the sidecars are configured by istiod too.
	Istio IstioBinaries
	// IstioProxy (with Istio) runs istio-proxy containers as
	// `istio-world proxy`, configured by istiod over xDS and serving
	// Envoy's /config_dump, instead of the sidecar model and its
	// inventory file. Off by default: see e2e/README.md for what it
	// does not do yet.
	IstioProxy bool
	// NodeName and PodCIDR pass through to StartNode ("" = its defaults).
	NodeName, PodCIDR string
	// Logf receives the world's log lines (node agent, injector); nil means
	// log.Printf.
	Logf func(format string, args ...any)
}

// World is everything the e2e tests and `testcluster --world` run beside
// the API server: the sidecar injector webhook, the inventory file the
// sidecar models read, and the node agent that runs pods (their
// istio-proxy containers as the sidecar model, mariadb/sshd/redis images as
// real daemons, kubectl-serverfirst as itself, busybox-style images as host
// commands).
type World struct {
	Kube          kubernetes.Interface
	Istio         istioclient.Interface
	Config        *rest.Config
	StateDir      string
	InventoryPath string
	// Injector is the world's own injector; nil when Istiods run.
	Injector *Injector
	// Istiods are the real control planes (WorldOptions.Istio), the
	// default revision first.
	Istiods   []*Istiod
	Inventory *InventoryWriter
	Node      *Node
	// Jobs runs the pods of Jobs (there is no kube-controller-manager).
	Jobs *JobController
	// StartupTime is how long StartWorld took.
	StartupTime time.Duration

	ownsDir    bool
	istioProxy bool
	saDefault  *saDefaulter
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	stopOnce   sync.Once
	stopErr    error
	status     *http.Client
}

// StartWorld starts the injector, the inventory writer (first file written
// before it returns), the node agent and the job controller, in that
// order, so that every pod the node runs was admitted through the injector
// and every sidecar finds a config file. It needs root (network
// namespaces, iptables). On failure it stops what it started.
func StartWorld(ctx context.Context, opts WorldOptions) (_ *World, err error) {
	began := time.Now()
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if opts.Binaries.SidecarModel == "" || opts.Binaries.Serverfirst == "" {
		return nil, errors.New("world: WorldOptions.Binaries needs both binaries (see BuildBinaries)")
	}
	for _, p := range []string{opts.Binaries.SidecarModel, opts.Binaries.Serverfirst} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("world: %w", err)
		}
	}
	cfg := opts.Config
	if opts.Env != nil {
		cfg = opts.Env.Config
	}
	if cfg == nil {
		return nil, errors.New("world: WorldOptions needs Env or Config")
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if opts.Revisions == nil {
		opts.Revisions = []string{"canary"}
	}
	if opts.InventoryEvery <= 0 {
		opts.InventoryEvery = time.Second
	}
	// EnvWorldIstio switches any world (tests, testcluster, make demo) to
	// real istiod without code changes: "1" = istiod + pilot-agent's
	// capture, "proxy" = also the xDS-configured sidecars.
	if mode := os.Getenv(EnvWorldIstio); opts.Istio.PilotDiscovery == "" && (mode == "1" || mode == "proxy") {
		if opts.Istio, err = LocateIstioBinaries(""); err != nil {
			return nil, fmt.Errorf("world: %s=%s: %w", EnvWorldIstio, mode, err)
		}
		opts.IstioProxy = mode == "proxy"
	}
	w := &World{Config: cfg, istioProxy: opts.IstioProxy && opts.Istio.PilotDiscovery != ""}
	if w.Kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if w.Istio, err = istioclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			w.Stop()
		}
	}()
	w.StateDir = opts.StateDir
	if w.StateDir == "" {
		if w.StateDir, err = os.MkdirTemp("", "serverfirst-world-"); err != nil {
			return nil, err
		}
		w.ownsDir = true
	} else if err := os.MkdirAll(w.StateDir, 0o755); err != nil {
		return nil, err
	}
	// The sidecars run as uid 1337 once they dropped root: they must read
	// the inventory file.
	if err := os.Chmod(w.StateDir, 0o755); err != nil {
		return nil, err
	}
	w.InventoryPath = filepath.Join(w.StateDir, "inventory.json")

	logger := log.New(logfWriter(opts.Logf), "", 0)
	if opts.Istio.PilotDiscovery != "" {
		if w.saDefault, err = startSADefaulter(ctx, w.Kube); err != nil {
			return nil, fmt.Errorf("world: service account defaulting webhook: %w", err)
		}
		if w.Istiods, err = startIstiods(ctx, w, cfg, opts); err != nil {
			return nil, err
		}
	} else if w.Injector, err = StartInjector(ctx, w.Kube, InjectorOptions{Revisions: opts.Revisions, Log: logger}); err != nil {
		return nil, err
	}

	w.Inventory = NewInventoryWriter(cluster.Clients{Kube: w.Kube, Istio: w.Istio}, w.InventoryPath)
	if err := w.Inventory.Sync(ctx); err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.Inventory.Run(runCtx, opts.InventoryEvery)
	}()

	apiServer, clusterCA, err := apiAccess(cfg)
	if err != nil {
		return nil, err
	}
	sidecars := IstioResolver(opts.Binaries.SidecarModel, w.InventoryPath, opts.Istio.PilotAgent)
	var forwards map[int]string
	if opts.IstioProxy && len(w.Istiods) > 0 {
		gw, err := podCIDRGateway(opts.PodCIDR)
		if err != nil {
			return nil, err
		}
		// Pods reach each revision's istiod on the node's bridge
		// address, default first on istiod's plaintext xDS port.
		forwards = map[int]string{}
		xds := map[string]string{}
		for i, d := range w.Istiods {
			rev := d.Revision
			if rev == "" {
				rev = "default"
			}
			port := IstiodForwardPort + i
			forwards[port] = d.XDSAddr
			xds[rev] = net.JoinHostPort(gw, fmt.Sprint(port))
		}
		sidecars = Chain(IstioProxyResolver(opts.Istio.IstioWorld, xds), sidecars)
	}
	w.Node, err = StartNode(ctx, NodeOptions{
		Client:    w.Kube,
		APIServer: apiServer,
		ClusterCA: clusterCA,
		Name:      opts.NodeName,
		StateDir:  filepath.Join(w.StateDir, "node"),
		PodCIDR:   opts.PodCIDR,
		Forwards:  forwards,
		Resolver: Chain(
			sidecars,
			ServerfirstResolver(opts.Binaries.Serverfirst),
			shortSockets(DaemonResolver()),
			HostCommandResolver(),
		),
		Logf: opts.Logf,
	})
	if err != nil {
		return nil, err
	}
	// Jobs' pods are created once the node can run them; the controller
	// stops with runCtx or Stop.
	w.Jobs = StartJobController(runCtx, w.Kube, opts.Logf)
	node := w.Node
	w.status = &http.Client{
		Timeout: 2 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				return node.DialPod(ctx, addr)
			},
			DisableKeepAlives: true,
		},
	}
	w.StartupTime = time.Since(began)
	return w, nil
}

// EnvWorldIstio, when "1" or "proxy", makes StartWorld run real istiod
// (see WorldOptions.Istio and IstioProxy) for callers that set neither.
const EnvWorldIstio = "SERVERFIRST_WORLD_ISTIO"

// IstiodForwardPort is where pods reach the default revision's istiod
// (plaintext xDS) on the node's bridge address; further revisions follow.
const IstiodForwardPort = 15010

// podCIDRGateway is the node's bridge address for a pod CIDR ("" = the
// node's default): its first address.
func podCIDRGateway(podCIDR string) (string, error) {
	if podCIDR == "" {
		podCIDR = "10.88.0.0/16"
	}
	_, n, err := net.ParseCIDR(podCIDR)
	if err != nil || n.IP.To4() == nil {
		return "", fmt.Errorf("world: pod CIDR %q: want an IPv4 CIDR", podCIDR)
	}
	ip := n.IP.To4()
	return net.IPv4(ip[0], ip[1], ip[2], ip[3]+1).String(), nil
}

// startIstiods starts one istiod per revision (default first), in
// parallel: each renders its chart and waits for its own webhook.
func startIstiods(ctx context.Context, w *World, cfg *rest.Config, opts WorldOptions) ([]*Istiod, error) {
	revs := append([]string{""}, opts.Revisions...)
	out := make([]*Istiod, len(revs))
	errs := make([]error, len(revs))
	var wg sync.WaitGroup
	for i, rev := range revs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "istiod"
			if rev != "" {
				name += "-" + rev
			}
			for attempt := 0; ; attempt++ {
				out[i], errs[i] = StartIstiod(ctx, w.Kube, cfg, IstiodOptions{
					PilotDiscovery: opts.Istio.PilotDiscovery,
					IstioWorld:     opts.Istio.IstioWorld,
					Revision:       rev,
					Dir:            filepath.Join(w.StateDir, name),
					Logf:           opts.Logf,
				})
				if !errors.Is(errs[i], errIstiodPortTaken) || attempt == 2 {
					break
				}
			}
		}()
	}
	wg.Wait()
	var started []*Istiod
	for _, d := range out {
		if d != nil {
			started = append(started, d)
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, d := range started {
			d.Stop()
		}
		return nil, err
	}
	return out, nil
}

// Stop stops the job controller, the node (every pod process, every
// network namespace), the inventory writer and the injector (its webhook
// configurations are deleted so the API server does not fail pod creation
// closed), and removes StateDir if StartWorld made it. Idempotent.
func (w *World) Stop() error {
	w.stopOnce.Do(func() {
		var errs []error
		// First the job controller, so no pods are created while the node
		// stops.
		if w.Jobs != nil {
			w.Jobs.Stop()
		}
		if w.Node != nil {
			errs = append(errs, w.Node.Stop())
		}
		if w.cancel != nil {
			w.cancel()
		}
		w.wg.Wait()
		if w.Injector != nil {
			errs = append(errs, w.Injector.Stop())
		}
		for _, d := range w.Istiods {
			errs = append(errs, d.Stop())
		}
		if w.saDefault != nil {
			errs = append(errs, w.saDefault.stop())
		}
		if w.ownsDir {
			errs = append(errs, os.RemoveAll(w.StateDir))
		}
		w.stopErr = errors.Join(errs...)
	})
	return w.stopErr
}

// SidecarState is one running sidecar model as the world sees it.
type SidecarState struct {
	Namespace, Name, PodIP string
	Status                 sidecar.Status
	Err                    error // the status endpoint did not answer
}

// Sidecars reads /model/status of every running sidecar model (pods with
// an istio-proxy container in state Running), from inside the node's
// network namespace. Sorted by namespace/name.
func (w *World) Sidecars(ctx context.Context) ([]SidecarState, error) {
	pods, err := w.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []SidecarState
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !proxyRunning(p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := SidecarState{Namespace: p.Namespace, Name: p.Name, PodIP: p.Status.PodIP}
			st.Status, st.Err = w.sidecarStatus(ctx, p.Status.PodIP)
			mu.Lock()
			out = append(out, st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func proxyRunning(p *corev1.Pod) bool {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.ContainerStatuses...), p.Status.InitContainerStatuses...) {
		if cs.Name == cluster.ProxyContainerName && cs.State.Running != nil {
			return true
		}
	}
	return false
}

func (w *World) sidecarStatus(ctx context.Context, podIP string) (sidecar.Status, error) {
	var st sidecar.Status
	url := "http://" + net.JoinHostPort(podIP, fmt.Sprint(sidecar.StatusPort)) + "/model/status"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return st, err
	}
	resp, err := w.status.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return st, fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("%s: %w", url, err)
	}
	return st, nil
}

// WaitSidecarsSynced waits until the mesh config every sidecar serves
// includes everything the API server accepted before `after` (e.g. the
// moment before `fix --apply`): the inventory file must have been
// rewritten from a load that started after `after`, and every running
// sidecar model must report a lastSyncStarted later than that rewrite.
// Sidecars that have not synced by ctx's deadline are named in the error.
// Typical wait: up to one inventory period plus one model refresh (2s).
func (w *World) WaitSidecarsSynced(ctx context.Context, after time.Time) error {
	if w.istioProxy {
		// istiod pushes only what changed for a proxy: "synced after t"
		// needs istiod's side of the story (not done yet).
		return errors.New("world: WaitSidecarsSynced is not implemented for WorldOptions.IstioProxy: poll the sidecars' /config_dump")
	}
	written, err := w.Inventory.WaitSynced(ctx, after)
	if err != nil {
		return err
	}
	for {
		states, err := w.Sidecars(ctx)
		var pending []string
		if err == nil {
			for _, s := range states {
				switch {
				case s.Err != nil:
					pending = append(pending, fmt.Sprintf("%s/%s (%v)", s.Namespace, s.Name, s.Err))
				case !s.Status.LastSyncStarted.After(written):
					why := "last sync " + s.Status.LastSyncStarted.Format(time.RFC3339Nano)
					if s.Status.LastError != "" {
						why += ", error: " + s.Status.LastError
					}
					pending = append(pending, fmt.Sprintf("%s/%s (%s)", s.Namespace, s.Name, why))
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("sidecars not synced with the inventory written at %s: %w (list pods: %v)", written.Format(time.RFC3339Nano), ctx.Err(), err)
			}
			return fmt.Errorf("sidecars not synced with the inventory written at %s: %w: %s",
				written.Format(time.RFC3339Nano), ctx.Err(), strings.Join(pending, "; "))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// shortSockets moves `--socket=PATH` arguments (mariadbd's) that are longer
// than a Unix socket path may be (107 bytes) to a short path in the temp
// dir: a pod state dir such as
// STATE/node/pods/NS_NAME_UID/daemons/mariadb/mysqld.sock easily passes
// the limit, and mariadbd then aborts after binding its TCP port.
func shortSockets(r ImageResolver) ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, stateDir string) (Command, error) {
		cmd, err := r(pod, c, podIP, stateDir)
		if err != nil {
			return cmd, err
		}
		for i, a := range cmd.Args {
			if p, ok := strings.CutPrefix(a, "--socket="); ok && len(p) > 100 {
				sum := sha256.Sum256([]byte(p))
				cmd.Args[i] = "--socket=" + filepath.Join(os.TempDir(), fmt.Sprintf("sfw-%x.sock", sum[:6]))
			}
		}
		return cmd, nil
	}
}

// logfWriter adapts a Printf-style function to the io.Writer a log.Logger
// writes to.
type logfWriter func(format string, args ...any)

func (f logfWriter) Write(p []byte) (int, error) {
	f("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// DialFrom dials addr ("IP:port") from inside the network namespace of the
// pod namespace/name, as a process in that pod would: with a sidecar, the
// connection is captured by it (the test process is not uid 1337).
func (w *World) DialFrom(ctx context.Context, namespace, name, addr string) (net.Conn, error) {
	path := w.Node.PodNetns(namespace, name)
	if path == "" {
		return nil, fmt.Errorf("pod %s/%s has no network namespace on node %s", namespace, name, w.Node.Name())
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	return dialIn(filepath.Base(path), addr, d)
}

// apiAccess is what pods need to reach the API server of cfg: its
// host:port (dialled by the node agent's forwarder) and the CA bundle
// that signed its serving certificate.
func apiAccess(cfg *rest.Config) (hostPort string, ca []byte, err error) {
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("world: API server URL %q: want https://HOST:PORT", cfg.Host)
	}
	hostPort = u.Host
	if u.Port() == "" {
		hostPort = net.JoinHostPort(u.Hostname(), "443")
	}
	ca = cfg.TLSClientConfig.CAData
	if len(ca) == 0 && cfg.TLSClientConfig.CAFile != "" {
		if ca, err = os.ReadFile(cfg.TLSClientConfig.CAFile); err != nil {
			return "", nil, fmt.Errorf("world: API server CA: %w", err)
		}
	}
	return hostPort, ca, nil
}
