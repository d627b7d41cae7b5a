package world

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// NetnsPrefix starts the name of every network namespace the world creates:
// "sfw-<pid>x<seq>-node" for a node, "sfw-<pid>x<seq>-<hash>" for its pods.
// The pid lets Cleanup tell a crashed run's leftovers from a live one's.
const NetnsPrefix = "sfw-"

const netnsDir = "/run/netns"

// requireRoot fails clearly when the process cannot manage namespaces.
func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the e2e world needs root: it creates network namespaces, veths and iptables rules (run the tests as root)")
	}
	for _, tool := range []string{"ip", "iptables-restore"} {
		if _, err := lookPath(tool); err != nil {
			return fmt.Errorf("the e2e world needs root with iproute2 and iptables: %w (hack/test-deps.sh installs them)", err)
		}
	}
	return nil
}

// lookPath is exec.LookPath with the sbin directories a root shell has.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return filepath.Abs(p)
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/local/bin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or sbin", name)
}

// run runs a command and returns an error carrying its output.
func run(name string, args ...string) error {
	path, err := lookPath(name)
	if err != nil {
		return err
	}
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func runInput(input []byte, name string, args ...string) error {
	path, err := lookPath(name)
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Stdin = bytes.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// network is the pod network of one node: a node namespace with a bridge
// holding the first address of the pod CIDR, and a namespace per pod.
type network struct {
	tag      string // "<pid>x<seq>"
	node     string // node netns name
	cidr     *net.IPNet
	gateway  net.IP
	ones     int
	mu       sync.Mutex
	used     map[uint32]bool // allocated host offsets
	next     uint32
	size     uint32
	podsByNS map[string]string // netns name -> ip
}

var netSeq struct {
	sync.Mutex
	n int
}

func newNetwork(podCIDR string) (*network, error) {
	_, cidr, err := net.ParseCIDR(podCIDR)
	if err != nil || cidr.IP.To4() == nil {
		return nil, fmt.Errorf("pod CIDR %q: want an IPv4 CIDR", podCIDR)
	}
	ones, bits := cidr.Mask.Size()
	if bits-ones < 2 || bits-ones > 24 {
		return nil, fmt.Errorf("pod CIDR %q: want a prefix between /8 and /30", podCIDR)
	}
	netSeq.Lock()
	netSeq.n++
	seq := netSeq.n
	netSeq.Unlock()
	n := &network{
		tag:      fmt.Sprintf("%dx%d", os.Getpid(), seq),
		cidr:     cidr,
		ones:     ones,
		size:     1 << uint(bits-ones),
		used:     map[uint32]bool{0: true, 1: true},
		next:     2,
		podsByNS: map[string]string{},
	}
	n.used[n.size-1] = true // broadcast
	n.gateway = n.addr(1)
	n.node = NetnsPrefix + n.tag + "-node"
	return n, nil
}

func (n *network) addr(off uint32) net.IP {
	base := binary.BigEndian.Uint32(n.cidr.IP.To4())
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, base+off)
	return ip
}

// setup creates the node namespace and its bridge.
func (n *network) setup() error {
	if err := run("ip", "netns", "add", n.node); err != nil {
		return err
	}
	steps := [][]string{
		{"-n", n.node, "link", "set", "lo", "up"},
		{"-n", n.node, "link", "add", "br0", "type", "bridge"},
		{"-n", n.node, "addr", "add", fmt.Sprintf("%s/%d", n.gateway, n.ones), "dev", "br0"},
		{"-n", n.node, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return err
		}
	}
	// Routed (DNAT-ed) traffic leaves br0 the way it came; bridged replies
	// must go through the node's conntrack so DNAT is undone: both settings
	// are per namespace.
	if err := run("ip", "netns", "exec", n.node, "sysctl", "-q", "-w",
		"net.ipv4.ip_forward=1", "net.bridge.bridge-nf-call-iptables=1"); err != nil {
		return err
	}
	return nil
}

// podNetnsName is the pod namespace's name for a pod identity.
func (n *network) podNetnsName(namespace, name, uid string) string {
	sum := sha256.Sum256([]byte(namespace + "/" + name + "/" + uid))
	return NetnsPrefix + n.tag + "-" + hex.EncodeToString(sum[:5])
}

// addPod creates a pod namespace wired to the bridge and returns its IP.
func (n *network) addPod(nsName string) (ip string, err error) {
	n.mu.Lock()
	var off uint32
	for i := uint32(0); i < n.size; i++ {
		c := n.next + i
		if c >= n.size {
			c = 2 + (c-2)%(n.size-2)
		}
		if !n.used[c] {
			off = c
			break
		}
	}
	if off == 0 {
		n.mu.Unlock()
		return "", fmt.Errorf("pod CIDR %s exhausted", n.cidr)
	}
	n.used[off] = true
	n.next = off + 1
	ip = n.addr(off).String()
	n.podsByNS[nsName] = ip
	n.mu.Unlock()
	defer func() {
		if err != nil {
			n.delPod(nsName)
		}
	}()
	if err := run("ip", "netns", "add", nsName); err != nil {
		return "", err
	}
	host := "v" + strings.TrimPrefix(nsName, NetnsPrefix+n.tag+"-")
	steps := [][]string{
		{"-n", nsName, "link", "set", "lo", "up"},
		{"-n", n.node, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", nsName},
		{"-n", n.node, "link", "set", host, "master", "br0", "up"},
		{"-n", nsName, "addr", "add", fmt.Sprintf("%s/%d", ip, n.ones), "dev", "eth0"},
		{"-n", nsName, "link", "set", "eth0", "up"},
		// The default route matters: ClusterIPs are routed nowhere else, and
		// a connect() without a route fails before any iptables rule runs.
		{"-n", nsName, "route", "add", "default", "via", n.gateway.String()},
	}
	for _, s := range steps {
		if err := run("ip", s...); err != nil {
			return "", err
		}
	}
	return ip, nil
}

// delPod deletes a pod namespace (its veth goes with it) and frees the IP.
// Processes still inside keep the namespace alive but unreachable: callers
// kill them first.
func (n *network) delPod(nsName string) error {
	n.mu.Lock()
	if ip, ok := n.podsByNS[nsName]; ok {
		delete(n.podsByNS, nsName)
		base := binary.BigEndian.Uint32(n.cidr.IP.To4())
		delete(n.used, binary.BigEndian.Uint32(net.ParseIP(ip).To4())-base)
	}
	n.mu.Unlock()
	if _, err := os.Stat(filepath.Join(netnsDir, nsName)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return run("ip", "netns", "del", nsName)
}

// teardown deletes every namespace of this network, pods first.
func (n *network) teardown() error {
	var errs []error
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), NetnsPrefix+n.tag+"-") && e.Name() != n.node {
			killNetnsProcesses(e.Name())
			if err := n.delPod(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	killNetnsProcesses(n.node)
	if _, err := os.Stat(filepath.Join(netnsDir, n.node)); err == nil {
		if err := run("ip", "netns", "del", n.node); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Cleanup removes what crashed earlier runs left behind: network
// namespaces named prefix+"<pid>x<seq>-..." whose pid is gone, after
// killing any process still inside them. With them go their veths, bridge
// and iptables rules, which live nowhere else. prefix "" means NetnsPrefix.
// StartNode calls it; namespaces of live processes are never touched.
func Cleanup(prefix string) error {
	if prefix == "" {
		prefix = NetnsPrefix
	}
	entries, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		rest := strings.TrimPrefix(name, prefix)
		pidStr, _, ok := strings.Cut(rest, "x")
		pid, err := strconv.Atoi(pidStr)
		if !ok || err != nil {
			continue
		}
		if pid == os.Getpid() || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		killNetnsProcesses(name)
		if err := run("ip", "netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNetnsProcesses SIGKILLs every process whose network namespace is the
// named one (identified by inode).
func killNetnsProcesses(name string) {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, name), &st); err != nil {
		return
	}
	want := fmt.Sprintf("net:[%d]", st.Ino)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink(filepath.Join("/proc", p.Name(), "ns", "net")); err == nil && link == want {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// inNetns runs fn on an OS thread that has joined the named network
// namespace; sockets fn creates stay there, and processes it starts are born
// there. The thread goes back to the original namespace afterwards; if that
// fails it is never unlocked, so it dies with its goroutine instead of
// returning to the scheduler in the wrong namespace.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("setns back: %w", err))
			return // thread stays locked and dies with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// dialIn dials addr over TCP from inside the named namespace.
func dialIn(name, addr string, d net.Dialer) (net.Conn, error) {
	var c net.Conn
	err := inNetns(name, func() error {
		var err error
		c, err = d.Dial("tcp", addr)
		return err
	})
	return c, err
}
