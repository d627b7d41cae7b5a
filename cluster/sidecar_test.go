package cluster

import (
	"fmt"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

func TestHasSidecar(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	tests := []struct {
		name string
		pod  corev1.Pod
		want bool
	}{
		{"no containers", corev1.Pod{}, false},
		{"app only", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}}}, false},
		{"classic sidecar", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}, {Name: "istio-proxy"}}}}, true},
		{"native sidecar", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-init"}, {Name: "istio-proxy", RestartPolicy: &always}},
			Containers:     []corev1.Container{{Name: "app"}},
		}}, true},
		{"plain init container named istio-proxy", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-proxy"}},
			Containers:     []corev1.Container{{Name: "app"}},
		}}, false},
		{"istio-init only (CNI-less init, no proxy)", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "istio-init"}},
			Containers:     []corev1.Container{{Name: "app"}},
		}}, false},
		{"other native sidecar", corev1.Pod{Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "log-shipper", RestartPolicy: &always}},
			Containers:     []corev1.Container{{Name: "app"}},
		}}, false},
		{"name is case-sensitive", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "Istio-Proxy"}}}}, false},
		{"status annotation only", corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		}, true},
		{"inject label alone is intent, not a sidecar", corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"sidecar.istio.io/inject": "true"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HasSidecar(&tt.pod); got != tt.want {
				t.Errorf("HasSidecar = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNamespaceInjection(t *testing.T) {
	tests := []struct {
		labels  map[string]string
		enabled bool
		rev     string
	}{
		{nil, false, ""},
		{map[string]string{"istio-injection": "enabled"}, true, "default"},
		{map[string]string{"istio-injection": "disabled"}, false, ""},
		{map[string]string{"istio-injection": "true"}, false, ""},
		{map[string]string{"istio-injection": ""}, false, ""},
		{map[string]string{"istio.io/rev": "canary"}, true, "canary"},
		{map[string]string{"istio.io/rev": "default"}, true, "default"},
		{map[string]string{"istio.io/rev": ""}, false, ""},
		{map[string]string{"istio-injection": "disabled", "istio.io/rev": "canary"}, false, ""},
		{map[string]string{"istio-injection": "enabled", "istio.io/rev": "canary"}, true, "default"},
		{map[string]string{"istio.io/dataplane-mode": "ambient"}, false, ""},
	}
	for _, tt := range tests {
		enabled, rev := NamespaceInjection(tt.labels)
		if enabled != tt.enabled || rev != tt.rev {
			t.Errorf("NamespaceInjection(%v) = %v, %q; want %v, %q", tt.labels, enabled, rev, tt.enabled, tt.rev)
		}
	}
}

func TestAmbientNamespace(t *testing.T) {
	for labels, want := range map[string]bool{"ambient": true, "Ambient": false, "none": false, "": false} {
		if got := AmbientNamespace(map[string]string{"istio.io/dataplane-mode": labels}); got != want {
			t.Errorf("AmbientNamespace(%q) = %v", labels, got)
		}
	}
	if AmbientNamespace(nil) {
		t.Error("AmbientNamespace(nil) = true")
	}
}

func podWith(ns string, lbls, annos map[string]string, hostNetwork bool) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p", Labels: lbls, Annotations: annos},
		Spec:       corev1.PodSpec{HostNetwork: hostNetwork},
	}
}

func TestInjectionIntended(t *testing.T) {
	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name      string
		ns        string
		nsLabels  map[string]string
		podLabels map[string]string
		podAnnos  map[string]string
		hostNet   bool
		want      bool
	}{
		{"unlabelled namespace", "app", nil, nil, nil, false, false},
		{"namespace enabled", "app", l("istio-injection", "enabled"), nil, nil, false, true},
		{"namespace disabled", "app", l("istio-injection", "disabled"), nil, nil, false, false},
		{"namespace disabled beats pod label true", "app", l("istio-injection", "disabled"), l("sidecar.istio.io/inject", "true"), nil, false, false},
		{"namespace disabled beats revision label", "app", l("istio-injection", "disabled", "istio.io/rev", "canary"), nil, nil, false, false},
		{"namespace revision", "app", l("istio.io/rev", "canary"), nil, nil, false, true},
		{"namespace default revision", "app", l("istio.io/rev", "default"), nil, nil, false, true},
		{"namespace empty revision injects nothing", "app", l("istio.io/rev", ""), l("sidecar.istio.io/inject", "true"), nil, false, false},
		{"enabled namespace, pod label false", "app", l("istio-injection", "enabled"), l("sidecar.istio.io/inject", "false"), nil, false, false},
		{"enabled namespace, pod annotation false", "app", l("istio-injection", "enabled"), nil, l("sidecar.istio.io/inject", "false"), false, false},
		{"label true beats annotation false", "app", l("istio-injection", "enabled"), l("sidecar.istio.io/inject", "true"), l("sidecar.istio.io/inject", "false"), false, true},
		{"label false beats annotation true", "app", l("istio-injection", "enabled"), l("sidecar.istio.io/inject", "false"), l("sidecar.istio.io/inject", "true"), false, false},
		{"invalid label value falls back to the default policy", "app", l("istio-injection", "enabled"), l("sidecar.istio.io/inject", "yes"), nil, false, true},
		{"unlabelled namespace, pod label true", "app", nil, l("sidecar.istio.io/inject", "true"), nil, false, true},
		{"unlabelled namespace, pod annotation true never reaches the webhook", "app", nil, nil, l("sidecar.istio.io/inject", "true"), false, false},
		{"unlabelled namespace, pod revision", "app", nil, l("istio.io/rev", "canary"), nil, false, true},
		{"unlabelled namespace, pod revision, annotation false", "app", nil, l("istio.io/rev", "canary"), l("sidecar.istio.io/inject", "false"), false, false},
		{"unlabelled namespace, pod empty revision with label true", "app", nil, l("istio.io/rev", "", "sidecar.istio.io/inject", "true"), nil, false, false},
		{"hostNetwork", "app", l("istio-injection", "enabled"), l("sidecar.istio.io/inject", "true"), nil, true, false},
		{"kube-system", "kube-system", l("istio-injection", "enabled"), nil, nil, false, false},
		{"kube-public", "kube-public", l("istio-injection", "enabled"), nil, nil, false, false},
		{"kube-node-lease", "kube-node-lease", l("istio-injection", "enabled"), nil, nil, false, false},
		{"local-path-storage", "local-path-storage", l("istio-injection", "enabled"), nil, nil, false, false},
		{"ambient namespace is not sidecar injection", "app", l("istio.io/dataplane-mode", "ambient"), nil, nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := podWith(tt.ns, tt.podLabels, tt.podAnnos, tt.hostNet)
			if got := InjectionIntended(pod, tt.nsLabels); got != tt.want {
				t.Errorf("InjectionIntended = %v, want %v", got, tt.want)
			}
			if oracle := istioInjects(pod, tt.nsLabels); oracle != tt.want {
				t.Errorf("oracle says %v, table says %v", oracle, tt.want)
			}
		})
	}
}

