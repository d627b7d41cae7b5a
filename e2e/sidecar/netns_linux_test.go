package sidecar

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// requireNetAdmin skips without root and the tools, except under CI=true,
// where a skipped network test would be a silent pass.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	miss := func(why string) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("sidecar network tests cannot run: %s (CI=true: failing instead of skipping)", why)
		}
		t.Skipf("sidecar network tests need root with ip, iptables-restore and nsenter: %s", why)
	}
	if os.Geteuid() != 0 {
		miss("not running as root")
	}
	for _, tool := range []string{"ip", "iptables-restore", "iptables-save", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			miss(tool + " not found")
		}
	}
}

// A world is a node network namespace holding a bridge, and pod namespaces
// wired to it with veth pairs. Nothing touches the caller's namespace.
type world struct {
	t      *testing.T
	prefix string
	node   string
	pods   []*podNS
}

type podNS struct {
	w    *world
	name string // netns name
	path string
	ip   string
}

var staleNetns = regexp.MustCompile(`^sfm(\d+)-`)

// sweepStale deletes namespaces left by test binaries that were killed.
func sweepStale(t *testing.T) {
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		m := staleNetns.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
			t.Logf("sweeping stale netns %s: %v: %s", e.Name(), err, out)
		}
	}
}

var worldSeq int

func newWorld(t *testing.T) *world {
	t.Helper()
	requireNetAdmin(t)
	sweepStale(t)
	worldSeq++
	w := &world{t: t, prefix: fmt.Sprintf("sfm%d-%d", os.Getpid(), worldSeq)}
	w.node = w.prefix + "-node"
	w.ip("netns", "add", w.node)
	t.Cleanup(func() {
		for _, p := range w.pods {
			exec.Command("ip", "netns", "del", p.name).Run()
		}
		exec.Command("ip", "netns", "del", w.node).Run()
	})
	w.ip("-n", w.node, "link", "set", "lo", "up")
	w.ip("-n", w.node, "link", "add", "br0", "type", "bridge")
	w.ip("-n", w.node, "addr", "add", "10.77.0.1/24", "dev", "br0")
	w.ip("-n", w.node, "link", "set", "br0", "up")
	return w
}

func (w *world) ip(args ...string) {
	w.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		w.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// addPod creates a pod namespace with eth0 on the bridge and a default route
// through the node, as a CNI plugin would. The route matters: ClusterIPs are
// routed nowhere, and a connect() with no route fails before iptables can
// redirect it.
func (w *world) addPod(short, ip string) *podNS {
	w.t.Helper()
	p := &podNS{w: w, name: w.prefix + "-" + short, ip: ip}
	p.path = filepath.Join("/run/netns", p.name)
	w.ip("netns", "add", p.name)
	w.pods = append(w.pods, p)
	w.ip("-n", p.name, "link", "set", "lo", "up")
	host := "v" + short
	w.ip("-n", w.node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", p.name)
	w.ip("-n", w.node, "link", "set", host, "master", "br0", "up")
	w.ip("-n", p.name, "addr", "add", ip+"/24", "dev", "eth0")
	w.ip("-n", p.name, "link", "set", "eth0", "up")
	w.ip("-n", p.name, "route", "add", "default", "via", "10.77.0.1")
	return p
}

// do runs fn on a thread inside the pod's namespace. Sockets created there
// stay in that namespace after fn returns. The thread is never unlocked, so
// it dies with its goroutine instead of going back to the scheduler's pool
// in the wrong namespace.
func (p *podNS) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(p.path)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", p.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// serve starts the app: banner ports greet at once ("220 ... ready"),
// client-first ports answer "PING" with "+PONG" and never speak first.
func (p *podNS) serve(bannerPorts, clientFirstPorts []int) {
	p.w.t.Helper()
	start := func(port int, handle func(net.Conn)) {
		var l net.Listener
		if err := p.do(func() (err error) {
			l, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
			return err
		}); err != nil {
			p.w.t.Fatalf("%s: listen on %d: %v", p.name, port, err)
		}
		p.w.t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					handle(c)
				}()
			}
		}()
	}
	// Both answers name the peer the app saw: 127.0.0.6 is the inbound
	// sidecar, so a test can tell which path a connection took.
	for _, port := range bannerPorts {
		start(port, func(c net.Conn) {
			fmt.Fprintf(c, "220 %s model-smtp ready, peer %s\r\n", c.LocalAddr(), peerIP(c))
			io.Copy(io.Discard, c)
		})
	}
	for _, port := range clientFirstPorts {
		start(port, func(c net.Conn) {
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && strings.HasPrefix(line, "PING") {
				fmt.Fprintf(c, "+PONG peer %s\r\n", peerIP(c))
			}
			io.Copy(io.Discard, c)
		})
	}
}

