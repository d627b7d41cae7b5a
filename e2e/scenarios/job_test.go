package scenarios

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/e2e/world"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

const jobNS = "serverfirst"

// jobRun is one finished pod of a Job made from a CronJob.
type jobRun struct {
	pod  *corev1.Pod
	logs string
}

// runJob does what `kubectl create job NAME --from=cronjob/CRONJOB` does,
// lets the world's job controller and node agent run it, and returns its
// first pod once that pod is terminal.
func (fx *fixture) runJob(ctx context.Context, t *testing.T, cronJob, name string, edit func(*batchv1.Job)) jobRun {
	t.Helper()
	kube := fx.env.Client
	cj, err := kube.BatchV1().CronJobs(jobNS).Get(ctx, cronJob, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	job := world.JobFromCronJob(cj, name)
	if edit != nil {
		edit(job)
	}
	if _, err := kube.BatchV1().Jobs(jobNS).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(jobNS).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
		if err != nil || len(pods.Items) == 0 {
			return false, nil
		}
		first := pods.Items[0]
		for _, p := range pods.Items[1:] {
			if p.CreationTimestamp.Before(&first.CreationTimestamp) {
				first = p
			}
		}
		pod = &first
		return first.Status.Phase == corev1.PodSucceeded || first.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		state := "no pod"
		if pod != nil {
			b, _ := json.Marshal(struct {
				Phase      corev1.PodPhase
				Init, Main []corev1.ContainerStatus
			}{pod.Status.Phase, pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses})
			state = string(b)
		}
		t.Fatalf("job %s: its pod did not finish: %v (last: %s)", name, err, state)
	}
	logs, err := kube.CoreV1().Pods(jobNS).GetLogs(pod.Name, &corev1.PodLogOptions{Container: "scan"}).DoRaw(ctx)
	if err != nil {
		t.Fatalf("logs of %s: %v", pod.Name, err)
	}
	t.Logf("job %s pod %s: %s", name, pod.Name, pod.Status.Phase)
	return jobRun{pod: pod, logs: string(logs)}
}

// stored is the report ConfigMap decoded.
type stored struct {
	cm       *corev1.ConfigMap
	report   report.Report
	raw      []byte // report.json as stored (after gunzip)
	previous []byte
}

