package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// requestCounter counts API requests by "VERB path" and remembers every
// query, through rest.Config.WrapTransport.
type requestCounter struct {
	mu    sync.Mutex
	count map[string]int
	urls  []*url.URL
	total atomic.Int64
}

func (c *requestCounter) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	c.count = map[string]int{}
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			c.mu.Lock()
			c.count[r.Method+" "+r.URL.Path]++
			c.urls = append(c.urls, r.URL)
			c.mu.Unlock()
			c.total.Add(1)
			return rt.RoundTrip(r)
		})
	}
	return cfg
}

func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for k, v := range c.count {
		out[k] = v
	}
	return out
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func clientsFor(t *testing.T, cfg *rest.Config) cluster.Clients {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cluster.Clients{Kube: kube, Istio: ic}
}

// fixture is what seed created, as the API server returned it.
type fixture struct {
	services map[string]*corev1.Service // "ns/name"
	peerAuth map[string]time.Time       // "ns/name" -> creationTimestamp
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var always = corev1.ContainerRestartPolicyAlways

// seed creates one of every case Load and build must handle.
func seed(t *testing.T, env *testenv.Env) *fixture {
	t.Helper()
	ctx := testCtx(t)
	kube := env.Client
	ic, err := env.IstioClient()
	must(t, err)
	for _, ns := range []struct {
		name   string
		labels map[string]string
	}{
		{"istio-system", nil},
		{"istio-alt", nil},
		{"mesh-root", nil},
		{"shop", map[string]string{"istio-injection": "enabled"}},
		{"legacy", nil},
		{"canary", map[string]string{"istio.io/rev": "1-24"}},
		{"mesh-off", map[string]string{"istio-injection": "disabled", "istio.io/rev": "1-24"}},
		{"amb", map[string]string{"istio.io/dataplane-mode": "ambient"}},
	} {
		_, err := env.CreateNamespace(ctx, ns.name, ns.labels)
		must(t, err)
	}

	// Mesh config: the istio ConfigMap, plus ConfigMaps Load must skip.
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-system"}, Data: map[string]string{
			"mesh": "protocolDetectionTimeout: 250ms\ndefaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n",
		}},
		{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: "istio-system"}, Data: map[string]string{"config": "policy: enabled", "values": "{}"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "not-istio", Namespace: "istio-system"}, Data: map[string]string{"mesh": "protocolDetectionTimeout: 9s"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "shop"}, Data: map[string]string{"mesh": "protocolDetectionTimeout: 8s"}},
		// A second control plane whose mesh config names another root namespace.
		{ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: "istio-alt"}, Data: map[string]string{"mesh": "rootNamespace: mesh-root\n"}},
	} {
		_, err := kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{})
		must(t, err)
	}

	fx := &fixture{services: map[string]*corev1.Service{}, peerAuth: map[string]time.Time{}}
	svc := func(ns, name string, selector map[string]string, ports ...corev1.ServicePort) {
		s, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
		}, metav1.CreateOptions{})
		must(t, err)
		fx.services[ns+"/"+name] = s
	}
	str := func(s string) *string { return &s }
	k8s, err := kube.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	must(t, err)
	fx.services["default/kubernetes"] = k8s
	svc("shop", "mysql", map[string]string{"app": "mysql"},
		corev1.ServicePort{Name: "db", Port: 3306, TargetPort: intstr.FromString("mysql")},
		corev1.ServicePort{Name: "metrics", Port: 9104, TargetPort: intstr.FromInt32(9104)})
	svc("shop", "nats", map[string]string{"app": "nats"},
		corev1.ServicePort{Name: "tcp-client", Port: 4222, AppProtocol: str("nats.io/client")})
	svc("shop", "web", map[string]string{"app": "web"},
		corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)},
		corev1.ServicePort{Name: "h2", Port: 8081, AppProtocol: str("kubernetes.io/h2c")})
	// No EndpointSlices: backends from the selector.
	svc("legacy", "smtp", map[string]string{"app": "smtp"},
		corev1.ServicePort{Name: "smtp", Port: 25, TargetPort: intstr.FromString("smtp")},
		corev1.ServicePort{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP})
	// No selector, no slices: no backends.
	svc("legacy", "manual", nil, corev1.ServicePort{Port: 7000})

	pod := func(p *corev1.Pod, phase corev1.PodPhase, ip string) {
		created, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
		must(t, err)
		if phase == "" {
			return
		}
		created.Status.Phase = phase
		if ip != "" {
			created.Status.PodIP = ip
			created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		}
		_, err = kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, created, metav1.UpdateOptions{})
		must(t, err)
	}
	meta := func(ns, name string, labels, annotations map[string]string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations}
	}
	app := func(image string, ports ...corev1.ContainerPort) corev1.Container {
		return corev1.Container{Name: "app", Image: image, Ports: ports}
	}
	proxy := corev1.Container{Name: "istio-proxy", Image: "istio/proxyv2:1.28.0", Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}}
	nativeProxy := proxy
	nativeProxy.RestartPolicy = &always

	pod(&corev1.Pod{ObjectMeta: meta("shop", "mysql-0", map[string]string{"app": "mysql"}, nil),
		Spec: corev1.PodSpec{ServiceAccountName: "mysql", Containers: []corev1.Container{
			app("mariadb:11", corev1.ContainerPort{Name: "mysql", ContainerPort: 3306}),
			{Name: "exporter", Image: "prom/mysqld-exporter:v0.15", Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9104}}},
			proxy,
		}}}, corev1.PodRunning, "127.0.0.10")
	pod(&corev1.Pod{ObjectMeta: meta("shop", "mysql-1", map[string]string{"app": "mysql"}, nil),
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-init", Image: "istio/proxyv2:1.28.0"}, nativeProxy},
			Containers:     []corev1.Container{app("mariadb:11", corev1.ContainerPort{Name: "mysql", ContainerPort: 3307})},
		}}, corev1.PodRunning, "127.0.0.11")
	// Created before injection was enabled: no sidecar, but intended.
	pod(&corev1.Pod{ObjectMeta: meta("shop", "nats-0", map[string]string{"app": "nats"}, nil),
		Spec: corev1.PodSpec{Containers: []corev1.Container{app("nats:2.10", corev1.ContainerPort{ContainerPort: 4222})}}}, corev1.PodRunning, "127.0.0.12")
	pod(&corev1.Pod{ObjectMeta: meta("shop", "web-0", map[string]string{"app": "web", "sidecar.istio.io/inject": "false"}, nil),
		Spec: corev1.PodSpec{Containers: []corev1.Container{app("nginx:1.27")}}}, corev1.PodPending, "")
	// Injected, as the status annotation says, though no istio-proxy shows.
	pod(&corev1.Pod{ObjectMeta: meta("legacy", "smtp-0", map[string]string{"app": "smtp", "sidecar.istio.io/inject": "true"},
		map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}),
		Spec: corev1.PodSpec{Containers: []corev1.Container{app("postfix:3", corev1.ContainerPort{Name: "smtp", ContainerPort: 25})}}}, corev1.PodRunning, "127.0.0.20")
	// A plain init container named istio-proxy is no sidecar.
	pod(&corev1.Pod{ObjectMeta: meta("legacy", "smtp-1", map[string]string{"app": "smtp"}, map[string]string{"sidecar.istio.io/inject": "true"}),
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-proxy", Image: "busybox"}},
			Containers:     []corev1.Container{app("postfix:3")},
		}}, "", "")
	pod(&corev1.Pod{ObjectMeta: meta("canary", "app-0", map[string]string{"app": "x"}, nil),
		Spec: corev1.PodSpec{Containers: []corev1.Container{app("busybox")}}}, corev1.PodSucceeded, "")
	pod(&corev1.Pod{ObjectMeta: meta("mesh-off", "app-0", map[string]string{"sidecar.istio.io/inject": "true"}, nil),
		Spec: corev1.PodSpec{Containers: []corev1.Container{app("busybox")}}}, "", "")
	pod(&corev1.Pod{ObjectMeta: meta("amb", "app-0", nil, nil),
		Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{app("busybox")}}}, "", "")

	slice := func(ns, name, service string, eps ...discoveryv1.Endpoint) {
		labels := map[string]string{}
		if service != "" {
			labels[discoveryv1.LabelServiceName] = service
		}
		_, err := kube.DiscoveryV1().EndpointSlices(ns).Create(ctx, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   eps,
		}, metav1.CreateOptions{})
		must(t, err)
	}
	ep := func(addr, podName string) discoveryv1.Endpoint {
		e := discoveryv1.Endpoint{Addresses: []string{addr}}
		if podName != "" {
			e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: podName}
		}
		return e
	}
	slice("shop", "mysql-a", "mysql", ep("10.1.0.11", "mysql-1"), ep("10.1.0.10", "mysql-0"), ep("10.1.0.99", ""))
	slice("shop", "mysql-b", "mysql", ep("10.1.0.10", "mysql-0")) // the same pod again
	slice("shop", "nats-a", "nats", ep("10.1.0.12", "nats-0"))
	slice("shop", "web-a", "web") // a slice without endpoints: no selector fallback
	slice("shop", "orphan", "", ep("10.1.0.50", "web-0"))
	slice("shop", "gone-a", "gone", ep("10.1.0.51", "web-0")) // for a Service that does not exist

	se := func(ns, name string, fill func(*networkingapi.ServiceEntry)) {
		obj := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		fill(&obj.Spec)
		_, err := ic.NetworkingV1().ServiceEntries(ns).Create(ctx, obj, metav1.CreateOptions{})
		must(t, err)
	}
	se("shop", "ext-mysql", func(s *networkingapi.ServiceEntry) {
		s.Hosts = []string{"db.example.com"}
		s.Location = networkingapi.ServiceEntry_MESH_EXTERNAL
		s.Resolution = networkingapi.ServiceEntry_DNS
		s.Ports = []*networkingapi.ServicePort{
			{Number: 3306, Name: "mysql", Protocol: "TCP"},
			{Number: 10000, Name: "other"},
		}
	})
	se("legacy", "smtp-relay", func(s *networkingapi.ServiceEntry) {
		s.Hosts = []string{"relay.example.com"}
		s.Addresses = []string{"203.0.113.5/32"}
		s.Location = networkingapi.ServiceEntry_MESH_INTERNAL
		s.Resolution = networkingapi.ServiceEntry_STATIC
		s.Endpoints = []*networkingapi.WorkloadEntry{{Address: "203.0.113.5"}}
		s.ExportTo = []string{"."}
		s.Ports = []*networkingapi.ServicePort{{Number: 25, Name: "smtp", Protocol: "SMTP", TargetPort: 2525}}
	})

	pa := func(ns, name string, fill func(*securityapi.PeerAuthentication)) {
		obj := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		fill(&obj.Spec)
		got, err := ic.SecurityV1().PeerAuthentications(ns).Create(ctx, obj, metav1.CreateOptions{})
		must(t, err)
		fx.peerAuth[ns+"/"+name] = got.CreationTimestamp.Time
	}
	mode := func(m securityapi.PeerAuthentication_MutualTLS_Mode) *securityapi.PeerAuthentication_MutualTLS {
		return &securityapi.PeerAuthentication_MutualTLS{Mode: m}
	}
	pa("istio-system", "default", func(p *securityapi.PeerAuthentication) {
		p.Mtls = mode(securityapi.PeerAuthentication_MutualTLS_STRICT)
	})
	pa("shop", "default", func(p *securityapi.PeerAuthentication) {
		p.Mtls = mode(securityapi.PeerAuthentication_MutualTLS_PERMISSIVE)
	})
	pa("shop", "mysql", func(p *securityapi.PeerAuthentication) {
		p.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "mysql"}}
		p.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{3306: mode(securityapi.PeerAuthentication_MutualTLS_DISABLE), 9104: mode(securityapi.PeerAuthentication_MutualTLS_UNSET)}
	})
	pa("legacy", "empty-selector", func(p *securityapi.PeerAuthentication) { p.Selector = &typeapi.WorkloadSelector{} })
	pa("mesh-root", "default", func(p *securityapi.PeerAuthentication) {
		p.Mtls = mode(securityapi.PeerAuthentication_MutualTLS_DISABLE)
	})
	return fx
}

