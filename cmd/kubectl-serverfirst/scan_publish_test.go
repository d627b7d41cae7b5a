package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/report/publish"
)

// seedLoopback creates namespace "app" with headless Services whose one
// backend pod has IP 127.0.0.1 and whose target port is a loopback
// server here: scan --vantage self dials only loopback.
func seedLoopback(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	for _, ns := range []string{"app", "serverfirst", "istio-system"} {
		if _, err := env.CreateNamespace(ctx, ns, nil); err != nil {
			t.Fatal(err)
		}
	}
	servers := map[string]func(net.Conn){
		"mail": greet("220 mail.example ESMTP\r\n"), "ftp": greet("220 ftp ready\r\n"), "ssh": greet("SSH-2.0-OpenSSH_9.2\r\n"),
		"db": greet("J\x00\x00\x00\x0a8.0.36\x00"), "cache": waitForClient, "web": waitForClient, "pop": greet("+OK POP3 ready\r\n"),
	}
	for name, handle := range servers {
		addr := listenLoopback(t, handle)
		port, _ := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
		pod, err := env.Client.CoreV1().Pods("app").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-0", Labels: map[string]string{"app": name}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: name + ":1",
				Ports: []corev1.ContainerPort{{Name: "main", ContainerPort: int32(port)}}}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Status.Phase = corev1.PodRunning
		pod.Status.PodIP = "127.0.0.1"
		pod.Status.PodIPs = []corev1.PodIP{{IP: "127.0.0.1"}}
		if _, err := env.Client.CoreV1().Pods("app").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = env.Client.CoreV1().Services("app").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Name: name, Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func decodeReport(t *testing.T, s string) report.Report {
	t.Helper()
	var r report.Report
	if err := json.Unmarshal([]byte(s), &r); err != nil {
		t.Fatalf("not a report: %v\n%s", err, s)
	}
	return r
}

// verdicts maps each target to its verdict and evidence outcomes: what
// two scans of the same servers agree on (timings differ).
func verdicts(r report.Report) map[string]string {
	m := map[string]string{}
	for _, f := range r.Findings {
		var ev []string
		for _, e := range f.Evidence {
			ev = append(ev, string(e.Vantage)+"="+e.Outcome+"/"+e.Protocol)
		}
		m[f.Key().String()] = string(f.Verdict) + " " + strings.Join(ev, ",")
	}
	return m
}

// recorder is a loopback HTTP server that keeps the requests it gets.
type recorder struct {
	mu   sync.Mutex
	reqs []string // "METHOD PATH"
	body map[string][]byte
	srv  *httptest.Server
}

func newRecorder(t *testing.T) *recorder {
	rec := &recorder{body: map[string][]byte{}}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rec.mu.Lock()
		rec.reqs = append(rec.reqs, r.Method+" "+r.URL.Path)
		rec.body[r.URL.Path] = b
		rec.mu.Unlock()
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.reqs...)
}

