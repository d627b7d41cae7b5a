package world

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestInjectorAgainstAPIServer registers the injector with a real API
// server and creates pods in namespaces with every label combination that
// Istio's default webhooks and injectRequired tell apart. want is what
// Istio 1.28 does with a default install plus the "canary" revision.
func TestInjectorAgainstAPIServer(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	began := time.Now()
	inj, err := StartInjector(ctx, env.Client, InjectorOptions{Revisions: []string{"canary"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("injector registered and called in %v", time.Since(began).Round(time.Millisecond))
	defer inj.Stop()

	type meta = map[string]string
	tests := []struct {
		name       string
		nsLabels   meta
		podLabels  meta
		podAnnots  meta
		hostNet    bool
		namespace  string // an existing namespace to use instead of a new one
		want       bool
		wantRev    string
		notIntent  bool // cluster.InjectionIntended disagrees on purpose (see case)
		wantDenied string
	}{
		{name: "enabled", nsLabels: meta{"istio-injection": "enabled"}, want: true, wantRev: "default"},
		{name: "enabled, pod label false", nsLabels: meta{"istio-injection": "enabled"}, podLabels: meta{"sidecar.istio.io/inject": "false"}},
		{name: "enabled, pod annotation false", nsLabels: meta{"istio-injection": "enabled"}, podAnnots: meta{"sidecar.istio.io/inject": "false"}},
		{name: "enabled, label true beats annotation false", nsLabels: meta{"istio-injection": "enabled"},
			podLabels: meta{"sidecar.istio.io/inject": "true"}, podAnnots: meta{"sidecar.istio.io/inject": "false"}, want: true, wantRev: "default"},
		{name: "enabled, label false beats annotation true", nsLabels: meta{"istio-injection": "enabled"},
			podLabels: meta{"sidecar.istio.io/inject": "false"}, podAnnots: meta{"sidecar.istio.io/inject": "true"}},
		{name: "enabled, hostNetwork", nsLabels: meta{"istio-injection": "enabled"}, hostNet: true},
		{name: "disabled, pod label true", nsLabels: meta{"istio-injection": "disabled"}, podLabels: meta{"sidecar.istio.io/inject": "true"}},
		{name: "disabled plus rev", nsLabels: meta{"istio-injection": "disabled", "istio.io/rev": "canary"}},
		{name: "unlabelled", nsLabels: nil},
		{name: "unlabelled, pod label true", podLabels: meta{"sidecar.istio.io/inject": "true"}, want: true, wantRev: "default"},
		{name: "unlabelled, pod annotation true only", podAnnots: meta{"sidecar.istio.io/inject": "true"}},
		{name: "unlabelled, pod label garbage", podLabels: meta{"sidecar.istio.io/inject": "yes"}},
		{name: "unlabelled, pod rev canary", podLabels: meta{"istio.io/rev": "canary"}, want: true, wantRev: "canary"},
		{name: "unlabelled, pod rev default", podLabels: meta{"istio.io/rev": "default"}, want: true, wantRev: "default"},
		{name: "unlabelled, pod rev canary and inject false", podLabels: meta{"istio.io/rev": "canary", "sidecar.istio.io/inject": "false"}},
		{name: "unlabelled, pod inject true and rev canary", podLabels: meta{"istio.io/rev": "canary", "sidecar.istio.io/inject": "true"}, want: true, wantRev: "canary"},
		{name: "rev canary", nsLabels: meta{"istio.io/rev": "canary"}, want: true, wantRev: "canary"},
		{name: "rev canary, pod label false", nsLabels: meta{"istio.io/rev": "canary"}, podLabels: meta{"sidecar.istio.io/inject": "false"}},
		{name: "rev default", nsLabels: meta{"istio.io/rev": "default"}, want: true, wantRev: "default"},
		{name: "rev canary and injection enabled: legacy wins", nsLabels: meta{"istio.io/rev": "canary", "istio-injection": "enabled"}, want: true, wantRev: "default"},
		{name: "rev empty", nsLabels: meta{"istio.io/rev": ""}},
		{name: "rev empty, pod label true", nsLabels: meta{"istio.io/rev": ""}, podLabels: meta{"sidecar.istio.io/inject": "true"}},
		// A revision with no control plane installed has no webhook: no
		// sidecar. The tool assumes every named revision is installed.
		{name: "rev not installed", nsLabels: meta{"istio.io/rev": "stable"}, notIntent: true},
		{name: "kube-system enabled: ignored namespace", namespace: "kube-system", nsLabels: meta{"istio-injection": "enabled"}},
		{name: "proxy config annotation", nsLabels: meta{"istio-injection": "enabled"},
			podAnnots: meta{"proxy.istio.io/config": `{"holdApplicationUntilProxyStarts": true}`}, want: true, wantRev: "default"},
		// The sidecar needs root and NET_ADMIN (istio-init's rights): a
		// restricted namespace refuses the injected pod, as it refuses pods
		// injected by Istio without CNI.
		{name: "PodSecurity restricted", nsLabels: meta{"istio-injection": "enabled", "pod-security.kubernetes.io/enforce": "restricted"},
			wantDenied: "violates PodSecurity"},
		{name: "PodSecurity restricted, not injected", nsLabels: meta{"pod-security.kubernetes.io/enforce": "restricted"}},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nsName := tc.namespace
			if nsName == "" {
				nsName = fmt.Sprintf("inject-%02d", i)
				if _, err := env.CreateNamespace(ctx, nsName, tc.nsLabels); err != nil {
					t.Fatal(err)
				}
			} else {
				ns, err := env.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tc.nsLabels {
					ns.Labels[k] = v
				}
				if _, err := env.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			pod := restrictedPod(nsName, "app", tc.podLabels, tc.podAnnots)
			pod.Spec.HostNetwork = tc.hostNet
			got, err := env.Client.CoreV1().Pods(nsName).Create(ctx, pod, metav1.CreateOptions{})
			if tc.wantDenied != "" {
				if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.wantDenied) {
					t.Fatalf("create: err = %v, want Forbidden containing %q", err, tc.wantDenied)
				}
				if !strings.Contains(err.Error(), "istio-proxy") {
					t.Errorf("the refusal should name istio-proxy: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			injected := hasContainer(got, cluster.ProxyContainerName)
			if injected != tc.want {
				t.Fatalf("injected = %v, want %v (containers %v, annotations %v)", injected, tc.want, containerNames(got), got.Annotations)
			}
			ns, err := env.Client.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if intended := cluster.InjectionIntended(pod, ns.Labels); intended != (tc.want != tc.notIntent) {
				t.Errorf("cluster.InjectionIntended = %v, but the webhook injected = %v (notIntent %v)", intended, tc.want, tc.notIntent)
			}
			if cluster.HasSidecar(got) != tc.want {
				t.Errorf("cluster.HasSidecar = %v, want %v", cluster.HasSidecar(got), tc.want)
			}
			if !tc.want {
				if _, ok := got.Annotations[annotationSidecarStatus]; ok {
					t.Errorf("not injected but has %s", annotationSidecarStatus)
				}
				return
			}
			checkInjected(t, got, tc.wantRev)
			if v := tc.podAnnots["proxy.istio.io/config"]; v != "" {
				if got.Annotations["proxy.istio.io/config"] != v {
					t.Errorf("proxy.istio.io/config annotation changed: %q", got.Annotations["proxy.istio.io/config"])
				}
				if env := envValue(proxyOf(got), "PROXY_CONFIG"); env != v {
					t.Errorf("PROXY_CONFIG = %q, want the annotation %q", env, v)
				}
			}
		})
	}

	if inj.Injections() == 0 || inj.Reviews() <= inj.Injections() {
		t.Errorf("reviews %d, injections %d: want some of each, more reviews", inj.Reviews(), inj.Injections())
	}

	t.Run("stop unregisters", func(t *testing.T) {
		if err := inj.Stop(); err != nil {
			t.Fatal(err)
		}
		for _, name := range inj.ConfigNames {
			if _, err := env.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("%s still registered: %v", name, err)
			}
		}
		// With the configuration gone, pods are created without a sidecar
		// (nothing fails closed). The API server drops the webhook
		// asynchronously, so allow it a moment.
		deadline := time.Now().Add(20 * time.Second)
		for i := 0; ; i++ {
			pod := restrictedPod("inject-00", fmt.Sprintf("after-stop-%d", i), nil, nil)
			got, err := env.Client.CoreV1().Pods("inject-00").Create(ctx, pod, metav1.CreateOptions{})
			if err == nil && !hasContainer(got, cluster.ProxyContainerName) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pod creation after Stop: err %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}

// TestInjectorConfigurations checks the registered selectors field by
// field against Istio's chart (mutatingwebhook.yaml).
func TestInjectorConfigurations(t *testing.T) {
	inj := &Injector{URL: "https://127.0.0.1:1", CABundle: []byte("CA"), opts: InjectorOptions{Revisions: []string{"canary"}}}
	cfgs := inj.webhookConfigurations()
	if len(cfgs) != 2 || cfgs[0].Name != "istio-sidecar-injector" || cfgs[1].Name != "istio-sidecar-injector-canary" {
		t.Fatalf("configurations: %v", cfgs)
	}
	type sel = string
	render := func(s *metav1.LabelSelector) sel {
		var parts []string
		for _, r := range s.MatchExpressions {
			parts = append(parts, fmt.Sprintf("%s %s %v", r.Key, r.Operator, r.Values))
		}
		return strings.Join(parts, "; ")
	}
	want := map[string][2]sel{
		"istio-sidecar-injector/rev.namespace.sidecar-injector.istio.io":        {"istio.io/rev In [default]; istio-injection DoesNotExist []", "sidecar.istio.io/inject NotIn [false]"},
		"istio-sidecar-injector/rev.object.sidecar-injector.istio.io":           {"istio.io/rev DoesNotExist []; istio-injection DoesNotExist []", "sidecar.istio.io/inject NotIn [false]; istio.io/rev In [default]"},
		"istio-sidecar-injector/namespace.sidecar-injector.istio.io":            {"istio-injection In [enabled]", "sidecar.istio.io/inject NotIn [false]"},
		"istio-sidecar-injector/object.sidecar-injector.istio.io":               {"istio-injection DoesNotExist []; istio.io/rev DoesNotExist []", "sidecar.istio.io/inject In [true]; istio.io/rev DoesNotExist []"},
		"istio-sidecar-injector-canary/rev.namespace.sidecar-injector.istio.io": {"istio.io/rev In [canary]; istio-injection DoesNotExist []", "sidecar.istio.io/inject NotIn [false]"},
		"istio-sidecar-injector-canary/rev.object.sidecar-injector.istio.io":    {"istio.io/rev DoesNotExist []; istio-injection DoesNotExist []", "sidecar.istio.io/inject NotIn [false]; istio.io/rev In [canary]"},
	}
	seen := 0
	for _, cfg := range cfgs {
		for _, wh := range cfg.Webhooks {
			key := cfg.Name + "/" + wh.Name
			w, ok := want[key]
			if !ok {
				t.Errorf("unexpected webhook %s", key)
				continue
			}
			seen++
			if got := render(wh.NamespaceSelector); got != w[0] {
				t.Errorf("%s namespaceSelector = %q, want %q", key, got, w[0])
			}
			if got := render(wh.ObjectSelector); got != w[1] {
				t.Errorf("%s objectSelector = %q, want %q", key, got, w[1])
			}
			if *wh.FailurePolicy != "Fail" || *wh.SideEffects != "None" || *wh.ReinvocationPolicy != "Never" ||
				len(wh.Rules) != 1 || fmt.Sprint(wh.Rules[0].Operations, wh.Rules[0].Resources, wh.Rules[0].APIGroups, wh.Rules[0].APIVersions) != "[CREATE] [pods] [] [v1]" ||
				fmt.Sprint(wh.AdmissionReviewVersions) != "[v1]" || string(wh.ClientConfig.CABundle) != "CA" {
				t.Errorf("%s core fields differ from the chart: %+v", key, wh)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("saw %d webhooks, want %d", seen, len(want))
	}
}

// TestServeInject drives the handler directly: protocol errors, a skip,
// and the patch applied to the pod.
func TestServeInject(t *testing.T) {
	kube := fake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}},
	)
	inj := &Injector{kube: kube, opts: InjectorOptions{ProxyImage: DefaultProxyImage}}
	inj.opts.Log = discardLogger()
	srv := httptest.NewServer(http.HandlerFunc(inj.serveInject))
	defer srv.Close()

	post := func(body []byte) (*http.Response, admissionv1.AdmissionReview) {
		resp, err := http.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out admissionv1.AdmissionReview
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	if resp, _ := post([]byte("{")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad JSON: status %d", resp.StatusCode)
	}
	if resp, err := http.Get(srv.URL); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %v %v", resp, err)
	}

	review := func(pod *corev1.Pod) []byte {
		raw, _ := json.Marshal(pod)
		b, _ := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request: &admissionv1.AdmissionRequest{
				UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
				Namespace: pod.Namespace, Object: runtime.RawExtension{Raw: raw},
			},
		})
		return b
	}

	// Not selected by policy: allowed, no patch.
	_, out := post(review(restrictedPod("plain", "p", nil, nil)))
	if out.Response == nil || !out.Response.Allowed || out.Response.Patch != nil || out.Response.UID != "uid-1" {
		t.Fatalf("plain namespace: %+v", out.Response)
	}
	// Unknown namespace: denied (failurePolicy Fail semantics).
	_, out = post(review(restrictedPod("gone", "p", nil, nil)))
	if out.Response == nil || out.Response.Allowed {
		t.Fatalf("unknown namespace: %+v", out.Response)
	}

	// Injected: apply the patch and check the result. Pods without labels
	// or annotations exercise the "add the whole map" branch, and a key
	// with "/" the JSON-pointer escape.
	for _, withMaps := range []bool{false, true} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "shop"},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "mariadb:11", Ports: []corev1.ContainerPort{{ContainerPort: 3306, Name: "mysql"}}}}},
		}
		if withMaps {
			pod.Labels = map[string]string{"app": "orders-db"}
			pod.Annotations = map[string]string{"a/b": "c"}
		}
		_, out = post(review(pod))
		if out.Response == nil || !out.Response.Allowed || out.Response.PatchType == nil || *out.Response.PatchType != admissionv1.PatchTypeJSONPatch {
			t.Fatalf("shop: %+v", out.Response)
		}
		got := applyPatch(t, pod, out.Response.Patch)
		checkInjected(t, got, "default")
		if got.Annotations["kubectl.kubernetes.io/default-container"] != "db" {
			t.Errorf("default-container = %q", got.Annotations["kubectl.kubernetes.io/default-container"])
		}
		wantName := "db-0"
		if withMaps {
			wantName = "orders-db"
			if got.Annotations["a/b"] != "c" || got.Labels["app"] != "orders-db" {
				t.Errorf("existing metadata lost: %v %v", got.Labels, got.Annotations)
			}
		}
		if got.Labels["service.istio.io/canonical-name"] != wantName {
			t.Errorf("canonical-name = %q, want %q", got.Labels["service.istio.io/canonical-name"], wantName)
		}
		if v := envValue(proxyOf(got), "ISTIO_META_POD_PORTS"); !strings.Contains(v, `"containerPort":3306`) {
			t.Errorf("ISTIO_META_POD_PORTS = %q", v)
		}
		// Reviewing the injected pod again changes nothing.
		_, out = post(review(got))
		if out.Response == nil || !out.Response.Allowed || out.Response.Patch != nil {
			t.Errorf("second review of an injected pod: %+v", out.Response)
		}
	}

	// sidecar.istio.io/nativeSidecar: "true": istio-proxy becomes the first
	// init container with restartPolicy Always, before the pod's own.
	for _, inits := range [][]corev1.Container{nil, {{Name: "migrate", Image: "debian:12"}}} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "job-0", Namespace: "shop", Annotations: map[string]string{"sidecar.istio.io/nativeSidecar": "true"}},
			Spec:       corev1.PodSpec{InitContainers: inits, Containers: []corev1.Container{{Name: "scan", Image: "debian:12"}}},
		}
		_, out = post(review(pod))
		if out.Response == nil || out.Response.Patch == nil {
			t.Fatalf("native: %+v", out.Response)
		}
		got := applyPatch(t, pod, out.Response.Patch)
		if len(got.Spec.InitContainers) != len(inits)+1 || got.Spec.InitContainers[0].Name != cluster.ProxyContainerName ||
			got.Spec.InitContainers[0].RestartPolicy == nil || *got.Spec.InitContainers[0].RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Errorf("native: init containers %+v", got.Spec.InitContainers)
		}
		if len(got.Spec.Containers) != 1 || got.Spec.Containers[0].Name != "scan" {
			t.Errorf("native: containers %+v", got.Spec.Containers)
		}
		if !strings.Contains(got.Annotations[annotationSidecarStatus], `"initContainers":["istio-proxy"]`) {
			t.Errorf("native: status annotation %s", got.Annotations[annotationSidecarStatus])
		}
		if !cluster.HasSidecar(got) {
			t.Error("native: cluster.HasSidecar does not see it")
		}
		_, out = post(review(got))
		if out.Response == nil || out.Response.Patch != nil {
			t.Errorf("second review of a native-injected pod: %+v", out.Response)
		}
	}
}