// expected is the whole inventory Load must return for seed, all namespaces.
func expected(fx *fixture) *cluster.Inventory {
	nsLabels := func(name string, extra map[string]string) map[string]string {
		m := map[string]string{"kubernetes.io/metadata.name": name}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	ip := func(key string) string { return fx.services[key].Spec.ClusterIP }
	resolved := func(p cluster.Protocol, s cluster.ProtocolSource, trap bool) cluster.ResolvedProtocol {
		return cluster.ResolvedProtocol{Protocol: p, Source: s, AppProtocolTrap: trap}
	}
	return &cluster.Inventory{
		Namespaces: []cluster.Namespace{
			{Name: "amb", Labels: nsLabels("amb", map[string]string{"istio.io/dataplane-mode": "ambient"}), Ambient: true},
			{Name: "canary", Labels: nsLabels("canary", map[string]string{"istio.io/rev": "1-24"}), InjectionEnabled: true, Revision: "1-24"},
			{Name: "default", Labels: nsLabels("default", nil)},
			{Name: "istio-alt", Labels: nsLabels("istio-alt", nil)},
			{Name: "istio-system", Labels: nsLabels("istio-system", nil)},
			{Name: "kube-node-lease", Labels: nsLabels("kube-node-lease", nil)},
			{Name: "kube-public", Labels: nsLabels("kube-public", nil)},
			{Name: "kube-system", Labels: nsLabels("kube-system", nil)},
			{Name: "legacy", Labels: nsLabels("legacy", nil)},
			{Name: "mesh-off", Labels: nsLabels("mesh-off", map[string]string{"istio-injection": "disabled", "istio.io/rev": "1-24"})},
			{Name: "mesh-root", Labels: nsLabels("mesh-root", nil)},
			{Name: "shop", Labels: nsLabels("shop", map[string]string{"istio-injection": "enabled"}), InjectionEnabled: true, Revision: "default"},
		},
		Services: []cluster.Service{
			{Namespace: "default", Name: "kubernetes", Type: "ClusterIP", ClusterIP: "10.96.0.1", Ports: []cluster.ServicePort{
				{Name: "https", Port: 443, TargetPort: fx.services["default/kubernetes"].Spec.Ports[0].TargetPort.String(), Protocol: "TCP", Resolved: resolved(cluster.ProtocolHTTPS, cluster.SourceName, false)},
			}},
			{Namespace: "legacy", Name: "manual", Type: "ClusterIP", ClusterIP: ip("legacy/manual"), Ports: []cluster.ServicePort{
				{Port: 7000, TargetPort: "7000", Protocol: "TCP", Resolved: resolved(cluster.ProtocolAuto, cluster.SourceNone, false)},
			}},
			{Namespace: "legacy", Name: "smtp", Type: "ClusterIP", ClusterIP: ip("legacy/smtp"), Selector: map[string]string{"app": "smtp"},
				Ports: []cluster.ServicePort{
					{Name: "smtp", Port: 25, TargetPort: "smtp", Protocol: "TCP", Resolved: resolved(cluster.ProtocolTCP, cluster.SourceWellKnownPort, false)},
					{Name: "dns", Port: 53, TargetPort: "53", Protocol: "UDP", Resolved: resolved(cluster.ProtocolUDP, cluster.SourceProtocol, false)},
				},
				Backends: []cluster.PodRef{{Namespace: "legacy", Name: "smtp-0"}, {Namespace: "legacy", Name: "smtp-1"}}},
			{Namespace: "shop", Name: "mysql", Type: "ClusterIP", ClusterIP: ip("shop/mysql"), Selector: map[string]string{"app": "mysql"},
				Ports: []cluster.ServicePort{
					{Name: "db", Port: 3306, TargetPort: "mysql", Protocol: "TCP", Resolved: resolved(cluster.ProtocolTCP, cluster.SourceWellKnownPort, false)},
					{Name: "metrics", Port: 9104, TargetPort: "9104", Protocol: "TCP", Resolved: resolved(cluster.ProtocolAuto, cluster.SourceNone, false)},
				},
				Backends: []cluster.PodRef{{Namespace: "shop", Name: "mysql-0"}, {Namespace: "shop", Name: "mysql-1"}}},
			{Namespace: "shop", Name: "nats", Type: "ClusterIP", ClusterIP: ip("shop/nats"), Selector: map[string]string{"app": "nats"},
				Ports: []cluster.ServicePort{
					{Name: "tcp-client", Port: 4222, TargetPort: "4222", Protocol: "TCP", AppProtocol: "nats.io/client", Resolved: resolved(cluster.ProtocolAuto, cluster.SourceNone, true)},
				},
				Backends: []cluster.PodRef{{Namespace: "shop", Name: "nats-0"}}},
			{Namespace: "shop", Name: "web", Type: "ClusterIP", ClusterIP: ip("shop/web"), Selector: map[string]string{"app": "web"},
				Ports: []cluster.ServicePort{
					{Name: "http", Port: 80, TargetPort: "8080", Protocol: "TCP", Resolved: resolved(cluster.ProtocolHTTP, cluster.SourceName, false)},
					{Name: "h2", Port: 8081, TargetPort: "8081", Protocol: "TCP", AppProtocol: "kubernetes.io/h2c", Resolved: resolved(cluster.ProtocolHTTP2, cluster.SourceAppProtocol, false)},
				}},
		},
		ServiceEntries: []cluster.ServiceEntry{
			{Namespace: "legacy", Name: "smtp-relay", Hosts: []string{"relay.example.com"}, Addresses: []string{"203.0.113.5/32"},
				Location: "MESH_INTERNAL", Resolution: "STATIC", Endpoints: []string{"203.0.113.5"}, ExportTo: []string{"."},
				Ports: []cluster.ServiceEntryPort{{Number: 25, Name: "smtp", Protocol: "SMTP", TargetPort: 2525, Resolved: resolved(cluster.ProtocolAuto, cluster.SourceNone, false)}}},
			{Namespace: "shop", Name: "ext-mysql", Hosts: []string{"db.example.com"}, Location: "MESH_EXTERNAL", Resolution: "DNS",
				Ports: []cluster.ServiceEntryPort{
					{Number: 3306, Name: "mysql", Protocol: "TCP", Resolved: resolved(cluster.ProtocolTCP, cluster.SourceProtocol, false)},
					{Number: 10000, Name: "other", Resolved: resolved(cluster.ProtocolAuto, cluster.SourceNone, false)},
				}},
		},
		PeerAuthentications: []cluster.PeerAuthentication{
			{Namespace: "istio-system", Name: "default", Mode: cluster.MTLSStrict, CreatedAt: fx.peerAuth["istio-system/default"]},
			{Namespace: "legacy", Name: "empty-selector", Mode: cluster.MTLSUnset, CreatedAt: fx.peerAuth["legacy/empty-selector"]},
			{Namespace: "mesh-root", Name: "default", Mode: cluster.MTLSDisable, CreatedAt: fx.peerAuth["mesh-root/default"]},
			{Namespace: "shop", Name: "default", Mode: cluster.MTLSPermissive, CreatedAt: fx.peerAuth["shop/default"]},
			{Namespace: "shop", Name: "mysql", Selector: map[string]string{"app": "mysql"}, Mode: cluster.MTLSUnset,
				PortModes: map[uint32]cluster.MTLSMode{3306: cluster.MTLSDisable, 9104: cluster.MTLSUnset}, CreatedAt: fx.peerAuth["shop/mysql"]},
		},
		Pods: []cluster.Pod{
			{Namespace: "amb", Name: "app-0", Phase: "Pending", Images: []string{"busybox"}},
			{Namespace: "canary", Name: "app-0", Labels: map[string]string{"app": "x"}, Phase: "Succeeded", InjectionIntended: true, Images: []string{"busybox"}},
			{Namespace: "legacy", Name: "smtp-0", Labels: map[string]string{"app": "smtp", "sidecar.istio.io/inject": "true"}, IPs: []string{"127.0.0.20"}, Phase: "Running",
				HasSidecar: true, InjectionIntended: true, Images: []string{"postfix:3"}, ContainerPorts: map[string]int32{"smtp": 25}},
			{Namespace: "legacy", Name: "smtp-1", Labels: map[string]string{"app": "smtp"}, Phase: "Pending", Images: []string{"postfix:3"}},
			{Namespace: "mesh-off", Name: "app-0", Labels: map[string]string{"sidecar.istio.io/inject": "true"}, Phase: "Pending", Images: []string{"busybox"}},
			{Namespace: "shop", Name: "mysql-0", Labels: map[string]string{"app": "mysql"}, IPs: []string{"127.0.0.10"}, Phase: "Running",
				HasSidecar: true, InjectionIntended: true, Images: []string{"mariadb:11", "prom/mysqld-exporter:v0.15"},
				ContainerPorts: map[string]int32{"mysql": 3306, "metrics": 9104}, ServiceAccount: "mysql"},
			{Namespace: "shop", Name: "mysql-1", Labels: map[string]string{"app": "mysql"}, IPs: []string{"127.0.0.11"}, Phase: "Running",
				HasSidecar: true, InjectionIntended: true, Images: []string{"mariadb:11"}, ContainerPorts: map[string]int32{"mysql": 3307}},
			{Namespace: "shop", Name: "nats-0", Labels: map[string]string{"app": "nats"}, IPs: []string{"127.0.0.12"}, Phase: "Running",
				InjectionIntended: true, Images: []string{"nats:2.10"}, ContainerPorts: map[string]int32{}},
			{Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web", "sidecar.istio.io/inject": "false"}, Phase: "Pending", Images: []string{"nginx:1.27"}},
		},
		Mesh: cluster.MeshConfig{Found: true, Source: "istio-system/istio", RootNamespace: "istio-system",
			ProtocolDetectionTimeout: 250 * time.Millisecond, DNSCapture: true, OutboundTrafficPolicy: "ALLOW_ANY", EnableAutoMTLS: true},
		IstioInstalled: true,
	}
}

// ignoredPodFields are Pod fields this test does not pin (added by other
// work after it was written); compared as zero values.
var ignoredPodFields = []string{"PortImages", "Ports"}

// normalise makes an inventory comparable: API timestamps lose their
// monotonic clock reading and location, and ignored fields are zeroed.
func normalise(inv *cluster.Inventory) *cluster.Inventory {
	out := *inv
	out.PeerAuthentications = slices.Clone(inv.PeerAuthentications)
	for i := range out.PeerAuthentications {
		out.PeerAuthentications[i].CreatedAt = out.PeerAuthentications[i].CreatedAt.UTC().Round(0)
	}
	out.DestinationRules = slices.Clone(inv.DestinationRules)
	for i := range out.DestinationRules {
		out.DestinationRules[i].CreatedAt = out.DestinationRules[i].CreatedAt.UTC().Round(0)
	}
	out.Sidecars = slices.Clone(inv.Sidecars)
	for i := range out.Sidecars {
		out.Sidecars[i].CreatedAt = out.Sidecars[i].CreatedAt.UTC().Round(0)
	}
	// The count of pods outside a -n scan is pinned by
	// TestLoadUnmeshedElsewhere: it reads metadata, which this fixture's
	// hand-made istio-proxy containers (without the injector's
	// annotation) do not show.
	out.UnmeshedElsewhere, out.UnmeshedElsewhereUnknown = nil, false
	out.Pods = slices.Clone(inv.Pods)
	for i := range out.Pods {
		v := reflect.ValueOf(&out.Pods[i]).Elem()
		for _, name := range ignoredPodFields {
			if f := v.FieldByName(name); f.IsValid() {
				f.Set(reflect.Zero(f.Type()))
			}
		}
	}
	return &out
}

// assertInventory compares exactly and, on a difference, shows both as JSON
// with the differing lines marked.
func assertInventory(t *testing.T, got, want *cluster.Inventory) {
	t.Helper()
	g, w := normalise(got), normalise(want)
	if reflect.DeepEqual(g, w) {
		return
	}
	gj, _ := json.MarshalIndent(g, "", "  ")
	wj, _ := json.MarshalIndent(w, "", "  ")
	t.Errorf("inventory differs (- want, + got):\n%s", lineDiff(string(wj), string(gj)))
	if string(gj) == string(wj) {
		t.Errorf("the JSON is equal: the difference is nil against empty, got %#v\nwant %#v", g, w)
	}
}

// lineDiff is a small LCS diff, enough for test output.
func lineDiff(a, b string) string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	n, m := len(x), len(y)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && x[i] == y[j]:
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(&sb, "+ %s (line %d)\n", y[j], j+1)
			j++
		default:
			fmt.Fprintf(&sb, "- %s (line %d)\n", x[i], i+1)
			i++
		}
	}
	return sb.String()
}

