package world

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// WorldOptions configures StartWorld.
type WorldOptions struct {
	// Env is the API server to run against. Without it, Config is used.
	Env    *testenv.Env
	Config *rest.Config
	// StateDir holds istiod's files and the node's per-pod state (logs,
	// daemon data). "" means a fresh temp dir, removed by Stop; a given
	// one is kept.
	StateDir string
	// Binaries run in pods: kubectl-serverfirst for its own image (see
	// BuildBinaries).
	Binaries Binaries
	// Revisions are installed besides the default one, each its own
	// istiod; nil means {"canary"}, so revision-labelled namespaces can be
	// tried. Use an empty non-nil slice for none.
	Revisions []string
	// Istio are Istio's binaries (pilot-discovery, pilot-agent,
	// istio-world); zero means LocateIstioBinaries(""), and StartWorld
	// fails if they are not built.
	Istio IstioBinaries
	// NodeName and PodCIDR pass through to StartNode ("" = its defaults).
	NodeName, PodCIDR string
	// Logf receives the world's log lines (node agent, istiod start-up);
	// nil means log.Printf.
	Logf func(format string, args ...any)
}

// World is everything the e2e tests and `testcluster --world` run beside
// the API server: real istiod (one per revision: its injector is the API
// server's webhook, its xDS configures the sidecars), the node agent that
// runs pods (istio-init as pilot-agent's istio-iptables, istio-proxy as
// `istio-world proxy`, mariadb/sshd/redis images as real daemons,
// kubectl-serverfirst as itself, busybox-style images as host commands)
// and the job controller.
type World struct {
	Kube     kubernetes.Interface
	Istio    istioclient.Interface
	Config   *rest.Config
	StateDir string
	// Istiods are the control planes, the default revision first.
	Istiods []*Istiod
	Node    *Node
	// Jobs runs the pods of Jobs (there is no kube-controller-manager).
	Jobs *JobController
	// StartupTime is how long StartWorld took.
	StartupTime time.Duration

	ownsDir   bool
	saDefault *saDefaulter
	saCtrl    *saController
	cancel    context.CancelFunc
	stopOnce  sync.Once
	stopErr   error
	// syncMu serialises WaitSidecarsSynced's marker writes; syncGen is
	// the last marker generation written.
	syncMu  sync.Mutex
	syncGen uint64
}

// StartWorld starts the ServiceAccount stand-ins (a default account in
// every namespace, a defaulting webhook for pods), one istiod per
// revision (each returns once the API server gets pods injected by it),
// the node agent and the job controller, in that order, so that every pod
// the node runs was admitted through istiod's injector. It needs root
// (network namespaces, iptables). On failure it stops what it started.
func StartWorld(ctx context.Context, opts WorldOptions) (_ *World, err error) {
	began := time.Now()
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if opts.Binaries.Serverfirst == "" {
		return nil, errors.New("world: WorldOptions.Binaries needs kubectl-serverfirst (see BuildBinaries)")
	}
	if _, err := os.Stat(opts.Binaries.Serverfirst); err != nil {
		return nil, fmt.Errorf("world: %w", err)
	}
	if opts.Istio == (IstioBinaries{}) {
		if opts.Istio, err = LocateIstioBinaries(""); err != nil {
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
	w := &World{Config: cfg}
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
	// Pods run as other uids (1337, 65532) below it.
	if err := os.Chmod(w.StateDir, 0o755); err != nil {
		return nil, err
	}

	w.saCtrl = startSAController(w.Kube, opts.Logf)
	if w.saDefault, err = startSADefaulter(ctx, w.Kube); err != nil {
		return nil, fmt.Errorf("world: service account defaulting webhook: %w", err)
	}
	if w.Istiods, err = startIstiods(ctx, w, cfg, opts); err != nil {
		return nil, err
	}

	apiServer, clusterCA, err := apiAccess(cfg)
	if err != nil {
		return nil, err
	}
	gw, err := podCIDRGateway(opts.PodCIDR)
	if err != nil {
		return nil, err
	}
	// Pods reach each revision's istiod on the node's bridge address,
	// default first on istiod's plaintext xDS port.
	forwards := map[int]string{}
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
	w.Node, err = StartNode(ctx, NodeOptions{
		Client:    w.Kube,
		APIServer: apiServer,
		ClusterCA: clusterCA,
		Name:      opts.NodeName,
		StateDir:  filepath.Join(w.StateDir, "node"),
		PodCIDR:   opts.PodCIDR,
		Forwards:  forwards,
		Resolver: Chain(
			IstioProxyResolver(opts.Istio.IstioWorld, xds),
			IstioInitResolver(opts.Istio.PilotAgent),
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
	runCtx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.Jobs = StartJobController(runCtx, w.Kube, opts.Logf)
	w.StartupTime = time.Since(began)
	return w, nil
}

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
// network namespace) and the istiods (their webhook configurations are
// deleted so the API server does not fail pod creation closed), removes
// the sync marker and, if StartWorld made it, StateDir. Idempotent.
func (w *World) Stop() error {
	w.stopOnce.Do(func() {
		var errs []error
		// First the job controller, so no pods are created while the node
		// stops.
		if w.Jobs != nil {
			w.Jobs.Stop()
		}
		if w.cancel != nil {
			w.cancel()
		}
		if w.Node != nil {
			errs = append(errs, w.Node.Stop())
		}
		errs = append(errs, w.deleteSyncMarker())
		for _, d := range w.Istiods {
			errs = append(errs, d.Stop())
		}
		if w.saDefault != nil {
			errs = append(errs, w.saDefault.stop())
		}
		if w.saCtrl != nil {
			w.saCtrl.stop()
		}
		if w.ownsDir {
			errs = append(errs, os.RemoveAll(w.StateDir))
		}
		w.stopErr = errors.Join(errs...)
	})
	return w.stopErr
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
