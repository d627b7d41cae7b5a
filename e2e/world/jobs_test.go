package world

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

func TestJobIndexesText(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1}, "0,1"},
		{[]int{0, 1, 2}, "0-2"},
		{[]int{1, 3, 4, 5, 7}, "1,3-5,7"},
	} {
		set := map[int]bool{}
		for _, i := range tc.in {
			set[i] = true
		}
		got := formatIndexes(set)
		if got != tc.want {
			t.Errorf("formatIndexes(%v) = %q, want %q", tc.in, got, tc.want)
		}
		back := parseIndexes(got, 8)
		if len(back) != len(set) {
			t.Errorf("parseIndexes(%q) = %v, want %v", got, back, tc.in)
		}
		for i := range set {
			if !back[i] {
				t.Errorf("parseIndexes(%q) lacks %d", got, i)
			}
		}
	}
	if got := parseIndexes("1,3-9,x,2-", 5); len(got) != 3 || !got[1] || !got[3] || !got[4] {
		t.Errorf("parseIndexes with junk and indexes beyond completions = %v", got)
	}
}

// TestJobController runs the job controller against a real API server
// without a node: the test plays kubelet by writing pod phases.
func TestJobController(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	jc := StartJobController(context.Background(), env.Client, t.Logf)
	t.Cleanup(jc.Stop)
	kube := env.Client
	seq := 0
	newNS := func(t *testing.T) string {
		seq++
		name := fmt.Sprintf("jobs-%d", seq)
		if _, err := env.CreateNamespace(context.Background(), name, nil); err != nil {
			t.Fatal(err)
		}
		return name
	}

	t.Run("complete", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		job := createJob(ctx, t, kube, ns, "one", nil)
		pod := waitJobPods(ctx, t, kube, ns, "one", 1)[0]
		checkJobPod(t, job, pod)
		if !strings.HasPrefix(pod.Name, "one-") {
			t.Errorf("pod name %q, want prefix one-", pod.Name)
		}

		setPodPhase(ctx, t, kube, pod, corev1.PodRunning, true)
		waitJob(ctx, t, kube, ns, "one", "active=1 ready=1", func(j *batchv1.Job) bool {
			return j.Status.Active == 1 && j.Status.Ready != nil && *j.Status.Ready == 1 && j.Status.StartTime != nil
		})
		setPodPhase(ctx, t, kube, pod, corev1.PodSucceeded, false)
		j := waitJob(ctx, t, kube, ns, "one", "Complete", isJobCond(batchv1.JobComplete))
		if !hasJobCond(j, batchv1.JobSuccessCriteriaMet) {
			t.Errorf("Complete without SuccessCriteriaMet: %+v", j.Status.Conditions)
		}
		if j.Status.Succeeded != 1 || j.Status.Failed != 0 || j.Status.Active != 0 {
			t.Errorf("status counts: succeeded %d failed %d active %d, want 1 0 0", j.Status.Succeeded, j.Status.Failed, j.Status.Active)
		}
		if j.Status.CompletionTime == nil || j.Status.StartTime == nil || j.Status.CompletionTime.Before(j.Status.StartTime) {
			t.Errorf("startTime %v completionTime %v", j.Status.StartTime, j.Status.CompletionTime)
		}
		if pods := listJobPods(ctx, t, kube, ns, "one"); len(pods) != 1 {
			t.Errorf("%d pods after completion, want 1", len(pods))
		}
	})

	t.Run("backoffLimit", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		createJob(ctx, t, kube, ns, "flaky", func(j *batchv1.Job) { j.Spec.BackoffLimit = int32p(1) })
		first := waitJobPods(ctx, t, kube, ns, "flaky", 1)[0]
		setPodPhase(ctx, t, kube, first, corev1.PodFailed, false)
		j := waitJob(ctx, t, kube, ns, "flaky", "failed=1", func(j *batchv1.Job) bool { return j.Status.Failed == 1 })
		if jobFinished(j) {
			t.Fatalf("job finished after one failure with backoffLimit 1: %+v", j.Status.Conditions)
		}
		second := waitJobPods(ctx, t, kube, ns, "flaky", 1)[0]
		if second.UID == first.UID {
			t.Fatalf("no replacement pod")
		}
		setPodPhase(ctx, t, kube, second, corev1.PodFailed, false)
		j = waitJob(ctx, t, kube, ns, "flaky", "Failed", isJobCond(batchv1.JobFailed))
		for _, typ := range []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobFailed} {
			c := jobCondition(&j.Status, typ)
			if c == nil || c.Status != corev1.ConditionTrue || c.Reason != batchv1.JobReasonBackoffLimitExceeded {
				t.Errorf("condition %s = %+v, want True/%s", typ, c, batchv1.JobReasonBackoffLimitExceeded)
			}
		}
		if j.Status.Failed != 2 || j.Status.Active != 0 || j.Status.CompletionTime != nil {
			t.Errorf("failed %d active %d completionTime %v, want 2 0 nil", j.Status.Failed, j.Status.Active, j.Status.CompletionTime)
		}
		if pods := listJobPods(ctx, t, kube, ns, "flaky"); len(pods) != 2 {
			t.Errorf("%d pods, want the 2 failed ones", len(pods))
		}
	})

	t.Run("indexed", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		job := createJob(ctx, t, kube, ns, "idx", func(j *batchv1.Job) {
			j.Spec.Completions, j.Spec.Parallelism = int32p(3), int32p(3)
			mode := batchv1.IndexedCompletion
			j.Spec.CompletionMode = &mode
			j.Spec.Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Command: []string{"true"}}}
		})
		pods := waitJobPods(ctx, t, kube, ns, "idx", 3)
		byIndex := map[string]*corev1.Pod{}
		for _, p := range pods {
			checkJobPod(t, job, p)
			i := p.Annotations[batchv1.JobCompletionIndexAnnotation]
			byIndex[i] = p
			if p.Labels[batchv1.JobCompletionIndexAnnotation] != i {
				t.Errorf("pod %s: index label %q, annotation %q", p.Name, p.Labels[batchv1.JobCompletionIndexAnnotation], i)
			}
			if !strings.HasPrefix(p.Name, "idx-"+i+"-") || p.Spec.Hostname != "idx-"+i {
				t.Errorf("pod %s (index %s): hostname %q", p.Name, i, p.Spec.Hostname)
			}
			for _, c := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
				if v := envValue(c, "JOB_COMPLETION_INDEX"); v != i {
					t.Errorf("pod %s container %s: JOB_COMPLETION_INDEX=%q, want %q", p.Name, c.Name, v, i)
				}
			}
		}
		if len(byIndex) != 3 || byIndex["0"] == nil || byIndex["1"] == nil || byIndex["2"] == nil {
			t.Fatalf("indexes %v, want 0, 1, 2", slices.Sorted(maps.Keys(byIndex)))
		}

		setPodPhase(ctx, t, kube, byIndex["1"], corev1.PodSucceeded, false)
		waitJob(ctx, t, kube, ns, "idx", `completedIndexes "1"`, func(j *batchv1.Job) bool {
			return j.Status.CompletedIndexes == "1" && j.Status.Succeeded == 1 && j.Status.Active == 2
		})
		// A failed index gets a new pod with the same index.
		setPodPhase(ctx, t, kube, byIndex["2"], corev1.PodFailed, false)
		var again *corev1.Pod
		waitJobPodsWhere(ctx, t, kube, ns, "idx", "a new pod for index 2", func(ps []*corev1.Pod) bool {
			for _, p := range ps {
				if p.Annotations[batchv1.JobCompletionIndexAnnotation] == "2" && p.UID != byIndex["2"].UID && !podTerminal(p) {
					again = p
				}
			}
			return again != nil
		})
		if v := envValue(again.Spec.Containers[0], "JOB_COMPLETION_INDEX"); v != "2" {
			t.Errorf("replacement pod: JOB_COMPLETION_INDEX=%q", v)
		}
		setPodPhase(ctx, t, kube, byIndex["0"], corev1.PodSucceeded, false)
		setPodPhase(ctx, t, kube, again, corev1.PodSucceeded, false)
		j := waitJob(ctx, t, kube, ns, "idx", "Complete", isJobCond(batchv1.JobComplete))
		if j.Status.CompletedIndexes != "0-2" || j.Status.Succeeded != 3 || j.Status.Failed != 1 {
			t.Errorf("completedIndexes %q succeeded %d failed %d, want 0-2 3 1", j.Status.CompletedIndexes, j.Status.Succeeded, j.Status.Failed)
		}
	})

	t.Run("delete", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		// client-go's default for batch/v1 Jobs is orphan propagation
		// (the orphan finalizer), kubectl's is background.
		background := metav1.DeletePropagationBackground
		for name, opts := range map[string]metav1.DeleteOptions{
			"plain":      {},
			"background": {PropagationPolicy: &background},
		} {
			createJob(ctx, t, kube, ns, name, func(j *batchv1.Job) { j.Spec.Parallelism = int32p(2) })
			waitJobPods(ctx, t, kube, ns, name, 2)
			if err := kube.BatchV1().Jobs(ns).Delete(ctx, name, opts); err != nil {
				t.Fatal(err)
			}
			waitJobPodsWhere(ctx, t, kube, ns, name, "no pods", func(ps []*corev1.Pod) bool { return len(ps) == 0 })
			err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
				_, err := kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
				return apierrors.IsNotFound(err), nil
			})
			if err != nil {
				j, _ := kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{})
				t.Fatalf("job %s not gone: %v (finalizers %v)", name, err, j.Finalizers)
			}
		}
	})

	t.Run("deadline", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		createJob(ctx, t, kube, ns, "slow", func(j *batchv1.Job) {
			j.Spec.ActiveDeadlineSeconds = int64p(1)
		})
		waitJobPods(ctx, t, kube, ns, "slow", 1)
		j := waitJob(ctx, t, kube, ns, "slow", "Failed", isJobCond(batchv1.JobFailed))
		if c := jobCondition(&j.Status, batchv1.JobFailed); c.Reason != batchv1.JobReasonDeadlineExceeded {
			t.Errorf("Failed reason %q, want %s", c.Reason, batchv1.JobReasonDeadlineExceeded)
		}
		if pods := listJobPods(ctx, t, kube, ns, "slow"); len(pods) != 0 {
			t.Errorf("%d pods left after the deadline, want 0 (unbound pods go at once)", len(pods))
		}
	})

	t.Run("cronjob", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		tmpl := testJob(ns, "unused")
		cj, err := kube.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Name: "nightly", Namespace: ns},
			Spec: batchv1.CronJobSpec{
				Schedule: "0 3 * * *",
				JobTemplate: batchv1.JobTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nightly"}, Annotations: map[string]string{"note": "x"}},
					Spec:       tmpl.Spec,
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		job, err := kube.BatchV1().Jobs(ns).Create(ctx, JobFromCronJob(cj, "nightly-manual"), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if job.Annotations[CronJobInstantiateAnnotation] != "manual" || job.Annotations["note"] != "x" || job.Labels["app"] != "nightly" {
			t.Errorf("job metadata: labels %v annotations %v", job.Labels, job.Annotations)
		}
		if ref := metav1.GetControllerOf(job); ref == nil || ref.UID != cj.UID || ref.Kind != "CronJob" {
			t.Errorf("job owner %+v, want CronJob %s", ref, cj.UID)
		}
		pod := waitJobPods(ctx, t, kube, ns, "nightly-manual", 1)[0]
		setPodPhase(ctx, t, kube, pod, corev1.PodSucceeded, false)
		waitJob(ctx, t, kube, ns, "nightly-manual", "Complete", isJobCond(batchv1.JobComplete))
	})

	t.Run("managedBy and suspend", func(t *testing.T) {
		ns := newNS(t)
		t.Parallel()
		ctx := testCtx(t)
		createJob(ctx, t, kube, ns, "foreign", func(j *batchv1.Job) {
			other := "example.com/other-controller"
			j.Spec.ManagedBy = &other
		})
		createJob(ctx, t, kube, ns, "held", func(j *batchv1.Job) { j.Spec.Suspend = boolp(true) })
		waitJob(ctx, t, kube, ns, "held", "Suspended", isJobCond(batchv1.JobSuspended))
		// The pass that suspended "held" saw "foreign" too (created first).
		if j, err := kube.BatchV1().Jobs(ns).Get(ctx, "foreign", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		} else if j.Status.StartTime != nil || len(j.Status.Conditions) != 0 {
			t.Errorf("job managed by another controller got a status: %+v", j.Status)
		}
		if n := len(listJobPods(ctx, t, kube, ns, "foreign")) + len(listJobPods(ctx, t, kube, ns, "held")); n != 0 {
			t.Errorf("%d pods for a foreign or suspended job", n)
		}
		j, err := kube.BatchV1().Jobs(ns).Get(ctx, "held", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		j.Spec.Suspend = boolp(false)
		if _, err := kube.BatchV1().Jobs(ns).Update(ctx, j, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := waitJobPods(ctx, t, kube, ns, "held", 1)[0]
		setPodPhase(ctx, t, kube, pod, corev1.PodSucceeded, false)
		j = waitJob(ctx, t, kube, ns, "held", "Complete", isJobCond(batchv1.JobComplete))
		if c := jobCondition(&j.Status, batchv1.JobSuspended); c == nil || c.Status != corev1.ConditionFalse {
			t.Errorf("Suspended condition after resume: %+v", c)
		}
	})
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func int32p(v int32) *int32 { return &v }
func int64p(v int64) *int64 { return &v }
func boolp(v bool) *bool    { return &v }

func testJob(ns, name string) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.JobSpec{
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "jobtest"}},
				Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever,
					Containers:    []corev1.Container{{Name: "main", Image: "busybox", Command: []string{"true"}}},
				},
			},
		},
	}
}