func peerIP(c net.Conn) string {
	host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
	return host
}

// exchange dials addr from this pod as root (an ordinary app process).
func (p *podNS) exchange(addr, send string, wait time.Duration) dialResult {
	dial := func(network, a string) (c net.Conn, err error) {
		err = p.do(func() error {
			c, err = net.DialTimeout(network, a, 10*time.Second)
			return err
		})
		return c, err
	}
	return exchange(dial, addr, send, wait)
}

// exchangeAsProxyUID dials addr from this pod as uid/gid 1337, in a child
// process, the way an ephemeral container running as the proxy's uid would.
func (p *podNS) exchangeAsProxyUID(addr, send string, wait time.Duration) dialResult {
	p.w.t.Helper()
	self, err := os.Executable()
	if err != nil {
		p.w.t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+p.path, "--", self)
	cmd.Env = append(os.Environ(), "SFM_CHILD=dial", "SFM_ADDR="+addr, "SFM_SEND="+send, "SFM_WAIT="+wait.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.w.t.Fatalf("uid-1337 client: %v: %s", err, stderr.String())
	}
	var r dialResult
	if err := json.Unmarshal(out, &r); err != nil {
		p.w.t.Fatalf("uid-1337 client output %q: %v", out, err)
	}
	return r
}

// modelProc is a sidecar model child running in a pod namespace.
type modelProc struct {
	p      *podNS
	cmd    *exec.Cmd
	invDir string
	gens   chan uint64
	ready  chan struct{}
	stderr *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startModel injects the sidecar: the child installs capture in the pod's
// namespace, becomes uid 1337 and serves inv. It returns once the model
// listens.
func (p *podNS) startModel(ns, name string, inv cluster.Inventory) *modelProc {
	t := p.w.t
	t.Helper()
	// The child reads the file after dropping to uid 1337.
	dir, err := os.MkdirTemp("", "sfm-inventory-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mp := &modelProc{p: p, invDir: dir, gens: make(chan uint64, 16), ready: make(chan struct{}), stderr: &lockedBuffer{}}
	if err := WriteInventoryFile(mp.invPath(), &inv); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mp.cmd = exec.Command("nsenter", "--net="+p.path, "--", self)
	mp.cmd.Env = append(os.Environ(), "SFM_CHILD=model", "SFM_INVENTORY="+mp.invPath(), "SFM_POD="+ns+"/"+name, "SFM_IP="+p.ip)
	mp.cmd.Stderr = mp.stderr
	stdout, err := mp.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := mp.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "READY":
				close(mp.ready)
			case strings.HasPrefix(line, "GENERATION "):
				n, _ := strconv.ParseUint(strings.TrimPrefix(line, "GENERATION "), 10, 64)
				mp.gens <- n
			}
		}
		mp.cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		mp.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			mp.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("sidecar model in %s/%s logged:\n%s", ns, name, mp.stderr.String())
		}
	})
	select {
	case <-mp.ready:
	case <-exited:
		t.Fatalf("sidecar model for %s/%s exited before it was ready:\n%s", ns, name, mp.stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("sidecar model for %s/%s not ready after 30s:\n%s", ns, name, mp.stderr.String())
	}
	mp.waitGeneration(1)
	return mp
}

func (mp *modelProc) invPath() string { return filepath.Join(mp.invDir, "inventory.json") }

// update replaces the inventory, as an apply against the API server would,
// and returns once the model serves a generation at least want.
func (mp *modelProc) update(inv cluster.Inventory, want uint64) {
	t := mp.p.w.t
	t.Helper()
	if err := WriteInventoryFile(mp.invPath(), &inv); err != nil {
		t.Fatal(err)
	}
	if err := mp.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	mp.waitGeneration(want)
}

func (mp *modelProc) waitGeneration(want uint64) {
	t := mp.p.w.t
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case g := <-mp.gens:
			if g >= want {
				return
			}
		case <-deadline:
			t.Fatalf("model in %s never reached config generation %d:\n%s", mp.p.name, want, mp.stderr.String())
		}
	}
}
