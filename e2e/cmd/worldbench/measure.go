package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// requestCounts are the requests one scan sent through the proxy.
type requestCounts struct {
	total, podCreates, portForwards, logs, watches int
}

// countingProxy is a reverse proxy to the API server that counts what
// passes (upgrades for port-forward included: httputil.ReverseProxy
// hands a 101 response's connection through). The tool's kubeconfig
// points at it over plain HTTP on loopback; it talks to the API server
// with the admin's credentials.
type countingProxy struct {
	URL    string
	server *http.Server
	mu     sync.Mutex
	counts requestCounts
}

func startCountingProxy(admin *rest.Config) (*countingProxy, error) {
	upstream, err := url.Parse(admin.Host)
	if err != nil {
		return nil, err
	}
	rt, err := rest.TransportFor(admin)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &countingProxy{URL: "http://" + l.Addr().String()}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.Out.Host = upstream.Host
		},
		Transport:     rt,
		FlushInterval: -1, // watches stream
	}
	p.server = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.count(r)
		rp.ServeHTTP(w, r)
	})}
	go p.server.Serve(l)
	return p, nil
}

func (p *countingProxy) count(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts.total++
	switch path := r.URL.Path; {
	case strings.HasSuffix(path, "/portforward"):
		p.counts.portForwards++
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/pods"):
		p.counts.podCreates++
	case strings.HasSuffix(path, "/log"):
		p.counts.logs++
	case r.URL.Query().Get("watch") == "true" || r.URL.Query().Get("watch") == "1":
		p.counts.watches++
	}
}

// take returns the counts since the last take.
func (p *countingProxy) take() requestCounts {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.counts
	p.counts = requestCounts{}
	return c
}

func (p *countingProxy) Close() error { return p.server.Close() }

func writeKubeconfig(path, server string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["bench"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["bench"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["bench"] = &clientcmdapi.Context{Cluster: "bench", AuthInfo: "bench"}
	cfg.CurrentContext = "bench"
	return clientcmd.WriteToFile(*cfg, path)
}

// probeWatch follows the probe pods on the API server: how many were
// created, how many lived at once, and how long each took from creation
// (as the watch saw it) to its agent container running.
type probeWatch struct {
	mu      sync.Mutex
	added   map[types.UID]time.Time
	started map[types.UID]time.Duration
	alive   map[types.UID]bool
	peak    int
	done    chan struct{}
}

func watchProbePods(ctx context.Context, env *testenv.Env) (*probeWatch, error) {
	list, err := env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: probeSelector})
	if err != nil {
		return nil, err
	}
	if len(list.Items) > 0 {
		return nil, fmt.Errorf("%d probe pod(s) still there before the scan", len(list.Items))
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = probeSelector
			return env.Client.CoreV1().Pods("").Watch(ctx, o)
		},
	})
	if err != nil {
		return nil, err
	}
	pw := &probeWatch{added: map[types.UID]time.Time{}, started: map[types.UID]time.Duration{}, alive: map[types.UID]bool{}, done: make(chan struct{})}
	go func() {
		defer close(pw.done)
		for ev := range rw.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			pw.observe(ev.Type, pod, time.Now())
		}
	}()
	go func() {
		<-ctx.Done()
		rw.Stop()
	}()
	return pw, nil
}

func (pw *probeWatch) observe(t watch.EventType, pod *corev1.Pod, now time.Time) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if t == watch.Deleted {
		delete(pw.alive, pod.UID)
		return
	}
	if _, seen := pw.added[pod.UID]; !seen {
		pw.added[pod.UID] = now
		pw.alive[pod.UID] = true
		pw.peak = max(pw.peak, len(pw.alive))
	}
	if _, ok := pw.started[pod.UID]; ok {
		return
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == "agent" && (cs.State.Running != nil || cs.State.Terminated != nil) {
			pw.started[pod.UID] = now.Sub(pw.added[pod.UID])
		}
	}
}

func (pw *probeWatch) figures() (created, peak int, starts []time.Duration) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	for _, d := range pw.started {
		starts = append(starts, d)
	}
	return len(pw.added), pw.peak, starts
}

