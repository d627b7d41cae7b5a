package vantage

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// DirectProbe is the direct path to one pod: the ports to probe there and
// the target each one stands for.
type DirectProbe struct {
	Namespace, Pod string
	Ports          map[int32][]target.TargetKey
}

// RunDirect port-forwards to the pod, as kubectl port-forward does, and
// probes each forwarded port on 127.0.0.1. The forward enters the pod over
// its loopback, which Istio's capture leaves alone: what arrives is what
// the server itself sends first.
func RunDirect(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, d DirectProbe, o probe.Options) ([]target.Observation, error) {
	var ports []string
	for p := range d.Ports {
		ports = append(ports, "0:"+strconv.Itoa(int(p)))
	}
	forwarded, stop, err := forwardPorts(ctx, cfg, kube, d.Namespace, d.Pod, ports, d.Namespace+"/"+d.Pod)
	if err != nil {
		return nil, err
	}
	defer stop()
	var targets []probe.Target
	var keys [][]target.TargetKey
	for _, f := range forwarded {
		targets = append(targets, probe.Target{Host: "127.0.0.1", Port: int(f.Local)})
		keys = append(keys, d.Ports[int32(f.Remote)])
	}
	results := probe.ProbeAll(ctx, targets, o)
	var out []target.Observation
	for i, r := range results {
		// The local address means nothing to the reader: name the pod.
		r.Target = d.Namespace + "/" + d.Pod + ":" + strconv.Itoa(int(forwarded[i].Remote))
		r.Address = "port-forward " + r.Target
		for _, k := range keys[i] {
			out = append(out, target.Observation{Target: k, Vantage: target.VantageDirect, Result: r})
		}
	}
	return out, nil
}

// KeepTargets narrows direct probes to the targets keep accepts (a
// shard's share, say): a port left with no target is not forwarded, a pod
// left with no port is not visited. The input is not changed.
func KeepTargets(direct []DirectProbe, keep func(target.TargetKey) bool) []DirectProbe {
	var out []DirectProbe
	for _, d := range direct {
		ports := map[int32][]target.TargetKey{}
		for port, keys := range d.Ports {
			if kept := slices.DeleteFunc(slices.Clone(keys), func(k target.TargetKey) bool { return !keep(k) }); len(kept) > 0 {
				ports[port] = kept
			}
		}
		if len(ports) > 0 {
			out = append(out, DirectProbe{Namespace: d.Namespace, Pod: d.Pod, Ports: ports})
		}
	}
	return out
}

// PortForwardDenied asks the API server (SelfSubjectAccessReview) whether
// the caller may create pods/portforward, which every direct probe needs:
// first in all namespaces at once, then in each of namespaces. It returns
// the namespaces where the caller may not, sorted; an error when a review
// itself failed (the caller cannot tell, and should just try).
func PortForwardDenied(ctx context.Context, kube kubernetes.Interface, namespaces []string) ([]string, error) {
	allowed := func(ns string) (bool, error) {
		r, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: "create", Resource: "pods", Subresource: "portforward",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, fmt.Errorf("checking pods/portforward rights: %w", err)
		}
		return r.Status.Allowed, nil
	}
	if ok, err := allowed(""); err != nil || ok {
		return nil, err
	}
	namespaces = slices.Clone(namespaces)
	slices.Sort(namespaces)
	var denied []string
	for _, ns := range slices.Compact(namespaces) {
		ok, err := allowed(ns)
		if err != nil {
			return nil, err
		}
		if !ok {
			denied = append(denied, ns)
		}
	}
	return denied, nil
}
