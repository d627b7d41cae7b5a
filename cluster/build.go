package cluster

import (
	"sort"
	"strconv"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// loadedPod is a pod converted as its LIST page arrived, with what
// InjectionIntended needs once the namespace labels are known: keeping the
// full corev1.Pod of 20,000 pods alive until then costs hundreds of MB.
type loadedPod struct {
	Pod
	hostNetwork     bool
	injectAnno      string
	injectAnnoFound bool
}

func newLoadedPod(pod *corev1.Pod) loadedPod {
	out := loadedPod{Pod: ConvertPod(pod, nil), hostNetwork: pod.Spec.HostNetwork}
	out.injectAnno, out.injectAnnoFound = pod.Annotations[labelSidecarInject]
	return out
}

// injectionIntended is InjectionIntended on what newLoadedPod kept.
func (p *loadedPod) injectionIntended(namespaceLabels map[string]string) bool {
	stub := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Labels: p.Labels}, Spec: corev1.PodSpec{HostNetwork: p.hostNetwork}}
	if p.injectAnnoFound {
		stub.Annotations = map[string]string{labelSidecarInject: p.injectAnno}
	}
	return InjectionIntended(&stub, namespaceLabels)
}

// sliceBackends is one EndpointSlice reduced to the pods it names.
type sliceBackends struct {
	key  string // "ns/service"
	pods []PodRef
}

func newSliceBackends(s *discoveryv1.EndpointSlice) (sliceBackends, bool) {
	svc := s.Labels[discoveryv1.LabelServiceName]
	if svc == "" {
		return sliceBackends{}, false
	}
	out := sliceBackends{key: s.Namespace + "/" + svc}
	for _, ep := range s.Endpoints {
		if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
			continue
		}
		ns := ep.TargetRef.Namespace
		if ns == "" {
			ns = s.Namespace
		}
		out.pods = append(out.pods, PodRef{Namespace: ns, Name: ep.TargetRef.Name})
	}
	return out, true
}

// build assembles the inventory from values converted as the LIST pages
// arrived, sorted so that everything downstream is deterministic.
func build(inv *Inventory, namespaces []corev1.Namespace, services []Service, slices []sliceBackends, pods []loadedPod, entries []ServiceEntry, peerAuths []PeerAuthentication) {
	nsLabels := map[string]map[string]string{}
	for i := range namespaces {
		nsLabels[namespaces[i].Name] = namespaces[i].Labels
		inv.Namespaces = append(inv.Namespaces, ConvertNamespace(&namespaces[i]))
	}
	sort.Slice(inv.Namespaces, func(i, j int) bool { return inv.Namespaces[i].Name < inv.Namespaces[j].Name })

	if len(pods) > 0 {
		inv.Pods = make([]Pod, len(pods))
	}
	for i := range pods {
		pods[i].InjectionIntended = pods[i].injectionIntended(nsLabels[pods[i].Namespace])
		inv.Pods[i] = pods[i].Pod
	}
	sortByName(inv.Pods, func(p *Pod) (string, string) { return p.Namespace, p.Name })
	podsByNamespace := map[string][]int{}
	for i := range inv.Pods {
		podsByNamespace[inv.Pods[i].Namespace] = append(podsByNamespace[inv.Pods[i].Namespace], i)
	}

	backends := backendsFromSlices(slices)
	for _, svc := range services {
		if refs, ok := backends[svc.Namespace+"/"+svc.Name]; ok {
			svc.Backends = refs
		} else if len(svc.Selector) > 0 {
			// No EndpointSlice (no controller, or not allowed to read
			// them): the selector says which pods would back it. (An empty
			// one selects no pod, as the endpoints controller reads it,
			// although as a label selector it would select every pod.)
			selector := labels.ValidatedSetSelector(svc.Selector)
			for _, i := range podsByNamespace[svc.Namespace] {
				if p := &inv.Pods[i]; selector.Matches(labels.Set(p.Labels)) {
					svc.Backends = append(svc.Backends, PodRef{Namespace: p.Namespace, Name: p.Name})
				}
			}
		}
		inv.Services = append(inv.Services, svc)
	}
	sortByName(inv.Services, func(s *Service) (string, string) { return s.Namespace, s.Name })

	inv.ServiceEntries = entries
	sortByName(inv.ServiceEntries, func(s *ServiceEntry) (string, string) { return s.Namespace, s.Name })

	inv.PeerAuthentications = uniqueBy(peerAuths, func(pa PeerAuthentication) string { return pa.Namespace + "/" + pa.Name })
	sortByName(inv.PeerAuthentications, func(pa *PeerAuthentication) (string, string) { return pa.Namespace, pa.Name })
}

// sortByName orders objects by namespace, then name; ref reads the two.
func sortByName[T any](list []T, ref func(*T) (namespace, name string)) {
	sort.Slice(list, func(i, j int) bool {
		nsI, nameI := ref(&list[i])
		nsJ, nameJ := ref(&list[j])
		return podLess(nsI, nameI, nsJ, nameJ)
	})
}

