package publish

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

func metricsReport() report.Report {
	fast, slow, outside := 3.5, 10012.0, 7.25
	return report.Report{Findings: []report.Finding{
		{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3306, Verdict: report.Deadlock, Scenario: report.MeshToMesh,
			Evidence: []report.Evidence{
				{Vantage: target.VantageDirect, FirstByteMs: &fast},
				{Vantage: target.VantageMeshClient},
				{Vantage: target.VantageOutsideClient, FirstByteMs: &outside},
			}},
		{Kind: target.KindService, Namespace: "shop", Name: "mail", Port: 25, Verdict: report.Delayed, Scenario: report.MeshToMesh,
			Evidence: []report.Evidence{{Vantage: target.VantageSelf, FirstByteMs: &slow}}},
		{Kind: target.KindServiceEntry, Namespace: "shop", Name: "ext-db", Port: 10000, Verdict: report.AtRisk, Scenario: report.MeshToExternal},
		{Kind: target.KindService, Namespace: "web", Name: "frontend", Port: 80, Verdict: report.OK},
		{Kind: target.KindService, Namespace: "web", Name: "api", Port: 8080, Verdict: report.OK},
	}}
}

func parseText(t *testing.T, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("text format does not parse: %v", err)
	}
	return mfs
}

// value finds the gauge whose labels include all of want.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no family %s", name)
	}
	if mf.GetType() != dto.MetricType_GAUGE {
		t.Errorf("%s is %v, want gauge", name, mf.GetType())
	}
next:
	for _, m := range mf.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if labels[k] != v {
				continue next
			}
		}
		return m.GetGauge().GetValue(), true
	}
	return 0, false
}

func checkSeries(t *testing.T, mfs map[string]*dto.MetricFamily, finished time.Time) {
	t.Helper()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"serverfirst_findings", map[string]string{"verdict": "DEADLOCK", "scenario": "mesh-to-mesh"}, 1},
		{"serverfirst_findings", map[string]string{"verdict": "DELAYED", "scenario": "mesh-to-mesh"}, 1},
		{"serverfirst_findings", map[string]string{"verdict": "AT-RISK", "scenario": "mesh-to-external"}, 1},
		{"serverfirst_findings", map[string]string{"verdict": "OK", "scenario": "none"}, 2},
		{"serverfirst_findings", map[string]string{"verdict": "DEADLOCK", "scenario": "external-to-mesh"}, 0},
		{"serverfirst_findings", map[string]string{"verdict": "UNREACHABLE", "scenario": "none"}, 0},
		{"serverfirst_time_to_first_byte_seconds", map[string]string{"namespace": "shop", "target": "svc/orders-db:3306", "vantage": "direct"}, 0.0035},
		{"serverfirst_time_to_first_byte_seconds", map[string]string{"namespace": "shop", "target": "svc/orders-db:3306", "vantage": "outside-client"}, 0.00725},
		{"serverfirst_time_to_first_byte_seconds", map[string]string{"namespace": "shop", "target": "svc/mail:25", "vantage": "self"}, 10.012},
		{"serverfirst_scan_duration_seconds", nil, 42.5},
		{"serverfirst_last_success_timestamp_seconds", nil, float64(finished.UnixMilli()) / 1000},
	} {
		got, ok := value(t, mfs, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	// No series for evidence without a first byte.
	if _, ok := value(t, mfs, "serverfirst_time_to_first_byte_seconds", map[string]string{"vantage": "mesh-client"}); ok {
		t.Errorf("a time to first byte for the silent mesh path")
	}
	if n := len(mfs["serverfirst_time_to_first_byte_seconds"].GetMetric()); n != 3 {
		t.Errorf("%d time-to-first-byte series, want 3", n)
	}
	// A fresh registry: nothing but ours (no go_*, process_*).
	for name := range mfs {
		if !strings.HasPrefix(name, "serverfirst_") {
			t.Errorf("unexpected family %s", name)
		}
	}
}

func TestMetricsTextfile(t *testing.T) {
	finished := time.Date(2026, 5, 1, 10, 0, 0, 250e6, time.UTC)
	m := NewMetrics()
	m.Observe(metricsReport(), 42500*time.Millisecond, finished)
	dir := t.TempDir()
	path := filepath.Join(dir, "serverfirst.prom")
	if err := os.WriteFile(path, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.WriteTextfile(path); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	checkSeries(t, parseText(t, f), finished)
	// Atomic: only the file itself is left in the folder (the temp file
	// was renamed over it), and it is world-readable for the collector.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("folder holds %d entries, want 1", len(entries))
	}
	if st, _ := os.Stat(path); st.Mode().Perm()&0o044 != 0o044 {
		t.Errorf("mode %v: collector cannot read it", st.Mode())
	}
	// A missing folder is an error naming the file.
	if err := m.WriteTextfile(filepath.Join(dir, "nope", "x.prom")); err == nil || !strings.Contains(err.Error(), "x.prom") {
		t.Errorf("err = %v", err)
	}
}

func TestMetricsPush(t *testing.T) {
	type req struct {
		method, path, ctype string
		body                []byte
	}
	got := make(chan req, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- req{r.Method, r.URL.Path, r.Header.Get("Content-Type"), b}
		w.WriteHeader(http.StatusOK)
	}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.Listener = l
	srv.Start()
	defer srv.Close()

	finished := time.Now()
	m := NewMetrics()
	m.Observe(metricsReport(), 42500*time.Millisecond, finished)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.PushGrouped(ctx, srv.URL, "serverfirst-scan", nil); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.method != http.MethodPut || r.path != "/metrics/job/serverfirst-scan" {
		t.Errorf("%s %s, want PUT /metrics/job/serverfirst-scan", r.method, r.path)
	}
	// The pusher sends the delimited protobuf format; decode it as a
	// Pushgateway would.
	dec := expfmt.NewDecoder(bytes.NewReader(r.body), expfmt.Format(r.ctype))
	mfs := map[string]*dto.MetricFamily{}
	for {
		mf := &dto.MetricFamily{}
		if err := dec.Decode(mf); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("body (%s) does not decode: %v", r.ctype, err)
		}
		mfs[mf.GetName()] = mf
	}
	checkSeries(t, mfs, finished)

	// A gateway that refuses is an error naming it.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", http.StatusBadRequest) }))
	defer bad.Close()
	if err := m.PushGrouped(ctx, bad.URL, "j", nil); err == nil || !strings.Contains(err.Error(), bad.URL) {
		t.Errorf("err = %v", err)
	}
}