// waitGone returns once no probe pod is left (the tool deletes them).
func waitGone(ctx context.Context, env *testenv.Env) error {
	for {
		list, err := env.Client.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: probeSelector})
		if err == nil && len(list.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe pods left after the scan: %w", ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// metricDelta is what the API server itself counted during a scan
// (apiserver_request_total), from every client: pod creates and
// port-forward CONNECTs only come from the scan here (nothing else in the
// bench creates pods or forwards ports meanwhile); total includes the
// world's own traffic (node status, EndpointSlices, istiod, the watch).
type metricDelta struct {
	podCreates, portForwards, total float64
}

func scrape(ctx context.Context, env *testenv.Env) (metricDelta, error) {
	raw, err := env.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return metricDelta{}, err
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return metricDelta{}, err
	}
	var m metricDelta
	fam := families["apiserver_request_total"]
	if fam == nil {
		return m, errors.New("no apiserver_request_total in /metrics")
	}
	for _, s := range fam.GetMetric() {
		l := labelsOf(s)
		v := s.GetCounter().GetValue()
		m.total += v
		switch {
		case l["verb"] == "POST" && l["resource"] == "pods" && l["subresource"] == "":
			m.podCreates += v
		case l["verb"] == "CONNECT" && l["resource"] == "pods" && l["subresource"] == "portforward":
			m.portForwards += v
		}
	}
	return m, nil
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func (a metricDelta) minus(b metricDelta) metricDelta {
	return metricDelta{a.podCreates - b.podCreates, a.portForwards - b.portForwards, a.total - b.total}
}

// toolSaid is the tool's own plan line on stderr (both binaries print it).
var toolSaid = regexp.MustCompile(`probing with (\d+) probe pod\(s\).* and (\d+) port-forward\(s\)`)

// scan runs one `scan ARGS -o json` through the proxy and
// gathers its figures.
func scan(ctx context.Context, env *testenv.Env, proxy *countingProxy, kc string, run scanRun, o options) (result, error) {
	name, bin := run.name, run.bin
	res := result{name: name, kind: run.kind}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	pw, err := watchProbePods(wctx, env)
	if err != nil {
		return res, err
	}
	before, err := scrape(ctx, env)
	if err != nil {
		return res, err
	}
	proxy.take()
	args := append(append([]string{"scan"}, run.args...), "-o", "json", "--kubeconfig", kc)
	args = append(args, o.scanArgs...)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+os.TempDir())
	began := time.Now()
	err = cmd.Run()
	res.wall = time.Since(began)
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.exit = ee.ExitCode()
	default:
		return res, err
	}
	res.requests = proxy.take()
	slug := strings.NewReplacer(" ", "-", "(", "", ")", "").Replace(name)
	_ = os.WriteFile(filepath.Join(o.outDir, slug+".json"), stdout.Bytes(), 0o644)
	_ = os.WriteFile(filepath.Join(o.outDir, slug+".stderr"), stderr.Bytes(), 0o644)
	if err := waitGone(ctx, env); err != nil {
		return res, err
	}
	after, err := scrape(ctx, env)
	if err != nil {
		return res, err
	}
	res.metrics = after.minus(before)
	stopWatch()
	<-pw.done
	res.probePods, res.peakPods, res.starts = pw.figures()
	if m := toolSaid.FindStringSubmatch(stderr.String()); m != nil {
		res.toolPods, res.toolForwards = m[1], m[2]
	}
	var rep struct {
		Findings []struct {
			Verdict string `json:"verdict"`
		} `json:"findings"`
		Warnings []string `json:"warnings"`
		Mesh     struct {
			BannerWaitMs int64 `json:"bannerWaitMs"`
		} `json:"mesh"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		return res, fmt.Errorf("scan exited %d without a JSON report (%v); stderr:\n%s", res.exit, err, tail(stderr.String(), 20))
	}
	res.verdicts = map[string]int{}
	for _, f := range rep.Findings {
		res.verdicts[f.Verdict]++
	}
	res.warnings = len(rep.Warnings)
	res.bannerWait = time.Duration(rep.Mesh.BannerWaitMs) * time.Millisecond
	return res, nil
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
