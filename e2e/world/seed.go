package world

import (
	"context"
	"fmt"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	securityapi "istio.io/api/security/v1beta1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// The demo workloads (SeedDemo), by namespace:
//
//	shop   (istio-injection=enabled)
//	  pod orders-db (mariadb:11, :3306)  Service orders-db     3307 "db"        -> 3306  sniffed: DEADLOCK for mesh clients
//	                                     Service orders-db-tcp 3306 "tcp-mysql" -> 3306  declared TCP: OK
//	  pod cache (redis:7, :6379)         Service cache         6380 "cache"     -> 6379  sniffed, client-first: harmless
//	  pod web (busybox, sleeps)          the mesh client app
//	legacy (no injection)
//	  pod ssh (openssh-server, :2222)    Service ssh           2222 "ssh-port"  -> 2222  no sidecar; mesh clients sniff it
//	batch  (no injection)
//	  pod report (busybox, sleeps)       an out-of-mesh client of shop/orders-db: PERMISSIVE mTLS
//	                                     makes the server's sidecar wait for its first bytes
//	istio-system
//	  PeerAuthentication default         mesh-wide PERMISSIVE (Istio's default, written out)
const (
	DemoShop   = "shop"
	DemoLegacy = "legacy"
	DemoBatch  = "batch"
)

// DemoPods are the demo's pods as namespace/name.
var DemoPods = []string{"shop/orders-db", "shop/cache", "shop/web", "legacy/ssh", "batch/report"}

// SeedDemo creates the demo workloads (see the table above). Objects that
// already exist are left as they are, so seeding twice is harmless. With
// istio nil the PeerAuthentication is skipped (Istio's default is the same
// PERMISSIVE).
func SeedDemo(ctx context.Context, kube kubernetes.Interface, istio istioclient.Interface) error {
	namespaces := []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: DemoShop, Labels: map[string]string{"istio-injection": "enabled"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: DemoLegacy}},
		{ObjectMeta: metav1.ObjectMeta{Name: DemoBatch}},
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-system"}},
	}
	for _, ns := range namespaces {
		if err := ignoreExists(kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("seed: namespace %s: %w", ns.Name, err)
		}
		// No controller-manager makes `default` ServiceAccounts.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
		if err := ignoreExists(kube.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("seed: %s/default ServiceAccount: %w", ns.Name, err)
		}
	}

	// Services first: a sidecar that starts after them has them in its
	// first config.
	services := []*corev1.Service{
		demoService(DemoShop, "orders-db", "orders-db", "db", 3307, 3306),
		demoService(DemoShop, "orders-db-tcp", "orders-db", "tcp-mysql", 3306, 3306),
		demoService(DemoShop, "cache", "cache", "cache", 6380, 6379),
		demoService(DemoLegacy, "ssh", "ssh", "ssh-port", 2222, 2222),
	}
	for _, svc := range services {
		if err := ignoreExists(kube.CoreV1().Services(svc.Namespace).Create(ctx, svc, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("seed: Service %s/%s: %w", svc.Namespace, svc.Name, err)
		}
	}
	if istio != nil {
		pa := &securityv1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"},
		}
		pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
		if err := ignoreExists(istio.SecurityV1().PeerAuthentications("istio-system").Create(ctx, pa, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("seed: PeerAuthentication istio-system/default: %w", err)
		}
	}

	sleeper := func(ns, name string) *corev1.Pod {
		return demoPod(ns, name, corev1.Container{
			Name: "app", Image: "docker.io/library/busybox:1.36",
			Command: []string{"sleep", "infinity"},
		})
	}
	pods := []*corev1.Pod{
		demoPod(DemoShop, "orders-db", corev1.Container{
			Name: "mariadb", Image: "docker.io/library/mariadb:11",
			Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306}},
			Env:   []corev1.EnvVar{{Name: "MARIADB_ALLOW_EMPTY_ROOT_PASSWORD", Value: "1"}},
		}),
		demoPod(DemoShop, "cache", corev1.Container{
			Name: "redis", Image: "docker.io/library/redis:7",
			Ports: []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}},
		}),
		sleeper(DemoShop, "web"),
		demoPod(DemoLegacy, "ssh", corev1.Container{
			Name: "sshd", Image: "lscr.io/linuxserver/openssh-server:latest",
			Ports: []corev1.ContainerPort{{Name: "ssh", ContainerPort: 2222}},
		}),
		sleeper(DemoBatch, "report"),
	}
	for _, p := range pods {
		if err := ignoreExists(kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})); err != nil {
			return fmt.Errorf("seed: pod %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	return nil
}

func demoService(ns, name, app, portName string, port, target int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app, worldLabel: "demo"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": app},
			Ports: []corev1.ServicePort{{
				Name: portName, Port: port, TargetPort: intstr.FromInt32(target), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

func demoPod(ns, app string, c corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: ns, Labels: map[string]string{"app": app, worldLabel: "demo"}},
		Spec: corev1.PodSpec{
			// What the ServiceAccount admission plugin (off in testenv)
			// would write; Istio's injected token volume needs it.
			ServiceAccountName:            "default",
			Containers:                    []corev1.Container{c},
			TerminationGracePeriodSeconds: ptr.To[int64](2),
		},
	}
}

func ignoreExists[T any](_ T, err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// WaitPodsReady waits until every pod named "namespace/name" is Running
// with all containers ready, and says which are not (with their container
// states) when ctx ends first.
func WaitPodsReady(ctx context.Context, kube kubernetes.Interface, pods ...string) error {
	for {
		var notReady []string
		for _, ref := range pods {
			ns, name, _ := strings.Cut(ref, "/")
			p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				notReady = append(notReady, fmt.Sprintf("%s (%v)", ref, err))
				continue
			}
			if why := podNotReady(p); why != "" {
				notReady = append(notReady, ref+" ("+why+")")
			}
		}
		if len(notReady) == 0 {
			return nil
		}
		sort.Strings(notReady)
		select {
		case <-ctx.Done():
			return fmt.Errorf("pods not ready: %w: %s", ctx.Err(), strings.Join(notReady, "; "))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func podNotReady(p *corev1.Pod) string {
	if p.Status.Phase != corev1.PodRunning {
		return "phase " + string(p.Status.Phase)
	}
	var out []string
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			continue
		}
		switch {
		case cs.State.Waiting != nil:
			out = append(out, fmt.Sprintf("%s waiting: %s %s", cs.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
		case cs.State.Terminated != nil:
			out = append(out, fmt.Sprintf("%s terminated: %s (exit %d)", cs.Name, cs.State.Terminated.Reason, cs.State.Terminated.ExitCode))
		default:
			out = append(out, cs.Name+" not ready")
		}
	}
	if len(p.Status.ContainerStatuses) == 0 {
		out = append(out, "no container statuses")
	}
	return strings.Join(out, ", ")
}

// demoServers are the demo's daemons: pod (namespace/name) -> port.
var demoServers = map[string]int{"shop/orders-db": 3306, "shop/cache": 6379, "legacy/ssh": 2222}

// WaitDemoListening returns once every demo daemon accepts connections
// (WaitListening). The demo's pods have no readiness probes (Istio would
// rewrite them to pilot-agent's /app-health, which the world's sidecar
// does not serve), so Ready comes before MariaDB and sshd listen.
func (w *World) WaitDemoListening(ctx context.Context) error {
	for _, ref := range slices.Sorted(maps.Keys(demoServers)) {
		ns, name, _ := strings.Cut(ref, "/")
		if err := w.WaitListening(ctx, ns, name, demoServers[ref]); err != nil {
			return err
		}
	}
	return nil
}

// WaitListening returns once pod ns/name accepts connections on port,
// dialled from inside the pod to its own IP (which Istio's capture leaves
// alone, so no sidecar is in the way).
func (w *World) WaitListening(ctx context.Context, ns, name string, port int) error {
	for {
		p, err := w.Kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && p.Status.PodIP == "" {
			err = fmt.Errorf("no pod IP yet")
		}
		if err == nil {
			var conn net.Conn
			if conn, err = w.DialFrom(ctx, ns, name, net.JoinHostPort(p.Status.PodIP, strconv.Itoa(port))); err == nil {
				conn.Close()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("world: %s/%s not listening on %d: %w (last: %v)", ns, name, port, ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
