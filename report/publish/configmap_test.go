package publish

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// One API server serves every test in the package; each test works in a
// namespace of its own.
var (
	envOnce sync.Once
	envErr  error
	shared  *testenv.Env
	nsSeq   atomic.Int32
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		if err := shared.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "testenv: stop:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// newEnv returns the shared API server and creates namespace ns+N in it,
// returning that name through *ns.
func newEnv(t *testing.T, ns *string) *testenv.Env {
	t.Helper()
	envOnce.Do(func() { shared, envErr = testenv.Start(context.Background(), testenv.Options{NoIstioCRDs: true}) })
	if errors.Is(envErr, testenv.ErrBinariesMissing) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("testenv: %v", envErr)
		}
		t.Skipf("testenv: %v", envErr)
	}
	if envErr != nil {
		t.Fatalf("testenv: %v", envErr)
	}
	*ns = fmt.Sprintf("%s-%d", *ns, nsSeq.Add(1))
	if _, err := shared.CreateNamespace(ctxFor(t), *ns, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testenv: last lines of kube-apiserver.log:\n%s", shared.LogTail("apiserver", 20))
		}
	})
	return shared
}

func smallReport(reason string) report.Report {
	fb := 12.5
	r := report.Report{
		Findings: []report.Finding{
			{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3306, Protocol: "auto", ProtocolSource: "sniffed",
				Verdict: report.Deadlock, Scenario: report.MeshToMesh, Reason: reason,
				Evidence: []report.Evidence{{Vantage: target.VantageSelf, Outcome: "banner", FirstByteMs: &fb, Protocol: "mysql"}}},
			{Kind: target.KindService, Namespace: "shop", Name: "web", Port: 80, Protocol: "HTTP", ProtocolSource: "port name", Verdict: report.OK, Reason: "declared"},
		},
		Summary: map[report.Verdict]int{report.Deadlock: 1, report.OK: 1},
		Mesh:    report.MeshSummary{IstioInstalled: true, Source: "istio-system/istio"},
	}
	return r
}

func TestPublishCreatesThenKeepsHistory(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	sink := ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.FixedZone("x", 3600))

	res, err := sink.Publish(ctx, smallReport("first"), []byte("# first\n"), t0)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Compressed || res.Trimmed != 0 || len(res.Notes) != 0 {
		t.Fatalf("first publish: %+v", res)
	}
	cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[LabelName] != LabelValue {
		t.Errorf("labels = %v", cm.Labels)
	}
	if got := cm.Data[KeyUpdated]; got != "2026-05-01T09:00:00Z" {
		t.Errorf("updated = %q", got)
	}
	if _, ok := cm.Data[KeyPrevious]; ok {
		t.Errorf("first publish has previous.json")
	}
	if cm.Data[KeyReportMD] != "# first\n" {
		t.Errorf("report.md = %q", cm.Data[KeyReportMD])
	}
	r, ok, err := StoredReport(cm)
	if err != nil || !ok || r.Findings[0].Reason != "first" {
		t.Fatalf("stored report: %v %v %+v", ok, err, r)
	}

	// Someone adds a key of their own: it survives.
	cm.Data["mine"] = "keep me"
	if _, err := env.Client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = sink.Publish(ctx, smallReport("second"), []byte("# second\n"), t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if res.Created {
		t.Errorf("second publish created the object again")
	}
	cm, err = env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var prev report.Report
	if err := json.Unmarshal([]byte(cm.Data[KeyPrevious]), &prev); err != nil || prev.Findings[0].Reason != "first" {
		t.Fatalf("previous.json = %v %q", err, cm.Data[KeyPrevious])
	}
	if r, _, _ := StoredReport(cm); r.Findings[0].Reason != "second" {
		t.Errorf("report.json reason = %q", r.Findings[0].Reason)
	}
	if cm.Data["mine"] != "keep me" || cm.Data[KeyUpdated] != "2026-05-01T09:30:00Z" {
		t.Errorf("data = %v", cm.Data)
	}
	if res.ResourceVersion != cm.ResourceVersion {
		t.Errorf("result resourceVersion %s, stored %s", res.ResourceVersion, cm.ResourceVersion)
	}
}

