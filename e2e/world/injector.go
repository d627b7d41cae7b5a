package world

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// Names and values the injector uses, as Istio's injection template and
// webhook chart spell them.
const (
	// DefaultProxyImage is what Istio 1.28's injector puts in istio-proxy
	// (hub docker.io/istio, image proxyv2, tag 1.28.0).
	DefaultProxyImage = "docker.io/istio/proxyv2:1.28.0"

	annotationSidecarStatus = "sidecar.istio.io/status"
	annotationSidecarInject = "sidecar.istio.io/inject"
	annotationProxyConfig   = "proxy.istio.io/config"
	annotationProxyImage    = "sidecar.istio.io/proxyImage"
	// annotationNativeSidecar "true" makes istio-proxy a native sidecar
	// (an init container with restartPolicy Always), whatever
	// ENABLE_NATIVE_SIDECARS says; "false" forces a classic one.
	annotationNativeSidecar   = "sidecar.istio.io/nativeSidecar"
	annotationRev             = "istio.io/rev"
	annotationDefaultCont     = "kubectl.kubernetes.io/default-container"
	annotationDefaultLogsCont = "kubectl.kubernetes.io/default-logs-container"
	labelTLSMode              = "security.istio.io/tlsMode"
	labelCanonicalName        = "service.istio.io/canonical-name"
	labelCanonicalRevision    = "service.istio.io/canonical-revision"

	// webhookConfigName is the default revision's MutatingWebhookConfiguration
	// name when istiod is installed in istio-system.
	webhookConfigName = "istio-sidecar-injector"
	// worldLabel marks the objects the world creates.
	worldLabel = "e2e.serverfirst.dev/world"
)

// InjectorOptions tunes StartInjector.
type InjectorOptions struct {
	// Revisions are control-plane revisions installed besides the default
	// one. Each gets its own MutatingWebhookConfiguration
	// (istio-sidecar-injector-REV) with the chart's two revision webhooks,
	// exactly as `istioctl install --revision REV` would. The default
	// revision's configuration is always installed.
	Revisions []string
	// ProxyImage is the istio-proxy image; DefaultProxyImage when empty.
	ProxyImage string
	// Log receives one line per admission decision; nil discards them.
	Log *log.Logger
}

// Injector is Istio's sidecar injector as far as pods are concerned: an
// admission.k8s.io/v1 mutating webhook on 127.0.0.1 that the API server
// calls for every pod CREATE its selectors match.
type Injector struct {
	// URL is the webhook server's base address, https://127.0.0.1:PORT.
	URL string
	// CABundle is the PEM CA the API server verifies the server with.
	CABundle []byte
	// ConfigNames are the MutatingWebhookConfigurations registered.
	ConfigNames []string

	kube       kubernetes.Interface
	opts       InjectorOptions
	srv        *http.Server
	ln         net.Listener
	reviews    atomic.Int64 // AdmissionReviews answered
	injections atomic.Int64 // pods mutated
	stopOnce   sync.Once
	serveErr   chan error
}

// StartInjector starts the webhook server, registers its
// MutatingWebhookConfigurations with the API server and returns once the
// API server is calling it (a dry-run pod create reaches the handler).
// Stop unregisters and shuts it down.
func StartInjector(ctx context.Context, kube kubernetes.Interface, opts InjectorOptions) (*Injector, error) {
	if opts.ProxyImage == "" {
		opts.ProxyImage = DefaultProxyImage
	}
	if opts.Log == nil {
		opts.Log = log.New(io.Discard, "", 0)
	}
	for _, r := range opts.Revisions {
		if r == "" || r == "default" {
			return nil, fmt.Errorf("injector: revision %q is the default revision, which is always installed", r)
		}
	}
	caPEM, cert, err := webhookCertificates()
	if err != nil {
		return nil, fmt.Errorf("injector: certificates: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("injector: listen: %w", err)
	}
	inj := &Injector{
		URL:      "https://" + ln.Addr().String(),
		CABundle: caPEM,
		kube:     kube,
		opts:     opts,
		ln:       ln,
		serveErr: make(chan error, 1),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/inject", inj.serveInject)
	mux.HandleFunc("/inject/rev/{rev}", inj.serveInject)
	inj.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          opts.Log,
	}
	go func() { inj.serveErr <- inj.srv.ServeTLS(ln, "", "") }()

	ok := false
	defer func() {
		if !ok {
			inj.Stop()
		}
	}()
	for _, cfg := range inj.webhookConfigurations() {
		if err := applyWebhookConfiguration(ctx, kube, cfg); err != nil {
			return nil, err
		}
		inj.ConfigNames = append(inj.ConfigNames, cfg.Name)
	}
	if err := inj.waitCalled(ctx); err != nil {
		return nil, err
	}
	ok = true
	return inj, nil
}

// Reviews is how many AdmissionReviews the injector has answered, and
// Injections how many of them added a sidecar.
func (i *Injector) Reviews() int64    { return i.reviews.Load() }
func (i *Injector) Injections() int64 { return i.injections.Load() }

// Stop deletes the webhook configurations (so pod creation does not fail
// closed once the server is gone) and shuts the server down.
func (i *Injector) Stop() error {
	var errs []error
	i.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range i.ConfigNames {
			err := i.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("injector: delete %s: %w", name, err))
			}
		}
		if err := i.srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	})
	return errors.Join(errs...)
}

