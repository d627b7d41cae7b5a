package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/pager"
)

// PageSize is the LIST page size. 500 is what kubectl uses: big enough that
// a 20,000-pod cluster costs 40 requests, small enough that no single
// response strains the API server.
const PageSize = 500

// DefaultIstioNamespace is where istiod and its mesh ConfigMap live unless
// told otherwise.
const DefaultIstioNamespace = "istio-system"

// LoadOptions says what to read.
type LoadOptions struct {
	// Namespaces to scan; empty means all namespaces.
	Namespaces []string
	// IstioNamespace holds the mesh config ConfigMaps ("istio",
	// "istio-<rev>"); DefaultIstioNamespace when empty.
	IstioNamespace string
}

// Clients are the two API clients Load needs.
type Clients struct {
	Kube  kubernetes.Interface
	Istio istioclient.Interface
}

// Load reads the inventory with one paginated LIST per resource type and
// scope, all in parallel. Anything the caller may not read, or Istio not
// being installed, becomes a warning; only a failure to reach the API
// server at all is an error.
func Load(ctx context.Context, c Clients, opts LoadOptions) (*Inventory, error) {
	istioNS := opts.IstioNamespace
	if istioNS == "" {
		istioNS = DefaultIstioNamespace
	}
	scopes := opts.Namespaces
	if len(scopes) == 0 {
		scopes = []string{metav1.NamespaceAll}
	}
	l := &loader{ctx: ctx, c: c, wholeLists: servesWholeListsFromCache(ctx, c.Kube)}
	var (
		wg                 sync.WaitGroup
		namespaces         []corev1.Namespace
		services           []Service
		endpointSlices     []sliceBackends
		pods               []loadedPod
		entries            []ServiceEntry
		peerAuths          []PeerAuthentication
		scoped             scopedConfig
		meshMaps           []corev1.ConfigMap
		istioMissing       bool
		mu                 sync.Mutex
		peerAuthNamespaces = scopes
	)
	if len(opts.Namespaces) > 0 && !slices.Contains(opts.Namespaces, istioNS) {
		// The mesh-wide policy lives in the root namespace, which is
		// istio-system unless the mesh config says otherwise (checked below).
		peerAuthNamespaces = append(append([]string{}, scopes...), istioNS)
	}

	if len(opts.Namespaces) == 0 {
		wg.Go(func() {
			l.listKube("namespaces", "", c.Kube.CoreV1().RESTClient(), func() runtime.Object { return &corev1.NamespaceList{} }, func() protoItem { return &corev1.Namespace{} },
				func(obj runtime.Object) { namespaces = append(namespaces, *obj.(*corev1.Namespace)) })
		})
	} else {
		// A namespaced user may not list namespaces cluster-wide: read
		// just the ones asked for (a handful of GETs, not one per object).
		for _, ns := range opts.Namespaces {
			wg.Go(func() {
				got, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					l.fail("namespaces", ns, err)
					namespaces = append(namespaces, corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
					return
				}
				namespaces = append(namespaces, *got)
			})
		}
	}
	for _, ns := range scopes {
		wg.Go(func() {
			l.listKube("services", ns, c.Kube.CoreV1().RESTClient(), func() runtime.Object { return &corev1.ServiceList{} }, func() protoItem { return &corev1.Service{} }, func(obj runtime.Object) {
				svc := ConvertService(obj.(*corev1.Service))
				mu.Lock()
				services = append(services, svc)
				mu.Unlock()
			})
		})
		wg.Go(func() {
			l.listKube("endpointslices", ns, c.Kube.DiscoveryV1().RESTClient(), func() runtime.Object { return &discoveryv1.EndpointSliceList{} }, func() protoItem { return &discoveryv1.EndpointSlice{} }, func(obj runtime.Object) {
				if b, ok := newSliceBackends(obj.(*discoveryv1.EndpointSlice)); ok {
					mu.Lock()
					endpointSlices = append(endpointSlices, b)
					mu.Unlock()
				}
			})
		})
		wg.Go(func() {
			l.listKube("pods", ns, c.Kube.CoreV1().RESTClient(), func() runtime.Object { return &corev1.PodList{} }, func() protoItem { return &corev1.Pod{} }, func(obj runtime.Object) {
				p := newLoadedPod(obj.(*corev1.Pod))
				mu.Lock()
				pods = append(pods, p)
				mu.Unlock()
			})
		})
		wg.Go(func() {
			missing := l.listIstio("serviceentries.networking.istio.io", ns, func(o metav1.ListOptions) (runtime.Object, error) {
				return c.Istio.NetworkingV1().ServiceEntries(ns).List(ctx, o)
			}, func(obj runtime.Object) {
				se := ConvertServiceEntry(obj.(*networkingv1.ServiceEntry))
				mu.Lock()
				entries = append(entries, se)
				mu.Unlock()
			})
			if missing {
				mu.Lock()
				istioMissing = true
				mu.Unlock()
			}
		})
	}
	for _, ns := range peerAuthNamespaces {
		wg.Go(func() {
			got := l.peerAuthentications(ns, &mu, &istioMissing)
			mu.Lock()
			peerAuths = append(peerAuths, got...)
			mu.Unlock()
		})
		wg.Go(func() {
			got := l.scopedConfig(ns)
			mu.Lock()
			scoped.add(got)
			mu.Unlock()
		})
	}
	var elsewhere Inventory
	if len(opts.Namespaces) > 0 {
		// Clients without a sidecar anywhere can reach a PERMISSIVE port:
		// count those outside the scan too, from pod metadata.
		wg.Go(func() { l.unmeshedElsewhere(&elsewhere, opts.Namespaces) })
	}
	wg.Go(func() {
		l.listKube("configmaps", istioNS, c.Kube.CoreV1().RESTClient(), func() runtime.Object { return &corev1.ConfigMapList{} }, func() protoItem { return &corev1.ConfigMap{} }, func(obj runtime.Object) {
			cm := obj.(*corev1.ConfigMap)
			if mesh, ok := cm.Data["mesh"]; ok && (cm.Name == "istio" || strings.HasPrefix(cm.Name, "istio-")) {
				// Keep only what we read: the other ConfigMaps there (the
				// injector template) are large and none of our business.
				meshMaps = append(meshMaps, corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: cm.Name, Namespace: cm.Namespace}, Data: map[string]string{"mesh": mesh}})
			}
		})
	})
	wg.Wait()
	if l.fatal != nil {
		return nil, l.fatal
	}

	inv := &Inventory{IstioInstalled: !istioMissing, UnmeshedElsewhere: elsewhere.UnmeshedElsewhere, UnmeshedElsewhereUnknown: elsewhere.UnmeshedElsewhereUnknown}
	if len(l.forbidden["configmaps"]) > 0 {
		// The forbidden warning already says the defaults are assumed; "no
		// mesh config ... normal for a managed control plane" would mislead.
		inv.Mesh = DefaultMeshConfig(istioNS)
		inv.Mesh.Source = "Istio defaults (not allowed to read ConfigMaps in " + istioNS + ")"
	} else {
		inv.Mesh, l.warnings = meshConfigFrom(meshMaps, istioNS, l.warnings)
	}
	if len(opts.Namespaces) > 0 && inv.Mesh.RootNamespace != istioNS && !slices.Contains(peerAuthNamespaces, inv.Mesh.RootNamespace) && inv.IstioInstalled {
		peerAuths = append(peerAuths, l.peerAuthentications(inv.Mesh.RootNamespace, &mu, &istioMissing)...)
		scoped.add(l.scopedConfig(inv.Mesh.RootNamespace))
		if l.fatal != nil {
			return nil, l.fatal
		}
	}
	if istioMissing {
		inv.IstioInstalled = false
		l.warnings = append(l.warnings, "Istio is not installed (no ServiceEntry/PeerAuthentication CRDs): ports are judged as if the mesh only sniffs what pods with sidecars receive")
	}
	build(inv, namespaces, services, endpointSlices, pods, entries, peerAuths)
	inv.DestinationRules, inv.Sidecars = scoped.finish()
	if inv.IstioInstalled {
		for _, crd := range scoped.missing() {
			l.warnings = append(l.warnings, fmt.Sprintf("the %s CRD is not installed: %s", crd, consequence(crd)))
		}
	}
	for i := range inv.Pods {
		if p := &inv.Pods[i]; p.HasSidecar && len(p.Interception.Invalid) > 0 {
			l.warnings = append(l.warnings, fmt.Sprintf("pod %s/%s: the injector would refuse %s; judged as if the annotation were absent", p.Namespace, p.Name, strings.Join(p.Interception.Invalid, "; ")))
		}
	}
	inv.Warnings = dedupe(append(l.warnings, l.forbiddenWarnings()...))
	return inv, nil
}

