package vantage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// Labels every probe pod carries, so they can be found and cleaned up.
const (
	LabelName      = "app.kubernetes.io/name"
	LabelComponent = "app.kubernetes.io/component"
	LabelScan      = "serverfirst.io/scan"
	LabelVantage   = "serverfirst.io/vantage"
	NameValue      = "kubectl-serverfirst"
	ComponentProbe = "probe"
	agentContainer = "agent"
	// staleAfter: probe pods older than this are leftovers of a run that
	// was killed before it could clean up.
	staleAfter = 15 * time.Minute
)

// PodProbe says what one probe pod does.
type PodProbe struct {
	Namespace string
	// InMesh asks for a sidecar (label sidecar.istio.io/inject "true");
	// false forbids one.
	InMesh  bool
	Targets []AgentTarget
}

// PodOptions are shared by all probe pods of a scan.
type PodOptions struct {
	Image          string
	ScanID         string
	BannerTimeout  time.Duration
	ConnectTimeout time.Duration
	// StartTimeout bounds scheduling, image pull and sidecar start.
	StartTimeout time.Duration
}

// NewScanID is a short random id that labels a scan's pods.
func NewScanID() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// vantageOf maps a pod's mesh membership to the report's vantage.
func vantageOf(inMesh bool) target.Vantage {
	if inMesh {
		return target.VantageMeshClient
	}
	return target.VantageOutsideClient
}

// ProbePodSpec builds the pod: restricted-compliant, never restarted,
// labelled, and with its targets in the environment.
func ProbePodSpec(p PodProbe, o PodOptions) *corev1.Pod {
	v := "outside-client"
	inject := "false"
	if p.InMesh {
		v, inject = "mesh-client", "true"
	}
	args := []string{"agent", "--timeout", o.BannerTimeout.String(), "--connect-timeout", o.ConnectTimeout.String()}
	if p.InMesh {
		// Our own pod: let its sidecar exit afterwards so the pod completes.
		args = append(args, "--wait-for-proxy", "--quit-proxy")
	}
	deadline := int64((o.StartTimeout + 2*(o.BannerTimeout+o.ConnectTimeout) + time.Minute).Seconds())
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Namespace:    p.Namespace,
			GenerateName: "serverfirst-probe-" + v + "-",
			Labels: map[string]string{
				LabelName: NameValue, LabelComponent: ComponentProbe, LabelScan: o.ScanID, LabelVantage: v,
				"sidecar.istio.io/inject": inject,
			},
			Annotations: map[string]string{
				// Start the app only once the proxy is ready, as Istio
				// recommends for clients that connect at once.
				"proxy.istio.io/config": `{"holdApplicationUntilProxyStarts": true}`,
			},
		},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			ActiveDeadlineSeconds:         &deadline,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot:   ptr.To(true),
				RunAsUser:      ptr.To(int64(65532)),
				RunAsGroup:     ptr.To(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:    agentContainer,
				Image:   o.Image,
				Command: []string{"kubectl-serverfirst"},
				Args:    args,
				Env:     []corev1.EnvVar{{Name: TargetsEnv, Value: EncodeTargets(p.Targets)}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					ReadOnlyRootFilesystem:   ptr.To(true),
					RunAsNonRoot:             ptr.To(true),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
				},
			}},
		},
	}
}

// RunProbePod creates the pod, waits for its agent to finish, reads its
// log and deletes it, whatever happens (with a context of its own, so
// Ctrl-C still cleans up). A pod that asked for a sidecar and did not get
// one is reported as an error: its results would be mislabelled.
func RunProbePod(ctx context.Context, kube kubernetes.Interface, p PodProbe, o PodOptions) ([]target.Observation, error) {
	pod, err := kube.CoreV1().Pods(p.Namespace).Create(ctx, ProbePodSpec(p, o), metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("creating the %s probe pod in %s: %w", vantageOf(p.InMesh), p.Namespace, err)
	}
	defer deletePod(kube, pod.Namespace, pod.Name)
	if p.InMesh && !cluster.HasSidecar(pod) {
		return nil, fmt.Errorf("namespace %s: the mesh-client probe pod got no sidecar (injection is off for it): no mesh-path evidence there", p.Namespace)
	}
	if !p.InMesh && cluster.HasSidecar(pod) {
		return nil, fmt.Errorf("namespace %s: the outside-client probe pod was given a sidecar despite sidecar.istio.io/inject=false: no outside-path evidence there", p.Namespace)
	}
	wait := o.StartTimeout + 2*(o.BannerTimeout+o.ConnectTimeout)*time.Duration(1+len(p.Targets)/64) + 30*time.Second
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := waitContainerTerminated(wctx, kube, pod.Namespace, pod.Name, agentContainer, false); err != nil {
		return nil, fmt.Errorf("%s probe pod %s/%s: %w", vantageOf(p.InMesh), pod.Namespace, pod.Name, err)
	}
	log, err := readLog(ctx, kube, pod.Namespace, pod.Name, agentContainer)
	if err != nil {
		return nil, err
	}
	obs, err := ParseAgentOutput(log, vantageOf(p.InMesh), p.InMesh)
	if err != nil {
		return obs, fmt.Errorf("%s probe pod %s/%s: %w", vantageOf(p.InMesh), pod.Namespace, pod.Name, err)
	}
	return obs, nil
}

