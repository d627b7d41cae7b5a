package vantage

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// RunFromPod probes from inside an existing client pod with an ephemeral
// container, as `kubectl debug` does: it shares the pod's network
// namespace, so its dials take the real client path, through the sidecar
// when there is one. Ephemeral containers cannot be removed; this one
// exits when done and stays listed as terminated in the pod's status.
func RunFromPod(ctx context.Context, kube kubernetes.Interface, ns, name string, targets []AgentTarget, o PodOptions) ([]target.Observation, error) {
	pod, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("--from-pod %s/%s: %w", ns, name, err)
	}
	inMesh := cluster.HasSidecar(pod)
	spec := ProbePodSpec(PodProbe{Namespace: ns, InMesh: inMesh, Targets: targets}, o).Spec.Containers[0]
	cname := "serverfirst-" + o.ScanID
	// Never --quit-proxy here: the sidecar belongs to the client's pod.
	args := []string{"agent", "--timeout", o.BannerTimeout.String(), "--connect-timeout", o.ConnectTimeout.String()}
	if inMesh {
		args = append(args, "--wait-for-proxy")
	}
	ec := corev1.EphemeralContainer{EphemeralContainerCommon: corev1.EphemeralContainerCommon{
		Name: cname, Image: spec.Image, Command: spec.Command, Args: args, Env: spec.Env,
		SecurityContext: spec.SecurityContext, TerminationMessagePolicy: corev1.TerminationMessageReadFile,
	}}
	if inMesh {
		// Not the proxy's uid: that one bypasses the capture.
		ec.SecurityContext.RunAsUser = ptr.To(int64(65532))
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, ec)
	if _, err := kube.CoreV1().Pods(ns).UpdateEphemeralContainers(ctx, name, pod, metav1.UpdateOptions{}); err != nil {
		return nil, fmt.Errorf("--from-pod %s/%s: adding an ephemeral container: %w", ns, name, err)
	}
	if err := waitContainerTerminated(ctx, kube, ns, name, cname, true); err != nil {
		return nil, fmt.Errorf("--from-pod %s/%s: %w", ns, name, err)
	}
	log, err := readLog(ctx, kube, ns, name, cname)
	if err != nil {
		return nil, err
	}
	return ParseAgentOutput(log, vantageOf(inMesh), inMesh)
}
