package world

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// Labels and annotations the job controller puts on pods besides the
// batch/v1 ones (batchv1.JobNameLabel, batchv1.ControllerUidLabel,
// batchv1.JobCompletionIndexAnnotation).
const (
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
	jobCompletionIndexEnv    = "JOB_COMPLETION_INDEX"
	// CronJobInstantiateAnnotation marks a Job made by hand from a CronJob
	// (`kubectl create job --from=cronjob/NAME`, JobFromCronJob).
	CronJobInstantiateAnnotation = "cronjob.kubernetes.io/instantiate"
)

// JobController stands in for kube-controller-manager's job controller
// (see NODE.md, "Jobs"): it creates the pods of Jobs, counts their
// outcomes in the Job status and finishes Jobs with the conditions the API
// server requires. Stop it when done.
type JobController struct {
	client kubernetes.Interface
	logf   func(string, ...any)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	stopOnce sync.Once
	// Used by the reconcile goroutine only.
	jobs    map[types.UID]*jobCounts
	lastErr map[string]string
}

// jobCounts remembers the terminal pods already counted for a Job, so that
// deleting a finished pod does not lower status.succeeded/failed (the real
// controller uses the batch.kubernetes.io/job-tracking finalizer for that).
type jobCounts struct {
	baseSucceeded, baseFailed int32
	succeeded, failed         map[types.UID]bool
	completed                 map[int]bool // Indexed: indexes with a Succeeded pod
}

// StartJobController lists and watches Jobs and their pods and reconciles
// them until Stop is called or ctx is done. logf (nil means discard)
// receives one line per pod created or deleted, per Job finished, and per
// new API error.
func StartJobController(ctx context.Context, client kubernetes.Interface, logf func(string, ...any)) *JobController {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	c := &JobController{
		client:  client,
		logf:    logf,
		kick:    make(chan struct{}, 1),
		jobs:    map[types.UID]*jobCounts{},
		lastErr: map[string]string{},
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	batch, core := client.BatchV1(), client.CoreV1()
	c.wg.Add(3)
	go watchKick(c.ctx, &c.wg, func(ctx context.Context) (watch.Interface, error) {
		return batch.Jobs("").Watch(ctx, metav1.ListOptions{})
	}, c.kick)
	go watchKick(c.ctx, &c.wg, func(ctx context.Context) (watch.Interface, error) {
		return core.Pods("").Watch(ctx, metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel})
	}, c.kick)
	go c.loop()
	return c
}

// Stop ends the watches and the reconcile loop and waits for them.
// Idempotent. Pods and Jobs are left as they are.
func (c *JobController) Stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
	})
}

// loop reconciles on every kick and at least once a second (deadlines,
// retries after errors).
func (c *JobController) loop() {
	defer c.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		c.reconcile()
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		case <-tick.C:
		}
	}
}

// report logs err once per key until the operation succeeds again
// (err == nil) or fails differently.
func (c *JobController) report(key string, err error) {
	if err == nil {
		delete(c.lastErr, key)
		return
	}
	if c.ctx.Err() != nil || c.lastErr[key] == err.Error() {
		return
	}
	c.lastErr[key] = err.Error()
	c.logf("world: job controller: %s: %v", key, err)
}

// reconcile is one pass over every Job. Pods are listed before Jobs, so a
// pod whose Job is missing from the Job list really lost its Job.
func (c *JobController) reconcile() {
	ctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
	defer cancel()
	podList, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: batchv1.ControllerUidLabel})
	c.report("list pods", err)
	if err != nil {
		return
	}
	jobList, err := c.client.BatchV1().Jobs("").List(ctx, metav1.ListOptions{})
	c.report("list jobs", err)
	if err != nil {
		return
	}
	owned := map[types.UID][]*corev1.Pod{}
	for i := range podList.Items {
		p := &podList.Items[i]
		if uid := jobOwner(p); uid != "" {
			owned[uid] = append(owned[uid], p)
		}
	}
	live := map[types.UID]bool{}
	for i := range jobList.Items {
		job := &jobList.Items[i]
		live[job.UID] = true
		var pods []*corev1.Pod
		for _, p := range owned[job.UID] {
			if p.Namespace == job.Namespace {
				pods = append(pods, p)
			}
		}
		c.syncJob(ctx, job, pods)
	}
	// No garbage collector: pods of Jobs that are gone go with them.
	for uid, pods := range owned {
		if live[uid] {
			continue
		}
		for _, p := range pods {
			if p.DeletionTimestamp == nil {
				c.deletePod(ctx, p, "its Job is gone")
			}
		}
	}
	for uid := range c.jobs {
		if !live[uid] {
			delete(c.jobs, uid)
		}
	}
}

