package cluster

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
)

// Names Istio uses on pods and namespaces.
const (
	ProxyContainerName         = "istio-proxy"
	annotationSidecarStatus    = "sidecar.istio.io/status"
	labelSidecarInject         = "sidecar.istio.io/inject" // label (preferred) or annotation
	labelInjection             = "istio-injection"
	labelRevision              = "istio.io/rev"
	labelDataplaneMode         = "istio.io/dataplane-mode"
	dataplaneModeAmbient       = "ambient"
	defaultRevisionDescription = "default"
)

// HasSidecar reports whether a pod runs Istio's proxy: a classic
// istio-proxy container, an istio-proxy native sidecar (an init container
// with restartPolicy Always, Istio's default since 1.27 on new clusters),
// or the injector's status annotation.
func HasSidecar(pod *corev1.Pod) bool {
	if _, ok := pod.Annotations[annotationSidecarStatus]; ok {
		return true
	}
	return slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == ProxyContainerName }) ||
		slices.ContainsFunc(pod.Spec.InitContainers, func(c corev1.Container) bool {
			return c.Name == ProxyContainerName && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		})
}

// NamespaceInjection reads a namespace's injection labels the way Istio's
// default webhooks select namespaces: istio-injection=enabled, or an
// istio.io/rev label with no istio-injection label at all (any
// istio-injection value, even "disabled", shuts the revision webhook out).
func NamespaceInjection(labels map[string]string) (enabled bool, revision string) {
	if v, ok := labels[labelInjection]; ok {
		if v == "enabled" {
			return true, defaultRevisionDescription
		}
		return false, ""
	}
	if rev, ok := labels[labelRevision]; ok && rev != "" {
		return true, rev
	}
	return false, ""
}

// ignoredNamespaces never get a sidecar, whatever their labels say (istio
// pkg/kube/inject IgnoredNamespaces).
var ignoredNamespaces = map[string]bool{"kube-system": true, "kube-public": true, "kube-node-lease": true, "local-path-storage": true}

// InjectionIntended reports whether Istio's injector would add a sidecar
// to the pod if it were created now. It follows the default webhook
// selectors (mutatingwebhook.yaml, which see labels only) and then
// injectRequired (which also reads the annotation): hostNetwork and the
// Kubernetes system namespaces never get one; the pod label
// sidecar.istio.io/inject (it wins over the annotation of the same name)
// "false" opts out; a namespace's istio-injection label, when present,
// decides alone (only "enabled" injects); else a namespace istio.io/rev
// label injects when it names a revision; in a namespace with neither
// label, a pod istio.io/rev label naming a revision, or else the pod label
// sidecar.istio.io/inject=true, opts in (the annotation alone never reaches
// the webhook). Any named revision is assumed to be installed.
func InjectionIntended(pod *corev1.Pod, namespaceLabels map[string]string) bool {
	if pod.Spec.HostNetwork || ignoredNamespaces[pod.Namespace] {
		return false
	}
	podChoice := pod.Annotations[labelSidecarInject]
	if v, ok := pod.Labels[labelSidecarInject]; ok {
		podChoice = v
	}
	if podChoice == "false" {
		return false
	}
	if v, ok := namespaceLabels[labelInjection]; ok {
		return v == "enabled"
	}
	if rev, ok := namespaceLabels[labelRevision]; ok {
		// An empty istio.io/rev matches no revision's webhook, and its
		// presence shuts out the object-selector webhooks too.
		return rev != ""
	}
	if rev, ok := pod.Labels[labelRevision]; ok {
		return rev != ""
	}
	return pod.Labels[labelSidecarInject] == "true"
}

// AmbientNamespace reports istio.io/dataplane-mode=ambient. Ambient's
// ztunnel does not sniff but a waypoint may; we flag, not judge.
func AmbientNamespace(labels map[string]string) bool {
	return labels[labelDataplaneMode] == dataplaneModeAmbient
}
