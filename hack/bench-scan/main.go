// Command bench-scan measures the static scan's inventory read against a
// real kube-apiserver + etcd (internal/testenv) seeded like a big cluster: 200
// namespaces, 5,000 Services (sniffed, tcp-, http- and well-known-port
// names), 20,000 Pods (half with an istio-proxy), 5,000 EndpointSlices,
// 1,000 ServiceEntries and some PeerAuthentications. It times cluster.Load
// over all namespaces several times, counting API requests through a
// rest.Config WrapTransport, then report.Build and the -o json rendering
// in this process (-cpuprofile covers all three), and, when the built
// binary exists, the whole `kubectl-serverfirst scan --static -A -o json`
// end to end (-bin old,new alternates two builds).
//
// -scale 1,3 repeats all of it on a fresh server seeded three times as big
// (about 94,000 objects) and ends with a growth table: the goal there is
// growth linear in the objects (the scan's CPU and peak RSS per object
// within linearSlack of the first scale's), the end-to-end scan within 3 s
// and 400 MB (peak RSS, -goal-rss). Beside each end-to-end scan it prints
// the CPU the API server and etcd spent meanwhile: on a shared machine
// their work is part of the scan's wall time.
//
// The goal (from the issue): Load within 3 s wall, with at most
// objects/500 + (number of resource types) API requests. The program prints
// the figures and whether each goal is met; it exits non-zero when a goal
// is missed (-strict) or something fails. Run it through `make bench`
// (hack/bench.sh).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioclient "istio.io/client-go/pkg/clientset/versioned"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// resourceTypes is how many kinds Load lists for -A: namespaces, services,
// endpointslices, pods, serviceentries, peerauthentications, configmaps.
const resourceTypes = 7

var opt struct {
	kubeconfig, cpuProfile, memProfile string
	hold                               bool
}

type sizes struct {
	namespaces, services, pods, slices, serviceEntries, workers int
}

func main() {
	var sz sizes
	flag.IntVar(&sz.namespaces, "namespaces", 200, "namespaces to create")
	flag.IntVar(&sz.services, "services", 5000, "Services, spread evenly over the namespaces")
	flag.IntVar(&sz.pods, "pods", 20000, "Pods, spread evenly; half get an istio-proxy container")
	flag.IntVar(&sz.slices, "slices", 5000, "EndpointSlices, one per Service up to this many (0 = selector fallback)")
	flag.IntVar(&sz.serviceEntries, "serviceentries", 1000, "ServiceEntries")
	flag.IntVar(&sz.workers, "workers", 32, "parallel creators while seeding")
	runs := flag.Int("runs", 5, "timed Loads (and binary runs)")
	bin := flag.String("bin", "bin/kubectl-serverfirst", `the built binary to time end to end ("" or missing skips it); several, comma-separated, take turns run by run (A/B) and their outputs are compared`)
	goalWall := flag.Duration("goal", 3*time.Second, "wall-time goal for one Load")
	strict := flag.Bool("strict", false, "exit 2 when a goal is missed")
	flag.StringVar(&opt.kubeconfig, "kubeconfig", "", "measure an existing cluster (e.g. one left by -hold) instead of starting and seeding one")
	flag.BoolVar(&opt.hold, "hold", false, "keep the seeded API server running after the measurements, until interrupted (prints its kubeconfig)")
	flag.StringVar(&opt.cpuProfile, "cpuprofile", "", "write a CPU profile of the timed runs (Load, report.Build, -o json)")
	flag.StringVar(&opt.memProfile, "memprofile", "", "write an allocation profile after the timed Loads")
	scaleList := flag.String("scale", "1", "comma-separated size multipliers, each measured on a freshly seeded API server (1 = the sizes above, about 31,000 objects); with several, a growth table ends the output")
	goalRSS := flag.Int("goal-rss", 400, "peak-RSS goal (MB) for one end-to-end scan")
	flag.Parse()

	var scales []int
	for _, f := range strings.Split(*scaleList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "bench-scan: -scale %q: want positive integers, e.g. 1,3\n", *scaleList)
			os.Exit(2)
		}
		scales = append(scales, n)
	}
	if opt.kubeconfig != "" && len(scales) > 1 {
		fmt.Fprintln(os.Stderr, "bench-scan: -kubeconfig measures one existing cluster: give one -scale")
		os.Exit(2)
	}
	var missed bool
	var figures []scaleFigures
	for k, scale := range scales {
		if k > 0 {
			fmt.Println()
		}
		m, f, err := run(sz.times(scale), *runs, *bin, *goalWall, int64(*goalRSS)<<20)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench-scan:", err)
			os.Exit(1)
		}
		f.scale = scale
		missed = missed || m
		figures = append(figures, f)
	}
	if len(figures) > 1 {
		missed = printGrowth(figures) || missed
	}
	if missed && *strict {
		os.Exit(2)
	}
}