// jobOwner is the UID of the batch/v1 Job controlling p, or "".
func jobOwner(p *corev1.Pod) types.UID {
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.Kind != "Job" || !strings.HasPrefix(ref.APIVersion, batchv1.GroupName+"/") {
		return ""
	}
	return ref.UID
}

func (c *JobController) syncJob(ctx context.Context, job *batchv1.Job, pods []*corev1.Pod) {
	if job.Spec.ManagedBy != nil && *job.Spec.ManagedBy != batchv1.JobControllerName {
		return
	}
	key := "job " + job.Namespace + "/" + job.Name
	if job.DeletionTimestamp != nil {
		c.syncDeletedJob(ctx, key, job, pods)
		return
	}
	if jobFinished(job) {
		return
	}
	now := metav1.Now()
	st := job.Status.DeepCopy()
	indexed := job.Spec.CompletionMode != nil && *job.Spec.CompletionMode == batchv1.IndexedCompletion
	completions := int32(-1) // nil: the first success ends the Job (work queue)
	if job.Spec.Completions != nil {
		completions = *job.Spec.Completions
	}
	counts := c.countsFor(job, pods, indexed, completions)

	var active, terminating []*corev1.Pod
	for _, p := range pods {
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			counts.succeeded[p.UID] = true
			if i, ok := podIndex(p, completions); indexed && ok {
				counts.completed[i] = true
			}
		case p.Status.Phase == corev1.PodFailed:
			counts.failed[p.UID] = true
		case p.DeletionTimestamp != nil:
			terminating = append(terminating, p)
		default:
			active = append(active, p)
		}
	}
	sort.SliceStable(active, func(i, j int) bool {
		return active[i].CreationTimestamp.Before(&active[j].CreationTimestamp)
	})
	st.Failed = max(st.Failed, counts.baseFailed+int32(len(counts.failed)))
	if indexed {
		st.Succeeded = max(st.Succeeded, int32(len(counts.completed)))
		st.CompletedIndexes = formatIndexes(counts.completed)
	} else {
		st.Succeeded = max(st.Succeeded, counts.baseSucceeded+int32(len(counts.succeeded)))
	}

	if job.Spec.Suspend != nil && *job.Spec.Suspend {
		deleted := c.deletePods(ctx, active, "the Job is suspended")
		st.StartTime = nil
		setJobCondition(st, batchv1.JobSuspended, corev1.ConditionTrue, "JobSuspended", "Job suspended", now)
		c.writeStatus(ctx, key, job, st, nil, len(terminating)+deleted)
		return
	}
	if cond := jobCondition(st, batchv1.JobSuspended); cond != nil && cond.Status == corev1.ConditionTrue {
		setJobCondition(st, batchv1.JobSuspended, corev1.ConditionFalse, "JobResumed", "Job resumed", now)
		st.StartTime = nil
	}
	if st.StartTime == nil {
		st.StartTime = &now
	}

	// Decide: once FailureTarget or SuccessCriteriaMet is set, no new pods;
	// the remaining ones are deleted and, when none is left running, the
	// Job gets Failed or Complete.
	target := jobCondition(st, batchv1.JobFailureTarget)
	if target == nil || target.Status != corev1.ConditionTrue {
		target = jobCondition(st, batchv1.JobSuccessCriteriaMet)
	}
	if target != nil && target.Status != corev1.ConditionTrue {
		target = nil
	}
	newTarget := target == nil
	if target == nil {
		backoffLimit := int32(6)
		if job.Spec.BackoffLimit != nil {
			backoffLimit = *job.Spec.BackoffLimit
		}
		succeeded := completions >= 0 && st.Succeeded >= completions ||
			completions < 0 && st.Succeeded > 0 && len(active) == 0
		switch {
		case st.Failed > backoffLimit:
			target = setJobCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue,
				batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit", now)
		case job.Spec.ActiveDeadlineSeconds != nil &&
			now.Sub(st.StartTime.Time) >= time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second:
			target = setJobCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue,
				batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline", now)
		case succeeded:
			target = setJobCondition(st, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue,
				batchv1.JobReasonCompletionsReached, "Reached expected number of succeeded pods", now)
		}
		if target != nil {
			c.logf("world: %s: %s (%s): %d succeeded, %d failed", key, target.Type, target.Reason, st.Succeeded, st.Failed)
		}
	}
	if target != nil {
		deleted := c.deletePods(ctx, active, "the Job is finishing: "+target.Reason)
		// The terminal condition comes in a later update than the
		// interim one, once no pod is left running (as the real
		// controller does).
		var final *batchv1.JobCondition
		if !newTarget && deleted == 0 && len(terminating) == 0 {
			typ := batchv1.JobFailed
			if target.Type == batchv1.JobSuccessCriteriaMet {
				typ = batchv1.JobComplete
				st.CompletionTime = &now
			}
			final = setJobCondition(st, typ, corev1.ConditionTrue, target.Reason, target.Message, now)
		}
		if c.writeStatus(ctx, key, job, st, nil, len(terminating)+deleted) && final != nil {
			c.logf("world: %s: %s (%s): %d succeeded, %d failed", key, final.Type, final.Reason, st.Succeeded, st.Failed)
			delete(c.jobs, job.UID)
		}
		return
	}

	if indexed {
		active = c.manageIndexed(ctx, key, job, active, counts.completed, completions)
	} else {
		active = c.manageNonIndexed(ctx, key, job, active, st.Succeeded, completions)
	}
	c.writeStatus(ctx, key, job, st, active, len(terminating))
}