func (fx *fixture) readReport(ctx context.Context, t *testing.T, name string) stored {
	t.Helper()
	cm, err := fx.env.Client.CoreV1().ConfigMaps(jobNS).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s := stored{cm: cm}
	s.raw = []byte(cm.Data[publish.KeyReportJSON])
	if gz, ok := cm.BinaryData[publish.KeyReportJSONGz]; ok {
		s.raw = gunzip(t, gz)
	}
	if len(s.raw) == 0 {
		t.Fatalf("ConfigMap %s has no report: keys %v", name, keys(cm))
	}
	if err := json.Unmarshal(s.raw, &s.report); err != nil {
		t.Fatalf("report.json: %v", err)
	}
	s.previous = []byte(cm.Data[publish.KeyPrevious])
	if gz, ok := cm.BinaryData[publish.KeyPreviousGz]; ok {
		s.previous = gunzip(t, gz)
	}
	return s
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func keys(cm *corev1.ConfigMap) []string {
	var out []string
	for k := range cm.Data {
		out = append(out, k)
	}
	for k := range cm.BinaryData {
		out = append(out, k+" (binary)")
	}
	return out
}

// TestScheduledJob applies `job manifests --outside` as printed, runs the
// CronJobs' Jobs in the world (the scan pod gets the injected sidecar, a
// service-account token and the API server through the kubernetes
// Service, exactly as in a cluster), and checks what they publish: the
// report ConfigMap (JSON + Markdown + history), the metrics file, the
// JSON on stdout; then a report over its size limit (trimmed, with a
// note) and a run that lost its write rights (fails loudly, nothing
// written).
func TestScheduledJob(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the e2e world")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	fx := start(t, ctx)
	kube := fx.env.Client
	if err := world.SeedDemo(ctx, fx.w.Kube, fx.w.Istio); err != nil {
		t.Fatal(err)
	}
	if err := world.WaitPodsReady(ctx, fx.w.Kube, world.DemoPods...); err != nil {
		t.Fatal(err)
	}
	if err := fx.w.WaitDemoListening(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fx.w.WaitSidecarsSynced(ctx, time.Now()); err != nil {
		t.Fatal(err)
	}

	manifests, errOut, code := cli(ctx, t, fx.bin, fx.kc, "job", "manifests", "--outside")
	if code != 0 {
		t.Fatalf("job manifests: exit %d: %s", code, errOut)
	}
	objs, err := testenv.DecodeManifests(strings.NewReader(manifests))
	if err != nil {
		t.Fatal(err)
	}
	if err := fx.env.Apply(ctx, objs); err != nil {
		t.Fatalf("applying job manifests: %v", err)
	}

	// Run 1: the mesh-client CronJob.
	run1 := fx.runJob(ctx, t, "serverfirst-scan", "scan-1", nil)
	if run1.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-1 failed:\n%s", run1.logs)
	}
	if !hasSidecar(run1.pod) {
		t.Errorf("the scan pod has no istio-proxy: it is not the mesh-client vantage")
	}
	first := fx.readReport(ctx, t, "serverfirst-report")
	t.Logf("run 1 report: %d findings, summary %v", len(first.report.Findings), first.report.Summary)
	// Through the Job's own sidecar the sniffed MariaDB port stays silent;
	// without port-forward rights there is no direct banner, so the Job
	// says AT-RISK, never DEADLOCK (both halves of the proof are needed).
	f := find(t, first.report, "Service", world.DemoShop, "orders-db", 3307)
	if f.Verdict != report.AtRisk || !meshSilent(f) {
		t.Errorf("shop/orders-db:3307 from the in-mesh Job: want AT-RISK with a silent mesh path, got %s\n%s", f.Verdict, describe(f))
	}
	if ok := find(t, first.report, "Service", world.DemoShop, "orders-db-tcp", 3306); !declaredTCPVerdict(ok) {
		t.Errorf("shop/orders-db-tcp:3306 (declared TCP): want an OK mesh path (and at most the static external-to-mesh risk), got %s\n%s", ok.Verdict, describe(ok))
	}
	if md := first.cm.Data[publish.KeyReportMD]; !strings.Contains(md, "orders-db") {
		t.Errorf("report.md does not mention orders-db:\n%s", md)
	}
	if len(first.previous) != 0 {
		t.Errorf("first run: want no previous report, got %d bytes", len(first.previous))
	}
	if _, err := time.Parse(time.RFC3339, first.cm.Data[publish.KeyUpdated]); err != nil {
		t.Errorf("updated: %v", err)
	}
	// kubectl logs shows the same report as JSON.
	// (stderr's progress lines come first in the same log, as with kubectl logs.)
	var logged report.Report
	jsonStart := strings.Index(run1.logs, "\n{\n")
	if jsonStart < 0 {
		t.Fatalf("no JSON report in the pod's log:\n%s", tail(run1.logs))
	}
	if err := json.NewDecoder(strings.NewReader(run1.logs[jsonStart+1:])).Decode(&logged); err != nil {
		t.Errorf("the pod's stdout does not start with the JSON report: %v\n%s", err, run1.logs)
	} else if len(logged.Findings) != len(first.report.Findings) {
		t.Errorf("stdout has %d findings, the ConfigMap %d", len(logged.Findings), len(first.report.Findings))
	}
	// The metrics file, in the pod's emptyDir.
	dir := fx.w.Node.PodVolumeDir(jobNS, run1.pod.Name, "metrics")
	if dir == "" {
		t.Fatal("the scan pod's metrics volume is unknown to the node")
	}
	prom, err := os.ReadFile(filepath.Join(dir, "serverfirst.prom"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`serverfirst_findings{scenario="mesh-to-mesh",verdict="DEADLOCK"} `,
		"serverfirst_last_success_timestamp_seconds ",
		"serverfirst_scan_duration_seconds ",
		`serverfirst_time_to_first_byte_seconds{`,
	} {
		if !strings.Contains(string(prom), want) {
			t.Errorf("metrics file lacks %q:\n%s", want, prom)
		}
	}

	// Run 2 keeps run 1 as history.
	run2 := fx.runJob(ctx, t, "serverfirst-scan", "scan-2", nil)
	if run2.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-2 failed:\n%s", run2.logs)
	}
	second := fx.readReport(ctx, t, "serverfirst-report")
	if !bytes.Equal(second.previous, first.raw) {
		t.Errorf("run 2: previous.json is not run 1's report.json (%d vs %d bytes)", len(second.previous), len(first.raw))
	}
	if second.cm.ResourceVersion == first.cm.ResourceVersion {
		t.Error("run 2 did not update the ConfigMap")
	}

	// The out-of-mesh CronJob: no sidecar, its own ConfigMap.
	outside := fx.runJob(ctx, t, "serverfirst-scan-outside", "scan-outside-1", nil)
	if outside.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-outside-1 failed:\n%s", outside.logs)
	}
	if hasSidecar(outside.pod) {
		t.Error("the outside scan pod got a sidecar")
	}
	out := fx.readReport(ctx, t, "serverfirst-report-outside")
	t.Logf("outside report: %d findings, summary %v", len(out.report.Findings), out.report.Summary)

	// Run 3: more findings (40 MySQL-named Services without endpoints)
	// under a size limit the report cannot meet, even gzipped.
	fx.namespace(t, "bulk", nil)
	for i := range 40 {
		_, err := kube.CoreV1().Services("bulk").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("mysql-%02d", i)},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "db", Port: 3306, Protocol: corev1.ProtocolTCP}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
	const limit = 4096
	run3 := fx.runJob(ctx, t, "serverfirst-scan", "scan-small", func(j *batchv1.Job) {
		c := &j.Spec.Template.Spec.Containers[0]
		c.Args = append(c.Args, "--report-max-bytes", strconv.Itoa(limit))
	})
	if run3.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-small failed:\n%s", run3.logs)
	}
	small := fx.readReport(ctx, t, "serverfirst-report")
	size := publish.ObjectBytes(small.cm)
	if size > limit {
		t.Errorf("the stored report takes %d bytes, over the %d limit", size, limit)
	}
	note := small.cm.Data[publish.KeyNote]
	if !strings.Contains(note, "findings were trimmed to fit the report size limit of 4096 bytes") {
		t.Errorf("the note does not say findings were trimmed: %q; keys %v", note, keys(small.cm))
	}
	total := 0
	for _, n := range small.report.Summary {
		total += n
	}
	if len(small.report.Findings) >= total || total < 40 {
		t.Errorf("trimmed report keeps %d findings of %d counted", len(small.report.Findings), total)
	}
	if !slices.ContainsFunc(small.report.Warnings, func(w string) bool { return strings.Contains(w, "findings were trimmed") }) {
		t.Errorf("the stored report does not warn that it was trimmed: %v", small.report.Warnings)
	}
	if !strings.Contains(run3.logs, "note: ") {
		t.Errorf("the pod's log does not say what was trimmed:\n%s", tail(run3.logs))
	}
	t.Logf("run 3 stored %d bytes; note: %s", size, note)

	// Run 4: the report writer's rights are gone; the run must fail with
	// one clear line and leave the ConfigMap alone.
	if err := kube.RbacV1().RoleBindings(jobNS).Delete(ctx, "serverfirst-report-writer", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	before := fx.readReport(ctx, t, "serverfirst-report")
	run4 := fx.runJob(ctx, t, "serverfirst-scan", "scan-forbidden", func(j *batchv1.Job) {
		j.Spec.BackoffLimit = ptr.To[int32](0)
	})
	if run4.pod.Status.Phase != corev1.PodFailed {
		t.Errorf("without write rights the Job's pod must fail, got %s", run4.pod.Status.Phase)
	}
	if !strings.Contains(run4.logs, "forbidden") || !strings.Contains(run4.logs, "serverfirst/serverfirst-report") {
		t.Errorf("the failure does not name the ConfigMap and the missing right:\n%s", tail(run4.logs))
	}
	last := strings.TrimSpace(run4.logs)
	t.Logf("run 4 (no write rights) says: %s", last[strings.LastIndexByte(last, '\n')+1:])
	after := fx.readReport(ctx, t, "serverfirst-report")
	if after.cm.ResourceVersion != before.cm.ResourceVersion {
		t.Error("a run without write rights changed the ConfigMap")
	}

	// Run 5: `job manifests --direct` (re-applied: the report writer's
	// binding comes back, port-forward rights are added, the CronJob gains
	// --direct). The Job now has both halves of the proof.
	manifests, errOut, code = cli(ctx, t, fx.bin, fx.kc, "job", "manifests", "--outside", "--direct")
	if code != 0 {
		t.Fatalf("job manifests --direct: exit %d: %s", code, errOut)
	}
	if objs, err = testenv.DecodeManifests(strings.NewReader(manifests)); err != nil {
		t.Fatal(err)
	}
	if err := fx.env.Apply(ctx, objs); err != nil {
		t.Fatalf("applying job manifests --direct: %v", err)
	}
	run5 := fx.runJob(ctx, t, "serverfirst-scan", "scan-direct", nil)
	if run5.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-direct failed:\n%s", run5.logs)
	}
	direct := fx.readReport(ctx, t, "serverfirst-report")
	t.Logf("run 5 (--direct) report: summary %v", direct.report.Summary)
	for _, want := range []struct {
		ns, name string
		port     int32
		scenario report.Scenario
	}{
		{world.DemoShop, "orders-db", 3307, report.MeshToMesh},
		{world.DemoLegacy, "ssh", 2222, report.MeshToExternal},
	} {
		f := find(t, direct.report, "Service", want.ns, want.name, want.port)
		if f.Verdict != report.Deadlock || pathVerdict(f, want.scenario) != report.Deadlock || !hasDirectBanner(f) || !meshSilent(f) {
			t.Errorf("%s/%s:%d with --direct: want DEADLOCK %s (direct banner, silent mesh), got %s\n%s",
				want.ns, want.name, want.port, want.scenario, f.Verdict, describe(f))
		}
	}
	if ok := find(t, direct.report, "Service", world.DemoShop, "orders-db-tcp", 3306); !declaredTCPVerdict(ok) {
		t.Errorf("orders-db-tcp:3306 with --direct: want an OK mesh path (and at most the static external-to-mesh risk), got %s\n%s", ok.Verdict, describe(ok))
	}

	// The outside CronJob with --direct: clients without a sidecar hang on
	// the PERMISSIVE server's TLS inspector even on a TCP-declared port
	// (external-to-mesh), while the sidecar-less sshd answers them.
	out5 := fx.runJob(ctx, t, "serverfirst-scan-outside", "scan-outside-direct", nil)
	if out5.pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("scan-outside-direct failed:\n%s", out5.logs)
	}
	outDirect := fx.readReport(ctx, t, "serverfirst-report-outside")
	t.Logf("outside --direct report: summary %v", outDirect.report.Summary)
	if f := find(t, outDirect.report, "Service", world.DemoShop, "orders-db-tcp", 3306); pathVerdict(f, report.ExternalToMesh) != report.Deadlock {
		t.Errorf("orders-db-tcp:3306 from outside the mesh: want DEADLOCK external-to-mesh, got %s\n%s", pathVerdict(f, report.ExternalToMesh), describe(f))
	}
	if f := find(t, outDirect.report, "Service", world.DemoLegacy, "ssh", 2222); f.Verdict == report.Deadlock {
		t.Errorf("legacy/ssh:2222 from outside the mesh (no sidecar on either side): got DEADLOCK\n%s", describe(f))
	}

	// Run 6: the same as an Indexed Job of 2 shards; the last shard to
	// finish merges, and the merged report says what one scan said.
	manifests, errOut, code = cli(ctx, t, fx.bin, fx.kc, "job", "manifests", "--direct", "--shards", "2")
	if code != 0 {
		t.Fatalf("job manifests --shards 2: exit %d: %s", code, errOut)
	}
	if objs, err = testenv.DecodeManifests(strings.NewReader(manifests)); err != nil {
		t.Fatal(err)
	}
	if err := fx.env.Apply(ctx, objs); err != nil {
		t.Fatalf("applying job manifests --shards 2: %v", err)
	}
	fx.runJob(ctx, t, "serverfirst-scan", "scan-sharded", nil)
	job := fx.waitJobDone(ctx, t, "scan-sharded")
	if job.Status.Succeeded != 2 || job.Status.CompletedIndexes != "0,1" {
		t.Fatalf("sharded Job: succeeded %d, completed indexes %q", job.Status.Succeeded, job.Status.CompletedIndexes)
	}
	merged := fx.readReport(ctx, t, "serverfirst-report")
	if got, want := verdictsByKey(merged.report), verdictsByKey(direct.report); !maps.Equal(got, want) {
		t.Errorf("2 shards merged differ from one scan:\n got %v\nwant %v", got, want)
	}
	fx.assertNoProbePods(t, ctx)
}