func (l *loader) peerAuthentications(ns string, mu *sync.Mutex, istioMissing *bool) []PeerAuthentication {
	var out []PeerAuthentication
	missing := l.listIstio("peerauthentications.security.istio.io", ns, func(o metav1.ListOptions) (runtime.Object, error) {
		return l.c.Istio.SecurityV1().PeerAuthentications(ns).List(l.ctx, o)
	}, func(obj runtime.Object) {
		out = append(out, convertPeerAuthentication(obj.(*securityv1.PeerAuthentication)))
	})
	if missing {
		mu.Lock()
		*istioMissing = true
		mu.Unlock()
	}
	return out
}

// loader collects warnings and the first fatal error from parallel LISTs.
type loader struct {
	ctx      context.Context
	c        Clients
	mu       sync.Mutex
	warnings []string
	fatal    error
	// forbidden records, per resource, the scopes ("" = all namespaces)
	// where a LIST was refused: one warning per resource, not per scope.
	forbidden map[string][]string
	// wholeLists: built-in resources are listed with one request each
	// (load_stream.go), not in pages.
	wholeLists bool
}

func (l *loader) page(fn func(metav1.ListOptions) (runtime.Object, error), each func(runtime.Object)) error {
	p := pager.New(pager.SimplePageFunc(fn))
	p.PageSize = PageSize
	return p.EachListItem(l.ctx, metav1.ListOptions{}, func(obj runtime.Object) error { each(obj); return nil })
}