// TestInjectionIntendedMatchesWebhooks compares InjectionIntended with a
// transcription of Istio's injector over every combination of namespace
// and pod labels and annotations: the webhooks of
// manifests/charts/istio-control/istio-discovery/templates/mutatingwebhook.yaml
// (the default revision's four, and each named revision's two), then
// pkg/kube/inject injectRequired with the default policy "enabled".
func TestInjectionIntendedMatchesWebhooks(t *testing.T) {
	values := []string{"", "enabled", "disabled", "true", "false", "default", "canary", "-"} // "-" = absent
	n := 0
	for _, nsInj := range values {
		for _, nsRev := range values {
			for _, podInj := range values {
				for _, podRev := range values {
					for _, annoInj := range values {
						nsLabels := set(nil, "istio-injection", nsInj)
						nsLabels = set(nsLabels, "istio.io/rev", nsRev)
						podLabels := set(nil, "sidecar.istio.io/inject", podInj)
						podLabels = set(podLabels, "istio.io/rev", podRev)
						annos := set(nil, "sidecar.istio.io/inject", annoInj)
						pod := podWith("app", podLabels, annos, false)
						got, want := InjectionIntended(pod, nsLabels), istioInjects(pod, nsLabels)
						if got != want {
							t.Errorf("namespace %v, pod labels %v, annotations %v: InjectionIntended = %v, Istio = %v", nsLabels, podLabels, annos, got, want)
						}
						n++
					}
				}
			}
		}
	}
	t.Logf("%d combinations", n)
}

func set(m map[string]string, k, v string) map[string]string {
	if v == "-" {
		return m
	}
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}

// istioInjects is the test oracle: Istio's webhooks and injectRequired,
// transcribed, with every revision the labels name assumed installed.
func istioInjects(pod *corev1.Pod, nsLabels map[string]string) bool {
	revisions := map[string]bool{"default": true}
	for _, m := range []map[string]string{nsLabels, pod.Labels} {
		if r, ok := m["istio.io/rev"]; ok && r != "" {
			revisions[r] = true
		}
	}
	type webhook struct{ ns, obj string }
	var hooks []webhook
	names := make([]string, 0, len(revisions))
	for r := range revisions {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		hooks = append(hooks,
			webhook{fmt.Sprintf("istio.io/rev in (%s), !istio-injection", r), "sidecar.istio.io/inject notin (false)"},
			webhook{"!istio.io/rev, !istio-injection", fmt.Sprintf("sidecar.istio.io/inject notin (false), istio.io/rev in (%s)", r)},
		)
	}
	hooks = append(hooks,
		webhook{"istio-injection in (enabled)", "sidecar.istio.io/inject notin (false)"},
		webhook{"!istio-injection, !istio.io/rev", "sidecar.istio.io/inject in (true), !istio.io/rev"},
	)
	called := false
	for _, h := range hooks {
		nsSel, err := labels.Parse(h.ns)
		if err != nil {
			panic(err)
		}
		objSel, err := labels.Parse(h.obj)
		if err != nil {
			panic(err)
		}
		if nsSel.Matches(labels.Set(nsLabels)) && objSel.Matches(labels.Set(pod.Labels)) {
			called = true
		}
	}
	if !called {
		return false
	}
	// injectRequired, policy enabled, no never/always selectors.
	if pod.Spec.HostNetwork {
		return false
	}
	switch pod.Namespace {
	case "kube-system", "kube-public", "kube-node-lease", "local-path-storage":
		return false
	}
	sel := pod.Annotations["sidecar.istio.io/inject"]
	if v, ok := pod.Labels["sidecar.istio.io/inject"]; ok {
		sel = v
	}
	switch sel {
	case "true":
		return true
	case "false":
		return false
	}
	return true
}
