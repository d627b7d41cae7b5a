package vantage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	//lint:ignore SA1019 the SPDY dialer still reports refusals with this package's error type
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
	streamhttp "k8s.io/streaming/pkg/httpstream"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"
)

// EnvoyAdminPort is where a sidecar's Envoy serves its admin API, on the
// pod's loopback only (pilot-agent's bootstrap): a port-forward reaches
// it, a connection from another pod does not.
const EnvoyAdminPort = 15000

// portForwardDialer is the dialer kubectl port-forward uses for pod
// namespace/name: WebSocket first, SPDY when the upgrade is refused (an
// API server before 1.31, a proxy, or RBAC that grants "create" but not
// "get" on pods/portforward). client-go's WebSocket transport reports a
// refusal with k8s.io/streaming's error type, not apimachinery's.
func portForwardDialer(cfg *rest.Config, kube kubernetes.Interface, namespace, pod string) (httpstream.Dialer, error) {
	req := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(namespace).Name(pod).SubResource("portforward")
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	var dialer httpstream.Dialer = spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	if ws, err := portforward.NewSPDYOverWebsocketDialer(req.URL(), cfg); err == nil {
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			return streamhttp.IsUpgradeFailure(err) || httpstream.IsUpgradeFailure(err) || streamhttp.IsHTTPSProxyError(err)
		})
	}
	return dialer, nil
}

// forwardPorts starts a port-forward to pod namespace/name for remote
// ("0:PORT" each, local ports chosen by the kernel) on 127.0.0.1 and
// returns once it is ready, with the local port of each; stop ends it.
// what names the destination in errors.
func forwardPorts(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, namespace, pod string, remote []string, what string) (_ []portforward.ForwardedPort, stop func(), _ error) {
	dialer, err := portForwardDialer(cfg, kube, namespace, pod)
	if err != nil {
		return nil, nil, err
	}
	fctx, cancel := context.WithCancel(ctx)
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(fctx, dialer, []string{"127.0.0.1"}, remote, ready, io.Discard, io.Discard)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		cancel()
		return nil, nil, fmt.Errorf("port-forward to %s: %w", what, err)
	case <-ctx.Done():
		cancel()
		return nil, nil, ctx.Err()
	}
	ports, err := fw.GetPorts()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ports, cancel, nil
}

// FetchConfigDump reads the Envoy /config_dump of pod namespace/name's
// sidecar through a port-forward to its admin port, as `istioctl
// proxy-config` does: never by exec. The body is read up to
// proxyconfig.MaxDumpBytes.
func FetchConfigDump(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, namespace, pod string) ([]byte, error) {
	what := fmt.Sprintf("%s/%s:%d", namespace, pod, EnvoyAdminPort)
	ports, stop, err := forwardPorts(ctx, cfg, kube, namespace, pod, []string{"0:" + strconv.Itoa(EnvoyAdminPort)}, what)
	if err != nil {
		return nil, err
	}
	defer stop()
	if len(ports) != 1 {
		return nil, fmt.Errorf("port-forward to %s: no local port", what)
	}
	data, err := getConfigDump(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local))))
	if err != nil {
		return nil, fmt.Errorf("%s/%s: %w", namespace, pod, err)
	}
	return data, nil
}

// FetchLocalConfigDump reads the dump of the sidecar beside this process
// (the tool running in a pod with one): its admin port is on our loopback.
func FetchLocalConfigDump(ctx context.Context) ([]byte, error) {
	return getConfigDump(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(EnvoyAdminPort)))
}

// adminClient talks to an Envoy admin port on loopback: never through an
// HTTP proxy from the environment.
var adminClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}, Timeout: 30 * time.Second}

