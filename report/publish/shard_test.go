package publish

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

func TestShardOfIsStableAndSpreads(t *testing.T) {
	// Pinned: a change here re-deals every target between shards, which
	// breaks merging shards written by different versions.
	k := target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3306}
	got := []int{ShardOf(k, 1), ShardOf(k, 2), ShardOf(k, 3), ShardOf(k, 7)}
	if fmt.Sprint(got) != fmt.Sprint(pinnedShards) {
		t.Errorf("ShardOf(%s) = %v, want %v", k, got, pinnedShards)
	}
	counts := make([]int, 4)
	for i := range 4000 {
		counts[ShardOf(target.TargetKey{Kind: target.KindService, Namespace: "ns", Name: fmt.Sprintf("svc-%d", i), Port: 80}, 4)]++
	}
	for i, c := range counts {
		if c < 850 || c > 1150 {
			t.Errorf("shard %d of 4 got %d of 4000 targets", i, c)
		}
	}
}

var pinnedShards = []int{0, 0, 1, 3}

func TestParseShard(t *testing.T) {
	for _, c := range []struct {
		in   string
		i, n int
		ok   bool
	}{{"0/1", 0, 1, true}, {"2/3", 2, 3, true}, {" 1 / 4 ", 1, 4, true}, {"3/3", 0, 0, false}, {"-1/3", 0, 0, false}, {"1", 0, 0, false}, {"0/0", 0, 0, false}, {"a/b", 0, 0, false}} {
		i, n, err := ParseShard(c.in)
		if (err == nil) != c.ok || i != c.i || n != c.n {
			t.Errorf("ParseShard(%q) = %d, %d, %v", c.in, i, n, err)
		}
	}
}

// randomInput is a cluster with every kind of target and observations
// from every vantage.
func randomInput(seed uint64) report.Input {
	rng := rand.New(rand.NewPCG(seed, 7))
	inv := &cluster.Inventory{IstioInstalled: true, Mesh: cluster.MeshConfig{Found: true, Source: "istio-system/istio", RootNamespace: "istio-system", ProtocolDetectionTimeout: 5 * time.Second}}
	names := []string{"mysql", "smtp", "http", "tcp-db", "redis", "ssh", "web", "nats"}
	var obs []target.Observation
	results := []probe.Result{
		{Outcome: probe.OutcomeBanner, ConnectMs: 0.4, FirstByteMs: ptr.To(2.5), Banner: "220 mail ESMTP", Protocol: "smtp"},
		{Outcome: probe.OutcomeBanner, ConnectMs: 0.4, FirstByteMs: ptr.To(5004.0), Banner: "220 mail ESMTP", Protocol: "smtp"},
		{Outcome: probe.OutcomeSilent, ConnectMs: 0.4},
		{Outcome: probe.OutcomeRefused, ConnectMs: 0.1},
		{Outcome: probe.OutcomeClosed, ConnectMs: 0.3},
	}
	for i := range 60 {
		ns := fmt.Sprintf("ns-%d", i%4)
		name := names[rng.IntN(len(names))]
		sidecar := rng.IntN(3) > 0
		p := cluster.Pod{Namespace: ns, Name: fmt.Sprintf("p-%d", i), Labels: map[string]string{"app": fmt.Sprint(i)}, IPs: []string{"10.0.0.1"}, Phase: "Running", HasSidecar: sidecar, Images: []string{name}}
		inv.Pods = append(inv.Pods, p)
		port := []int32{3306, 25, 8080, 10000, 6379, 22}[rng.IntN(6)]
		pname := name
		if rng.IntN(2) == 0 {
			pname = "tcp-" + name
		}
		sp := cluster.ServicePort{Name: pname, Port: port, TargetPort: fmt.Sprint(port), Protocol: "TCP", Resolved: cluster.ConvertProtocol(port, pname, "TCP", nil)}
		s := cluster.Service{Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i), Type: "ClusterIP", ClusterIP: "10.96.0.10", Selector: p.Labels, Ports: []cluster.ServicePort{sp},
			Backends: []cluster.PodRef{{Namespace: ns, Name: p.Name}}}
		inv.Services = append(inv.Services, s)
		key := target.TargetKey{Kind: target.KindService, Namespace: ns, Name: s.Name, Port: port}
		for _, v := range []target.Vantage{target.VantageDirect, target.VantageMeshClient, target.VantageOutsideClient, target.VantageSelf} {
			if rng.IntN(3) == 0 {
				continue
			}
			obs = append(obs, target.Observation{Target: key, Vantage: v, InMesh: rng.IntN(2) == 0, Result: results[rng.IntN(len(results))]})
		}
	}
	for i := range 5 {
		inv.ServiceEntries = append(inv.ServiceEntries, cluster.ServiceEntry{Namespace: "ns-0", Name: fmt.Sprintf("ext-%d", i), Hosts: []string{fmt.Sprintf("db%d.example.com", i)},
			Ports: []cluster.ServiceEntryPort{{Number: 3306, Name: "db", Protocol: "TCP", Resolved: cluster.ServiceEntryPortProtocol("TCP")}}})
		obs = append(obs, target.Observation{Target: target.TargetKey{Kind: target.KindServiceEntry, Namespace: "ns-0", Name: fmt.Sprintf("ext-%d", i), Port: 3306},
			Vantage: target.VantageSelf, InMesh: true, Result: results[rng.IntN(len(results))]})
	}
	inv.Warnings = []string{"a warning every shard sees"}
	ext := []target.ExternalTarget{{Host: "203.0.113.7", Port: 10000}}
	obs = append(obs, target.Observation{Target: target.TargetKey{Kind: target.KindExternal, Name: "203.0.113.7", Port: 10000}, Vantage: target.VantageSelf, InMesh: true, Result: results[2]})
	return report.Input{Inventory: inv, Observations: obs, External: ext}
}