// only keeps the parts of an inventory in the given namespaces (the
// PeerAuthentications also in the extra ones).
func only(inv *cluster.Inventory, namespaces []string, extraPA ...string) *cluster.Inventory {
	in := func(ns string) bool { return slices.Contains(namespaces, ns) }
	out := &cluster.Inventory{Mesh: inv.Mesh, IstioInstalled: inv.IstioInstalled}
	for _, x := range inv.Namespaces {
		if in(x.Name) {
			out.Namespaces = append(out.Namespaces, x)
		}
	}
	for _, x := range inv.Services {
		if in(x.Namespace) {
			out.Services = append(out.Services, x)
		}
	}
	for _, x := range inv.ServiceEntries {
		if in(x.Namespace) {
			out.ServiceEntries = append(out.ServiceEntries, x)
		}
	}
	for _, x := range inv.PeerAuthentications {
		if in(x.Namespace) || slices.Contains(extraPA, x.Namespace) {
			out.PeerAuthentications = append(out.PeerAuthentications, x)
		}
	}
	for _, x := range inv.Pods {
		if in(x.Namespace) {
			out.Pods = append(out.Pods, x)
		}
	}
	return out
}

// TestLoad runs Load against a real API server holding one of every case.
func TestLoad(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{})
	fx := seed(t, env)
	want := expected(fx)

	t.Run("all namespaces", func(t *testing.T) {
		var rc requestCounter
		inv, err := cluster.Load(testCtx(t), clientsFor(t, rc.wrap(env.Config)), cluster.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertInventory(t, inv, want)
		// One LIST per resource type, nothing else but the server's
		// version (whole lists or pages): no discovery, no CRD check.
		wantReqs := map[string]int{
			"GET /version":                                       1,
			"GET /api/v1/namespaces":                             1,
			"GET /api/v1/services":                               1,
			"GET /api/v1/pods":                                   1,
			"GET /apis/discovery.k8s.io/v1/endpointslices":       1,
			"GET /apis/networking.istio.io/v1/serviceentries":    1,
			"GET /apis/security.istio.io/v1/peerauthentications": 1,
			"GET /apis/networking.istio.io/v1/destinationrules":  1,
			"GET /apis/networking.istio.io/v1/sidecars":          1,
			"GET /api/v1/namespaces/istio-system/configmaps":     1,
		}
		if got := rc.snapshot(); !reflect.DeepEqual(got, wantReqs) {
			t.Errorf("requests = %v, want %v", got, wantReqs)
		}
		for _, u := range rc.urls {
			// Built-in resources are listed whole (this server serves
			// that from its watch cache, TestLoadPaging); Istio's in pages.
			istio := strings.Contains(u.Path, ".istio.io/")
			if got := u.Query().Get("limit"); istio && got != "500" || !istio && got != "" {
				t.Errorf("%s: limit %q: Istio resources are paged at 500, built-in ones listed whole", u, got)
			}
		}
		// Deterministic: a second Load is identical.
		again, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		assertInventory(t, again, inv)
	})

	t.Run("one namespace reads the mesh-wide policy too", func(t *testing.T) {
		var rc requestCounter
		inv, err := cluster.Load(testCtx(t), clientsFor(t, rc.wrap(env.Config)), cluster.LoadOptions{Namespaces: []string{"shop"}})
		if err != nil {
			t.Fatal(err)
		}
		assertInventory(t, inv, only(want, []string{"shop"}, "istio-system"))
		wantReqs := map[string]int{
			"GET /version":                                                               1,
			"GET /api/v1/namespaces/shop":                                                1,
			"GET /api/v1/namespaces/shop/services":                                       1,
			"GET /api/v1/namespaces/shop/pods":                                           1,
			"GET /api/v1/pods":                                                           1, // metadata of the others' pods
			"GET /apis/discovery.k8s.io/v1/namespaces/shop/endpointslices":               1,
			"GET /apis/networking.istio.io/v1/namespaces/shop/serviceentries":            1,
			"GET /apis/security.istio.io/v1/namespaces/shop/peerauthentications":         1,
			"GET /apis/security.istio.io/v1/namespaces/istio-system/peerauthentications": 1,
			"GET /apis/networking.istio.io/v1/namespaces/shop/destinationrules":          1,
			"GET /apis/networking.istio.io/v1/namespaces/istio-system/destinationrules":  1,
			"GET /apis/networking.istio.io/v1/namespaces/shop/sidecars":                  1,
			"GET /apis/networking.istio.io/v1/namespaces/istio-system/sidecars":          1,
			"GET /api/v1/namespaces/istio-system/configmaps":                             1,
		}
		if got := rc.snapshot(); !reflect.DeepEqual(got, wantReqs) {
			t.Errorf("requests = %v, want %v", got, wantReqs)
		}
	})

	t.Run("two namespaces", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{Namespaces: []string{"legacy", "shop"}})
		if err != nil {
			t.Fatal(err)
		}
		assertInventory(t, inv, only(want, []string{"legacy", "shop"}, "istio-system"))
	})

	t.Run("the Istio namespace itself", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{Namespaces: []string{"istio-system"}})
		if err != nil {
			t.Fatal(err)
		}
		assertInventory(t, inv, only(want, []string{"istio-system"}))
	})

	t.Run("root namespace from the mesh config", func(t *testing.T) {
		var rc requestCounter
		inv, err := cluster.Load(testCtx(t), clientsFor(t, rc.wrap(env.Config)), cluster.LoadOptions{Namespaces: []string{"shop"}, IstioNamespace: "istio-alt"})
		if err != nil {
			t.Fatal(err)
		}
		w := only(want, []string{"shop"}, "mesh-root")
		w.Mesh = cluster.MeshConfig{Found: true, Source: "istio-alt/istio", RootNamespace: "mesh-root", OutboundTrafficPolicy: "ALLOW_ANY", EnableAutoMTLS: true}
		assertInventory(t, inv, w)
		if n := rc.snapshot()["GET /apis/security.istio.io/v1/namespaces/mesh-root/peerauthentications"]; n != 1 {
			t.Errorf("PeerAuthentications in the mesh root read %d times, want 1", n)
		}
	})

	t.Run("a namespace that does not exist", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{Namespaces: []string{"nowhere"}})
		if err != nil {
			t.Fatal(err)
		}
		w := only(want, nil, "istio-system")
		w.Namespaces = []cluster.Namespace{{Name: "nowhere"}}
		w.Warnings = []string{"namespace nowhere not found"}
		assertInventory(t, inv, w)
	})

	t.Run("no mesh config", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{Namespaces: []string{"legacy"}, IstioNamespace: "mesh-root"})
		if err != nil {
			t.Fatal(err)
		}
		w := only(want, []string{"legacy"}, "mesh-root")
		w.Mesh = cluster.DefaultMeshConfig("mesh-root")
		w.Warnings = []string{"no mesh config (ConfigMap istio or istio-<rev> in mesh-root): assuming Istio's defaults, protocolDetectionTimeout 0s (wait forever) and mesh-wide PERMISSIVE mTLS; normal for a managed control plane such as Alibaba Cloud ASM"}
		assertInventory(t, inv, w)
	})

	t.Run("cancelled context", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		inv, err := cluster.Load(ctx, clientsFor(t, env.Config), cluster.LoadOptions{})
		if err == nil || inv != nil {
			t.Fatalf("Load with a cancelled context = %v, %v; want an error", inv, err)
		}
	})

	t.Run("bad credentials", func(t *testing.T) {
		cfg := rest.AnonymousClientConfig(env.Config)
		cfg.BearerToken = "not-a-token"
		inv, err := cluster.Load(testCtx(t), clientsFor(t, cfg), cluster.LoadOptions{})
		if err == nil || inv != nil {
			t.Fatalf("Load with a bad token = %v, %v; want an error", inv, err)
		}
		if !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "credentials") {
			t.Errorf("error %q does not say the credentials were rejected", err)
		}
	})
}