// getConfigDump GETs /config_dump (without ?include_eds: endpoints decide
// nothing here and are most of a large dump).
func getConfigDump(ctx context.Context, hostport string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+"/config_dump", nil)
	if err != nil {
		return nil, err
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("envoy admin /config_dump: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("envoy admin /config_dump: HTTP %d", resp.StatusCode)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, proxyconfig.MaxDumpBytes+1))
	if err != nil {
		return nil, fmt.Errorf("envoy admin /config_dump: %w", err)
	}
	if len(data) > proxyconfig.MaxDumpBytes {
		return nil, proxyconfig.ErrTooLarge
	}
	return data, nil
}

// Proxy names a sidecar whose config a scan reads: a pod's, or (Self) the
// one beside the tool.
type Proxy struct {
	Namespace, Pod string
	Self           bool
}

func (p Proxy) String() string {
	if p.Self {
		return "this pod's sidecar"
	}
	return p.Namespace + "/" + p.Pod
}

// ConfigDumps reads each proxy's config at most once per scan, however
// many targets ask for it; concurrent asks for one proxy share one fetch.
type ConfigDumps struct {
	// Fetch reads a proxy's raw dump (FetchConfigDump, FetchLocalConfigDump).
	Fetch func(ctx context.Context, p Proxy) ([]byte, error)

	mu      sync.Mutex
	dumps   map[Proxy]*dumpEntry
	fetches atomic.Int64
	bytes   atomic.Int64
}

type dumpEntry struct {
	done chan struct{}
	dump *proxyconfig.Dump
	err  error
}

// NewConfigDumps reads pods' dumps by port-forward and, for Self, from
// this pod's loopback.
func NewConfigDumps(cfg *rest.Config, kube kubernetes.Interface) *ConfigDumps {
	return &ConfigDumps{Fetch: func(ctx context.Context, p Proxy) ([]byte, error) {
		if p.Self {
			return FetchLocalConfigDump(ctx)
		}
		return FetchConfigDump(ctx, cfg, kube, p.Namespace, p.Pod)
	}}
}

// Get returns the proxy's parsed dump, fetching it the first time.
func (c *ConfigDumps) Get(ctx context.Context, p Proxy) (*proxyconfig.Dump, error) {
	c.mu.Lock()
	if c.dumps == nil {
		c.dumps = map[Proxy]*dumpEntry{}
	}
	e, ok := c.dumps[p]
	if !ok {
		e = &dumpEntry{done: make(chan struct{})}
		c.dumps[p] = e
	}
	c.mu.Unlock()
	if !ok {
		c.fetches.Add(1)
		data, err := c.Fetch(ctx, p)
		if err == nil {
			c.bytes.Add(int64(len(data)))
			e.dump, err = proxyconfig.Parse(data)
		}
		e.err = err
		close(e.done)
	}
	select {
	case <-e.done:
		return e.dump, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Fetches is how many dumps were read (one per proxy asked for), Bytes
// their total size.
func (c *ConfigDumps) Fetches() int64 { return c.fetches.Load() }

// Bytes is the total size of the dumps read.
func (c *ConfigDumps) Bytes() int64 { return c.bytes.Load() }

// ClientProxy picks the proxy whose config stands for the clients of
// namespace: a running pod with a sidecar there, the first by name that
// is not one of avoid (pods that serve Services: clients proper stand for
// clients best), else the first. Every sidecar of a namespace gets the
// same outbound config unless a Sidecar resource selects some of them.
// ok is false when the namespace has none.
func ClientProxy(inv *cluster.Inventory, namespace string, avoid ...cluster.PodRef) (Proxy, bool) {
	var names, others []string
	for _, p := range inv.Pods {
		if p.Namespace == namespace && p.HasSidecar && p.Phase == "Running" {
			names = append(names, p.Name)
			if !slices.Contains(avoid, cluster.PodRef{Namespace: p.Namespace, Name: p.Name}) {
				others = append(others, p.Name)
			}
		}
	}
	if len(others) > 0 {
		names = others
	}
	if len(names) == 0 {
		return Proxy{}, false
	}
	return Proxy{Namespace: namespace, Pod: slices.Min(names)}, true
}

// ErrNoProxy says a target has no proxy whose config decides it.
var ErrNoProxy = errors.New("no pod with a sidecar to read the config of")
