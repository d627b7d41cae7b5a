//go:build linux

// Command bench measures the built prober against nmap's banner grabbing on
// the same loopback target set: N targets spread over IPS addresses of
// 127.0.0.0/8 (N/IPS ports on each), half of the ports greeting the client at
// once (server-first) and half staying silent until the client hangs up
// (client-first). Many addresses, not one, because that is what a fleet
// looks like and because the prober's politeness limits (a few probes at
// once per IP) would rightly serialise 10,000 ports of one host. It prints
// wall time, wall/timeout and peak RSS of each tool, side by side, with the
// goals as met/missed lines, and checks that the prober saw every banner and
// every silence. Run it through `make bench` (hack/bench.sh).
//
// It measures; it asserts nothing about speed. It exits non-zero only when
// the prober's results are wrong or a tool cannot run.
package main

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const banner = "220 bench.example ESMTP ready\r\n"

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "bin/kubectl-serverfirst", "the prober binary to measure")
	flag.IntVar(&c.n, "targets", 10000, "number of loopback targets (half bannered, half silent)")
	flag.IntVar(&c.ips, "ips", 0, "loopback addresses to spread them over (0 = one per 4 targets; 1 = all on 127.0.0.1)")
	flag.DurationVar(&c.timeout, "timeout", time.Second, "banner timeout given to both tools")
	flag.IntVar(&c.concurrency, "concurrency", 0, "prober --concurrency (0 = the prober's default)")
	flag.IntVar(&c.runs, "runs", 3, "prober runs; the median wall time and the largest peak RSS are shown")
	flag.IntVar(&c.basePort, "base-port", 20000, "first port to try for the listeners (busy ports are skipped)")
	nmapPath := flag.String("nmap", "nmap", `nmap binary; "" skips the nmap run`)
	nmapArgs := flag.String("nmap-args", "-T4", "extra nmap arguments, space-separated (--max-parallelism and --min-hostgroup are set to fit the targets)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (targets, outputs)")
	serveKind := flag.String("serve", "", "internal: run as a server process (greet or silent)")
	flag.Parse()
	c.nmap, c.nmapArgs = *nmapPath, strings.Fields(*nmapArgs)
	if *serveKind != "" {
		if err := serveProcess(*serveKind, addresses(c.ips), c.n, c.basePort); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		return
	}
	if c.ips == 0 {
		c.ips = max(1, c.n/4)
	}
	if c.n%c.ips != 0 || c.n/c.ips < 2 {
		fmt.Fprintf(os.Stderr, "bench: -targets %d must be a multiple of -ips %d, at least 2 per address\n", c.n, c.ips)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type config struct {
	bin                                 string
	n, ips, concurrency, runs, basePort int
	timeout                             time.Duration
	nmap                                string
	nmapArgs                            []string
	keep                                bool
}

// addresses gives n loopback addresses: 127.0.0.1 alone, or 127.1.0.1 up
// (n below 65,535).
func addresses(n int) []string {
	if n == 1 {
		return []string{"127.0.0.1"}
	}
	ips := make([]string, n)
	for i := range ips {
		v := i + 1 // skip 127.1.0.0
		ips[i] = fmt.Sprintf("127.1.%d.%d", v>>8&255, v&255)
	}
	return ips
}

type measurement struct {
	tool    string
	wall    time.Duration
	maxRSS  int64 // bytes
	banners int
	silent  int
	note    string
}

func run(c config) error {
	// The tools run as children and inherit this limit; each holds up to
	// one socket per target in flight.
	if err := raiseFileLimit(uint64(c.n + 1024)); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "serverfirst-bench-")
	if err != nil {
		return err
	}
	if c.keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}

	// The servers run in two child processes, greeting and silent, so each
	// holds half the listeners and accepted connections under its own
	// open-files limit, and none of their work counts as the prober's.
	ips := addresses(c.ips)
	perIP := c.n / c.ips
	greetPorts, stopGreet, err := startServerProcess("greet", ips, (perIP+1)/2, c.basePort)
	if err != nil {
		return err
	}
	defer stopGreet()
	silentPorts, stopSilent, err := startServerProcess("silent", ips, perIP/2, greetPorts[len(greetPorts)-1]+1)
	if err != nil {
		return err
	}
	defer stopSilent()

	// Alternate the kinds so both are in flight together, as in a real scan.
	var ports []int
	for i := range max(len(greetPorts), len(silentPorts)) {
		if i < len(greetPorts) {
			ports = append(ports, greetPorts[i])
		}
		if i < len(silentPorts) {
			ports = append(ports, silentPorts[i])
		}
	}
	var targets strings.Builder
	for _, ip := range ips {
		for _, p := range ports {
			fmt.Fprintf(&targets, "%s:%d\n", ip, p)
		}
	}
	targetsFile := filepath.Join(work, "targets.txt")
	if err := os.WriteFile(targetsFile, []byte(targets.String()), 0o644); err != nil {
		return err
	}
	wantBanners, wantSilent := c.ips*len(greetPorts), c.ips*len(silentPorts)

	concurrency := "the prober's default concurrency"
	args := []string{"probe", "-f", targetsFile, "--timeout", c.timeout.String(), "--connect-timeout", "5s", "-o", "json"}
	if c.concurrency > 0 {
		concurrency = "prober --concurrency " + strconv.Itoa(c.concurrency)
		args = append(args, "--concurrency", strconv.Itoa(c.concurrency))
	}
	fmt.Printf("%d loopback targets on %d addresses (%d greet at once, %d stay silent), banner timeout %s, %s\n",
		c.n, c.ips, wantBanners, wantSilent, c.timeout, concurrency)

	probeOut := filepath.Join(work, "probe.json")
	var runs []measurement
	for range max(1, c.runs) {
		m, err := measure("kubectl-serverfirst probe (defaults)", probeOut, c.bin, args...)
		if err != nil {
			return err
		}
		if err := checkProbeResults(probeOut, &m, wantBanners, wantSilent); err != nil {
			return err
		}
		runs = append(runs, m)
	}
	m := median(runs)
	if c.concurrency > 0 {
		m.tool = "kubectl-serverfirst probe --concurrency " + strconv.Itoa(c.concurrency)
	}
	results := []measurement{m}

	if c.nmap != "" {
		if path, err := exec.LookPath(c.nmap); err != nil {
			fmt.Fprintf(os.Stderr, "bench: nmap not found (%v); skipping the comparison (hack/test-deps.sh installs it)\n", err)
		} else {
			xmlOut := filepath.Join(work, "nmap.xml")
			hostsFile := filepath.Join(work, "hosts.txt")
			if err := os.WriteFile(hostsFile, []byte(strings.Join(ips, "\n")+"\n"), 0o644); err != nil {
				return err
			}
			sorted := slices.Sorted(slices.Values(ports))
			// --max-parallelism lets nmap hold every target at once, as the
			// prober may: by default NSE keeps at most 20 script sockets
			// open, and the silent half alone would then take n/2/20 banner
			// timeouts. --min-hostgroup puts every address in one group.
			nmapArgs := append(slices.Clone(c.nmapArgs), "--max-parallelism", strconv.Itoa(c.n),
				"--min-hostgroup", strconv.Itoa(c.ips))
			args := append([]string{"-sT", "-Pn", "-n", "--script", "banner",
				"--script-args", "banner.timeout=" + strconv.FormatFloat(c.timeout.Seconds(), 'f', -1, 64) + "s",
				"-oX", xmlOut, "-p", portRanges(sorted), "-iL", hostsFile}, nmapArgs...)
			nm, err := measure("nmap --script banner "+strings.Join(nmapArgs, " "), os.DevNull, path, args...)
			if err != nil {
				return err
			}
			if err := countNmapBanners(xmlOut, &nm); err != nil {
				return err
			}
			results = append(results, nm)
		}
	}

	printTable(results, c.timeout)
	return nil
}