// webhookConfigurations reproduces Istio's chart
// (manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml)
// for the default revision and each extra revision, with a url clientConfig
// pointing here instead of the istiod Service.
func (i *Injector) webhookConfigurations() []*admissionregistrationv1.MutatingWebhookConfiguration {
	out := []*admissionregistrationv1.MutatingWebhookConfiguration{
		i.webhookConfiguration("", webhookConfigName, i.URL+"/inject"),
	}
	for _, rev := range i.opts.Revisions {
		out = append(out, i.webhookConfiguration(rev, webhookConfigName+"-"+rev, i.URL+"/inject/rev/"+rev))
	}
	return out
}

func (i *Injector) webhookConfiguration(revision, name, url string) *admissionregistrationv1.MutatingWebhookConfiguration {
	revValue := revision
	if revValue == "" {
		revValue = "default"
	}
	core := func(prefix string, ns, obj []metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		sideEffects := admissionregistrationv1.SideEffectClassNone
		failure := admissionregistrationv1.Fail
		reinvocation := admissionregistrationv1.NeverReinvocationPolicy
		u := url
		return admissionregistrationv1.MutatingWebhook{
			Name:         prefix + "sidecar-injector.istio.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: i.CABundle},
			SideEffects:  &sideEffects,
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups:   []string{""},
					APIVersions: []string{"v1"},
					Resources:   []string{"pods"},
				},
			}},
			FailurePolicy:           &failure,
			ReinvocationPolicy:      &reinvocation,
			AdmissionReviewVersions: []string{"v1"},
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: ns},
			ObjectSelector:          &metav1.LabelSelector{MatchExpressions: obj},
		}
	}
	req := func(key string, op metav1.LabelSelectorOperator, values ...string) metav1.LabelSelectorRequirement {
		return metav1.LabelSelectorRequirement{Key: key, Operator: op, Values: values}
	}
	const (
		in, notIn, absent = metav1.LabelSelectorOpIn, metav1.LabelSelectorOpNotIn, metav1.LabelSelectorOpDoesNotExist
	)
	webhooks := []admissionregistrationv1.MutatingWebhook{
		// Case 1: the namespace selects this revision and the object does
		// not opt out. (A namespace with both labels goes to the legacy one.)
		core("rev.namespace.",
			[]metav1.LabelSelectorRequirement{req("istio.io/rev", in, revValue), req("istio-injection", absent)},
			[]metav1.LabelSelectorRequirement{req("sidecar.istio.io/inject", notIn, "false")}),
		// Case 2: no namespace label; the object selects this revision.
		core("rev.object.",
			[]metav1.LabelSelectorRequirement{req("istio.io/rev", absent), req("istio-injection", absent)},
			[]metav1.LabelSelectorRequirement{req("sidecar.istio.io/inject", notIn, "false"), req("istio.io/rev", in, revValue)}),
	}
	if revision == "" {
		webhooks = append(webhooks,
			// Default revision, case 1: istio-injection=enabled.
			core("namespace.",
				[]metav1.LabelSelectorRequirement{req("istio-injection", in, "enabled")},
				[]metav1.LabelSelectorRequirement{req("sidecar.istio.io/inject", notIn, "false")}),
			// Default revision, case 2: unlabelled namespace, pod label
			// sidecar.istio.io/inject=true and no revision label.
			core("object.",
				[]metav1.LabelSelectorRequirement{req("istio-injection", absent), req("istio.io/rev", absent)},
				[]metav1.LabelSelectorRequirement{req("sidecar.istio.io/inject", in, "true"), req("istio.io/rev", absent)}),
		)
		// sidecarInjectorWebhook.enableNamespacesByDefault ("auto.") is off
		// by default and not reproduced.
	}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				"istio.io/rev":                revValue,
				"app":                         "sidecar-injector",
				"app.kubernetes.io/name":      "istiod",
				"operator.istio.io/component": "Pilot",
				worldLabel:                    "true",
			},
		},
		Webhooks: webhooks,
	}
}

