package world

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
)

// APIForwardPort is where the node namespace accepts pods' connections to
// the API server (on the bridge address, e.g. 10.88.0.1:6443): the kube-apiserver
// of internal/testenv listens on the root namespace's loopback, which no pod
// can reach.
const APIForwardPort = 6443

// apiSliceManagedBy marks the `kubernetes` Service's EndpointSlice the node
// writes in place of the API server's endpoint reconciler (testenv runs it
// with --endpoint-reconciler-type=none, since it refuses a loopback
// advertise address). It differs from ManagedBy, so the kube-proxy
// stand-in treats the slice as written by someone else and DNATs the
// ClusterIP to it.
const apiSliceManagedBy = "world.serverfirst.io-apiserver"

// apiForwarder relays TCP from the node namespace to the API server.
type apiForwarder struct {
	listener net.Listener
	target   string
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// startAPIForwarder listens on gateway:APIForwardPort inside the node
// namespace and relays every connection, bytes untouched (TLS is end to
// end: the serving certificate names the `kubernetes` ClusterIP), to
// opts.APIServer in the root namespace.
func (n *Node) startAPIForwarder() error {
	f, err := n.startForwarder(APIForwardPort, n.opts.APIServer)
	if err != nil {
		return fmt.Errorf("API server forwarder: %w", err)
	}
	n.apiFwd = f
	return nil
}

// startForwarder listens on gateway:port inside the node namespace and
// relays every connection, bytes untouched, to target in the root
// namespace.
func (n *Node) startForwarder(port int, target string) (*apiForwarder, error) {
	f := &apiForwarder{target: target, conns: map[net.Conn]struct{}{}}
	addr := net.JoinHostPort(n.net.gateway.String(), strconv.Itoa(port))
	err := inNetns(n.net.node, func() error {
		var err error
		f.listener, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	f.wg.Add(1)
	go f.serve(n.opts.Logf)
	return f, nil
}

func (f *apiForwarder) serve(logf func(string, ...any)) {
	defer f.wg.Done()
	for {
		c, err := f.listener.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logf("world: API server forwarder: %v", err)
			}
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			// Dialled from a goroutine that never joined a namespace: the
			// root namespace, where the API server listens.
			up, err := net.DialTimeout("tcp", f.target, 10*time.Second)
			if err != nil {
				logf("world: API server forwarder: %v", err)
				return
			}
			if !f.track(up) {
				up.Close()
				return
			}
			defer f.untrack(up)
			relay(c, up)
		}()
	}
}

func (f *apiForwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *apiForwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
	c.Close()
}

// close stops accepting and cuts every relayed connection (watches would
// otherwise keep the node from stopping).
func (f *apiForwarder) close() {
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.listener.Close()
	f.wg.Wait()
}

// relay copies both ways until either side is done, then closes both.
func relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
}

// startAPIAccess gives pods the API server: the forwarder, the
// `kubernetes` Service's EndpointSlice pointing at it and the environment
// every container gets. It runs before any pod does, so apiEnv needs no
// lock.
func (n *Node) startAPIAccess(ctx context.Context) error {
	if err := n.startAPIForwarder(); err != nil {
		return err
	}
	// The API server creates the kubernetes Service shortly after it
	// turns ready.
	var svc *corev1.Service
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		svc, err = n.client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, "kubernetes", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("the kubernetes Service: %w", err)
	}
	if len(svc.Spec.Ports) == 0 || svc.Spec.ClusterIP == "" {
		return errors.New("the kubernetes Service has no ClusterIP or port")
	}
	n.apiEnv = apiServiceEnv(svc)
	return n.ensureAPISlice(ctx, svc)
}

// ensureAPISlice points the `kubernetes` Service at the forwarder: an
// EndpointSlice with the bridge address, as the API server's reconciler
// would publish its own address. Pods then reach the API server through
// the ClusterIP (kube-proxy stand-in) exactly as in a cluster.
func (n *Node) ensureAPISlice(ctx context.Context, svc *corev1.Service) error {
	want := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      "kubernetes-world",
			Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: "kubernetes",
				discoveryv1.LabelManagedBy:   apiSliceManagedBy,
			},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{n.net.gateway.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		}},
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr.To(svc.Spec.Ports[0].Name), Port: ptr.To(int32(APIForwardPort)), Protocol: ptr.To(corev1.ProtocolTCP),
		}},
	}
	slices := n.client.DiscoveryV1().EndpointSlices(metav1.NamespaceDefault)
	cur, err := slices.Get(ctx, want.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, want, metav1.CreateOptions{})
		return err
	case err != nil:
		return err
	}
	want.ResourceVersion = cur.ResourceVersion
	_, err = slices.Update(ctx, want, metav1.UpdateOptions{})
	return err
}

// apiServiceEnv is what the kubelet puts in every container for the
// `kubernetes` Service (client libraries' in-cluster config reads
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT).
func apiServiceEnv(svc *corev1.Service) []string {
	ip, port := svc.Spec.ClusterIP, strconv.Itoa(int(svc.Spec.Ports[0].Port))
	hostPort := net.JoinHostPort(ip, port)
	return []string{
		"KUBERNETES_SERVICE_HOST=" + ip,
		"KUBERNETES_SERVICE_PORT=" + port,
		"KUBERNETES_SERVICE_PORT_HTTPS=" + port,
		"KUBERNETES_PORT=tcp://" + hostPort,
		"KUBERNETES_PORT_" + port + "_TCP=tcp://" + hostPort,
		"KUBERNETES_PORT_" + port + "_TCP_PROTO=tcp",
		"KUBERNETES_PORT_" + port + "_TCP_PORT=" + port,
		"KUBERNETES_PORT_" + port + "_TCP_ADDR=" + ip,
	}
}