func (sz sizes) times(k int) sizes {
	sz.namespaces *= k
	sz.services *= k
	sz.pods *= k
	sz.slices *= k
	sz.serviceEntries *= k
	return sz
}

// scaleFigures are one scale's headline figures, for the growth table.
type scaleFigures struct {
	scale, objects int
	load, scan     time.Duration // medians
	scanCPU        time.Duration // median CPU of the end-to-end scans
	scanRSS        int64         // largest peak RSS of the end-to-end scans
	loadAllocMB    float64
}

// linearSlack is how much a cost per object may grow over the first
// scale's and still count as linear growth: the machine is shared, and a
// CPU median moves by about that much between runs.
const linearSlack = 1.25

// printGrowth shows how each figure grows against the first scale's:
// linear growth keeps "per object" flat. It returns whether the goal of
// linear growth (scan CPU and peak RSS per object) was missed.
func printGrowth(fs []scaleFigures) (missed bool) {
	base := fs[0]
	fmt.Printf("\ngrowth (vs -scale %d):\n%6s %9s %11s %11s %11s %12s %12s %12s %12s\n", base.scale,
		"SCALE", "OBJECTS", "LOAD", "SCAN", "SCAN CPU", "SCAN RSS", "SCAN/OBJ", "CPU/OBJ", "RSS/OBJ")
	worst := 0.0
	for _, f := range fs {
		perObj := func(v, b float64) (string, float64) {
			if b == 0 || f.objects == 0 {
				return "-", 0
			}
			r := (v / float64(f.objects)) / (b / float64(base.objects))
			return fmt.Sprintf("%.2fx", r), r
		}
		wall, _ := perObj(f.scan.Seconds(), base.scan.Seconds())
		cpu, cpuR := perObj(f.scanCPU.Seconds(), base.scanCPU.Seconds())
		rss, rssR := perObj(float64(f.scanRSS), float64(base.scanRSS))
		worst = max(worst, cpuR, rssR)
		fmt.Printf("%6d %9d %10.2fs %10.2fs %10.2fs %10.1fMB %12s %12s %12s\n", f.scale, f.objects, f.load.Seconds(), f.scan.Seconds(),
			f.scanCPU.Seconds(), float64(f.scanRSS)/(1<<20), wall, cpu, rss)
	}
	fmt.Println("(*/OBJ: cost per object against the first scale's; 1.00x is linear, below it better than linear)")
	if base.scanCPU == 0 {
		return false // no end-to-end runs
	}
	verdict := "met"
	if worst > linearSlack {
		verdict, missed = "MISSED", true
	}
	fmt.Printf("  goal linear growth (scan CPU and peak RSS per object <= %.2fx): %s (worst %.2fx)\n", linearSlack, verdict, worst)
	return missed
}