// deletePod removes a pod at once, with a fresh context: cleanup must run
// even when the scan's context was cancelled.
func deletePod(kube kubernetes.Interface, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := kube.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To(int64(0))})
	if err != nil && !apierrors.IsNotFound(err) {
		// Nothing better to do: the stale sweep of the next scan gets it.
		_ = err
	}
}

// SweepStale deletes probe pods left by scans that were killed (older
// than 15 minutes) in the namespaces given.
func SweepStale(ctx context.Context, kube kubernetes.Interface, namespaces []string, now time.Time) int {
	n := 0
	for _, ns := range namespaces {
		pods, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelComponent + "=" + ComponentProbe + "," + LabelName + "=" + NameValue})
		if err != nil {
			continue
		}
		for _, p := range pods.Items {
			if now.Sub(p.CreationTimestamp.Time) > staleAfter {
				deletePod(kube, p.Namespace, p.Name)
				n++
			}
		}
	}
	return n
}

// waitContainerTerminated watches the pod until the named container (an
// ephemeral one when ephemeral is set) has terminated. A pod that fails
// before that is an error that says why.
func waitContainerTerminated(ctx context.Context, kube kubernetes.Interface, ns, name, container string, ephemeral bool) error {
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	for {
		list, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return errors.New("the pod disappeared")
		}
		if done, err := containerDone(&list.Items[0], container, ephemeral); done || err != nil {
			return err
		}
		w, err := kube.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return err
		}
		err = func() error {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return fmt.Errorf("gave up waiting for container %s: %w", container, ctx.Err())
				case ev, ok := <-w.ResultChan():
					if !ok {
						return errRewatch
					}
					switch ev.Type {
					case watch.Deleted:
						return errors.New("the pod was deleted before the probe finished")
					case watch.Error:
						return errRewatch
					}
					pod, ok := ev.Object.(*corev1.Pod)
					if !ok {
						continue
					}
					if done, err := containerDone(pod, container, ephemeral); done || err != nil {
						return err
					}
				}
			}
		}()
		if !errors.Is(err, errRewatch) {
			return err
		}
	}
}

var errRewatch = errors.New("watch closed")

// fatalWaiting are the kubelet's waiting reasons after which the container
// will not start by itself; waiting out the timeout would only delay the
// report.
var fatalWaiting = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
	"CreateContainerConfigError": true, "CreateContainerError": true, "RunContainerError": true, "CrashLoopBackOff": true,
}

func containerDone(pod *corev1.Pod, container string, ephemeral bool) (bool, error) {
	statuses := pod.Status.ContainerStatuses
	if ephemeral {
		statuses = pod.Status.EphemeralContainerStatuses
	}
	for _, s := range statuses {
		if s.Name != container {
			continue
		}
		if t := s.State.Terminated; t != nil {
			return true, nil
		}
		if w := s.State.Waiting; w != nil && fatalWaiting[w.Reason] {
			return false, fmt.Errorf("container %s cannot start: %s: %s (is --probe-image reachable from the cluster?)", container, w.Reason, w.Message)
		}
	}
	if !ephemeral {
		// The probe container starts only after every init container,
		// and a native sidecar (istio-proxy injected as an init container
		// with restartPolicy Always) stuck in a fatal state blocks it for
		// good: say so now rather than wait out the timeout.
		for _, s := range pod.Status.InitContainerStatuses {
			if w := s.State.Waiting; w != nil && fatalWaiting[w.Reason] {
				return false, fmt.Errorf("init container %s cannot start, so %s never will: %s: %s", s.Name, container, w.Reason, w.Message)
			}
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
			return false, fmt.Errorf("the pod cannot be scheduled: %s", c.Message)
		}
	}
	if pod.Status.Phase == corev1.PodFailed && !ephemeral {
		return false, fmt.Errorf("the pod failed: %s %s", pod.Status.Reason, pod.Status.Message)
	}
	return false, nil
}

// readLog fetches a container's log through the API server.
func readLog(ctx context.Context, kube kubernetes.Interface, ns, pod, container string) ([]byte, error) {
	rc, err := kube.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, LimitBytes: ptr.To(int64(16 << 20))}).Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the log of %s/%s (%s): %w", ns, pod, container, err)
	}
	defer rc.Close()
	return io.ReadAll(rc)
}