// median is the run of median wall time, carrying the largest peak RSS of
// all runs (memory is judged at its worst).
func median(runs []measurement) measurement {
	sorted := slices.SortedFunc(slices.Values(runs), func(a, b measurement) int { return cmp.Compare(a.wall, b.wall) })
	m := sorted[len(sorted)/2]
	for _, r := range runs {
		m.maxRSS = max(m.maxRSS, r.maxRSS)
	}
	if len(runs) > 1 {
		m.note = fmt.Sprintf("median of %d runs (%.2fs-%.2fs), largest peak", len(runs), sorted[0].wall.Seconds(), sorted[len(sorted)-1].wall.Seconds())
	}
	return m
}

// raiseFileLimit lifts the open-files limit to at least want, raising the
// hard limit too when allowed (root), else the soft one as far as it goes.
func raiseFileLimit(want uint64) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur >= want {
		return nil
	}
	raised := syscall.Rlimit{Cur: want, Max: max(want, rl.Max)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
		return nil
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Cur < want {
		return fmt.Errorf("open-files limit is %d, the bench needs %d: run as root or raise ulimit -Hn", rl.Cur, want)
	}
	return nil
}

// startServerProcess runs this program again in -serve mode and returns the
// ports it listens on (the same ports on every address); the returned stop
// ends it by closing its stdin.
func startServerProcess(kind string, ips []string, n, basePort int) ([]int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, "-serve", kind, "-ips", strconv.Itoa(len(ips)), "-targets", strconv.Itoa(n),
		"-base-port", strconv.Itoa(basePort))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() {
		stdin.Close()
		_ = cmd.Wait()
	}
	// The child prints its ports as one JSON array once every listener is up.
	var ports []int
	if err := json.NewDecoder(stdout).Decode(&ports); err != nil {
		stop()
		return nil, nil, fmt.Errorf("%s server: %v", kind, err)
	}
	return ports, stop, nil
}