// TestLoadPaging checks that big lists are paged at 500 and that Load costs
// exactly one request per page.
func TestLoadPaging(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{})
	ctx := testCtx(t)
	_, err := env.CreateNamespace(ctx, "bulk", map[string]string{"istio-injection": "enabled"})
	must(t, err)
	_, err = env.CreateNamespace(ctx, "istio-system", nil)
	must(t, err)
	const pods, configMaps = 1001, 500
	err = parallel(32, pods+configMaps, func(i int) error {
		if i < pods {
			_, err := env.Client.CoreV1().Pods("bulk").Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%04d", i), Labels: map[string]string{"app": "bulk"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
			}, metav1.CreateOptions{})
			return err
		}
		_, err := env.Client.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%04d", i)},
			Data:       map[string]string{"k": "v"},
		}, metav1.CreateOptions{})
		return err
	})
	must(t, err)

	// The server is Kubernetes 1.37, which serves a LIST without a limit
	// from its watch cache: the built-in resources are listed whole. The
	// same server reporting 1.30 gets pages of 500, as older servers do.
	for _, c := range []struct {
		name, reportVersion string
		paged               bool
	}{
		{"whole lists", "", false},
		{"pages on an older server", "v1.30.14", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			var rc requestCounter
			cfg := rc.wrap(env.Config)
			if c.reportVersion != "" {
				cfg = reportingVersion(cfg, c.reportVersion)
			}
			inv, err := cluster.Load(ctx, clientsFor(t, cfg), cluster.LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Pods) != pods {
				t.Fatalf("%d pods, want %d", len(inv.Pods), pods)
			}
			names := make([]string, len(inv.Pods))
			for i, p := range inv.Pods {
				names[i] = p.Name
				if !p.InjectionIntended || p.HasSidecar || p.Namespace != "bulk" {
					t.Fatalf("pod %+v", p)
				}
			}
			if !sort.StringsAreSorted(names) || len(slices.Compact(slices.Clone(names))) != pods {
				t.Errorf("pods are not sorted and unique")
			}
			podRequests := 1
			if c.paged {
				podRequests = 3 // 500 + 500 + 1
			}
			wantReqs := map[string]int{
				"GET /version":                                       1,
				"GET /api/v1/namespaces":                             1,
				"GET /api/v1/services":                               1,
				"GET /api/v1/pods":                                   podRequests,
				"GET /apis/discovery.k8s.io/v1/endpointslices":       1,
				"GET /apis/networking.istio.io/v1/serviceentries":    1,
				"GET /apis/security.istio.io/v1/peerauthentications": 1,
				"GET /apis/networking.istio.io/v1/destinationrules":  1,
				"GET /apis/networking.istio.io/v1/sidecars":          1,
				"GET /api/v1/namespaces/istio-system/configmaps":     1, // exactly 500: one page
			}
			if got := rc.snapshot(); !reflect.DeepEqual(got, wantReqs) {
				t.Errorf("requests = %v, want %v", got, wantReqs)
			}
			continues := 0
			for _, u := range rc.urls {
				// The Istio CRDs are always paged.
				wantLimit := "500"
				if u.Path == "/version" || !c.paged && !strings.HasPrefix(u.Path, "/apis/networking.istio.io/") && !strings.HasPrefix(u.Path, "/apis/security.istio.io/") {
					wantLimit = ""
				}
				if got := u.Query().Get("limit"); got != wantLimit {
					t.Errorf("%s: limit %q, want %q", u, got, wantLimit)
				}
				if u.Query().Get("continue") != "" {
					continues++
				}
			}
			if want := map[bool]int{true: 2, false: 0}[c.paged]; continues != want {
				t.Errorf("%d requests carried a continue token, want %d", continues, want)
			}
			total := 0
			for _, n := range wantReqs {
				total += n
			}
			if goal := (pods+configMaps+2+4)/500 + len(wantReqs); total > goal {
				t.Errorf("%d requests, over the goal of %d", total, goal)
			}
		})
	}
}