// listKube lists one built-in resource in one scope ("" = all
// namespaces): with one request decoded as it arrives where the server
// serves that from its watch cache (l.wholeLists, load_stream.go), else
// in pages, decoding each page while the next is on its way. A big
// LIST is a chain of requests, each waiting for the previous page's
// continue token: read from the front of the protobuf body, it lets the
// next request go out before the page is decoded (a few ms per 500 Pods,
// 40 times over at 20,000). The requests are the typed client's: same
// path, query and Accept header (protobuf, then JSON).
func (l *loader) listKube(resource, ns string, rc rest.Interface, newList func() runtime.Object, newItem func() protoItem, each func(runtime.Object)) {
	if l.wholeLists {
		if err := l.streamList(resource, ns, rc, newList, newItem, each); err != nil {
			l.fail(resource, ns, err)
		}
		return
	}
	fetch := func(ctx context.Context, o metav1.ListOptions) (listPage, string, error) {
		res := rc.Get().NamespaceIfScoped(ns, ns != "").Resource(resource).
			VersionedParams(&o, scheme.ParameterCodec).UseProtobufAsDefault().Do(ctx)
		if err := res.Error(); err != nil {
			return listPage{}, "", err
		}
		raw, _ := res.Raw()
		if cont, ok := protobufListContinue(raw); ok {
			return listPage{raw: raw}, cont, nil
		}
		// Not protobuf (a server or proxy that answers JSON): decode now.
		list := newList()
		if err := res.Into(list); err != nil {
			return listPage{}, "", err
		}
		m, err := meta.ListAccessor(list)
		if err != nil {
			return listPage{}, "", err
		}
		return listPage{list: list}, m.GetContinue(), nil
	}
	decode := func(p listPage) (runtime.Object, error) {
		if p.list != nil {
			return p.list, nil
		}
		list := newList()
		out, _, err := kubeDecoder.Decode(p.raw, nil, list)
		if err != nil {
			return nil, err
		}
		if st, ok := out.(*metav1.Status); ok && out != list && st.Status != metav1.StatusSuccess {
			return nil, apierrors.FromObject(st)
		}
		return list, nil
	}
	if err := l.pipelined(fetch, decode, each); err != nil {
		l.fail(resource, ns, err)
	}
}

// kubeDecoder decodes what the typed clients decode (protobuf or JSON,
// no conversion).
var kubeDecoder = runtime.WithoutVersionDecoder{Decoder: scheme.Codecs.UniversalDeserializer()}

// listPage is one LIST response: the protobuf body, not yet decoded, or the
// decoded list.
type listPage struct {
	raw  []byte
	list runtime.Object
}

