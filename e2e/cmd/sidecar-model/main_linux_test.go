package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/e2e/sidecar"
)

// TestBinaryInAPodNamespace runs the built binary the way the injected
// container does: as root in a pod's netns, with the pod identity in the
// environment. It must install capture, report generations on its status
// port and pick up a changed config on SIGHUP.
func TestBinaryInAPodNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root (CI=true: failing instead of skipping)")
		}
		t.Skip("needs root to create a network namespace")
	}
	bin := filepath.Join(t.TempDir(), "sidecar-model")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	ns := fmt.Sprintf("sfm%d-bin", os.Getpid())
	ipc := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ipc("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipc("-n", ns, "link", "set", "lo", "up")
	ipc("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth1") // no dummy module everywhere
	ipc("-n", ns, "addr", "add", "10.77.1.5/24", "dev", "eth0")
	ipc("-n", ns, "link", "set", "eth0", "up")

	dir, err := os.MkdirTemp("", "sfm-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755) // read after the drop to uid 1337
	invPath := filepath.Join(dir, "inventory.json")
	inv := cluster.Inventory{Pods: []cluster.Pod{{Namespace: "app", Name: "solo", IPs: []string{"10.77.1.5"}, HasSidecar: true}}}
	if err := sidecar.WriteInventoryFile(invPath, &inv); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "--", bin, "--inventory", invPath, "--refresh", "1h")
	cmd.Env = append(os.Environ(), "POD_NAMESPACE=app", "POD_NAME=solo", "INSTANCE_IP=10.77.1.5")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	exited := make(chan struct{})
	var exitErr error
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exitErr = cmd.Wait() // only once the pipe is drained
		close(exited)
	}()
	var log []string
	waitLine := func(substr string) {
		t.Helper()
		deadline := time.After(30 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("sidecar-model exited before logging %q:\n%s", substr, strings.Join(log, "\n"))
				}
				log = append(log, l)
				if strings.Contains(l, substr) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q after 30s:\n%s", substr, strings.Join(log, "\n"))
			}
		}
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		go func() {
			for range lines {
			}
		}()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	waitLine("ready:")

	status := func() sidecar.Status {
		t.Helper()
		var s sidecar.Status
		// The socket must be made inside the netns; http.Client would dial
		// from another goroutine, so the request is written by hand.
		var c net.Conn
		err := inNetns(ns, func() (err error) {
			c, err = net.DialTimeout("tcp", "127.0.0.1:15021", 10*time.Second)
			return err
		})
		if err == nil {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprint(c, "GET /model/status HTTP/1.0\r\nHost: sidecar\r\n\r\n")
			var resp *http.Response
			if resp, err = http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				defer resp.Body.Close()
				err = json.NewDecoder(resp.Body).Decode(&s)
			}
		}
		if err != nil {
			t.Fatalf("status: %v\n%s", err, strings.Join(log, "\n"))
		}
		return s
	}
	if s := status(); !s.Ready || s.Generation != 1 || !s.PodKnown || s.Pod != "app/solo" {
		t.Fatalf("status after start: %+v", s)
	}

	save, err := exec.Command("nsenter", "--net=/run/netns/"+ns, "--", "iptables-save", "-t", "nat").CombinedOutput()
	if err != nil || !strings.Contains(string(save), "-j REDIRECT --to-ports 15001") {
		t.Fatalf("capture rules not installed (%v):\n%s", err, save)
	}

	inv.Mesh.ProtocolDetectionTimeout = 300 * time.Millisecond
	if err := sidecar.WriteInventoryFile(invPath, &inv); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitLine("config generation 2")
	if s := status(); s.Generation != 2 || s.ProtocolDetectionTimeout != "300ms" {
		t.Fatalf("status after SIGHUP: %+v", s)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	for range lines {
	}
	<-exited
	if exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v", exitErr)
	}
}

// inNetns runs fn on a thread inside the named netns; the thread is never
// unlocked, so it dies with its goroutine rather than serve others in there.
func inNetns(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
