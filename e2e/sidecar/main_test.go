package sidecar

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// The network-namespace tests run the model and the uid-1337 client as
// child processes: iptables' owner match looks at the process's
// credentials, so neither can share the (root) test process. The children
// are this test binary, started through nsenter with SFM_CHILD set.
func TestMain(m *testing.M) {
	switch os.Getenv("SFM_CHILD") {
	case "model":
		os.Exit(childModel())
	case "dial":
		os.Exit(childDial())
	case "orphan":
		os.Exit(childOrphan())
	}
	os.Exit(m.Run())
}

// childModel is the sidecar container: capture, drop to 1337, proxy. It
// reports on stdout, one line each: "GENERATION n" and "READY".
func childModel() int {
	ns, name, _ := strings.Cut(os.Getenv("SFM_POD"), "/")
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	capture := DefaultCapture()
	err := RunProcess(ctx, ProcessOptions{
		Capture: &capture, UID: ProxyUID, GID: ProxyGID,
		Model: Options{
			Source:  FileSource{Path: os.Getenv("SFM_INVENTORY")},
			Pod:     Identity{Namespace: ns, Name: name, IP: os.Getenv("SFM_IP")},
			Refresh: time.Hour, // the tests reload with SIGHUP
			OnGeneration: func(s Status) {
				fmt.Printf("GENERATION %d\n", s.Generation)
			},
			OnReady: func(*Model) { fmt.Println("READY") },
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecar-model child:", err)
		return 1
	}
	return 0
}

// dialResult is what a probe saw.
type dialResult struct {
	Got  string `json:"got"`
	Kind string `json:"kind"` // data, timeout, eof, reset, dial-error, error
	Err  string `json:"err,omitempty"`
}

// childDial is a client running as the proxy's uid in the pod's netns.
func childDial() int {
	if err := DropPrivileges(ProxyUID, ProxyGID); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	wait, err := time.ParseDuration(os.Getenv("SFM_WAIT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	r := exchange(net.Dial, os.Getenv("SFM_ADDR"), os.Getenv("SFM_SEND"), wait)
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// exchange dials addr, sends send (if any) and reads until a line arrives,
// the connection ends, or wait passes.
func exchange(dial func(network, addr string) (net.Conn, error), addr, send string, wait time.Duration) dialResult {
	c, err := dial("tcp", addr)
	if err != nil {
		return dialResult{Kind: "dial-error", Err: err.Error()}
	}
	defer c.Close()
	if send != "" {
		if _, err := io.WriteString(c, send); err != nil {
			return dialResult{Kind: "error", Err: err.Error()}
		}
	}
	if err := c.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return dialResult{Kind: "error", Err: err.Error()}
	}
	var got []byte
	buf := make([]byte, 512)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if strings.Contains(string(got), "\n") {
			return dialResult{Got: string(got), Kind: "data"}
		}
		if err != nil {
			r := dialResult{Got: string(got), Err: err.Error()}
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				r.Kind = "timeout"
			case errors.Is(err, io.EOF):
				r.Kind = "eof"
			case errors.Is(err, syscall.ECONNRESET):
				r.Kind = "reset"
			default:
				r.Kind = "error"
			}
			return r
		}
	}
}

// hangWait is the deadline a hang is asserted against: nothing may arrive
// before it, while the direct path to the same server gets its banner.
// answerWait only bounds how long a test waits for bytes that must arrive.
const (
	hangWait   = 1500 * time.Millisecond
	answerWait = 10 * time.Second
)

type expect int

const (
	banner   expect = iota // the server's greeting arrives
	pong                   // the client-first reply arrives
	hang                   // nothing arrives before hangWait, connection open
	rejected               // closed or reset, nothing arrives
)

func (e expect) String() string { return [...]string{"banner", "pong", "hang", "rejected"}[e] }

func check(t *testing.T, what string, r dialResult, want expect) {
	t.Helper()
	ok := false
	switch want {
	case banner:
		ok = r.Kind == "data" && strings.HasPrefix(r.Got, "220 ")
	case pong:
		ok = r.Kind == "data" && strings.HasPrefix(r.Got, "+PONG")
	case hang:
		ok = r.Kind == "timeout" && r.Got == ""
	case rejected:
		ok = (r.Kind == "eof" || r.Kind == "reset") && r.Got == ""
	}
	if !ok {
		t.Errorf("%s: want %s, got %s %q %s", what, want, r.Kind, r.Got, r.Err)
	}
}

func waitFor(e expect) time.Duration {
	if e == hang {
		return hangWait
	}
	return answerWait
}

// childOrphan runs the model on loopback without capture or a uid change
// and prints its pid once ready: TestModelEndsWithItsParent kills the
// parent under it.
func childOrphan() int {
	err := RunProcess(context.Background(), ProcessOptions{
		UID: os.Geteuid(), GID: os.Getegid(),
		Model: Options{
			Source: NewStaticSource(cluster.Inventory{}), Pod: Identity{Namespace: "app", Name: "orphan"},
			OutboundAddr: "127.0.0.1:0", InboundAddr: "127.0.0.1:0", StatusAddr: "-", AgentAddr: "-",
			Refresh: time.Hour, Log: log.New(io.Discard, "", 0),
			OnReady: func(*Model) { fmt.Printf("READY %d\n", os.Getpid()) },
		},
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "orphan:", err)
		return 1
	}
	return 0
}

// TestModelEndsWithItsParent: a model whose parent (the node agent) dies
// without a chance to clean up ends too, instead of serving on for ever.
func TestModelEndsWithItsParent(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// sh starts the model, reports its pid, then becomes `sleep`: the
	// model's parent, which the test SIGKILLs.
	parent := exec.Command("sh", "-c", `"$0" -test.run=^$ & echo "child $!"; exec sleep 600`, exe)
	parent.Env = append(os.Environ(), "SFM_CHILD=orphan")
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	sc := bufio.NewScanner(out)
	var child int
	ready := false
	for !ready && sc.Scan() {
		line := sc.Text()
		if pid, ok := strings.CutPrefix(line, "child "); ok {
			child, _ = strconv.Atoi(pid)
		}
		ready = strings.HasPrefix(line, "READY ")
	}
	if child == 0 || !ready {
		t.Fatalf("the model did not start (child pid %d)", child)
	}
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	parent.Wait()
	// The orphan is re-parented to init (or a subreaper), which reaps it
	// once it exits; until then signal 0 reaches it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for alive(child) {
		select {
		case <-ctx.Done():
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("the model (pid %d) outlived its parent", child)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// alive: pid exists and is not a zombie waiting for its new parent to reap it.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces, so look after the last ')'.
	rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
	return !strings.HasPrefix(strings.TrimSpace(rest), "Z")
}