// countsFor returns the counted pods of job, seeded on first sight from
// its status: what the status counts beyond the terminal pods still there
// becomes the base.
func (c *JobController) countsFor(job *batchv1.Job, pods []*corev1.Pod, indexed bool, completions int32) *jobCounts {
	if jc := c.jobs[job.UID]; jc != nil {
		return jc
	}
	jc := &jobCounts{succeeded: map[types.UID]bool{}, failed: map[types.UID]bool{}, completed: map[int]bool{}}
	var succeeded, failed int32
	for _, p := range pods {
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			succeeded++
		case corev1.PodFailed:
			failed++
		}
	}
	jc.baseSucceeded = max(0, job.Status.Succeeded-succeeded)
	jc.baseFailed = max(0, job.Status.Failed-failed)
	if indexed {
		jc.completed = parseIndexes(job.Status.CompletedIndexes, completions)
	}
	c.jobs[job.UID] = jc
	return jc
}

// manageNonIndexed keeps min(parallelism, completions-succeeded) pods
// active and returns the active pods afterwards.
func (c *JobController) manageNonIndexed(ctx context.Context, key string, job *batchv1.Job, active []*corev1.Pod, succeeded, completions int32) []*corev1.Pod {
	want := jobParallelism(job)
	switch {
	case completions >= 0:
		want = min(want, max(0, completions-succeeded))
	case succeeded > 0:
		want = 0 // work queue: once one pod succeeded, no new ones
	}
	if n := int32(len(active)); n > want {
		c.deletePods(ctx, active[want:], "more pods than parallelism")
		return active[:want]
	}
	for int32(len(active)) < want {
		p, err := c.createPod(ctx, key, job, -1)
		if err != nil {
			break
		}
		active = append(active, p)
	}
	return active
}

// manageIndexed keeps one active pod for each index that has not
// completed, at most parallelism of them, lowest indexes first, and
// returns the active pods afterwards.
func (c *JobController) manageIndexed(ctx context.Context, key string, job *batchv1.Job, active []*corev1.Pod, completed map[int]bool, completions int32) []*corev1.Pod {
	byIndex := map[int]*corev1.Pod{}
	var keep, drop []*corev1.Pod
	for _, p := range active {
		i, ok := podIndex(p, completions)
		if !ok || completed[i] || byIndex[i] != nil {
			drop = append(drop, p) // no index, done already, or a duplicate
			continue
		}
		byIndex[i] = p
	}
	parallelism := int(jobParallelism(job))
	for i := 0; i < int(completions); i++ {
		if p := byIndex[i]; p != nil {
			if len(keep) < parallelism {
				keep = append(keep, p)
			} else {
				drop = append(drop, p)
			}
		}
	}
	c.deletePods(ctx, drop, "index done, duplicate or beyond parallelism")
	for i := 0; i < int(completions) && len(keep) < parallelism; i++ {
		if completed[i] || byIndex[i] != nil {
			continue
		}
		p, err := c.createPod(ctx, key, job, i)
		if err != nil {
			break
		}
		keep = append(keep, p)
	}
	return keep
}