// TestPublishConcurrentWriters races real writers against the API server:
// every Publish must land (none lost to a stale resourceVersion), and the
// history must be one of the others' reports.
func TestPublishConcurrentWriters(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	const writers = 6
	var wg sync.WaitGroup
	results := make([]PublishResult, writers)
	errs := make([]error, writers)
	start := make(chan struct{})
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each writer has its own client, as separate pods would.
			kube, err := kubernetes.NewForConfig(env.Config)
			if err != nil {
				errs[i] = err
				return
			}
			sink := ConfigMapSink{Client: kube, Namespace: ns, Name: "report"}
			<-start
			results[i], errs[i] = sink.Publish(ctx, smallReport(fmt.Sprintf("writer-%d", i)), []byte("md"), time.Now())
		}()
	}
	close(start)
	wg.Wait()
	conflicts, creates := 0, 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		conflicts += results[i].Attempts - 1
		if results[i].Created {
			creates++
		}
	}
	if creates != 1 {
		t.Errorf("%d writers created the ConfigMap, want exactly 1", creates)
	}
	t.Logf("%d writers, %d conflicts retried", writers, conflicts)
	cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur, _, _ := StoredReport(cm)
	var prev report.Report
	if err := json.Unmarshal([]byte(cm.Data[KeyPrevious]), &prev); err != nil {
		t.Fatalf("previous.json: %v", err)
	}
	a, b := cur.Findings[0].Reason, prev.Findings[0].Reason
	if a == b || !strings.HasPrefix(a, "writer-") || !strings.HasPrefix(b, "writer-") {
		t.Errorf("report %q, previous %q: want two different writers", a, b)
	}
	// The last writer saw the one before it: its result's resourceVersion
	// is the stored one.
	found := false
	for _, r := range results {
		found = found || r.ResourceVersion == cm.ResourceVersion
	}
	if !found {
		t.Errorf("no writer reports the final resourceVersion %s", cm.ResourceVersion)
	}
}

