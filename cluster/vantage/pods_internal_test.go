package vantage

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestContainerDone(t *testing.T) {
	waiting := func(name, reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: "m"}}}
	}
	terminated := corev1.ContainerStatus{Name: "probe", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}}
	for _, tc := range []struct {
		name      string
		status    corev1.PodStatus
		ephemeral bool
		done      bool
		err       string
	}{
		{name: "pending", status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("probe", "ContainerCreating")}}},
		{name: "terminated", status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{terminated}}, done: true},
		{name: "image pull", status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{waiting("probe", "ImagePullBackOff")}}, err: "container probe cannot start: ImagePullBackOff"},
		// A native sidecar that cannot start blocks the probe container for good.
		{name: "native sidecar stuck", status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{waiting("istio-proxy", "CreateContainerConfigError")},
			ContainerStatuses:     []corev1.ContainerStatus{waiting("probe", "PodInitializing")},
		}, err: "init container istio-proxy cannot start, so probe never will: CreateContainerConfigError"},
		{name: "native sidecar starting", status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{waiting("istio-proxy", "PodInitializing")},
		}},
		// An ephemeral container does not wait for init containers.
		{name: "ephemeral ignores init", ephemeral: true, status: corev1.PodStatus{
			InitContainerStatuses: []corev1.ContainerStatus{waiting("istio-proxy", "CreateContainerConfigError")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done, err := containerDone(&corev1.Pod{Status: tc.status}, "probe", tc.ephemeral)
			if done != tc.done {
				t.Errorf("done = %v, want %v", done, tc.done)
			}
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("err = %v, want %q", err, tc.err)
			}
		})
	}
}
