package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestCountingProxy sends a pod create, a watch, a log read and a
// port-forward through the proxy to a real API server and checks each is
// counted once, and that the API server's own counter saw the create.
func TestCountingProxy(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	ctx := context.Background()
	p, err := startCountingProxy(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := writeKubeconfig(kc, p.URL); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	before, err := scrape(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := kube.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w, err := kube.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	<-w.ResultChan() // the pod's ADDED: the watch streams through the proxy
	w.Stop()
	// No node runs the pod: the log read and the port-forward fail at the
	// API server, but they passed the proxy.
	_, _ = kube.CoreV1().Pods("default").GetLogs("p", &corev1.PodLogOptions{}).DoRaw(ctx)
	_, _ = kube.CoreV1().RESTClient().Post().Namespace("default").Resource("pods").Name("p").SubResource("portforward").DoRaw(ctx)

	got := p.take()
	// client-go may send more (discovery): the total is at least the four
	// requests, the classified ones match exactly.
	if got.total < 4 {
		t.Errorf("total = %d, want at least 4", got.total)
	}
	got.total = 0
	want := requestCounts{podCreates: 1, portForwards: 1, logs: 1, watches: 1}
	if got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	after, err := scrape(ctx, env)
	if err != nil {
		t.Fatal(err)
	}
	if d := after.minus(before); d.podCreates != 1 {
		t.Errorf("apiserver_request_total pod creates = %v, want 1", d.podCreates)
	}
}

// TestGoalLines checks the goals computed from the seeding and from the
// run of one probe pod alone (not from the runs they judge).
func TestGoalLines(t *testing.T) {
	one := result{name: oneProbePod, kind: "one", probePods: 1, wall: 4 * time.Second,
		starts: []time.Duration{500 * time.Millisecond}, bannerWait: 3 * time.Second}
	after := result{name: "after (pods)", kind: "pods", probePods: 14, wall: 6 * time.Second,
		starts: []time.Duration{400 * time.Millisecond, 1500 * time.Millisecond, 2 * time.Second}, bannerWait: 3 * time.Second}
	cases := []struct {
		name string
		rs   []result
		want []string
	}{
		{"after meets both", []result{one, after}, []string{
			"goal after (pods): probe pods <= 2 + 2 x 6 = 14: met (14)",
			"goal after (pods): wall <= 2 x (one probe pod's start 500ms + banner wait 3s) = 7s: met (6s)",
		}},
		{"before misses both", []result{one, after, {name: "before (pods)", kind: "pods", probePods: 100, wall: 90 * time.Second}}, []string{
			"goal before (pods): probe pods <= 2 + 2 x 6 = 14: missed (100)",
			"goal before (pods): wall <= 2 x (one probe pod's start 500ms + banner wait 3s) = 7s: missed (1m30s)",
		}},
		{"config creates no pod", []result{one, after, {name: "after (config)", kind: "config"}}, []string{
			"goal after (config): 0 probe pods: met (0)",
		}},
		{"config that created a pod", []result{one, after, {name: "after (config)", kind: "config", probePods: 1}}, []string{
			"goal after (config): 0 probe pods: missed (1)",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			printTable(&out, options{namespaces: 50, services: 4, servers: 1, own: 6}, c.rs)
			for _, w := range c.want {
				if !strings.Contains(out.String(), w+"\n") {
					t.Errorf("no line %q in\n%s", w, out.String())
				}
			}
		})
	}
}