func checkInjected(t *testing.T, pod *corev1.Pod, wantRev string) {
	t.Helper()
	var status SidecarInjectionStatus
	if err := json.Unmarshal([]byte(pod.Annotations[annotationSidecarStatus]), &status); err != nil {
		t.Fatalf("%s: %v (%q)", annotationSidecarStatus, err, pod.Annotations[annotationSidecarStatus])
	}
	if fmt.Sprint(status.Containers) != "[istio-proxy]" || status.Revision != wantRev || status.InitContainers == nil {
		t.Errorf("status annotation = %+v, want containers [istio-proxy], revision %q", status, wantRev)
	}
	if pod.Annotations["istio.io/rev"] != wantRev {
		t.Errorf("istio.io/rev annotation = %q, want %q", pod.Annotations["istio.io/rev"], wantRev)
	}
	if pod.Labels["security.istio.io/tlsMode"] != "istio" || pod.Labels["service.istio.io/canonical-revision"] != "latest" {
		t.Errorf("labels = %v", pod.Labels)
	}
	if len(pod.Spec.InitContainers) != 0 {
		t.Errorf("init containers %v: the model installs capture itself", pod.Spec.InitContainers)
	}
	if n := len(pod.Spec.Containers); n < 2 || pod.Spec.Containers[n-1].Name != "istio-proxy" {
		t.Fatalf("containers = %v, want the app then istio-proxy", containerNames(pod))
	}
	c := proxyOf(pod)
	if c.Image != DefaultProxyImage || fmt.Sprint(c.Args[:2]) != "[proxy sidecar]" {
		t.Errorf("image %q args %v", c.Image, c.Args)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 15090 || c.Ports[0].Name != "http-envoy-prom" {
		t.Errorf("ports = %v", c.Ports)
	}
	for name, path := range map[string]string{"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace", "INSTANCE_IP": "status.podIP"} {
		var found bool
		for _, e := range c.Env {
			if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == path {
				found = true
			}
		}
		if !found {
			t.Errorf("env %s from fieldRef %s missing", name, path)
		}
	}
	p := c.ReadinessProbe
	if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz/ready" || p.HTTPGet.Port.IntValue() != 15021 {
		t.Errorf("readinessProbe = %+v", p)
	}
	sc := c.SecurityContext
	if sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 || sc.Capabilities == nil || fmt.Sprint(sc.Capabilities.Add) != "[NET_ADMIN NET_RAW]" {
		t.Errorf("securityContext = %+v", sc)
	}
}