func createJob(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, name string, mutate func(*batchv1.Job)) *batchv1.Job {
	t.Helper()
	j := testJob(ns, name)
	if mutate != nil {
		mutate(j)
	}
	created, err := kube.BatchV1().Jobs(ns).Create(ctx, j, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// checkJobPod checks what every pod of job carries: labels, owner, template.
func checkJobPod(t *testing.T, job *batchv1.Job, p *corev1.Pod) {
	t.Helper()
	for k, v := range map[string]string{
		batchv1.JobNameLabel: job.Name, batchv1.ControllerUidLabel: string(job.UID),
		"job-name": job.Name, "controller-uid": string(job.UID), "app": "jobtest",
	} {
		if p.Labels[k] != v {
			t.Errorf("pod %s: label %s=%q, want %q", p.Name, k, p.Labels[k], v)
		}
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.UID != job.UID || ref.Kind != "Job" || ref.APIVersion != "batch/v1" ||
		ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("pod %s: controller ref %+v", p.Name, ref)
	}
	if len(p.Spec.Containers) != 1 || p.Spec.Containers[0].Name != "main" || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("pod %s: spec not from the template: %+v", p.Name, p.Spec)
	}
}

func listJobPods(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, job string) []*corev1.Pod {
	t.Helper()
	l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*corev1.Pod, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out
}

func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// waitJobPodsWhere polls the pods of job until ok holds.
func waitJobPodsWhere(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, job, what string, ok func([]*corev1.Pod) bool) []*corev1.Pod {
	t.Helper()
	var pods []*corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		l, err := kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + job})
		if err != nil {
			return false, nil
		}
		pods = pods[:0]
		for i := range l.Items {
			pods = append(pods, &l.Items[i])
		}
		return ok(pods), nil
	})
	if err != nil {
		var names []string
		for _, p := range pods {
			names = append(names, fmt.Sprintf("%s(%s)", p.Name, p.Status.Phase))
		}
		t.Fatalf("job %s/%s: waiting for %s: %v; pods: %v", ns, job, what, err, names)
	}
	return pods
}

