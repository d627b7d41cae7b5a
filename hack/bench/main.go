//go:build linux

// Command bench measures the built prober against nmap's banner grabbing on
// the same loopback target set: N listeners on 127.0.0.1, half of them
// greeting the client at once (server-first) and half staying silent until
// the client hangs up (client-first). It prints wall time, wall/timeout and
// peak RSS of each tool, side by side, and checks that the prober saw every
// banner and every silence. Run it through `make bench` (hack/bench.sh).
//
// It measures; it asserts nothing about speed. It exits non-zero only when
// the prober's results are wrong or a tool cannot run.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const banner = "220 bench.example ESMTP ready\r\n"

func main() {
	bin := flag.String("bin", "bin/kubectl-serverfirst", "the prober binary to measure")
	n := flag.Int("targets", 10000, "number of loopback targets (half bannered, half silent)")
	timeout := flag.Duration("timeout", time.Second, "banner timeout given to both tools")
	concurrency := flag.Int("concurrency", 0, "prober --concurrency (0 = one per target)")
	basePort := flag.Int("base-port", 20000, "first port to try for the listeners (busy ports are skipped)")
	nmapPath := flag.String("nmap", "nmap", `nmap binary; "" skips the nmap run`)
	nmapArgs := flag.String("nmap-args", "-T4", "extra nmap arguments, space-separated (--max-parallelism is set to -concurrency)")
	keep := flag.Bool("keep", false, "keep the work directory (targets, outputs)")
	serveKind := flag.String("serve", "", "internal: run as a server process (greet or silent)")
	flag.Parse()
	if *serveKind != "" {
		if err := serveProcess(*serveKind, *n, *basePort); err != nil {
			fmt.Fprintln(os.Stderr, "bench server:", err)
			os.Exit(1)
		}
		return
	}
	if *concurrency == 0 {
		*concurrency = *n
	}
	if err := run(*bin, *n, *timeout, *concurrency, *basePort, *nmapPath, strings.Fields(*nmapArgs), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type measurement struct {
	tool    string
	wall    time.Duration
	maxRSS  int64 // bytes
	banners int
	silent  int
	note    string
}

func run(bin string, n int, timeout time.Duration, concurrency, basePort int, nmapPath string, nmapArgs []string, keep bool) error {
	// The tools run as children and inherit this limit; each holds up to
	// one socket per target in flight.
	if err := raiseFileLimit(uint64(concurrency + 1024)); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "serverfirst-bench-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}

	// The servers run in two child processes, greeting and silent, so each
	// holds half the listeners and accepted connections under its own
	// open-files limit, and none of their work counts as the prober's.
	greetPorts, stopGreet, err := startServerProcess("greet", (n+1)/2, basePort)
	if err != nil {
		return err
	}
	defer stopGreet()
	silentPorts, stopSilent, err := startServerProcess("silent", n/2, greetPorts[len(greetPorts)-1]+1)
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
	for _, p := range ports {
		fmt.Fprintf(&targets, "127.0.0.1:%d\n", p)
	}
	targetsFile := filepath.Join(work, "targets.txt")
	if err := os.WriteFile(targetsFile, []byte(targets.String()), 0o644); err != nil {
		return err
	}

	fmt.Printf("%d loopback targets (%d greet at once, %d stay silent), banner timeout %s, prober concurrency %d\n",
		n, (n+1)/2, n/2, timeout, concurrency)

	probeOut := filepath.Join(work, "probe.json")
	m, err := measure("kubectl-serverfirst probe", probeOut, bin, "probe", "-f", targetsFile,
		"--timeout", timeout.String(), "--connect-timeout", "5s",
		"--concurrency", strconv.Itoa(concurrency), "-o", "json")
	if err != nil {
		return err
	}
	if err := checkProbeResults(probeOut, &m, (n+1)/2, n/2); err != nil {
		return err
	}
	results := []measurement{m}

	if nmapPath != "" {
		if path, err := exec.LookPath(nmapPath); err != nil {
			fmt.Fprintf(os.Stderr, "bench: nmap not found (%v); skipping the comparison (hack/test-deps.sh installs it)\n", err)
		} else {
			xmlOut := filepath.Join(work, "nmap.xml")
			sorted := slices.Sorted(slices.Values(ports))
			// --max-parallelism gives nmap the prober's concurrency: by
			// default NSE keeps at most 20 script sockets open, and the silent
			// half alone would then take n/2/20 banner timeouts.
			nmapArgs = append(nmapArgs, "--max-parallelism", strconv.Itoa(concurrency))
			args := append([]string{"-sT", "-Pn", "-n", "--script", "banner",
				"--script-args", "banner.timeout=" + strconv.FormatFloat(timeout.Seconds(), 'f', -1, 64) + "s",
				"-oX", xmlOut, "-p", portRanges(sorted)}, nmapArgs...)
			args = append(args, "127.0.0.1")
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

	printTable(results, timeout)
	return nil
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
// ports it listens on; the returned stop ends it by closing its stdin.
func startServerProcess(kind string, n, basePort int) ([]int, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, "-serve", kind, "-targets", strconv.Itoa(n), "-base-port", strconv.Itoa(basePort))
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

// serveProcess is the -serve mode: n listeners on 127.0.0.1 from basePort
// upwards (busy ports and the ephemeral range skipped), until stdin closes.
func serveProcess(kind string, n, basePort int) error {
	if kind != "greet" && kind != "silent" {
		return fmt.Errorf("unknown server kind %q", kind)
	}
	if err := raiseFileLimit(uint64(n + 256)); err != nil {
		return err
	}
	var ports []int
	for port := basePort; len(ports) < n; port++ {
		if port > 65535 {
			return fmt.Errorf("only %d free ports from %d up; need %d", len(ports), basePort, n)
		}
		if port >= 32768 && port <= 60999 {
			continue // leave the ephemeral range to the clients
		}
		ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue
		}
		ports = append(ports, port)
		go serve(ln, kind == "greet")
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
	fmt.Printf("\n%-46s %10s %13s %10s %8s %8s  %s\n", "TOOL", "WALL", "WALL/TIMEOUT", "PEAK RSS", "BANNERS", "SILENT", "NOTE")
	for _, m := range ms {
		silent := strconv.Itoa(m.silent)
		if m.silent < 0 {
			silent = "-"
		}
		fmt.Printf("%-46s %9.2fs %13.2f %8.1fMB %8d %8s  %s\n", m.tool, m.wall.Seconds(),
			m.wall.Seconds()/timeout.Seconds(), float64(m.maxRSS)/(1<<20), m.banners, silent, m.note)
	}
	p := ms[0]
	fmt.Printf("\ngoals: wall <= 1.2 x timeout: %s (%.2f); peak RSS <= 150MB: %s (%.1fMB)",
		verdict(p.wall.Seconds() <= 1.2*timeout.Seconds()), p.wall.Seconds()/timeout.Seconds(),
		verdict(p.maxRSS <= 150<<20), float64(p.maxRSS)/(1<<20))
	if len(ms) > 1 {
		fmt.Printf("; faster than nmap: %s (%.1fx)", verdict(p.wall < ms[1].wall), ms[1].wall.Seconds()/p.wall.Seconds())
	}
	fmt.Println()
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