// pipelined fetches pages one after the other on a goroutine and decodes
// each, calling each on its items in order, on this one; the first error
// stops both.
func (l *loader) pipelined(fetch func(context.Context, metav1.ListOptions) (listPage, string, error), decode func(listPage) (runtime.Object, error), each func(runtime.Object)) error {
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	pages := make(chan listPage, 4)
	fetched := make(chan error, 1)
	go func() {
		defer close(pages)
		o := metav1.ListOptions{Limit: PageSize}
		for {
			if err := ctx.Err(); err != nil {
				fetched <- err
				return
			}
			page, cont, err := fetch(ctx, o)
			if err != nil {
				fetched <- err
				return
			}
			select {
			case pages <- page:
			case <-ctx.Done():
				fetched <- ctx.Err()
				return
			}
			if cont == "" {
				fetched <- nil
				return
			}
			o.Continue = cont
		}
	}()
	for page := range pages {
		list, err := decode(page)
		if err != nil {
			return err
		}
		if err := meta.EachListItem(list, func(obj runtime.Object) error { each(obj); return nil }); err != nil {
			return err
		}
	}
	return <-fetched
}

// protobufListContinue reads the continue token of a LIST response in the
// Kubernetes protobuf envelope ("k8s\x00", then a runtime.Unknown whose
// field 2 holds the list, whose field 1 is its ListMeta) without decoding
// the items; ok is false when the body is not such a response.
func protobufListContinue(body []byte) (cont string, ok bool) {
	envelope, found := bytes.CutPrefix(body, []byte("k8s\x00"))
	if !found {
		return "", false
	}
	list, found, ok := protobufField(envelope, 2)
	if !ok || !found {
		return "", false
	}
	metadata, found, ok := protobufField(list, 1)
	if !ok {
		return "", false
	}
	if !found {
		return "", true // an empty ListMeta
	}
	var m metav1.ListMeta
	if err := m.Unmarshal(metadata); err != nil {
		return "", false
	}
	return m.Continue, true
}

// protobufField returns the first length-delimited field number n of a
// protobuf message; ok is false when the message does not parse.
func protobufField(msg []byte, n protowire.Number) (field []byte, found, ok bool) {
	for len(msg) > 0 {
		num, typ, k := protowire.ConsumeTag(msg)
		if k < 0 {
			return nil, false, false
		}
		msg = msg[k:]
		if num == n && typ == protowire.BytesType {
			value, k := protowire.ConsumeBytes(msg)
			return value, k >= 0, k >= 0
		}
		k = protowire.ConsumeFieldValue(num, typ, msg)
		if k < 0 {
			return nil, false, false
		}
		msg = msg[k:]
	}
	return nil, false, true
}

// listIstio pages through an Istio CRD (JSON, decoded by the typed client
// as it arrives) in one scope: a 404 means the CRD is not
// installed, which is one warning for the whole scan, not one per LIST.
func (l *loader) listIstio(resource, ns string, fn func(metav1.ListOptions) (runtime.Object, error), each func(runtime.Object)) (missing bool) {
	err := l.page(fn, each)
	if apierrors.IsNotFound(err) {
		return true
	}
	if err != nil {
		l.fail(resource, ns, err)
	}
	return false
}

// fail turns a LIST error into a warning, or into the fatal error when the
// API server itself is the problem.
func (l *loader) fail(resource, ns string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	where := "in all namespaces"
	if ns != "" {
		where = "in namespace " + ns
	}
	switch {
	case apierrors.IsForbidden(err):
		if l.forbidden == nil {
			l.forbidden = map[string][]string{}
		}
		l.forbidden[resource] = append(l.forbidden[resource], ns)
	case apierrors.IsNotFound(err) && resource == "namespaces":
		l.warnings = append(l.warnings, fmt.Sprintf("namespace %s not found", ns))
	case apierrors.IsUnauthorized(err):
		if l.fatal == nil {
			l.fatal = fmt.Errorf("the API server rejected our credentials (401 Unauthorized): check the kubeconfig user or token")
		}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		if l.fatal == nil {
			l.fatal = err
		}
	default:
		if l.fatal == nil {
			l.fatal = fmt.Errorf("listing %s %s: %w", resource, where, err)
		}
	}
}

// forbiddenWarnings says, once per resource, where it could not be listed
// and what that costs the scan.
func (l *loader) forbiddenWarnings() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for resource, scopes := range l.forbidden {
		scopes = slices.Compact(slices.Sorted(slices.Values(scopes)))
		where := "in namespace " + scopes[0]
		switch {
		case scopes[0] == "":
			where = "in all namespaces"
		case len(scopes) > 1:
			where = "in namespaces " + strings.Join(scopes, ", ")
		}
		out = append(out, fmt.Sprintf("cannot list %s %s (forbidden): %s", resource, where, consequence(resource)))
	}
	return out
}