// serveProcess is the -serve mode: n ports from basePort upwards (ports
// busy on any of the addresses, and the ephemeral range, skipped), each
// listened on at every address, until stdin closes.
func serveProcess(kind string, ips []string, n, basePort int) error {
	if kind != "greet" && kind != "silent" {
		return fmt.Errorf("unknown server kind %q", kind)
	}
	if err := raiseFileLimit(uint64(n*len(ips) + 256)); err != nil {
		return err
	}
	var ports []int
	// Held to the end: a silent listener has no goroutine referring to it,
	// and the collector would close an unreferenced one.
	var held []net.Listener
	defer func() { runtime.KeepAlive(held) }()
	for port := basePort; len(ports) < n; port++ {
		if port > 65535 {
			return fmt.Errorf("only %d free ports from %d up; need %d", len(ports), basePort, n)
		}
		if port >= 32768 && port <= 60999 {
			continue // leave the ephemeral range to the clients
		}
		var lns []net.Listener
		for _, ip := range ips {
			ln, err := net.Listen("tcp4", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				break
			}
			lns = append(lns, ln)
		}
		if len(lns) < len(ips) {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		ports = append(ports, port)
		held = append(held, lns...)
		for _, ln := range lns {
			go serve(ln, kind == "greet")
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(ports); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// serve makes ln a server-first or a client-first endpoint at the least
// CPU cost, so the machine's cores go to the tool being measured:
//   - greeting: accept, send the banner, close. A client reads the whole
//     line before it sees the close, exactly as from a server that stays.
//   - silent: never accept. The kernel completes the handshake into the
//     accept queue, so the client is connected and hears nothing, which on
//     the wire is what a client-first server looks like.
func serve(ln net.Listener, greets bool) {
	if !greets {
		return
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, banner)
		c.Close()
	}
}

// measure runs a tool to completion with stdout to outFile and reports its
// wall time and peak resident set size.
func measure(name, outFile, path string, args ...string) (measurement, error) {
	out, err := os.Create(outFile)
	if err != nil {
		return measurement{}, err
	}
	defer out.Close()
	cmd := exec.Command(path, args...)
	cmd.Stdout = out
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return measurement{}, fmt.Errorf("%s: %v\n%s", name, err, stderr.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return measurement{}, errors.New("no rusage for " + name)
	}
	return measurement{tool: name, wall: wall, maxRSS: ru.Maxrss * 1024}, nil
}

func checkProbeResults(path string, m *measurement, wantBanners, wantSilent int) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc struct {
		Results []struct {
			Outcome  string `json:"outcome"`
			Banner   string `json:"banner"`
			Protocol string `json:"protocol"`
			Error    string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("prober output: %v", err)
	}
	other := map[string]int{}
	for _, r := range doc.Results {
		switch {
		case r.Outcome == "banner" && r.Banner == banner && r.Protocol == "smtp":
			m.banners++
		case r.Outcome == "silent":
			m.silent++
		default:
			other[r.Outcome+" "+r.Error]++
		}
	}
	if m.banners != wantBanners || m.silent != wantSilent {
		return fmt.Errorf("prober results are wrong: %d banners (want %d), %d silent (want %d), others %v",
			m.banners, wantBanners, m.silent, wantSilent, other)
	}
	return nil
}

// countNmapBanners counts ports for which nmap's banner script printed
// output; nmap reports nothing for silent ports.
func countNmapBanners(path string, m *measurement) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	m.banners = strings.Count(string(b), `<script id="banner"`)
	m.silent = -1
	m.note = fmt.Sprintf("%d open ports", strings.Count(string(b), `<state state="open"`))
	return nil
}

// portRanges compresses the port list for nmap's -p.
func portRanges(ports []int) string {
	var parts []string
	for i := 0; i < len(ports); {
		j := i
		for j+1 < len(ports) && ports[j+1] == ports[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(ports[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", ports[i], ports[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func printTable(ms []measurement, timeout time.Duration) {
	fmt.Printf("\n%-62s %10s %13s %10s %8s %8s  %s\n", "TOOL", "WALL", "WALL/TIMEOUT", "PEAK RSS", "BANNERS", "SILENT", "NOTE")
	for _, m := range ms {
		silent := strconv.Itoa(m.silent)
		if m.silent < 0 {
			silent = "-"
		}
		fmt.Printf("%-62s %9.2fs %13.2f %8.1fMB %8d %8s  %s\n", m.tool, m.wall.Seconds(),
			m.wall.Seconds()/timeout.Seconds(), float64(m.maxRSS)/(1<<20), m.banners, silent, m.note)
	}
	p := ms[0]
	fmt.Println()
	goal("prober wall <= 1.2 x timeout", p.wall.Seconds() <= 1.2*timeout.Seconds(), "%.2f x", p.wall.Seconds()/timeout.Seconds())
	goal("prober peak RSS <= 150MB", p.maxRSS <= 150<<20, "%.1fMB", float64(p.maxRSS)/(1<<20))
	if len(ms) > 1 {
		goal("prober faster than nmap", p.wall < ms[1].wall, "%.1fx", ms[1].wall.Seconds()/p.wall.Seconds())
	}
}

func goal(what string, ok bool, format string, args ...any) {
	fmt.Printf("goal: %-40s %-6s (%s)\n", what, verdict(ok), fmt.Sprintf(format, args...))
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