// TestPublishConflictWithInterleavedWriter makes the conflict certain: a
// second writer updates the object between this writer's Get and Update.
func TestPublishConflictWithInterleavedWriter(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	sink := ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}
	if _, err := sink.Publish(ctx, smallReport("base"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	interfered := false
	res, err := sink.update(ctx, func(cm *corev1.ConfigMap) (PublishResult, error) {
		if !interfered {
			interfered = true
			if _, err := (ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}).Publish(ctx, smallReport("other"), nil, time.Now()); err != nil {
				return PublishResult{}, err
			}
		}
		return fitReport(cm, smallReport("mine"), nil, time.Now(), DefaultBudget)
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempts != 2 {
		t.Errorf("attempts = %d, want 2 (one conflict)", res.Attempts)
	}
	cm, _ := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
	cur, _, _ := StoredReport(cm)
	var prev report.Report
	_ = json.Unmarshal([]byte(cm.Data[KeyPrevious]), &prev)
	if cur.Findings[0].Reason != "mine" || prev.Findings[0].Reason != "other" {
		t.Errorf("report %q previous %q: want mine after other", cur.Findings[0].Reason, prev.Findings[0].Reason)
	}
}

// bigReport is a synthetic report of about size bytes of JSON. With
// random evidence it barely compresses; without, it compresses well.
func bigReport(size int, random bool) report.Report {
	rng := rand.New(rand.NewPCG(1, 2))
	var r report.Report
	r.Summary = map[report.Verdict]int{}
	n := 0
	for i := 0; n < size; i++ {
		v := report.Verdicts[i%len(report.Verdicts)]
		banner := strings.Repeat("220 mail.example ESMTP ready ", 8)
		if random {
			raw := make([]byte, 180)
			for j := range raw {
				raw[j] = byte(rng.UintN(256))
			}
			banner = base64.StdEncoding.EncodeToString(raw)
		}
		f := report.Finding{Kind: target.KindService, Namespace: fmt.Sprintf("ns-%03d", i%97), Name: fmt.Sprintf("svc-%05d", i), Port: int32(1000 + i%5000),
			Protocol: "auto", ProtocolSource: "sniffed", Verdict: v, Reason: "synthetic finding for the size test",
			Hints:    []string{"port:25/smtp"},
			Evidence: []report.Evidence{{Vantage: target.VantageDirect, Outcome: "banner", Banner: banner}}}
		r.Findings = append(r.Findings, f)
		r.Summary[v]++
		b, _ := json.Marshal(f)
		n += len(b) + 40
	}
	return r
}

func TestPublishFitsOneMiB(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	sink := ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}
	get := func() *corev1.ConfigMap {
		cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm
	}
	check := func(cm *corev1.ConfigMap) {
		t.Helper()
		if n := ObjectBytes(cm); n >= MaxObjectBytes {
			t.Errorf("stored object is %d bytes of JSON, want < 1 MiB", n)
		}
		if n := ValidationBytes(cm); n >= MaxObjectBytes {
			t.Errorf("stored values are %d bytes, want < 1 MiB", n)
		}
	}

	// 1. A compressible 3 MiB report: gzip alone makes it fit.
	comp := bigReport(3<<20, false)
	compJSON, _ := encodeReport(comp)
	res, err := sink.Publish(ctx, comp, []byte("# big\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cm := get()
	check(cm)
	if !res.Compressed || res.Trimmed != 0 || res.DroppedPrevious || !strings.Contains(cm.Data[KeyNote], "gzipped") {
		t.Errorf("compressible: %+v note %q", res, cm.Data[KeyNote])
	}
	if _, ok := cm.Data[KeyReportJSON]; ok {
		t.Errorf("report.json kept beside report.json.gz")
	}
	got, ok, err := StoredReport(cm)
	if err != nil || !ok || len(got.Findings) != len(comp.Findings) {
		t.Fatalf("stored compressible report: %v %v %d/%d findings", ok, err, len(got.Findings), len(comp.Findings))
	}
	t.Logf("compressible: %d bytes of JSON -> object %d bytes (gzip %d)", len(compJSON), res.Bytes, len(cm.BinaryData[KeyReportJSONGz]))

	// 2. An incompressible 3 MiB report: history goes, then findings.
	big := bigReport(3<<20, true)
	bigJSON, _ := encodeReport(big)
	md := []byte(strings.Repeat("| **DEADLOCK** | shop | `svc/x:25` | auto | mesh | PERMISSIVE | mesh-to-mesh | banner | rename |\n", 20000))
	res, err = sink.Publish(ctx, big, md, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cm = get()
	check(cm)
	if !res.Compressed || !res.DroppedPrevious || !res.MarkdownTruncated || res.Trimmed == 0 {
		t.Errorf("incompressible: %+v", res)
	}
	if _, ok := cm.BinaryData[KeyPreviousGz]; ok {
		t.Errorf("previous kept although dropped")
	}
	note := cm.Data[KeyNote]
	for _, want := range []string{"gzipped", "previous.json was dropped", "report.md was cut", fmt.Sprintf("%d of %d findings were trimmed", res.Trimmed, len(big.Findings))} {
		if !strings.Contains(note, want) {
			t.Errorf("note lacks %q:\n%s", want, note)
		}
	}
	got, _, err = StoredReport(cm)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Findings)+res.Trimmed != len(big.Findings) {
		t.Errorf("kept %d + trimmed %d != %d", len(got.Findings), res.Trimmed, len(big.Findings))
	}
	// Kept: affected first, worst first; the summary still counts all.
	for i := 1; i < len(got.Findings); i++ {
		if got.Findings[i-1].Verdict.Severity() > got.Findings[i].Verdict.Severity() {
			t.Fatalf("finding %d (%s) before a worse one (%s)", i-1, got.Findings[i-1].Verdict, got.Findings[i].Verdict)
		}
	}
	affected := 0
	for _, f := range big.Findings {
		if f.Verdict.Affected() {
			affected++
		}
	}
	if len(got.Findings) < affected && !got.Findings[len(got.Findings)-1].Verdict.Affected() {
		t.Errorf("an unaffected finding was kept while affected ones were trimmed")
	}
	total := 0
	for _, n := range got.Summary {
		total += n
	}
	if total != len(big.Findings) {
		t.Errorf("summary counts %d, want all %d", total, len(big.Findings))
	}
	if !strings.Contains(strings.Join(got.Warnings, "\n"), "findings were trimmed") {
		t.Errorf("stored report's warnings do not say it was trimmed: %v", got.Warnings)
	}
	if !strings.Contains(cm.Data[KeyReportMD], "report.md cut to fit") {
		t.Errorf("report.md does not say it was cut")
	}
	t.Logf("incompressible: %d findings, %d bytes of JSON (+%d of markdown) -> kept %d findings, object %d bytes (values %d)",
		len(big.Findings), len(bigJSON), len(md), len(got.Findings), res.Bytes, ValidationBytes(cm))

	// 3. A small report after the big one: the history is the big one,
	// still compressed, and everything fits again.
	res, err = sink.Publish(ctx, smallReport("small"), []byte("# small\n"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cm = get()
	check(cm)
	if res.Compressed || res.Trimmed != 0 || cm.Data[KeyNote] != "" || len(cm.BinaryData[KeyPreviousGz]) == 0 {
		t.Errorf("after the big report: %+v note=%q binary keys=%v", res, cm.Data[KeyNote], slices.Sorted(maps.Keys(cm.BinaryData)))
	}
}

// TestPublishForbidden: a ServiceAccount with read rights only gets one
// clear error naming the object and the missing verbs.
func TestPublishForbidden(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	_, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps", "services", "pods"}, Verbs: []string{"get", "list", "watch"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = env.Client.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "scanner"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kc, err := env.KubeconfigFor(ns, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	sink := ConfigMapSink{Client: kube, Namespace: ns, Name: "report"}

	// Absent: create is forbidden.
	_, err = sink.Publish(ctx, smallReport("x"), nil, time.Now())
	want := "cannot write ConfigMap " + ns + "/report: forbidden: the job's ServiceAccount needs create/update on it"
	if err == nil || !strings.HasPrefix(err.Error(), want) || !apierrors.IsForbidden(err) {
		t.Fatalf("err = %v, want prefix %q and IsForbidden", err, want)
	}
	// Present (readable): update is forbidden too.
	if _, err := (ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}).Publish(ctx, smallReport("admin"), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = sink.Publish(ctx, smallReport("x"), nil, time.Now())
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("update: err = %v", err)
	}
}

// TestFitReportSmallerBudget: a caller's smaller limit is honoured and the
// notes name it (not the API server's 1 MiB).
func TestFitReportSmallerBudget(t *testing.T) {
	const budget = 20000
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "r", Namespace: "ns"}}
	res, err := fitReport(cm, bigReport(200000, true), []byte("# report\n"), time.Now(), budget)
	if err != nil {
		t.Fatal(err)
	}
	if n := ObjectBytes(cm); n > budget {
		t.Errorf("stored %d bytes, over the %d budget", n, budget)
	}
	if res.Trimmed == 0 || !res.Compressed {
		t.Errorf("want compressed and trimmed, got %+v", res)
	}
	notes := strings.Join(res.Notes, "\n")
	if !strings.Contains(notes, "the report size limit of 20000 bytes") || strings.Contains(notes, "1 MiB") {
		t.Errorf("notes should name the 20000-byte limit:\n%s", notes)
	}
}