func jsonOf(t *testing.T, r report.Report) string {
	t.Helper()
	b, err := encodeReport(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// shardsOf runs the sharded pipeline on in: each shard judges with its
// own observations only, keeps its findings, and goes through JSON.
func shardsOf(t *testing.T, in report.Input, count int) []Shard {
	t.Helper()
	var out []Shard
	for i := range count {
		part := in
		part.Observations = nil
		for _, o := range in.Observations {
			if ShardOf(o.Target, count) == i {
				part.Observations = append(part.Observations, o)
			}
		}
		sh := NewShard("run-1", i, count, report.Build(part), part.Observations, time.Now())
		b, err := json.Marshal(sh)
		if err != nil {
			t.Fatal(err)
		}
		back, err := DecodeShard(b)
		if err != nil {
			t.Fatal(err)
		}
		if len(back.Observations) != len(part.Observations) {
			t.Fatalf("shard %d: %d observations after JSON, want %d", i, len(back.Observations), len(part.Observations))
		}
		out = append(out, back)
	}
	return out
}

// TestMergeEqualsSingleScan is the merge's correctness argument: merging
// the shards gives the very report one scan with every observation gives.
func TestMergeEqualsSingleScan(t *testing.T) {
	for seed := range uint64(20) {
		in := randomInput(seed)
		want := jsonOf(t, report.Build(in))
		for _, count := range []int{1, 2, 3, 5} {
			shards := shardsOf(t, in, count)
			// Any order of arrival.
			rand.New(rand.NewPCG(seed, uint64(count))).Shuffle(len(shards), func(a, b int) { shards[a], shards[b] = shards[b], shards[a] })
			got, err := Merge(shards)
			if err != nil {
				t.Fatal(err)
			}
			if g := jsonOf(t, got); g != want {
				t.Fatalf("seed %d, %d shards: merged report differs from the single scan\n%s", seed, count, firstDiff(g, want))
			}
		}
	}
}

func firstDiff(a, b string) string {
	la, lb := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(la) && i < len(lb); i++ {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n got  %s\n want %s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d lines", len(la), len(lb))
}

func TestMergeSaysWhatIsMissing(t *testing.T) {
	in := randomInput(1)
	shards := shardsOf(t, in, 3)
	got, err := Merge([]Shard{shards[0], shards[2]})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(got.Warnings, "\n"), "merged 2 of 3 shards: shard(s) 1 missing") {
		t.Errorf("warnings = %v", got.Warnings)
	}
	if len(got.Findings) != len(shards[0].Report.Findings)+len(shards[2].Report.Findings) {
		t.Errorf("%d findings", len(got.Findings))
	}
	shards[2].Run = "run-2"
	got, _ = Merge(shards)
	if !strings.Contains(strings.Join(got.Warnings, "\n"), "different runs (run-1, run-2)") {
		t.Errorf("warnings = %v", got.Warnings)
	}
	if _, err := Merge([]Shard{shards[0], shards[0]}); err == nil {
		t.Errorf("a shard given twice merged")
	}
	other := shardsOf(t, in, 2)
	if _, err := Merge([]Shard{shards[0], other[1]}); err == nil {
		t.Errorf("shards of different splits merged")
	}
	// Plain reports (scan --shard I/N -o json) merge too: union, evidence wins.
	var plain []Shard
	for _, s := range shardsOf(t, in, 3) {
		b, _ := encodeReport(s.Report)
		sh, err := DecodeShard(b)
		if err != nil || sh.Index != -1 {
			t.Fatalf("plain report: %v %+v", err, sh.Index)
		}
		plain = append(plain, sh)
	}
	got, err = Merge(plain)
	if err != nil || jsonOf(t, got) != jsonOf(t, report.Build(in)) {
		t.Errorf("plain reports: merge differs from the single scan (%v)", err)
	}
	if _, err := DecodeShard([]byte(`{"x":1}`)); err == nil {
		t.Errorf("garbage decoded")
	}
}

func TestFilterPlan(t *testing.T) {
	in := randomInput(3)
	// FilterPlan reads only a task's key: one task per finding's target.
	var plan []target.ProbeTask
	for _, f := range report.Build(in).Findings {
		plan = append(plan, target.ProbeTask{Key: f.Key()})
	}
	total := 0
	seen := map[target.TargetKey]int{}
	for i := range 3 {
		part := FilterPlan(plan, i, 3)
		total += len(part)
		for _, task := range part {
			seen[task.Key]++
		}
	}
	if total != len(plan) || len(plan) == 0 {
		t.Errorf("shards hold %d tasks, plan %d", total, len(plan))
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s in %d shards", k, n)
		}
	}
}

// TestPublishShardsMergeOnce: shards of one run land concurrently on the
// real API server; exactly one of them merges, the merged report equals
// the single scan's, the shard keys are gone and the history moved.
func TestPublishShardsMergeOnce(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	admin := ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}
	if _, err := admin.Publish(ctx, smallReport("before"), []byte("# before\n"), time.Now()); err != nil {
		t.Fatal(err)
	}
	// A stale shard of an earlier run that never completed.
	stale := NewShard("run-0", 1, 3, smallReport("stale"), nil, time.Now())
	if _, err := admin.PublishShard(ctx, stale, time.Now()); err != nil {
		t.Fatal(err)
	}

	in := randomInput(9)
	shards := shardsOf(t, in, 4)
	results := make([]ShardResult, len(shards))
	errs := make([]error, len(shards))
	var wg sync.WaitGroup
	for i, sh := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			kube := kubernetes.NewForConfigOrDie(env.Config)
			results[i], errs[i] = ConfigMapSink{Client: kube, Namespace: ns, Name: "report"}.PublishShard(ctx, sh, time.Now())
		}()
	}
	wg.Wait()
	merges := 0
	for i := range shards {
		if errs[i] != nil {
			t.Fatalf("shard %d: %v", i, errs[i])
		}
		if results[i].Merged {
			merges++
			if fmt.Sprint(results[i].Present) != "[0 1 2 3]" {
				t.Errorf("merging shard saw %v", results[i].Present)
			}
		}
	}
	if merges != 1 {
		t.Fatalf("%d shards merged, want exactly 1", merges)
	}
	cm, err := env.Client.CoreV1().ConfigMaps(ns).Get(ctx, "report", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k := range cm.Data {
		if strings.HasPrefix(k, "shard-") {
			t.Errorf("shard key %s left after the merge", k)
		}
	}
	got, ok, err := StoredReport(cm)
	if err != nil || !ok {
		t.Fatalf("stored: %v %v", ok, err)
	}
	if g, w := jsonOf(t, got), jsonOf(t, report.Build(in)); g != w {
		t.Errorf("merged report differs from the single scan:\n%s", firstDiff(g, w))
	}
	var prev report.Report
	if err := json.Unmarshal([]byte(cm.Data[KeyPrevious]), &prev); err != nil || prev.Findings[0].Reason != "before" {
		t.Errorf("previous.json: %v", err)
	}
	if !bytes.Contains([]byte(cm.Data[KeyReportMD]), []byte("# Server-first scan")) {
		t.Errorf("report.md = %.80q", cm.Data[KeyReportMD])
	}
	shardsLeft, errs2 := ShardsIn(cm)
	if len(shardsLeft) != 0 || len(errs2) != 0 {
		t.Errorf("ShardsIn after merge: %d, %v", len(shardsLeft), errs2)
	}
}