// uniqueBy keeps the first element of each key, in order (nil when
// list is empty).
func uniqueBy[T any](list []T, key func(T) string) []T {
	var out []T
	seen := map[string]bool{}
	for _, v := range list {
		if k := key(v); !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

func podLess(ns1, n1, ns2, n2 string) bool {
	if ns1 != ns2 {
		return ns1 < ns2
	}
	return n1 < n2
}

// backendsFromSlices maps "ns/service" to the pods its EndpointSlices name,
// each once, sorted. A Service with slices but no pod in them maps to nil:
// its slices say it has no backends, so no selector fallback.
func backendsFromSlices(slices []sliceBackends) map[string][]PodRef {
	out := map[string][]PodRef{}
	seen := map[string]bool{}
	for _, s := range slices {
		if _, ok := out[s.key]; !ok {
			out[s.key] = nil
		}
		for _, ref := range s.pods {
			if k := s.key + "|" + ref.Namespace + "/" + ref.Name; !seen[k] {
				seen[k] = true
				out[s.key] = append(out[s.key], ref)
			}
		}
	}
	for k := range out {
		sortByName(out[k], func(r *PodRef) (string, string) { return r.Namespace, r.Name })
	}
	return out
}

// ConvertNamespace reads a namespace's mesh labels.
func ConvertNamespace(ns *corev1.Namespace) Namespace {
	enabled, rev := NamespaceInjection(ns.Labels)
	return Namespace{Name: ns.Name, Labels: ns.Labels, InjectionEnabled: enabled, Revision: rev, Ambient: AmbientNamespace(ns.Labels)}
}

// ConvertPod reduces a pod to what sniffing depends on.
func ConvertPod(pod *corev1.Pod, namespaceLabels map[string]string) Pod {
	out := Pod{
		Namespace:         pod.Namespace,
		Name:              pod.Name,
		Labels:            pod.Labels,
		Phase:             string(pod.Status.Phase),
		HasSidecar:        HasSidecar(pod),
		InjectionIntended: InjectionIntended(pod, namespaceLabels),
		ServiceAccount:    pod.Spec.ServiceAccountName,
		Interception:      ParseInterception(pod.Annotations),
	}
	for _, ip := range pod.Status.PodIPs {
		out.IPs = append(out.IPs, ip.IP)
	}
	if len(out.IPs) == 0 && pod.Status.PodIP != "" {
		out.IPs = []string{pod.Status.PodIP}
	}
	add := func(c *corev1.Container) {
		if c.Name == ProxyContainerName {
			return
		}
		out.Images = append(out.Images, c.Image)
		for _, p := range c.Ports {
			if out.ContainerPorts == nil {
				out.ContainerPorts = map[string]int32{}
				out.PortImages = map[int32]string{}
			}
			out.PortImages[p.ContainerPort] = c.Image
			l4 := string(p.Protocol)
			if l4 == "" {
				l4 = string(corev1.ProtocolTCP)
			}
			out.Ports = append(out.Ports, ContainerPort{Name: p.Name, Number: p.ContainerPort, Protocol: l4, Image: c.Image})
			if p.Name != "" {
				out.ContainerPorts[p.Name] = p.ContainerPort
			}
		}
	}
	for i := range pod.Spec.Containers {
		add(&pod.Spec.Containers[i])
	}
	for i := range pod.Spec.InitContainers {
		// Native sidecars serve traffic like ordinary containers.
		if c := &pod.Spec.InitContainers[i]; c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			add(c)
		}
	}
	return out
}

// ConvertService resolves every port's protocol with Istio's rule.
func ConvertService(svc *corev1.Service) Service {
	out := Service{
		Namespace: svc.Namespace,
		Name:      svc.Name,
		Type:      string(svc.Spec.Type),
		ClusterIP: svc.Spec.ClusterIP,
		Selector:  svc.Spec.Selector,
		ExportTo:  parseExportToAnnotation(svc.Annotations),
	}
	if out.Type == "" {
		out.Type = string(corev1.ServiceTypeClusterIP)
	}
	for _, p := range svc.Spec.Ports {
		l4 := string(p.Protocol)
		if l4 == "" {
			l4 = string(corev1.ProtocolTCP)
		}
		sp := ServicePort{Name: p.Name, Port: p.Port, TargetPort: p.TargetPort.String(), Protocol: l4}
		if p.TargetPort.IntValue() == 0 && p.TargetPort.StrVal == "" {
			// Kubernetes defaults targetPort to port.
			sp.TargetPort = strconv.Itoa(int(p.Port))
		}
		if p.AppProtocol != nil {
			sp.AppProtocol = *p.AppProtocol
		}
		sp.Resolved = ConvertProtocol(p.Port, p.Name, l4, p.AppProtocol)
		out.Ports = append(out.Ports, sp)
	}
	return out
}

// ConvertServiceEntry resolves every port's protocol as Istio reads a
// ServiceEntry: from the protocol field only.
func ConvertServiceEntry(se *networkingv1.ServiceEntry) ServiceEntry {
	out := ServiceEntry{
		Namespace:  se.Namespace,
		Name:       se.Name,
		Hosts:      se.Spec.GetHosts(),
		Addresses:  se.Spec.GetAddresses(),
		Location:   se.Spec.GetLocation().String(),
		Resolution: se.Spec.GetResolution().String(),
		ExportTo:   se.Spec.GetExportTo(),
	}
	for _, ep := range se.Spec.GetEndpoints() {
		if ep.GetAddress() != "" {
			out.Endpoints = append(out.Endpoints, ep.GetAddress())
		}
	}
	for _, p := range se.Spec.GetPorts() {
		out.Ports = append(out.Ports, ServiceEntryPort{
			Number:     p.GetNumber(),
			Name:       p.GetName(),
			Protocol:   p.GetProtocol(),
			TargetPort: p.GetTargetPort(),
			Resolved:   ServiceEntryPortProtocol(p.GetProtocol()),
		})
	}
	return out
}