func run(sz sizes, runs int, bin string, goalWall time.Duration, goalRSS int64) (missed bool, fig scaleFigures, err error) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	fmt.Printf("bench-scan: %d namespaces, %d Services, %d Pods, %d EndpointSlices, %d ServiceEntries; GOMAXPROCS %d\n",
		sz.namespaces, sz.services, sz.pods, sz.slices, sz.serviceEntries, runtime.GOMAXPROCS(0))
	var (
		adminCfg   *rest.Config
		kubeconfig string
		objects    int
		serverPIDs []int // the API server and etcd, when this program started them
	)
	if opt.kubeconfig != "" {
		kubeconfig = opt.kubeconfig
		if adminCfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig); err != nil {
			return false, fig, err
		}
		adminCfg.QPS = -1
		if objects, err = countObjects(ctx, adminCfg); err != nil {
			return false, fig, err
		}
		fmt.Printf("existing cluster %s: %d objects\n", adminCfg.Host, objects)
	} else {
		env, err := testenv.Start(ctx, testenv.Options{StartTimeout: 3 * time.Minute})
		if err != nil {
			return false, fig, err
		}
		defer env.Stop()
		fmt.Printf("API server ready in %v\n", env.StartupTime.Round(time.Millisecond))
		apiserverPID, etcdPID := env.PIDs()
		serverPIDs = []int{apiserverPID, etcdPID}
		adminCfg, kubeconfig = env.Config, env.Kubeconfig

		began := time.Now()
		objects, err = seed(ctx, env, sz)
		if err != nil {
			return false, fig, fmt.Errorf("seeding: %w", err)
		}
		seedTime := time.Since(began)
		fmt.Printf("seeded %d objects in %v (%.0f objects/s, %d workers)\n", objects, seedTime.Round(time.Millisecond),
			float64(objects)/seedTime.Seconds(), sz.workers)
		if opt.hold {
			defer func() {
				sig := make(chan os.Signal, 1)
				signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
				fmt.Printf("\nholding the API server: --kubeconfig %s (Ctrl-C ends it)\n", kubeconfig)
				select {
				case <-sig:
				case <-env.Done():
				}
			}()
		}
	}

	// Load, as the scan calls it: one warm-up, then timed runs. The host's
	// load average is printed with the figures: the API server shares the
	// CPUs with this process and with whatever else runs.
	loadBefore := loadAverage()
	walls, reqs, inv, allocMB, cpu, phases, err := timeLoads(ctx, adminCfg, runs, opt.cpuProfile)
	if err != nil {
		return false, fig, err
	}
	if opt.memProfile != "" {
		if err := writeHeapProfile(opt.memProfile); err != nil {
			return false, fig, err
		}
	}
	if opt.kubeconfig == "" && (len(inv.Pods) != sz.pods || len(inv.Services) != sz.services+1 || len(inv.ServiceEntries) != sz.serviceEntries) {
		return false, fig, fmt.Errorf("inventory has %d pods, %d services, %d service entries: seeding and Load disagree",
			len(inv.Pods), len(inv.Services), len(inv.ServiceEntries))
	}
	if len(inv.Warnings) > 0 {
		return false, fig, fmt.Errorf("cluster.Load warned: %q", inv.Warnings)
	}
	fmt.Printf("\nload average before the timed runs: %s\n", loadBefore)
	reqGoal := int64(objects/500 + resourceTypes)
	minW, medW := minMedian(walls)
	fmt.Printf("\ncluster.Load -A %d runs: wall min %v, median %v; %d requests (goal <= %d = %d objects/500 + %d types);\n  per Load %v of this process's CPU (median), %.0f MB allocated\n",
		runs, minW.Round(time.Millisecond), medW.Round(time.Millisecond), slices.Max(reqs), reqGoal, objects, resourceTypes, medianD(cpu).Round(time.Millisecond), median(allocMB))
	ok := func(b bool) string {
		if b {
			return "met"
		}
		missed = true
		return "MISSED"
	}
	fmt.Printf("  goal wall <= %v: %s\n", goalWall, ok(medW <= goalWall))
	fmt.Printf("  goal requests <= %d: %s\n", reqGoal, ok(slices.Max(reqs) <= reqGoal))
	fig.objects, fig.load, fig.loadAllocMB = objects, medW, median(allocMB)
	minB, medB := minMedian(phases.build)
	minJ, medJ := minMedian(phases.json)
	fmt.Printf("after each Load, in this process: report.Build min %v, median %v; -o json min %v, median %v (%.1f MB)\n",
		minB.Round(time.Millisecond), medB.Round(time.Millisecond), minJ.Round(time.Millisecond), medJ.Round(time.Millisecond), float64(phases.jsonBytes)/(1<<20))

	if bin == "" {
		return missed, fig, nil
	}
	bins := strings.Split(bin, ",")
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			fmt.Printf("\n%s not built (make build): end-to-end run skipped\n", b)
			return missed, fig, nil
		}
	}
	// Several binaries (an A/B comparison) take turns, run by run, so
	// that a change in the host's load falls on all of them alike; each
	// has one untimed warm-up, and each one's JSON is compared with the
	// first one's.
	e2e := make([][]time.Duration, len(bins))
	e2eCPU := make([][]time.Duration, len(bins))
	e2eRSS := make([]int64, len(bins))
	e2eServer := make([][]time.Duration, len(bins)) // API server + etcd CPU during each run
	outputs := make([][]byte, len(bins))
	fmt.Printf("\nload average before the end-to-end runs: %s\n", loadAverage())
	for i := -1; i < runs; i++ {
		for k, b := range bins {
			cmd := exec.CommandContext(ctx, b, "scan", "--static", "-A", "-o", "json", "--kubeconfig", kubeconfig)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			serverBefore := processesCPU(serverPIDs)
			start := time.Now()
			err := cmd.Run()
			wall := time.Since(start)
			serverCPU := processesCPU(serverPIDs) - serverBefore
			var ee *exec.ExitError
			if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 3) {
				return missed, fig, fmt.Errorf("%s scan: %v\n%s", b, err, strings.TrimSpace(stderr.String()))
			}
			if i >= 0 {
				e2e[k] = append(e2e[k], wall)
				e2eCPU[k] = append(e2eCPU[k], cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
				e2eServer[k] = append(e2eServer[k], serverCPU)
				if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
					e2eRSS[k] = max(e2eRSS[k], ru.Maxrss<<10)
				}
			}
			outputs[k] = stdout.Bytes()
		}
	}
	for k, b := range bins {
		minE, medE := minMedian(e2e[k])
		fmt.Printf("\n%s scan --static -A -o json, %d runs: wall min %v, median %v; CPU %v (median); peak RSS %.1f MB (largest); %.1f MB of JSON\n",
			b, runs, minE.Round(time.Millisecond), medE.Round(time.Millisecond), medianD(e2eCPU[k]).Round(time.Millisecond),
			float64(e2eRSS[k])/(1<<20), float64(len(outputs[k]))/(1<<20))
		fmt.Printf("  runs: %v\n", roundAll(e2e[k]))
		if serverPIDs != nil {
			fmt.Printf("  API server + etcd CPU during a scan: %v (median; the scan's own is the CPU above)\n", medianD(e2eServer[k]).Round(10*time.Millisecond))
		}
		if k > 0 {
			same := "identical to"
			if !bytes.Equal(outputs[k], outputs[0]) {
				same = "DIFFERENT from"
				missed = true
			}
			fmt.Printf("  output %s %s's\n", same, bins[0])
		}
		fmt.Printf("  goal wall <= %v: %s\n", goalWall, ok(medE <= goalWall))
		fmt.Printf("  goal peak RSS <= %d MB: %s\n", goalRSS>>20, ok(e2eRSS[k] <= goalRSS))
		if k == 0 {
			fig.scan, fig.scanRSS, fig.scanCPU = medE, e2eRSS[0], medianD(e2eCPU[0])
		}
	}
	fmt.Printf("load average now: %s\n", loadAverage())
	return missed, fig, nil
}