func jobParallelism(job *batchv1.Job) int32 {
	if job.Spec.Parallelism != nil {
		return *job.Spec.Parallelism
	}
	return 1
}

// createPod creates one pod from the Job's template; index < 0 for
// NonIndexed Jobs.
func (c *JobController) createPod(ctx context.Context, key string, job *batchv1.Job, index int) (*corev1.Pod, error) {
	tmpl := job.Spec.Template.DeepCopy()
	labels := maps.Clone(tmpl.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	uid := string(job.UID)
	labels[batchv1.JobNameLabel], labels[legacyJobNameLabel] = job.Name, job.Name
	labels[batchv1.ControllerUidLabel], labels[legacyControllerUIDLabel] = uid, uid
	annotations := maps.Clone(tmpl.Annotations)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    job.Name + "-",
			Namespace:       job.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			Finalizers:      tmpl.Finalizers,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: tmpl.Spec,
	}
	if index >= 0 {
		is := strconv.Itoa(index)
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = is
		pod.Labels[batchv1.JobCompletionIndexAnnotation] = is
		pod.GenerateName = indexedGenerateName(job.Name, is)
		if pod.Spec.Hostname == "" {
			pod.Spec.Hostname = job.Name + "-" + is
		}
		for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range list {
				if !slices.ContainsFunc(list[i].Env, func(e corev1.EnvVar) bool { return e.Name == jobCompletionIndexEnv }) {
					list[i].Env = append(list[i].Env, corev1.EnvVar{Name: jobCompletionIndexEnv, Value: is})
				}
			}
		}
	}
	created, err := c.client.CoreV1().Pods(job.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	c.report(key+": create pod", err)
	if err != nil {
		return nil, err
	}
	if index >= 0 {
		c.logf("world: %s: created pod %s (index %d)", key, created.Name, index)
	} else {
		c.logf("world: %s: created pod %s", key, created.Name)
	}
	return created, nil
}

// indexedGenerateName is "<job>-<index>-", the job name cut so that the
// generated name (5 random characters more) stays a 63-character label.
func indexedGenerateName(job, index string) string {
	const maxPrefix = 63 - 5
	suffix := "-" + index + "-"
	if len(job)+len(suffix) > maxPrefix {
		job = job[:max(0, maxPrefix-len(suffix))]
	}
	return job + suffix
}

// deletePods deletes pods (UID precondition) and returns how many
// deletions the API server accepted.
func (c *JobController) deletePods(ctx context.Context, pods []*corev1.Pod, why string) int {
	n := 0
	for _, p := range pods {
		if c.deletePod(ctx, p, why) {
			n++
		}
	}
	return n
}

func (c *JobController) deletePod(ctx context.Context, p *corev1.Pod, why string) bool {
	uid := p.UID
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return false
	}
	c.report("delete pod "+p.Namespace+"/"+p.Name, err)
	if err != nil {
		return false
	}
	c.logf("world: job controller: deleted pod %s/%s: %s", p.Namespace, p.Name, why)
	return true
}

// syncDeletedJob deletes the pods of a Job being deleted and, once they
// are gone, drops the finalizers a garbage collector would handle
// (foregroundDeletion, orphan), so the Job goes too. Orphan propagation
// is treated as foreground: the pods are deleted as well.
func (c *JobController) syncDeletedJob(ctx context.Context, key string, job *batchv1.Job, pods []*corev1.Pod) {
	for _, p := range pods {
		if p.DeletionTimestamp == nil {
			c.deletePod(ctx, p, "its Job is being deleted")
		}
	}
	if len(pods) > 0 {
		return
	}
	gcFinalizer := func(f string) bool {
		return f == metav1.FinalizerDeleteDependents || f == metav1.FinalizerOrphanDependents
	}
	if !slices.ContainsFunc(job.Finalizers, gcFinalizer) {
		return
	}
	j := job.DeepCopy()
	j.Finalizers = slices.DeleteFunc(j.Finalizers, gcFinalizer)
	_, err := c.client.BatchV1().Jobs(j.Namespace).Update(ctx, j, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return
	}
	c.report(key+": remove garbage-collector finalizers", err)
}