func TestScanPublishesAgainstAPIServer(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedLoopback(t, env)
	kc := env.Kubeconfig
	cmOf := func() *corev1.ConfigMap {
		cm, err := env.Client.CoreV1().ConfigMaps("serverfirst").Get(context.Background(), "report", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	scan := []string{"scan", "-n", "app", "--kubeconfig", kc, "--vantage", "self", "--self-in-mesh", "false", "--timeout", "1s"}
	quit := newRecorder(t)
	h := hooks{sidecarQuitURL: quit.srv.URL + "/quitquitquit"}

	var single report.Report
	t.Run("single job: ConfigMap, metrics file, sidecar", func(t *testing.T) {
		prom := filepath.Join(t.TempDir(), "serverfirst.prom")
		out, errOut, err := runWith(t, h, "", append(scan, "-o", "json", "--report-configmap", "serverfirst/report", "--metrics-file", prom, "--quit-sidecar")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		single = decodeReport(t, out)
		if len(single.Findings) != 7 || single.Static {
			t.Fatalf("%d findings, static %v", len(single.Findings), single.Static)
		}
		cm := cmOf()
		stored, ok, err := publish.StoredReport(cm)
		if err != nil || !ok {
			t.Fatalf("stored: %v %v", ok, err)
		}
		if got, want := verdicts(stored), verdicts(single); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("ConfigMap report differs from stdout:\n%v\n%v", got, want)
		}
		if cm.Data[publish.KeyReportJSON] != out {
			t.Errorf("report.json is not byte for byte what -o json printed")
		}
		if !strings.Contains(cm.Data[publish.KeyReportMD], "# Server-first scan") || cm.Data[publish.KeyUpdated] == "" {
			t.Errorf("report.md/updated: %v", cm.Data)
		}
		if !strings.Contains(errOut, "report written to ConfigMap serverfirst/report") || !strings.Contains(errOut, "sidecar stopped") {
			t.Errorf("stderr: %s", errOut)
		}
		if g := quit.got(); len(g) != 1 || g[0] != "POST /quitquitquit" {
			t.Errorf("sidecar requests %v", g)
		}
		f, err := os.Open(prom)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(f)
		if err != nil {
			t.Fatal(err)
		}
		total := 0.0
		for _, m := range mfs["serverfirst_findings"].GetMetric() {
			total += m.GetGauge().GetValue()
		}
		if total != 7 || len(mfs["serverfirst_time_to_first_byte_seconds"].GetMetric()) != 5 {
			t.Errorf("findings total %v, ttfb series %d (want 7, 5 greeters)", total, len(mfs["serverfirst_time_to_first_byte_seconds"].GetMetric()))
		}
	})

	t.Run("three shards merge into the single report", func(t *testing.T) {
		gw := newRecorder(t)
		union := map[string]string{}
		var files []string
		dir := t.TempDir()
		for i := range 3 {
			args := append(scan, "-o", "json", "--shard", fmt.Sprintf("%d/3", i), "--run-id", "job-1",
				"--report-configmap", "serverfirst/report", "--pushgateway", gw.srv.URL)
			out, errOut, err := runWith(t, h, "", args...)
			if err != nil {
				t.Fatalf("shard %d: %v\n%s", i, err, errOut)
			}
			part := decodeReport(t, out)
			for k, v := range verdicts(part) {
				if _, dup := union[k]; dup {
					t.Errorf("%s in two shards", k)
				}
				union[k] = v
				if key, _ := target.ParseTargetKey(k); publish.ShardOf(key, 3) != i {
					t.Errorf("shard %d reports %s, owned by %d", i, k, publish.ShardOf(key, 3))
				}
			}
			merged := strings.Contains(errOut, "merged report written")
			if merged != (i == 2) {
				t.Errorf("shard %d merged=%v:\n%s", i, merged, errOut)
			}
			path := filepath.Join(dir, fmt.Sprintf("s%d.json", i))
			if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, path)
		}
		if fmt.Sprint(union) != fmt.Sprint(verdicts(single)) {
			t.Errorf("shards together:\n%v\nsingle:\n%v", union, verdicts(single))
		}
		cm := cmOf()
		stored, _, _ := publish.StoredReport(cm)
		if fmt.Sprint(verdicts(stored)) != fmt.Sprint(verdicts(single)) {
			t.Errorf("merged ConfigMap report differs from the single scan:\n%v\n%v", verdicts(stored), verdicts(single))
		}
		prev := decodeReport(t, cm.Data[publish.KeyPrevious])
		if fmt.Sprint(verdicts(prev)) != fmt.Sprint(verdicts(single)) || len(prev.Findings) != 7 {
			t.Errorf("previous.json is not the single scan's report")
		}
		for k := range cm.Data {
			if strings.HasPrefix(k, "shard-") {
				t.Errorf("shard key %s left", k)
			}
		}
		reqs := gw.got()
		sort.Strings(reqs)
		if want := "[PUT /metrics/job/kubectl-serverfirst/shard/0 PUT /metrics/job/kubectl-serverfirst/shard/1 PUT /metrics/job/kubectl-serverfirst/shard/2]"; fmt.Sprint(reqs) != want {
			t.Errorf("pushes %v, want %s", reqs, want)
		}

		// report merge of the files gives the same report.
		out, errOut, err := runWith(t, h, "", append([]string{"report", "merge"}, files...)...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if fmt.Sprint(verdicts(decodeReport(t, out))) != fmt.Sprint(verdicts(single)) {
			t.Errorf("report merge of files differs")
		}
	})

	t.Run("an incomplete run is merged by report merge --configmap", func(t *testing.T) {
		t.Setenv("JOB_COMPLETION_INDEX", "1")
		t.Setenv(publish.RunIDEnv, "job-2")
		_, errOut, err := runWith(t, h, "", append(scan, "--shards", "2", "--report-configmap", "serverfirst/report")...)
		if err != nil || !strings.Contains(errOut, `shard 1/2 of run "job-2" written`) {
			t.Fatalf("%v\n%s", err, errOut)
		}
		if _, ok := cmOf().Data["shard-1.json"]; !ok {
			t.Fatalf("no shard-1.json")
		}
		out, errOut, err := runWith(t, h, "", "report", "merge", "--kubeconfig", kc, "--configmap", "serverfirst/report", "--publish")
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		if !strings.Contains(strings.Join(r.Warnings, "\n"), "merged 1 of 2 shards: shard(s) 0 missing") {
			t.Errorf("warnings %v", r.Warnings)
		}
		stored, _, _ := publish.StoredReport(cmOf())
		if len(stored.Findings) != len(r.Findings) {
			t.Errorf("--publish stored %d findings, printed %d", len(stored.Findings), len(r.Findings))
		}
	})

	t.Run("read-only ServiceAccount fails loudly", func(t *testing.T) {
		ctx := context.Background()
		// The scan's read-only rules, and read (not write) on ConfigMaps.
		rules := append(publish.ReaderRules(), rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}})
		if _, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "scanner-read"}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err := env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "scanner-read"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "scanner-read"},
			Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "serverfirst", Name: "scanner"}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		sa, err := env.KubeconfigFor("serverfirst", "scanner")
		if err != nil {
			t.Fatal(err)
		}
		args := []string{"scan", "-n", "app", "--kubeconfig", sa, "--static", "-o", "json", "--report-configmap", "serverfirst/report"}
		out, errOut, err := runWith(t, h, "", args...)
		if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), "cannot write ConfigMap serverfirst/report: forbidden: the job's ServiceAccount needs create/update on it") {
			t.Fatalf("err = %v (exit %d)\n%s", err, exitCode(err), errOut)
		}
		if r := decodeReport(t, out); len(r.Findings) != 7 {
			t.Logf("%v %v", verdicts(r), r.Warnings)
			t.Errorf("the report is printed before the write fails")
		}
	})

	t.Run("flag errors", func(t *testing.T) {
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"--report-configmap", "nope"}, "want NAMESPACE/NAME"},
			{[]string{"--shard", "3/3"}, "want INDEX/COUNT"},
			{[]string{"--shard", "0/3", "--shards", "3"}, "give one"},
			{[]string{"--shards", "3"}, "JOB_COMPLETION_INDEX"},
		} {
			_, _, err := runWith(t, h, "", append([]string{"scan", "--kubeconfig", kc, "--static"}, c.args...)...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: err = %v, want %q", c.args, err, c.want)
			}
		}
	})
}