func roundAll(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i := range d {
		out[i] = d[i].Round(time.Millisecond)
	}
	return out
}

// phaseTimes are the rest of the static scan after Load, timed in this
// process: the verdicts and the JSON the binary writes for -o json.
type phaseTimes struct {
	build, json []time.Duration
	jsonBytes   int
}

// timeLoads runs Load runs+1 times (the first is a warm-up) and returns the
// timed runs' wall times, request counts and allocations. After each Load
// it times report.Build and the -o json rendering (outside the Load
// figures), so that the CPU profile covers the whole static scan but
// process start.
func timeLoads(ctx context.Context, admin *rest.Config, runs int, cpuProfile string) (walls []time.Duration, reqs []int64, inv *cluster.Inventory, allocMB []float64, cpu []time.Duration, phases phaseTimes, err error) {
	var requests atomic.Int64
	cfg := rest.CopyConfig(admin)
	cfg.QPS, cfg.Burst = 50, 100 // what the scan command sets
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			return rt.RoundTrip(r)
		})
	}
	// client-go asks for protobuf for built-in types by default; the Istio
	// CRDs are JSON.
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, nil, nil, phases, err
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return nil, nil, nil, nil, nil, phases, err
	}
	clients := cluster.Clients{Kube: kube, Istio: ic}
	for i := -1; i < runs; i++ {
		if i == 0 && cpuProfile != "" {
			f, err := os.Create(cpuProfile)
			if err != nil {
				return nil, nil, nil, nil, nil, phases, err
			}
			defer f.Close()
			if err := pprof.StartCPUProfile(f); err != nil {
				return nil, nil, nil, nil, nil, phases, err
			}
			defer pprof.StopCPUProfile()
		}
		inv = nil
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		requests.Store(0)
		cpuBefore := processCPU()
		start := time.Now()
		inv, err = cluster.Load(ctx, clients, cluster.LoadOptions{})
		wall := time.Since(start)
		cpuUsed := processCPU() - cpuBefore
		if err != nil {
			return nil, nil, nil, nil, nil, phases, fmt.Errorf("cluster.Load: %w", err)
		}
		runtime.ReadMemStats(&after)
		start = time.Now()
		r := report.Build(report.Input{Inventory: inv, Static: true})
		buildWall := time.Since(start)
		var out countingWriter
		start = time.Now()
		if err := report.Render(&out, "json", r, report.RenderOptions{}); err != nil {
			return nil, nil, nil, nil, nil, phases, fmt.Errorf("rendering: %w", err)
		}
		jsonWall := time.Since(start)
		if i < 0 {
			continue // warm-up: connection set-up, first-request caches
		}
		walls = append(walls, wall)
		reqs = append(reqs, requests.Load())
		allocMB = append(allocMB, float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
		cpu = append(cpu, cpuUsed)
		phases.build = append(phases.build, buildWall)
		phases.json = append(phases.json, jsonWall)
		phases.jsonBytes = int(out)
	}
	return walls, reqs, inv, allocMB, cpu, phases, nil
}