// writeStatus completes st with the pod counts and writes it when it
// changed. A finished Job has no active, ready or terminating pods.
func (c *JobController) writeStatus(ctx context.Context, key string, job *batchv1.Job, st *batchv1.JobStatus, active []*corev1.Pod, terminating int) bool {
	var ready int32
	for _, p := range active {
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				ready++
			}
		}
	}
	term := int32(terminating)
	if jobFinishedStatus(st) {
		term = 0
	}
	st.Active, st.Ready, st.Terminating = int32(len(active)), &ready, &term
	if apiequality.Semantic.DeepEqual(&job.Status, st) {
		return true
	}
	j := job.DeepCopy()
	j.Status = *st
	_, err := c.client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		kickChan(c.kick) // changed meanwhile: look again
		return false
	}
	c.report(key+": update status", err)
	return err == nil
}

func jobFinished(job *batchv1.Job) bool { return jobFinishedStatus(&job.Status) }

func jobFinishedStatus(st *batchv1.JobStatus) bool {
	for _, t := range []batchv1.JobConditionType{batchv1.JobComplete, batchv1.JobFailed} {
		if c := jobCondition(st, t); c != nil && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func jobCondition(st *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setJobCondition sets (or adds) a condition, keeping its transition time
// when the status does not change, and returns a copy of it.
func setJobCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, message string, now metav1.Time) *batchv1.JobCondition {
	cond := jobCondition(st, t)
	if cond == nil {
		st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t})
		cond = &st.Conditions[len(st.Conditions)-1]
	}
	if cond.Status != status {
		cond.LastTransitionTime = now
	}
	if cond.Status != status || cond.Reason != reason || cond.Message != message {
		cond.LastProbeTime = now
	}
	cond.Status, cond.Reason, cond.Message = status, reason, message
	out := *cond
	return &out
}

// podIndex is the completion index of p, if it has a valid one (< completions).
func podIndex(p *corev1.Pod, completions int32) (int, bool) {
	s, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= int(completions) {
		return 0, false
	}
	return i, true
}

// parseIndexes reads the "1,3-5,7" form of status.completedIndexes,
// dropping what is malformed or not below completions.
func parseIndexes(s string, completions int32) map[int]bool {
	out := map[int]bool{}
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := max(a, 0); i <= b && i < int(completions); i++ {
			out[i] = true
		}
	}
	return out
}

// formatIndexes writes indexes in the form of status.completedIndexes:
// increasing, runs of three or more as "first-last".
func formatIndexes(set map[int]bool) string {
	idx := slices.Sorted(maps.Keys(set))
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		switch {
		case j-i >= 2:
			parts = append(parts, fmt.Sprintf("%d-%d", idx[i], idx[j]))
		case j == i+1:
			parts = append(parts, strconv.Itoa(idx[i]), strconv.Itoa(idx[j]))
		default:
			parts = append(parts, strconv.Itoa(idx[i]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// JobFromCronJob returns the Job `kubectl create job NAME
// --from=cronjob/CJ` would create: the CronJob's jobTemplate (spec,
// labels, annotations) in its namespace, annotated
// cronjob.kubernetes.io/instantiate=manual and owned by the CronJob
// (controller, without blockOwnerDeletion, as kubectl does). There is no
// CronJob controller in the world: this is how its Jobs get made.
func JobFromCronJob(cj *batchv1.CronJob, name string) *batchv1.Job {
	annotations := map[string]string{CronJobInstantiateAnnotation: "manual"}
	maps.Copy(annotations, cj.Spec.JobTemplate.Annotations)
	controller := true
	return &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: batchv1.SchemeGroupVersion.String(), Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Namespace:   cj.Namespace,
			Labels:      maps.Clone(cj.Spec.JobTemplate.Labels),
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: batchv1.SchemeGroupVersion.String(),
				Kind:       "CronJob",
				Name:       cj.Name,
				UID:        cj.UID,
				Controller: &controller,
			}},
		},
		Spec: *cj.Spec.JobTemplate.Spec.DeepCopy(),
	}
}
