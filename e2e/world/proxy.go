package world

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of the
// EndpointSlices the node writes for Services with a selector.
const ManagedBy = "world.serverfirst.io"

// servicesChain holds one DNAT rule per ClusterIP:port in the node netns.
const servicesChain = "SFW-SERVICES"

type proxyState struct {
	rules string

	// mu guards the record of complete passes WaitEndpointsSynced waits on.
	mu sync.Mutex
	// synced is when the last pass that wrote every EndpointSlice it
	// wanted began; passed is closed (and replaced) after each such pass.
	synced time.Time
	passed chan struct{}
}

func (n *Node) installProxyChains() error {
	rules := "*nat\n:" + servicesChain + " - [0:0]\n" +
		"-A PREROUTING -j " + servicesChain + "\n" +
		"-A OUTPUT -j " + servicesChain + "\n" +
		"COMMIT\n"
	if err := runInput([]byte(rules), "ip", "netns", "exec", n.net.node, "iptables-restore", "--noflush"); err != nil {
		return fmt.Errorf("kube-proxy chains: %w", err)
	}
	return nil
}

func (n *Node) proxyLoop() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		began := time.Now()
		if n.syncProxy() {
			st := &n.proxyState
			st.mu.Lock()
			st.synced = began
			if st.passed != nil {
				close(st.passed)
			}
			st.passed = make(chan struct{})
			st.mu.Unlock()
		}
		select {
		case <-n.ctx.Done():
			return
		case <-n.proxyKick:
		case <-tick.C:
		}
	}
}

// backend is one pod endpoint of a Service.
type backend struct {
	pod   *corev1.Pod
	ready bool
}

// WaitEndpointsSynced returns once a pass of the EndpointSlice writer
// that began after `after` has written every slice it wanted: the
// endpoints (and their readiness) of every pod and Service the API server
// held at `after` are in the API server.
func (n *Node) WaitEndpointsSynced(ctx context.Context, after time.Time) error {
	st := &n.proxyState
	for {
		kickChan(n.proxyKick)
		st.mu.Lock()
		synced, passed := st.synced, st.passed
		if passed == nil {
			passed = make(chan struct{})
			st.passed = passed
		}
		st.mu.Unlock()
		if synced.After(after) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("world: EndpointSlices not written since %s: %w", after.Format(time.RFC3339Nano), ctx.Err())
		case <-n.ctx.Done():
			return errors.New("world: the node stopped")
		case <-passed:
		}
	}
}

// syncProxy writes EndpointSlices for selector Services and rewrites the
// DNAT chain (first ready-or-running backend per port). It reports
// whether it read everything and wrote every slice it wanted.
func (n *Node) syncProxy() bool {
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	svcList, err := n.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	sliceList, err := n.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	pods, err := n.listPods()
	if err != nil {
		return false
	}
	svcs := make([]*corev1.Service, len(svcList.Items))
	for i := range svcList.Items {
		svcs[i] = &svcList.Items[i]
	}
	sort.Slice(pods, func(i, j int) bool {
		if !pods[i].CreationTimestamp.Equal(&pods[j].CreationTimestamp) {
			return pods[i].CreationTimestamp.Before(&pods[j].CreationTimestamp)
		}
		return pods[i].Name < pods[j].Name
	})
	sort.Slice(svcs, func(i, j int) bool {
		return svcs[i].Namespace+"/"+svcs[i].Name < svcs[j].Namespace+"/"+svcs[j].Name
	})
	var rules []string
	wantSlices := map[string]*discoveryv1.EndpointSlice{} // ns/name
	for _, svc := range svcs {
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		var backends []backend
		if len(svc.Spec.Selector) > 0 {
			sel := labels.SelectorFromSet(svc.Spec.Selector)
			for _, p := range pods {
				if p.Namespace != svc.Namespace || !sel.Matches(labels.Set(p.Labels)) || !n.inPodCIDR(p.Status.PodIP) {
					continue
				}
				if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
					continue
				}
				backends = append(backends, backend{pod: p, ready: podReady(p) && p.DeletionTimestamp == nil})
			}
			slice := n.desiredSlice(svc, backends)
			wantSlices[slice.Namespace+"/"+slice.Name] = slice
		}
		if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone || net.ParseIP(svc.Spec.ClusterIP).To4() == nil {
			continue
		}
		for _, sp := range svc.Spec.Ports {
			if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
				continue
			}
			dest := ""
			if len(svc.Spec.Selector) > 0 {
				dest = firstBackend(backends, sp)
			} else {
				dest = sliceBackend(sliceList.Items, svc, sp)
			}
			if dest == "" {
				continue
			}
			rules = append(rules, fmt.Sprintf("-A %s -d %s/32 -p tcp -m tcp --dport %d -m comment --comment %q -j DNAT --to-destination %s",
				servicesChain, svc.Spec.ClusterIP, sp.Port, svc.Namespace+"/"+svc.Name+":"+portName(sp), dest))
		}
	}
	restore := "*nat\n:" + servicesChain + " - [0:0]\n" + strings.Join(rules, "\n")
	if len(rules) > 0 {
		restore += "\n"
	}
	restore += "COMMIT\n"
	rulesOK := true
	if restore != n.proxyState.rules {
		if err := runInput([]byte(restore), "ip", "netns", "exec", n.net.node, "iptables-restore", "--noflush"); err != nil {
			rulesOK = false
			if n.ctx.Err() == nil {
				n.opts.Logf("world: kube-proxy rules: %v", err)
			}
		} else {
			n.proxyState.rules = restore
		}
	}
	return n.syncSlices(sliceList.Items, wantSlices) && rulesOK
}