func applyWebhookConfiguration(ctx context.Context, kube kubernetes.Interface, cfg *admissionregistrationv1.MutatingWebhookConfiguration) error {
	api := kube.AdmissionregistrationV1().MutatingWebhookConfigurations()
	_, err := api.Create(ctx, cfg, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Left by an earlier world on the same API server: take it over.
		var old *admissionregistrationv1.MutatingWebhookConfiguration
		if old, err = api.Get(ctx, cfg.Name, metav1.GetOptions{}); err == nil {
			cfg.ResourceVersion = old.ResourceVersion
			_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		}
	}
	if err != nil {
		return fmt.Errorf("injector: register MutatingWebhookConfiguration %s: %w", cfg.Name, err)
	}
	return nil
}

// waitCalled returns once the API server calls the webhook: it keeps
// dry-run creating a pod with sidecar.istio.io/inject=true in `default`
// (matched by the object webhook unless `default` carries injection labels,
// then by the namespace ones) until an AdmissionReview arrives. The API
// server picks webhook configurations up asynchronously, so without this a
// pod created right after StartInjector could miss its sidecar.
func (i *Injector) waitCalled(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "injector-probe-",
			Namespace:    metav1.NamespaceDefault,
			Labels:       map[string]string{"sidecar.istio.io/inject": "true", worldLabel: "injector-probe"},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	before := i.reviews.Load()
	var lastErr error
	for {
		_, err := i.kube.CoreV1().Pods(probe.Namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if i.reviews.Load() > before {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("injector: the API server did not call the webhook at %s within 30s (last dry-run error: %v)", i.URL, lastErr)
		case err := <-i.serveErr:
			return fmt.Errorf("injector: server stopped: %w", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serveInject is the admission endpoint: AdmissionReview in, JSONPatch out.
func (i *Injector) serveInject(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "content type must be application/json, not "+ct, http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an admission.k8s.io/v1 AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := i.admit(r.Context(), review.Request, r.PathValue("rev"))
	resp.UID = review.Request.UID
	i.reviews.Add(1)
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (i *Injector) admit(ctx context.Context, req *admissionv1.AdmissionRequest, revision string) *admissionv1.AdmissionResponse {
	deny := func(format string, args ...any) *admissionv1.AdmissionResponse {
		msg := fmt.Sprintf(format, args...)
		i.opts.Log.Printf("injector: deny: %s", msg)
		return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Status: metav1.StatusFailure, Message: msg, Reason: metav1.StatusReasonBadRequest, Code: http.StatusBadRequest}}
	}
	if req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return deny("sidecar injector: could not decode the pod: %v", err)
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName + "*"
	}
	ns, err := i.kube.CoreV1().Namespaces().Get(ctx, pod.Namespace, metav1.GetOptions{})
	if err != nil {
		return deny("sidecar injector: read namespace %s: %v", pod.Namespace, err)
	}
	// Istio's injectRequired, given what the selectors already checked;
	// cluster.InjectionIntended reproduces both.
	if !cluster.InjectionIntended(&pod, ns.Labels) {
		i.opts.Log.Printf("injector: %s/%s: skipped by policy", pod.Namespace, name)
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	if cluster.HasSidecar(&pod) {
		// Already injected (a pod spec copied from an injected pod, or
		// istioctl kube-inject): leave it alone.
		i.opts.Log.Printf("injector: %s/%s: already has a sidecar", pod.Namespace, name)
		return &admissionv1.AdmissionResponse{Allowed: true}
	}
	patch, err := injectionPatch(&pod, i.opts.ProxyImage, revision)
	if err != nil {
		return deny("sidecar injector: %v", err)
	}
	raw, err := json.Marshal(patch)
	if err != nil {
		return deny("sidecar injector: %v", err)
	}
	i.injections.Add(1)
	i.opts.Log.Printf("injector: %s/%s: injected istio-proxy (revision %q)", pod.Namespace, name, revisionOrDefault(revision))
	pt := admissionv1.PatchTypeJSONPatch
	return &admissionv1.AdmissionResponse{Allowed: true, Patch: raw, PatchType: &pt}
}

func revisionOrDefault(r string) string {
	if r == "" {
		return "default"
	}
	return r
}

// SidecarInjectionStatus is the sidecar.istio.io/status annotation, the
// shape of Istio's inject.SidecarInjectionStatus.
type SidecarInjectionStatus struct {
	InitContainers   []string `json:"initContainers"`
	Containers       []string `json:"containers"`
	Volumes          []string `json:"volumes"`
	ImagePullSecrets []string `json:"imagePullSecrets"`
	Revision         string   `json:"revision"`
}

type patchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// injectionPatch is the JSONPatch that turns pod into what Istio's
// injector would make of it, as far as the model needs: the istio-proxy
// container, the status annotation and the injector's labels.
func injectionPatch(pod *corev1.Pod, image, revision string) ([]patchOp, error) {
	if v := pod.Annotations[annotationProxyImage]; strings.Contains(v, "/") {
		image = v // the template honours a full image reference only
	}
	var apps []string
	for _, c := range pod.Spec.Containers {
		if c.Name != cluster.ProxyContainerName {
			apps = append(apps, c.Name)
		}
	}
	// The world's injector runs as Istio with ENABLE_NATIVE_SIDECARS=false
	// (classic sidecars, where a Job must quit its proxy); the pod's
	// annotation overrides it, as in Istio's injection template.
	native := pod.Annotations[annotationNativeSidecar] == "true"
	injected := SidecarInjectionStatus{
		// No istio-init: see proxyContainer. The list says what was injected.
		InitContainers: []string{},
		Containers:     []string{cluster.ProxyContainerName},
		Volumes:        []string{},
		Revision:       revisionOrDefault(revision),
	}
	if native {
		injected.InitContainers, injected.Containers = []string{cluster.ProxyContainerName}, []string{}
	}
	status, err := json.Marshal(injected)
	if err != nil {
		return nil, err
	}
	annotations := map[string]string{
		annotationSidecarStatus: string(status),
		annotationRev:           revisionOrDefault(revision),
	}
	if len(apps) > 0 {
		if _, ok := pod.Annotations[annotationDefaultLogsCont]; !ok {
			annotations[annotationDefaultLogsCont] = apps[0]
		}
		if _, ok := pod.Annotations[annotationDefaultCont]; !ok {
			annotations[annotationDefaultCont] = apps[0]
		}
	}
	labels := map[string]string{
		labelTLSMode:           firstNonEmpty(pod.Labels[labelTLSMode], "istio"),
		labelCanonicalName:     canonicalName(pod),
		labelCanonicalRevision: firstNonEmpty(pod.Labels[labelCanonicalRevision], pod.Labels["app.kubernetes.io/version"], pod.Labels["version"], "latest"),
	}
	var ops []patchOp
	ops = append(ops, mapPatch("/metadata/annotations", pod.Annotations, annotations)...)
	ops = append(ops, mapPatch("/metadata/labels", pod.Labels, labels)...)
	proxy := proxyContainer(pod, image, apps)
	if native {
		// First init container: Istio puts it before the pod's own ones
		// so they run with the mesh (only istio-init, absent here, goes
		// earlier).
		always := corev1.ContainerRestartPolicyAlways
		proxy.RestartPolicy = &always
		// Istio's template: the app starts once the proxy is ready.
		proxy.StartupProbe = &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
			PeriodSeconds:    1,
			TimeoutSeconds:   3,
			FailureThreshold: 600,
		}
		if len(pod.Spec.InitContainers) == 0 {
			ops = append(ops, patchOp{Op: "add", Path: "/spec/initContainers", Value: []corev1.Container{proxy}})
		} else {
			ops = append(ops, patchOp{Op: "add", Path: "/spec/initContainers/0", Value: proxy})
		}
		return ops, nil
	}
	if len(pod.Spec.Containers) == 0 {
		ops = append(ops, patchOp{Op: "add", Path: "/spec/containers", Value: []corev1.Container{proxy}})
	} else {
		ops = append(ops, patchOp{Op: "add", Path: "/spec/containers/-", Value: proxy})
	}
	return ops, nil
}

// proxyContainer is the injected istio-proxy container. Real Istio runs
// the proxy as uid 1337 without privileges and installs the capture rules
// from an istio-init init container (NET_ADMIN, NET_RAW, uid 0) or the
// Istio CNI plugin. The world has no init-container or CNI stand-in for
// that: the sidecar model installs the rules itself when started as root
// and then drops to uid/gid 1337 for good. So this container asks for what
// istio-init asks for: uid 0 with NET_ADMIN and NET_RAW. A PodSecurity
// "restricted" (or "baseline") namespace therefore rejects injected pods,
// exactly as it rejects them under real Istio without CNI.
func proxyContainer(pod *corev1.Pod, image string, apps []string) corev1.Container {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	var podPorts []corev1.ContainerPort
	for _, c := range pod.Spec.Containers {
		podPorts = append(podPorts, c.Ports...)
	}
	if podPorts == nil {
		podPorts = []corev1.ContainerPort{}
	}
	portsJSON, _ := json.Marshal(podPorts)
	env := []corev1.EnvVar{
		{Name: "PILOT_CERT_PROVIDER", Value: "istiod"},
		{Name: "CA_ADDR", Value: "istiod.istio-system.svc:15012"},
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("INSTANCE_IP", "status.podIP"),
		fieldEnv("SERVICE_ACCOUNT", "spec.serviceAccountName"),
		fieldEnv("HOST_IP", "status.hostIP"),
		// Istio merges the mesh's defaultConfig with the pod's
		// proxy.istio.io/config annotation here; the world stores the
		// annotation as given and interprets none of it.
		{Name: "PROXY_CONFIG", Value: firstNonEmpty(pod.Annotations[annotationProxyConfig], "{}")},
		{Name: "ISTIO_META_POD_PORTS", Value: string(portsJSON)},
		{Name: "ISTIO_META_APP_CONTAINERS", Value: strings.Join(apps, ",")},
		{Name: "ISTIO_META_CLUSTER_ID", Value: "Kubernetes"},
		fieldEnv("ISTIO_META_NODE_NAME", "spec.nodeName"),
		{Name: "ISTIO_META_INTERCEPTION_MODE", Value: "REDIRECT"},
	}
	root, proxyGID := int64(0), int64(1337)
	no, yes := false, true
	return corev1.Container{
		Name:  cluster.ProxyContainerName,
		Image: image,
		Args:  []string{"proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local"},
		Ports: []corev1.ContainerPort{{ContainerPort: 15090, Protocol: corev1.ProtocolTCP, Name: "http-envoy-prom"}},
		Env:   env,
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz/ready", Port: intstr.FromInt32(15021)}},
			PeriodSeconds:    15,
			TimeoutSeconds:   3,
			FailureThreshold: 4,
		},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			Privileged:               &no,
			ReadOnlyRootFilesystem:   &yes,
			RunAsNonRoot:             &no,
			// Real Istio: runAsUser 1337, runAsGroup 1337, no added
			// capabilities (istio-init or CNI holds NET_ADMIN/NET_RAW).
			RunAsUser:  &root,
			RunAsGroup: &proxyGID,
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		TerminationMessagePath:   corev1.TerminationMessagePathDefault,
		TerminationMessagePolicy: corev1.TerminationMessageReadFile,
		ImagePullPolicy:          corev1.PullIfNotPresent,
	}
}

func canonicalName(pod *corev1.Pod) string {
	n := firstNonEmpty(pod.Labels[labelCanonicalName], pod.Labels["app.kubernetes.io/name"], pod.Labels["app"], deploymentName(pod))
	if len(n) > 63 {
		n = n[:63]
	}
	return strings.Trim(n, "-_.")
}

// deploymentName guesses the owning workload's name the way Istio's
// GetDeployMetaFromPod does for the common cases.
func deploymentName(pod *corev1.Pod) string {
	for _, o := range pod.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := pod.Labels["pod-template-hash"]; h != "" && strings.HasSuffix(o.Name, "-"+h) {
				return strings.TrimSuffix(o.Name, "-"+h)
			}
		}
		return o.Name
	}
	if pod.Name != "" {
		return pod.Name
	}
	return strings.TrimSuffix(pod.GenerateName, "-")
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// mapPatch adds keys to the map at path (annotations or labels), creating
// the map when the pod has none. Keys are added in sorted order so the
// patch is deterministic.
func mapPatch(path string, existing, add map[string]string) []patchOp {
	if existing == nil {
		return []patchOp{{Op: "add", Path: path, Value: add}}
	}
	keys := make([]string, 0, len(add))
	for k := range add {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var ops []patchOp
	for _, k := range keys {
		ops = append(ops, patchOp{Op: "add", Path: path + "/" + escapeJSONPointer(k), Value: add[k]})
	}
	return ops
}

// escapeJSONPointer escapes one reference token (RFC 6901).
func escapeJSONPointer(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// webhookCertificates makes a throw-away CA and a serving certificate for
// 127.0.0.1 signed by it.
func webhookCertificates() (caPEM []byte, cert tls.Certificate, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "serverfirst e2e sidecar injector CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, cert, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, cert, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "istiod.istio-system.svc"},
		DNSNames:     []string{"istiod.istio-system.svc", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, cert, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, cert, err
	}
	cert, err = tls.X509KeyPair(
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		return nil, cert, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, nil
}
