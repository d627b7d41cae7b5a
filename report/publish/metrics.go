package publish

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/push"

	"github.com/serverfirst/kubectl-serverfirst/report"
)

// NoScenario labels findings that have no scenario (unaffected ones).
const NoScenario = "none"

// Metrics are one scan's gauges in a registry of their own: a scheduled
// scan writes or pushes exactly what it found, nothing left over from a
// previous run or from the process (no Go runtime metrics).
type Metrics struct {
	reg         *prometheus.Registry
	findings    *prometheus.GaugeVec
	ttfb        *prometheus.GaugeVec
	duration    prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// NewMetrics builds the gauges, each verdict x scenario at 0, so alerts
// see a series drop to 0 rather than vanish.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "serverfirst_findings",
			Help: "Ports found by the last scan, by verdict and by where client and server sit (scenario; none for unaffected ports).",
		}, []string{"verdict", "scenario"}),
		ttfb: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "serverfirst_time_to_first_byte_seconds",
			Help: "Time from connect to the server's first byte, per target and vantage point, in the last scan (only where a byte arrived).",
		}, []string{"namespace", "target", "vantage"}),
		duration: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "serverfirst_scan_duration_seconds",
			Help: "How long the last scan took.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "serverfirst_last_success_timestamp_seconds",
			Help: "Unix time at which the last scan finished successfully.",
		}),
	}
	m.reg.MustRegister(m.findings, m.ttfb, m.duration, m.lastSuccess)
	for _, v := range report.Verdicts {
		m.findings.WithLabelValues(string(v), NoScenario)
		if v.Affected() {
			for _, s := range report.Scenarios {
				m.findings.WithLabelValues(string(v), string(s))
			}
		}
	}
	return m
}

// Observe records a finished scan.
func (m *Metrics) Observe(r report.Report, took time.Duration, finished time.Time) {
	for _, f := range r.Findings {
		sc := cmp.Or(string(f.Scenario), NoScenario)
		m.findings.WithLabelValues(string(f.Verdict), sc).Inc()
		seen := map[string]float64{}
		for _, e := range f.Evidence {
			if e.FirstByteMs == nil {
				continue
			}
			// Several observations from one vantage: keep the slowest.
			v := string(e.Vantage)
			if s := *e.FirstByteMs / 1000; s >= seen[v] {
				seen[v] = s
				m.ttfb.WithLabelValues(f.Namespace, report.TargetName(f), v).Set(s)
			}
		}
	}
	m.duration.Set(took.Seconds())
	m.lastSuccess.Set(float64(finished.UnixMilli()) / 1000)
}

// WriteTextfile writes the metrics in the node exporter's textfile
// collector format, atomically (a temporary file in the same folder,
// renamed over path), so the collector never reads half a file.
func (m *Metrics) WriteTextfile(path string) error {
	if err := prometheus.WriteToTextfile(path, m.reg); err != nil {
		return fmt.Errorf("metrics file %s: %w", path, err)
	}
	return nil
}

// PushGrouped replaces the job's group on a Pushgateway with these
// metrics. Grouping labels beyond the job (a shard's index) keep shards
// from replacing each other's metrics; nil for none.
func (m *Metrics) PushGrouped(ctx context.Context, url, job string, grouping map[string]string) error {
	p := push.New(url, job).Gatherer(m.reg)
	for _, k := range slices.Sorted(maps.Keys(grouping)) {
		p = p.Grouping(k, grouping[k])
	}
	if err := p.PushContext(ctx); err != nil {
		return fmt.Errorf("push to %s: %w", url, err)
	}
	return nil
}