// reportingVersion is cfg with the API server's GET /version answer
// rewritten to say version: the server as an older release would
// present itself, the rest of its answers as they are.
func reportingVersion(cfg *rest.Config, version string) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	inner := cfg.WrapTransport
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		if inner != nil {
			rt = inner(rt)
		}
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if err != nil || r.URL.Path != "/version" {
				return resp, err
			}
			var info map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
				return nil, err
			}
			resp.Body.Close()
			info["gitVersion"] = version
			b, _ := json.Marshal(info)
			resp.Body = io.NopCloser(bytes.NewReader(b))
			resp.ContentLength = int64(len(b))
			resp.Header.Del("Content-Length")
			return resp, nil
		})
	}
	return cfg
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, f func(i int) error) error {
	var (
		next     atomic.Int64
		firstErr error
		once     sync.Once
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// TestLoadWithoutIstio: no Istio CRDs is a warning, not an error.
func TestLoadWithoutIstio(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx := testCtx(t)
	_, err := env.CreateNamespace(ctx, "app", map[string]string{"istio-injection": "enabled"})
	must(t, err)
	for _, opts := range []cluster.LoadOptions{{}, {Namespaces: []string{"app"}}} {
		var rc requestCounter
		inv, err := cluster.Load(ctx, clientsFor(t, rc.wrap(env.Config)), opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		if inv.IstioInstalled {
			t.Errorf("%+v: IstioInstalled = true", opts)
		}
		var istioWarnings []string
		for _, w := range inv.Warnings {
			if strings.Contains(w, "Istio is not installed") {
				istioWarnings = append(istioWarnings, w)
			}
		}
		if len(istioWarnings) != 1 {
			t.Errorf("%+v: warnings %q, want exactly one about Istio", opts, inv.Warnings)
		}
		if len(inv.ServiceEntries) != 0 || len(inv.PeerAuthentications) != 0 || inv.Mesh.Found {
			t.Errorf("%+v: Istio objects in %+v", opts, inv)
		}
		if len(opts.Namespaces) == 0 && len(inv.Namespaces) < 5 {
			t.Errorf("namespaces = %+v", inv.Namespaces)
		}
		// Learning that the CRDs are missing costs no extra request.
		for path, n := range rc.snapshot() {
			if n != 1 || strings.Contains(path, "/apis/apiextensions") || path == "GET /apis" || path == "GET /api" {
				t.Errorf("%+v: %d× %s", opts, n, path)
			}
		}
	}
}

// TestLoadUnreachable: no API server is an error, quickly, not a panic.
func TestLoadUnreachable(t *testing.T) {
	t.Parallel()
	cfg := &rest.Config{Host: "https://127.0.0.1:1", Timeout: 5 * time.Second, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	start := time.Now()
	inv, err := cluster.Load(testCtx(t), clientsFor(t, cfg), cluster.LoadOptions{})
	if err == nil || inv != nil {
		t.Fatalf("Load = %v, %v; want an error", inv, err)
	}
	if !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("error %q does not say why", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v", d)
	}
	inv, err = cluster.Load(testCtx(t), clientsFor(t, cfg), cluster.LoadOptions{Namespaces: []string{"a", "b"}})
	if err == nil || inv != nil {
		t.Fatalf("Load -n = %v, %v; want an error", inv, err)
	}
}