// countingWriter discards what it is given and counts the bytes, as a
// pipe to a fast reader would.
type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// loadAverage is the first three fields of /proc/loadavg, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// processCPU is this process's user+system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// processesCPU is the user+system CPU time so far of the given processes
// (nil: none), from /proc/PID/stat in clock ticks of 1/100 s (USER_HZ on
// Linux); a process it cannot read counts nothing.
func processesCPU(pids []int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// The command name, field 2, is in parentheses and may hold
		// spaces: count fields after its closing one.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
		stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
		if err1 == nil && err2 == nil {
			total += time.Duration(utime+stime) * 10 * time.Millisecond
		}
	}
	return total
}

func medianD(d []time.Duration) time.Duration {
	_, m := minMedian(d)
	return m
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// countObjects counts what Load lists in an existing cluster, outside the
// timed runs.
func countObjects(ctx context.Context, cfg *rest.Config) (int, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	ic, err := istioclient.NewForConfig(cfg)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, list := range []func() (int, error){
		func() (int, error) {
			l, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := kube.CoreV1().Services("").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := kube.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := kube.CoreV1().ConfigMaps("istio-system").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := ic.NetworkingV1().ServiceEntries("").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
		func() (int, error) {
			l, err := ic.SecurityV1().PeerAuthentications("").List(ctx, metav1.ListOptions{})
			return lenOr(l, err)
		},
	} {
		k, err := list()
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}

func lenOr(list k8sruntime.Object, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	return meta.LenList(list), nil
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func minMedian(d []time.Duration) (time.Duration, time.Duration) {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[0], s[len(s)/2]
}

func median(f []float64) float64 {
	s := slices.Clone(f)
	sort.Float64s(s)
	return s[len(s)/2]
}

// seed creates the cluster and returns how many objects Load will list.
func seed(ctx context.Context, env *testenv.Env, sz sizes) (int, error) {
	kube := env.Client
	ic, err := env.IstioClient()
	if err != nil {
		return 0, err
	}
	var count atomic.Int64
	created := func(err error) error {
		if err == nil {
			count.Add(1)
		}
		return err
	}
	nsName := func(i int) string { return fmt.Sprintf("ns-%03d", i) }

	// Namespaces (and istio-system with the mesh config), one at a time
	// through CreateNamespace, which also adds the default ServiceAccount.
	if err := parallel(ctx, sz.workers, sz.namespaces+1, func(i int) error {
		if i == sz.namespaces {
			_, err := env.CreateNamespace(ctx, "istio-system", nil)
			return created(err)
		}
		var labels map[string]string
		switch i % 4 {
		case 0, 1:
			labels = map[string]string{"istio-injection": "enabled"}
		case 2:
			labels = map[string]string{"istio.io/rev": "canary"}
		}
		if i%50 == 49 {
			labels = map[string]string{"istio.io/dataplane-mode": "ambient"}
		}
		_, err := env.CreateNamespace(ctx, nsName(i), labels)
		return created(err)
	}); err != nil {
		return 0, err
	}
	// The API server's own namespaces and the kubernetes Service are listed too.
	pre, err := kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	count.Store(int64(len(pre.Items) + 1))

	if _, err := kube.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Data:       map[string]string{"mesh": "protocolDetectionTimeout: 0s\nrootNamespace: istio-system\n"},
	}, metav1.CreateOptions{}); err != nil {
		return 0, err
	}
	count.Add(1)

	perNS := max(1, sz.services/sz.namespaces)
	svcNS := func(i int) string { return nsName(i / perNS % sz.namespaces) }
	svcName := func(i int) string { return fmt.Sprintf("svc-%02d", i%perNS) }
	podsPerSvc := max(1, sz.pods/sz.services)
	// Service i is backed by pods i*podsPerSvc ... (i+1)*podsPerSvc-1.
	podNS := func(p int) string { return svcNS(p / podsPerSvc) }
	podName := func(p int) string { return fmt.Sprintf("%s-%d", svcName(p/podsPerSvc), p%podsPerSvc) }

	seeders := []struct {
		name string
		n    int
		f    func(i int) error
	}{
		{"Services", sz.services, func(i int) error {
			port := corev1.ServicePort{Port: 8000 + int32(i%50), TargetPort: intstr.FromString("main")}
			switch i % 5 {
			case 0:
				port.Name = "client" // sniffed
			case 1:
				port.Name = "tcp-db"
			case 2:
				port.Name = "http-web"
			case 3:
				port.Name, port.Port = "db", 3306 // well-known
			case 4:
				port.Name, port.AppProtocol = "tcp-nats", ptr.To("nats.io/client") // the trap
			}
			_, err := kube.CoreV1().Services(svcNS(i)).Create(ctx, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: svcName(i)},
				Spec: corev1.ServiceSpec{Selector: map[string]string{"app": svcName(i)},
					Ports: []corev1.ServicePort{port, {Name: "http-metrics", Port: 9090}}},
			}, metav1.CreateOptions{})
			return created(err)
		}},
		{"Pods", sz.pods, func(p int) error {
			containers := []corev1.Container{{Name: "app", Image: "registry.example/app:1.0",
				Ports: []corev1.ContainerPort{{Name: "main", ContainerPort: 8000}, {Name: "metrics", ContainerPort: 9090}}}}
			if p%2 == 0 {
				containers = append(containers, corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0",
					Ports: []corev1.ContainerPort{{Name: "http-envoy-prom", ContainerPort: 15090}}})
			}
			_, err := kube.CoreV1().Pods(podNS(p)).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: podName(p), Labels: map[string]string{"app": svcName(p / podsPerSvc), "version": "v1"},
					Annotations: map[string]string{"prometheus.io/scrape": "true"}},
				Spec: corev1.PodSpec{Containers: containers, ServiceAccountName: "default"},
			}, metav1.CreateOptions{})
			return created(err)
		}},
		{"EndpointSlices", min(sz.slices, sz.services), func(i int) error {
			var eps []discoveryv1.Endpoint
			for k := range podsPerSvc {
				p := i*podsPerSvc + k
				eps = append(eps, discoveryv1.Endpoint{
					Addresses: []string{fmt.Sprintf("10.%d.%d.%d", 1+p/65536, p/256%256, p%256)},
					TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: podNS(p), Name: podName(p)},
				})
			}
			_, err := kube.DiscoveryV1().EndpointSlices(svcNS(i)).Create(ctx, &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Name: svcName(i) + "-abcde", Labels: map[string]string{discoveryv1.LabelServiceName: svcName(i)}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Endpoints:   eps,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("main"), Port: ptr.To(int32(8000))}},
			}, metav1.CreateOptions{})
			return created(err)
		}},
		{"ServiceEntries", sz.serviceEntries, func(i int) error {
			se := &networkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("ext-%04d", i)}}
			se.Spec.Hosts = []string{fmt.Sprintf("db-%d.example.com", i)}
			se.Spec.Location = networkingapi.ServiceEntry_MESH_EXTERNAL
			se.Spec.Resolution = networkingapi.ServiceEntry_DNS
			protocol := []string{"TCP", "", "HTTP", "MySQL"}[i%4]
			se.Spec.Ports = []*networkingapi.ServicePort{{Number: uint32(3306 + i%3), Name: "db", Protocol: protocol}}
			_, err := ic.NetworkingV1().ServiceEntries(nsName(i%sz.namespaces)).Create(ctx, se, metav1.CreateOptions{})
			return created(err)
		}},
		{"PeerAuthentications", 1 + sz.namespaces/5, func(i int) error {
			pa := &securityv1.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "istio-system"}}
			pa.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}
			if i > 0 {
				pa.Namespace = nsName(i * 5 % sz.namespaces)
				if i%2 == 0 {
					pa.Name = "db"
					pa.Spec.Selector = &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "svc-03"}}
					pa.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{3306: {Mode: securityapi.PeerAuthentication_MutualTLS_DISABLE}}
				} else {
					pa.Spec.Mtls.Mode = securityapi.PeerAuthentication_MutualTLS_STRICT
				}
			}
			_, err := ic.SecurityV1().PeerAuthentications(pa.Namespace).Create(ctx, pa, metav1.CreateOptions{})
			return created(err)
		}},
	}
	for _, s := range seeders {
		start := time.Now()
		if err := parallel(ctx, sz.workers, s.n, s.f); err != nil {
			return 0, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Printf("  %6d %-20s %v\n", s.n, s.name, time.Since(start).Round(time.Millisecond))
	}
	return int(count.Load()), nil
}

// retryOverload retries a create that an overloaded API server timed out
// or throttled (seeding 94,000 objects on a busy machine does that). The
// timed-out request may have been stored all the same, so on a retry
// AlreadyExists is success.
func retryOverload(create func() error) error {
	err := create()
	for try := 0; try < 5 && (apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err)); try++ {
		if err = create(); apierrors.IsAlreadyExists(err) {
			return nil
		}
	}
	return err
}

// parallel runs f(0..n-1) on workers goroutines; the first error stops it.
func parallel(ctx context.Context, workers, n int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := retryOverload(func() error { return f(i) }); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}