// waitJobDone waits for the Job's Complete or Failed condition.
func (fx *fixture) waitJobDone(ctx context.Context, t *testing.T, name string) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		j, err := fx.env.Client.BatchV1().Jobs(jobNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		job = j
		for _, c := range j.Status.Conditions {
			if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		status := "never seen"
		if job != nil {
			status = fmt.Sprintf("%+v", job.Status)
		}
		t.Fatalf("job %s did not finish: %v (status %s)", name, err, status)
	}
	return job
}

func verdictsByKey(r report.Report) map[string]report.Verdict {
	out := map[string]report.Verdict{}
	for _, f := range r.Findings {
		out[f.Key().String()] = f.Verdict
	}
	return out
}

func hasSidecar(p *corev1.Pod) bool {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == "istio-proxy" {
			return true
		}
	}
	return false
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	return strings.Join(lines, "\n")
}

// meshSilent: the mesh-client evidence saw no byte from the server.
func meshSilent(f report.Finding) bool {
	for _, e := range f.Evidence {
		if e.Vantage == target.VantageMeshClient || e.Vantage == target.VantageSelf {
			return e.Outcome == "silent"
		}
	}
	return false
}

// declaredTCPVerdict: a declared-TCP port seen from the in-mesh Job has an
// OK mesh path; the Job does not probe from outside the mesh, so where
// pods without a sidecar exist and the port is PERMISSIVE the finding
// carries the static external-to-mesh risk (SF0203) instead of OK.
func declaredTCPVerdict(f report.Finding) bool {
	if pathVerdict(f, report.MeshToMesh) != report.OK {
		return false
	}
	return f.Verdict == report.OK || f.Verdict == report.AtRisk && f.Scenario == report.ExternalToMesh && f.Code == "SF0203"
}
