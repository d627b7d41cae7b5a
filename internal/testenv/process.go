package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// process is one child (etcd or kube-apiserver) running in its own process
// group, with stdout and stderr captured to a log file in the Env's dir.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed once the process has exited and been reaped
	waitErr error         // valid after done is closed
}

func startProcess(name, bin string, args []string, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop kills the whole process group and reaps the child. SIGKILL without
// a SIGTERM first: etcd's data and the API server's state are thrown away,
// so a graceful shutdown (about a second for kube-apiserver) buys nothing.
// A negative pid addresses the group, which also catches anything the child
// forked, even after the leader has exited.
func (p *process) stop() {
	if p == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// logTail returns the last n lines of the process log, for error messages.
func (p *process) logTail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// errPortTaken marks a start that failed only because a port picked by
// freePorts was grabbed by someone else in between; Start retries those.
var errPortTaken = errors.New("port already in use")

func logSaysPortTaken(path string) bool {
	data, _ := os.ReadFile(path)
	return bytes.Contains(data, []byte("address already in use"))
}

// FreePorts is freePorts for other test tooling that starts servers on
// loopback (the e2e world's istiod); check the child's log for "address
// already in use" and retry, as Start does.
func FreePorts(n int) ([]int, error) { return freePorts(n) }

// TailFile returns the last n lines of a log file, for error messages.
func TailFile(path string, n int) string { return tailFile(path, n) }

// freePorts reserves n distinct loopback ports by binding them all at once,
// then releases them for the children to bind. Another process can take one
// in that window; Start detects that from the child's log and retries.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free loopback port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// PIDsMentioning lists the processes whose command line contains s (Linux
// /proc only). Tests use it with an Env's Dir to prove nothing outlived Stop:
// every child is started with a path under Dir on its command line.
func PIDsMentioning(s string) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue // exited meanwhile, or not ours to read
		}
		if bytes.Contains(cmdline, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
