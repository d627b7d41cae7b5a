package world

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// NodeOptions configures StartNode.
type NodeOptions struct {
	// Client talks to the API server; it needs rights over nodes, pods
	// (binding, status, delete), services and endpointslices: an admin
	// client is simplest.
	Client kubernetes.Interface
	// Name of the Node object; "" means "node-1".
	Name string
	// StateDir holds per-pod scratch directories and container logs; ""
	// means a fresh temporary directory, removed by Stop.
	StateDir string
	// PodCIDR hands out pod IPs; its first address is the node's bridge.
	// "" means 10.88.0.0/16.
	PodCIDR string
	// Resolver maps containers to local commands; nil means DaemonResolver.
	Resolver ImageResolver
	// Logf receives the agent's own log lines; nil means log.Printf.
	Logf func(format string, args ...any)
	// APIServer is the API server's host:port as the node agent reaches
	// it (testenv: 127.0.0.1:PORT). When set, pods reach it through the
	// `kubernetes` Service (see apiserver.go) and get the
	// KUBERNETES_SERVICE_* environment and service-account files, so
	// in-cluster clients work. "" leaves pods without API access.
	APIServer string
	// Forwards are more root-namespace services pods reach on the node's
	// bridge address: port there -> HOST:PORT here (istiod's xDS).
	Forwards map[int]string
	// ClusterCA is the PEM bundle pods get as ca.crt next to their token
	// (the kube-root-ca.crt ConfigMap no controller publishes here).
	ClusterCA []byte
}

// Node is a running node agent. Stop it when done.
type Node struct {
	opts     NodeOptions
	client   kubernetes.Interface
	net      *network
	ownsDir  bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	listener net.Listener
	server   *http.Server
	port     int

	kick        chan struct{} // pod reconcile
	proxyKick   chan struct{} // services, slices, iptables
	proxyState  proxyState
	mu          sync.Mutex
	workers     map[types.UID]*podWorker
	byName      map[string]*podWorker // "ns/name" -> newest worker
	stopOnce    sync.Once
	stopErr     error
	startedTime time.Time
	apiFwd      *apiForwarder
	fwds        []*apiForwarder
	apiEnv      []string // KUBERNETES_SERVICE_* for every container; set before pods run
}

// StartNode registers a Node, builds the pod network, starts the kubelet
// API on 127.0.0.1 and begins binding and running pods. It first removes
// what crashed earlier runs left (Cleanup). Without root it fails with an
// error starting "the e2e world needs root".
func StartNode(ctx context.Context, opts NodeOptions) (_ *Node, err error) {
	if err := requireRoot(); err != nil {
		return nil, err
	}
	if opts.Client == nil {
		return nil, errors.New("world: NodeOptions.Client is required")
	}
	if opts.Name == "" {
		opts.Name = "node-1"
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = "10.88.0.0/16"
	}
	if opts.Resolver == nil {
		opts.Resolver = DaemonResolver()
	}
	if opts.Logf == nil {
		opts.Logf = log.Printf
	}
	if err := Cleanup(NetnsPrefix); err != nil {
		opts.Logf("world: cleanup of earlier runs: %v", err)
	}
	netw, err := newNetwork(opts.PodCIDR)
	if err != nil {
		return nil, err
	}
	n := &Node{
		opts:        opts,
		client:      opts.Client,
		net:         netw,
		kick:        make(chan struct{}, 1),
		proxyKick:   make(chan struct{}, 1),
		workers:     map[types.UID]*podWorker{},
		byName:      map[string]*podWorker{},
		startedTime: time.Now(),
	}
	if n.opts.StateDir == "" {
		if n.opts.StateDir, err = os.MkdirTemp("", "serverfirst-world-"); err != nil {
			return nil, err
		}
		n.ownsDir = true
	} else if err := os.MkdirAll(n.opts.StateDir, 0o755); err != nil {
		return nil, err
	}
	// Pods may run as any uid: let them reach their own directories.
	_ = os.Chmod(n.opts.StateDir, 0o755)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	if err := netw.setup(); err != nil {
		return nil, fmt.Errorf("node network: %w", err)
	}
	if err := n.installProxyChains(); err != nil {
		return nil, err
	}
	if err := n.startKubeletServer(); err != nil {
		return nil, err
	}
	if n.opts.APIServer != "" {
		if err := n.startAPIAccess(ctx); err != nil {
			return nil, fmt.Errorf("API access for pods: %w", err)
		}
	}
	for port, target := range n.opts.Forwards {
		f, err := n.startForwarder(port, target)
		if err != nil {
			return nil, fmt.Errorf("forwarder to %s: %w", target, err)
		}
		n.fwds = append(n.fwds, f)
	}
	if err := n.register(ctx); err != nil {
		return nil, err
	}

	// Plain list + watch: client-go's informers (tools/cache) would pull a
	// module the product's go.mod does not list. Watches only wake the
	// loops; every pass lists afresh (a test cluster holds a few objects).
	core, disc := n.client.CoreV1(), n.client.DiscoveryV1()
	started := time.Now()
	n.wg.Add(3)
	go watchKick(n.ctx, &n.wg, func(ctx context.Context) (watch.Interface, error) {
		return core.Pods("").Watch(ctx, metav1.ListOptions{})
	}, n.kick, n.proxyKick)
	go watchKick(n.ctx, &n.wg, func(ctx context.Context) (watch.Interface, error) {
		return core.Services("").Watch(ctx, metav1.ListOptions{})
	}, n.proxyKick)
	go watchKick(n.ctx, &n.wg, func(ctx context.Context) (watch.Interface, error) {
		return disc.EndpointSlices("").Watch(ctx, metav1.ListOptions{})
	}, n.proxyKick)
	n.wg.Add(2)
	go n.podLoop()
	go n.proxyLoop()
	if n.opts.APIServer != "" {
		// A pod's first call to the kubernetes Service must find its DNAT
		// rule: kube-proxy in a cluster has long programmed it when a pod
		// starts, here the first pass may still be running (seen: curl to
		// 10.96.0.1:443 refused at once under load).
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := n.WaitEndpointsSynced(wctx, started); err != nil {
			return nil, fmt.Errorf("kube-proxy stand-in: %w", err)
		}
	}
	return n, nil
}

