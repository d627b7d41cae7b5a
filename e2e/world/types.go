// Package world runs a small Kubernetes "node" on this machine against a
// real API server (internal/testenv): a node agent that binds pods to itself and
// runs each container as a local process in the pod's own network
// namespace, a pod network (a bridge in a node network namespace, one veth
// per pod), a kube-proxy stand-in (iptables DNAT for ClusterIPs inside the
// node namespace), an EndpointSlice writer, and the kubelet API the API
// server calls for logs and port-forwards. Test tooling only; needs root.
package world

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Command is what one container runs on the node, as a local process in the
// pod's network namespace.
type Command struct {
	Path string
	Args []string
	Env  []string
	Dir  string
	UID  *uint32 // nil = root
	GID  *uint32 // nil = root
}

// ErrUnknownImage: the resolver does not know this image (the next resolver
// in a Chain is tried).
var ErrUnknownImage = errors.New("unknown image")

// ImageResolver maps a container (init, regular or ephemeral) of a pod to a
// local command. podIP is the pod's address; stateDir is a per-pod scratch
// directory the resolver may use.
type ImageResolver func(pod *corev1.Pod, c *corev1.Container, podIP, stateDir string) (Command, error)

// Chain tries each resolver in order and returns the first answer that is
// not ErrUnknownImage. With none knowing the image the error wraps
// ErrUnknownImage and names the image.
func Chain(rs ...ImageResolver) ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, stateDir string) (Command, error) {
		for _, r := range rs {
			if r == nil {
				continue
			}
			cmd, err := r(pod, c, podIP, stateDir)
			if errors.Is(err, ErrUnknownImage) {
				continue
			}
			return cmd, err
		}
		return Command{}, fmt.Errorf("container %q image %q: %w", c.Name, c.Image, ErrUnknownImage)
	}
}