// waitJobPods waits until job has exactly n pods that are neither
// terminal nor being deleted, and returns them.
func waitJobPods(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, job string, n int) []*corev1.Pod {
	t.Helper()
	var active []*corev1.Pod
	waitJobPodsWhere(ctx, t, kube, ns, job, fmt.Sprintf("%d active pods", n), func(ps []*corev1.Pod) bool {
		active = active[:0]
		for _, p := range ps {
			if !podTerminal(p) && p.DeletionTimestamp == nil {
				active = append(active, p)
			}
		}
		return len(active) == n
	})
	return active
}

// setPodPhase plays kubelet: it writes phase (and the Ready condition)
// through the status subresource.
func setPodPhase(ctx context.Context, t *testing.T, kube kubernetes.Interface, p *corev1.Pod, phase corev1.PodPhase, ready bool) {
	t.Helper()
	cur, err := kube.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.Phase = phase
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	cur.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}}
	if _, err := kube.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("pod %s: set phase %s: %v", p.Name, phase, err)
	}
}

func hasJobCond(j *batchv1.Job, typ batchv1.JobConditionType) bool {
	c := jobCondition(&j.Status, typ)
	return c != nil && c.Status == corev1.ConditionTrue
}

func isJobCond(typ batchv1.JobConditionType) func(*batchv1.Job) bool {
	return func(j *batchv1.Job) bool { return hasJobCond(j, typ) }
}

// waitJob polls the Job until ok holds and returns it.
func waitJob(ctx context.Context, t *testing.T, kube kubernetes.Interface, ns, name, what string, ok func(*batchv1.Job) bool) *batchv1.Job {
	t.Helper()
	var j *batchv1.Job
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		if j, err = kube.BatchV1().Jobs(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, nil
		}
		return ok(j), nil
	})
	if err != nil {
		if j != nil {
			t.Fatalf("job %s/%s: waiting for %s: %v; status %+v", ns, name, what, err, j.Status)
		}
		t.Fatalf("job %s/%s: waiting for %s: %v", ns, name, what, err)
	}
	return j
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}