func kickChan(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// watchKick wakes the given loops on every event of a watch, re-watching
// (and waking them) whenever the watch ends, until ctx ends; then it
// marks wg done. The node agent and the job controller share it.
func watchKick(ctx context.Context, wg *sync.WaitGroup, start func(context.Context) (watch.Interface, error), kicks ...chan struct{}) {
	defer wg.Done()
	for ctx.Err() == nil {
		if w, err := start(ctx); err == nil {
			for range w.ResultChan() {
				for _, k := range kicks {
					kickChan(k)
				}
			}
			w.Stop()
		}
		for _, k := range kicks {
			kickChan(k)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (n *Node) listPods() ([]*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	l, err := n.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out, nil
}

// Name is the Node's name.
func (n *Node) Name() string { return n.opts.Name }

// KubeletPort is the port of the kubelet API on 127.0.0.1.
func (n *Node) KubeletPort() int { return n.port }

// StateDir is where pod scratch directories and logs live.
func (n *Node) StateDir() string { return n.opts.StateDir }

// NodeNetns is the name of the node's network namespace (the bridge, the
// kube-proxy rules); its path is /run/netns/NAME.
func (n *Node) NodeNetns() string { return n.net.node }

// PodNetns is the path (/run/netns/NAME) of the network namespace of the
// pod namespace/name while it has one, else "". Use it with
// `nsenter --net=PATH` or setns(2); `ip netns exec` takes its base name.
func (n *Node) PodNetns(namespace, name string) string {
	n.mu.Lock()
	w := n.byName[namespace+"/"+name]
	n.mu.Unlock()
	if w == nil {
		return ""
	}
	if ns := w.netnsName(); ns != "" {
		return filepath.Join(netnsDir, ns)
	}
	return ""
}

// DialPod dials addr ("IP:port", a pod IP or ClusterIP) from inside the node
// namespace, as a process on the node's bridge would.
func (n *Node) DialPod(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{}
	if dl, ok := ctx.Deadline(); ok {
		d.Deadline = dl
	}
	return dialIn(n.net.node, addr, d)
}

// Stop stops every pod process (SIGTERM, then SIGKILL after 5s), deletes
// every network namespace the node made (veths, bridge and iptables rules go
// with them), stops the kubelet API and the informers, and deletes the Node
// object (best effort). It is idempotent and returns the first call's result.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		var errs []error
		if n.cancel != nil {
			n.cancel()
		}
		n.wg.Wait()
		n.mu.Lock()
		workers := make([]*podWorker, 0, len(n.workers))
		for _, w := range n.workers {
			workers = append(workers, w)
		}
		n.mu.Unlock()
		for _, w := range workers {
			<-w.done
		}
		for _, f := range n.fwds {
			f.close()
		}
		if n.apiFwd != nil {
			n.apiFwd.close()
		}
		if n.server != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = n.server.Shutdown(ctx)
			cancel()
			_ = n.server.Close()
		}
		if err := n.net.teardown(); err != nil {
			errs = append(errs, err)
		}
		if n.client != nil && n.port != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err := n.client.CoreV1().Nodes().Delete(ctx, n.opts.Name, metav1.DeleteOptions{})
			cancel()
			if err != nil && !apierrors.IsNotFound(err) {
				n.opts.Logf("world: delete node %s: %v", n.opts.Name, err)
			}
		}
		if n.ownsDir {
			_ = os.RemoveAll(n.opts.StateDir)
		}
		n.stopErr = errors.Join(errs...)
	})
	return n.stopErr
}