// TestPublishShardIncomplete: an incomplete run stays as shard keys that
// `report merge` can read.
func TestPublishShardIncomplete(t *testing.T) {
	ns := "serverfirst"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	sink := ConfigMapSink{Client: env.Client, Namespace: ns, Name: "report"}
	in := randomInput(4)
	shards := shardsOf(t, in, 3)
	for _, i := range []int{0, 2} {
		r, err := sink.PublishShard(ctx, shards[i], time.Now())
		if err != nil || r.Merged {
			t.Fatalf("shard %d: %+v %v", i, r, err)
		}
	}
	cm, _ := sink.Read(ctx)
	if _, ok := cm.Data[KeyReportJSON]; ok {
		t.Errorf("a report without every shard")
	}
	got, errs := ShardsIn(cm)
	if len(got) != 2 || len(errs) != 0 {
		t.Fatalf("ShardsIn: %d %v", len(got), errs)
	}
	m, err := Merge(got)
	if err != nil || !strings.Contains(strings.Join(m.Warnings, "\n"), "shard(s) 1 missing") {
		t.Errorf("merge: %v %v", err, m.Warnings)
	}
	// Writing shard 2 again replaces it (no duplicate), then shard 1 completes.
	if _, err := sink.PublishShard(ctx, shards[2], time.Now()); err != nil {
		t.Fatal(err)
	}
	r, err := sink.PublishShard(ctx, shards[1], time.Now())
	if err != nil || !r.Merged {
		t.Fatalf("completing shard: %+v %v", r, err)
	}
}