// consequence says what a missing permission costs the scan.
func consequence(resource string) string {
	switch resource {
	case "peerauthentications.security.istio.io":
		return "mTLS modes are assumed PERMISSIVE, which may be wrong"
	case "serviceentries.networking.istio.io":
		return "external services declared to the mesh are not checked"
	case "destinationrules.networking.istio.io":
		return "client TLS is judged from auto mTLS alone, as if no DestinationRule set tls"
	case "sidecars.networking.istio.io":
		return "every client is judged with Istio's default scope (a listener for every visible service) and the Services' inbound protocols"
	case "pods":
		return "sidecars and images are unknown"
	case "endpointslices":
		return "backends are found from Service selectors instead"
	case "configmaps":
		return "the mesh config is unknown, Istio defaults are assumed"
	case "services":
		return "no Service port can be checked"
	case "namespaces":
		return "namespace injection labels are unknown"
	}
	return "the scan is incomplete"
}

// dedupe sorts the warnings and drops repeats.
func dedupe(in []string) []string {
	out := uniqueBy(in, func(s string) string { return s })
	sort.Strings(out)
	return out
}

// scopedConfig collects the namespaced networking config a client's and a
// server's proxy are built from, beyond ServiceEntries.
type scopedConfig struct {
	destinationRules []DestinationRule
	sidecars         []SidecarResource
	drMissing        bool
	sidecarMissing   bool
}

func (s *scopedConfig) add(o scopedConfig) {
	s.destinationRules = append(s.destinationRules, o.destinationRules...)
	s.sidecars = append(s.sidecars, o.sidecars...)
	s.drMissing = s.drMissing || o.drMissing
	s.sidecarMissing = s.sidecarMissing || o.sidecarMissing
}

// finish drops the duplicates of a namespace listed twice (the root
// namespace) and sorts.
func (s *scopedConfig) finish() ([]DestinationRule, []SidecarResource) {
	drs := uniqueBy(s.destinationRules, func(d DestinationRule) string { return d.Namespace + "/" + d.Name })
	sortByName(drs, func(d *DestinationRule) (string, string) { return d.Namespace, d.Name })
	scs := uniqueBy(s.sidecars, func(sc SidecarResource) string { return sc.Namespace + "/" + sc.Name })
	sortSidecars(scs)
	return drs, scs
}

func (s *scopedConfig) missing() []string {
	var out []string
	if s.drMissing {
		out = append(out, "destinationrules.networking.istio.io")
	}
	if s.sidecarMissing {
		out = append(out, "sidecars.networking.istio.io")
	}
	return out
}

// scopedConfig lists DestinationRules and Sidecars in one scope. A missing
// CRD of either is tolerated (older or trimmed installs); a refused LIST
// is a warning like any other.
func (l *loader) scopedConfig(ns string) scopedConfig {
	var out scopedConfig
	out.drMissing = l.listIstio("destinationrules.networking.istio.io", ns, func(o metav1.ListOptions) (runtime.Object, error) {
		return l.c.Istio.NetworkingV1().DestinationRules(ns).List(l.ctx, o)
	}, func(obj runtime.Object) {
		out.destinationRules = append(out.destinationRules, ConvertDestinationRule(obj.(*networkingv1.DestinationRule)))
	})
	out.sidecarMissing = l.listIstio("sidecars.networking.istio.io", ns, func(o metav1.ListOptions) (runtime.Object, error) {
		return l.c.Istio.NetworkingV1().Sidecars(ns).List(l.ctx, o)
	}, func(obj runtime.Object) {
		out.sidecars = append(out.sidecars, ConvertSidecar(obj.(*networkingv1.Sidecar)))
	})
	return out
}

func convertPeerAuthentication(pa *securityv1.PeerAuthentication) PeerAuthentication {
	out := PeerAuthentication{
		Namespace: pa.Namespace,
		Name:      pa.Name,
		Mode:      MTLSUnset,
		CreatedAt: pa.CreationTimestamp.Time,
	}
	if sel := pa.Spec.GetSelector(); sel != nil && len(sel.MatchLabels) > 0 {
		out.Selector = sel.MatchLabels
	}
	if m := pa.Spec.GetMtls(); m != nil {
		out.Mode = MTLSMode(m.Mode.String())
	}
	for port, m := range pa.Spec.GetPortLevelMtls() {
		if out.PortModes == nil {
			out.PortModes = map[uint32]MTLSMode{}
		}
		mode := MTLSUnset
		if m != nil {
			mode = MTLSMode(m.Mode.String())
		}
		out.PortModes[port] = mode
	}
	return out
}