// restrictedPod is a pod that PodSecurity "restricted" admits on its own,
// so a refusal can only come from the sidecar.
func restrictedPod(ns, name string, labels, annotations map[string]string) *corev1.Pod {
	no, yes := false, true
	uid := int64(1000)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "app", Image: "busybox",
				SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &no, Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
			}},
		},
	}
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

func containerNames(pod *corev1.Pod) []string {
	var out []string
	for _, c := range pod.Spec.Containers {
		out = append(out, c.Name)
	}
	return out
}

func proxyOf(pod *corev1.Pod) corev1.Container {
	for _, c := range pod.Spec.Containers {
		if c.Name == cluster.ProxyContainerName {
			return c
		}
	}
	return corev1.Container{}
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

// applyPatch applies the "add" operations injectionPatch produces (RFC 6902
// on objects and the "-" array end), enough to check the patch without a
// JSONPatch library.
func applyPatch(t *testing.T, pod *corev1.Pod, patch []byte) *corev1.Pod {
	t.Helper()
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch is not a JSONPatch: %v\n%s", err, patch)
	}
	raw, _ := json.Marshal(pod)
	var doc map[string]any
	_ = json.Unmarshal(raw, &doc)
	unescape := strings.NewReplacer("~1", "/", "~0", "~")
	for _, op := range ops {
		if op.Op != "add" {
			t.Fatalf("unexpected op %q", op.Op)
		}
		var value any
		_ = json.Unmarshal(op.Value, &value)
		tokens := strings.Split(strings.TrimPrefix(op.Path, "/"), "/")
		appendTo := tokens[len(tokens)-1] == "-"
		insertAt, err := strconv.Atoi(tokens[len(tokens)-1])
		insert := err == nil
		if appendTo || insert {
			tokens = tokens[:len(tokens)-1]
		}
		parent := doc
		for _, tok := range tokens[:len(tokens)-1] {
			next, ok := parent[unescape.Replace(tok)].(map[string]any)
			if !ok {
				t.Fatalf("patch path %s: %s is not an object", op.Path, tok)
			}
			parent = next
		}
		last := unescape.Replace(tokens[len(tokens)-1])
		if appendTo || insert {
			arr, ok := parent[last].([]any)
			if !ok {
				t.Fatalf("patch path %s: %s is not an array", op.Path, last)
			}
			if appendTo {
				insertAt = len(arr)
			}
			if insertAt < 0 || insertAt > len(arr) {
				t.Fatalf("patch path %s: index out of range", op.Path)
			}
			parent[last] = append(arr[:insertAt:insertAt], append([]any{value}, arr[insertAt:]...)...)
			continue
		}
		parent[last] = value
	}
	out, _ := json.Marshal(doc)
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}