// TestScanInClusterOutsideAPod: --in-cluster where there is no pod says
// so, and still stops a sidecar (a Job must complete even when the scan
// fails).
func TestScanInClusterOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	quit := newRecorder(t)
	h := hooks{sidecarQuitURL: quit.srv.URL + "/quitquitquit"}
	_, _, err := runWith(t, h, "", "scan", "--in-cluster", "-A")
	if err == nil || !strings.Contains(err.Error(), "--in-cluster: not inside a pod") {
		t.Errorf("err = %v", err)
	}
	if g := quit.got(); len(g) != 1 {
		t.Errorf("sidecar not stopped after a failed scan: %v", g)
	}
	// No sidecar listening: connection refused is silent.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, errOut, _ := runWith(t, hooks{sidecarQuitURL: "http://" + addr + "/quitquitquit"}, "", "scan", "--in-cluster", "-A")
	if strings.Contains(errOut, "sidecar") {
		t.Errorf("refused quit reported: %s", errOut)
	}
	// --quit-sidecar=false: nothing is posted.
	_, _, _ = runWith(t, h, "", "scan", "--in-cluster", "--quit-sidecar=false", "-A")
	if g := quit.got(); len(g) != 1 {
		t.Errorf("--quit-sidecar=false posted: %v", g)
	}
}

func TestInClusterDefaults(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	root := NewRootCommand(streams)
	scan, _, err := root.Find([]string{"scan"})
	if err != nil {
		t.Fatal(err)
	}
	if err := scan.ParseFlags([]string{"--in-cluster"}); err != nil {
		t.Fatal(err)
	}
	o := &scanOptions{root: &rootOptions{inCluster: true}, output: "table"}
	o.vantage = "auto"
	if err := o.Complete(scan); err != nil {
		t.Fatal(err)
	}
	if o.output != "json" || o.vantage != "self" || !o.publish.quit {
		t.Errorf("in-cluster defaults: output %q vantage %q quit %v", o.output, o.vantage, o.publish.quit)
	}
}

func TestJobManifestsGolden(t *testing.T) {
	for name, args := range map[string][]string{
		"default":          nil,
		"shards3-outside":  {"--shards", "3", "--outside"},
		"direct":           {"--direct"},
		"custom-namespace": {"-n", "scans", "--schedule", "0 * * * *", "--probe-image", "registry.example/sf:1.2", "--report-configmap", "sf", "--metrics-file", "", "--pushgateway", "http://pushgateway.monitoring:9091"},
	} {
		out, errOut, err := run(t, "", append([]string{"job", "manifests"}, args...)...)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, errOut)
		}
		assertGolden(t, filepath.Join("testdata", "job", name+".golden"), []byte(out))
	}
	if _, _, err := run(t, "", "job", "manifests", "--schedule", "every hour"); err == nil {
		t.Errorf("a bad schedule was accepted")
	}
}

func TestReportMaxBytesFlag(t *testing.T) {
	for _, tc := range []struct {
		value string
		ok    bool
	}{{"4096", true}, {"1048576", true}, {"4095", false}, {"1048577", false}, {"-1", false}} {
		_, errOut, err := run(t, "", "scan", "--static", "--report-max-bytes", tc.value, "--report-configmap", "ns/name")
		msg := errOut
		if err != nil {
			msg += err.Error()
		}
		flagErr := strings.Contains(msg, "--report-max-bytes")
		if flagErr == tc.ok {
			t.Errorf("--report-max-bytes %s: accepted=%v, want %v (err %v: %s)", tc.value, !flagErr, tc.ok, err, errOut)
		}
	}
}
