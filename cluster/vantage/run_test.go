package vantage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestRunBoundsProbePods counts the probe pods alive at once on a real API
// server. No node runs them: the test plays the kubelet, marking a pod's
// agent terminated only once as many pods are alive as the case expects
// at its peak, so a run that kept fewer alive (a shared bound of four, or
// pods queued behind the port-forward bound of one) would never get there
// and fail on the test's deadline instead. It never marks more: the peak
// seen is exactly the bound.
func TestRunBoundsProbePods(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	cases := []struct {
		name           string
		pods           int
		podConcurrency int
		wantPeak       int
	}{
		{"every pair of seven classes at once (default bound)", 14, 0, 14},
		{"bounded at three", 7, 3, 3},
		{"more pods than the default bound", vantage.DefaultPodConcurrency + 4, 0, vantage.DefaultPodConcurrency},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := fmt.Sprintf("bound-%d", i)
			if _, err := env.CreateNamespace(context.Background(), ns, nil); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			w, err := env.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: vantage.LabelComponent + "=" + vantage.ComponentProbe})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			var (
				peak, added int
				alive       = map[types.UID]bool{}
				pending     []*corev1.Pod // created, agent not yet terminated
			)
			kubelet := make(chan struct{})
			go func() {
				defer close(kubelet)
				for ev := range w.ResultChan() {
					pod, ok := ev.Object.(*corev1.Pod)
					if !ok {
						continue
					}
					switch ev.Type {
					case watch.Added:
						added++
						alive[pod.UID] = true
						peak = max(peak, len(alive))
						pending = append(pending, pod)
					case watch.Deleted:
						delete(alive, pod.UID)
					}
					// Hold every agent until the expected peak is alive
					// (or every pod was created), then let them all end.
					if len(alive) == c.wantPeak || added == c.pods {
						for _, p := range pending {
							terminateAgent(ctx, t, env, p)
						}
						pending = nil
					}
				}
			}()
			plan := vantage.Plan{}
			for range c.pods {
				plan.Pods = append(plan.Pods, vantage.PodProbe{Namespace: ns, Targets: []vantage.AgentTarget{{Key: "Service/" + ns + "/db:3306", Address: "10.96.0.5:3306"}}})
			}
			_, warnings := vantage.Run(ctx, env.Config, env.Client, plan, vantage.RunOptions{
				Pod:            vantage.PodOptions{Image: "ghcr.io/serverfirst/kubectl-serverfirst:test", ScanID: "bound", BannerTimeout: time.Second, ConnectTimeout: time.Second},
				Concurrency:    1,
				PodConcurrency: c.podConcurrency,
			})
			w.Stop()
			<-kubelet
			if ctx.Err() != nil {
				t.Fatalf("the run did not keep %d probe pods alive at once (peak %d): %v", c.wantPeak, peak, ctx.Err())
			}
			if peak != c.wantPeak {
				t.Errorf("peak probe pods alive = %d, want %d", peak, c.wantPeak)
			}
			// No node serves the agent's log: every pod ends in a warning.
			if len(warnings) != c.pods {
				t.Errorf("%d warnings, want one per pod (%d): %v", len(warnings), c.pods, warnings)
			}
		})
	}
}

// terminateAgent writes what a kubelet would once the agent exits.
func terminateAgent(ctx context.Context, t *testing.T, env *testenv.Env, p *corev1.Pod) {
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodSucceeded
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "agent", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0}}}}
	if _, err := env.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
		t.Errorf("update status of %s: %v", p.Name, err)
	}
}