func portName(sp corev1.ServicePort) string {
	if sp.Name != "" {
		return sp.Name
	}
	return fmt.Sprint(sp.Port)
}

func (n *Node) inPodCIDR(ip string) bool {
	p := net.ParseIP(ip)
	return p != nil && n.net.cidr.Contains(p)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// targetPort resolves a Service port's targetPort against a pod's
// containers (named ports included).
func targetPort(sp corev1.ServicePort, p *corev1.Pod) (int32, bool) {
	tp := sp.TargetPort
	if tp.IntVal == 0 && tp.StrVal == "" {
		return sp.Port, true
	}
	if tp.StrVal == "" {
		return tp.IntVal, true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == tp.StrVal && (cp.Protocol == "" || cp.Protocol == sp.Protocol || sp.Protocol == "") {
				return cp.ContainerPort, true
			}
		}
	}
	for _, c := range p.Spec.InitContainers {
		for _, cp := range c.Ports {
			if cp.Name == tp.StrVal {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// firstBackend picks the first ready backend, else the first running one.
func firstBackend(bs []backend, sp corev1.ServicePort) string {
	for _, wantReady := range []bool{true, false} {
		for _, b := range bs {
			if wantReady && !b.ready || b.pod.Status.Phase != corev1.PodRunning || b.pod.DeletionTimestamp != nil {
				continue
			}
			if port, ok := targetPort(sp, b.pod); ok {
				return fmt.Sprintf("%s:%d", b.pod.Status.PodIP, port)
			}
		}
	}
	return ""
}

// sliceBackend serves selector-less Services from EndpointSlices others
// wrote: the first ready address with the port's name.
func sliceBackend(slices []discoveryv1.EndpointSlice, svc *corev1.Service, sp corev1.ServicePort) string {
	for _, s := range slices {
		if s.Namespace != svc.Namespace || s.Labels[discoveryv1.LabelServiceName] != svc.Name ||
			s.Labels[discoveryv1.LabelManagedBy] == ManagedBy || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32
		for _, p := range s.Ports {
			if ptr.Deref(p.Name, "") == sp.Name && p.Port != nil {
				port = *p.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) > 0 && ptr.Deref(e.Conditions.Ready, true) {
				return fmt.Sprintf("%s:%d", e.Addresses[0], port)
			}
		}
	}
	return ""
}

func sliceName(svc *corev1.Service) string {
	name := svc.Name + "-world"
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

func (n *Node) desiredSlice(svc *corev1.Service, bs []backend) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      sliceName(svc),
			Namespace: svc.Namespace,
			Labels: map[string]string{
				discoveryv1.LabelServiceName: svc.Name,
				discoveryv1.LabelManagedBy:   ManagedBy,
			},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{},
		Ports:       []discoveryv1.EndpointPort{},
	}
	for _, sp := range svc.Spec.Ports {
		ep := discoveryv1.EndpointPort{Name: ptr.To(sp.Name), Protocol: ptr.To(sp.Protocol), AppProtocol: sp.AppProtocol}
		if ep.Protocol == nil || *ep.Protocol == "" {
			ep.Protocol = ptr.To(corev1.ProtocolTCP)
		}
		resolved := false
		for _, b := range bs {
			if port, ok := targetPort(sp, b.pod); ok {
				ep.Port = ptr.To(port)
				resolved = true
				break
			}
		}
		if !resolved && sp.TargetPort.StrVal == "" {
			port := sp.TargetPort.IntVal
			if port == 0 {
				port = sp.Port
			}
			ep.Port = ptr.To(port)
		}
		s.Ports = append(s.Ports, ep)
	}
	for _, b := range bs {
		terminating := b.pod.DeletionTimestamp != nil
		e := discoveryv1.Endpoint{
			Addresses: []string{b.pod.Status.PodIP},
			Conditions: discoveryv1.EndpointConditions{
				Ready:       ptr.To(b.ready && !terminating),
				Serving:     ptr.To(b.ready),
				Terminating: ptr.To(terminating),
			},
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: b.pod.Namespace, Name: b.pod.Name, UID: b.pod.UID},
		}
		if b.pod.Spec.NodeName != "" {
			e.NodeName = ptr.To(b.pod.Spec.NodeName)
		}
		s.Endpoints = append(s.Endpoints, e)
	}
	return s
}

// syncSlices creates, updates and deletes the node's EndpointSlices.
func (n *Node) syncSlices(all []discoveryv1.EndpointSlice, want map[string]*discoveryv1.EndpointSlice) (ok bool) {
	ok = true
	var have []*discoveryv1.EndpointSlice
	for i := range all {
		if all[i].Labels[discoveryv1.LabelManagedBy] == ManagedBy {
			have = append(have, &all[i])
		}
	}
	ctx, cancel := context.WithTimeout(n.ctx, 10*time.Second)
	defer cancel()
	api := n.client.DiscoveryV1()
	seen := map[string]bool{}
	for _, cur := range have {
		key := cur.Namespace + "/" + cur.Name
		w, ok := want[key]
		if !ok {
			err := api.EndpointSlices(cur.Namespace).Delete(ctx, cur.Name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				ok = false
				if n.ctx.Err() == nil {
					n.opts.Logf("world: delete EndpointSlice %s: %v", key, err)
				}
			}
			continue
		}
		seen[key] = true
		if reflect.DeepEqual(cur.Endpoints, w.Endpoints) && reflect.DeepEqual(cur.Ports, w.Ports) &&
			reflect.DeepEqual(cur.Labels, w.Labels) && reflect.DeepEqual(cur.OwnerReferences, w.OwnerReferences) {
			continue
		}
		upd := cur.DeepCopy()
		upd.Endpoints, upd.Ports, upd.Labels, upd.OwnerReferences = w.Endpoints, w.Ports, w.Labels, w.OwnerReferences
		if _, err := api.EndpointSlices(cur.Namespace).Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
			// A conflict is retried by the next pass (the watch kicks it).
			ok = false
			if !apierrors.IsConflict(err) && n.ctx.Err() == nil {
				n.opts.Logf("world: update EndpointSlice %s: %v", key, err)
			}
		}
	}
	for key, w := range want {
		if seen[key] {
			continue
		}
		_, err := api.EndpointSlices(w.Namespace).Create(ctx, w, metav1.CreateOptions{})
		if err != nil {
			ok = false
			if !apierrors.IsAlreadyExists(err) && n.ctx.Err() == nil {
				n.opts.Logf("world: create EndpointSlice %s: %v", key, err)
			}
		}
	}
	return ok
}