// register creates (or takes over) the Node object and reports it Ready
// with the kubelet endpoint.
func (n *Node) register(ctx context.Context) error {
	nodes := n.client.CoreV1().Nodes()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.opts.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname":    n.opts.Name,
				"kubernetes.io/os":          "linux",
				"kubernetes.io/arch":        "amd64",
				"world.serverfirst.io/node": "true",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: n.opts.PodCIDR, PodCIDRs: []string{n.opts.PodCIDR}},
	}
	cur, err := nodes.Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		cur, err = nodes.Get(ctx, n.opts.Name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("register node %s: %w", n.opts.Name, err)
	}
	now := metav1.Now()
	plenty := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("1000"),
	}
	cur.Status = corev1.NodeStatus{
		Capacity:    plenty,
		Allocatable: plenty,
		Phase:       corev1.NodeRunning,
		Conditions: []corev1.NodeCondition{{
			Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			Message: "world node agent is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(n.port)}},
		NodeInfo: corev1.NodeSystemInfo{
			OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: "v1.37.2-world",
			ContainerRuntimeVersion: "world://processes",
		},
	}
	if _, err := nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("node %s status: %w", n.opts.Name, err)
	}
	return nil
}

// podLoop binds pending pods and hands the node's pods to their workers.
func (n *Node) podLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		n.reconcilePods()
		select {
		case <-n.ctx.Done():
			return
		case <-n.kick:
		case <-tick.C:
		}
	}
}

func (n *Node) reconcilePods() {
	pods, err := n.listPods()
	if err != nil {
		return
	}
	sort.SliceStable(pods, func(i, j int) bool {
		return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp)
	})
	seen := map[types.UID]bool{}
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			if p.DeletionTimestamp == nil && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				n.bind(p)
			}
			continue
		}
		if p.Spec.NodeName != n.opts.Name {
			continue
		}
		seen[p.UID] = true
		n.mu.Lock()
		w := n.workers[p.UID]
		if w == nil {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				n.mu.Unlock()
				if p.DeletionTimestamp != nil {
					n.finalDelete(p)
				}
				continue // finished before this agent started
			}
			w = newPodWorker(n, p)
			n.workers[p.UID] = w
			n.byName[p.Namespace+"/"+p.Name] = w
			n.wg.Add(1)
			go func() {
				defer n.wg.Done()
				w.run()
			}()
		}
		n.mu.Unlock()
		w.update(p)
	}
	n.mu.Lock()
	for uid, w := range n.workers {
		if !seen[uid] {
			w.markGone()
		}
	}
	n.mu.Unlock()
}

// forget drops a finished worker.
func (n *Node) forget(w *podWorker) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.workers[w.uid] == w {
		delete(n.workers, w.uid)
	}
	if n.byName[w.key] == w {
		delete(n.byName, w.key)
	}
}

func (n *Node) bind(p *corev1.Pod) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	err := n.client.CoreV1().Pods(p.Namespace).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: n.opts.Name},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) && n.ctx.Err() == nil {
		n.opts.Logf("world: bind %s/%s: %v", p.Namespace, p.Name, err)
	}
}

// finalDelete removes a pod object for good, as the kubelet does once its
// containers are gone.
func (n *Node) finalDelete(p *corev1.Pod) {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	zero := int64(0)
	uid := p.UID
	err := n.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) && n.ctx.Err() == nil {
		n.opts.Logf("world: delete %s/%s: %v", p.Namespace, p.Name, err)
	}
}
