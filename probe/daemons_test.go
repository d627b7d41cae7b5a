//go:build linux

package probe

// Integration tests against real daemons from Debian packages, each started
// as a throw-away instance on a free loopback port in a temp dir. Server-first
// daemons (MariaDB, OpenSSH) must give a banner with the right protocol;
// client-first controls (Redis, PostgreSQL) must stay silent.
//
// A missing daemon skips the test with a hint, except under CI=true, where it
// fails: CI must never pass by skipping. hack/test-deps.sh installs them.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// daemonStartTimeout bounds how long a daemon may take to open its port on a
// busy two-core CI machine; it is a give-up limit, not a measurement.
const daemonStartTimeout = 2 * time.Minute

func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: missing test dependencies fail the run; see hack/test-deps.sh)", msg)
	}
	t.Skipf("%s; install with hack/test-deps.sh", msg)
}

func daemonTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		if os.Getenv("CI") == "true" {
			t.Fatal("daemon integration tests may not be skipped with -short under CI=true")
		}
		t.Skip("daemon integration tests skipped in -short mode")
	}
	t.Parallel()
}

// findBinary looks in PATH and then in the given absolute locations (Debian
// keeps daemons in /usr/sbin, PostgreSQL in /usr/lib/postgresql/N/bin).
func findBinary(t *testing.T, name string, globs ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs
		}
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(g)
		sort.Sort(sort.Reverse(sort.StringSlice(matches))) // newest PostgreSQL first
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.Mode()&0o111 != 0 {
				return m
			}
		}
	}
	skipOrFail(t, "%s not found", name)
	return ""
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects a daemon's output for failure messages.
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

// run runs a setup command to completion and fails with its output.
func run(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
	}
}

// startDaemon starts cmd, stops it with stopSignal when the test ends, and
// returns once something accepts connections on port. Readiness is polled
// by connecting (a handshake the daemon sees as a client that left at
// once); the poll gives up if the daemon exits or daemonStartTimeout passes.
func startDaemon(t *testing.T, cmd *exec.Cmd, port int, stopSignal syscall.Signal) {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// A killed test binary must not leave daemons behind.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(stopSignal)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	giveUp := time.After(daemonStartTimeout)
	poll := time.NewTicker(20 * time.Millisecond)
	defer poll.Stop()
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("%s exited before listening on %s: %v\n%s", cmd.Path, addr, err, out)
		case <-giveUp:
			t.Fatalf("%s did not listen on %s within %s\n%s", cmd.Path, addr, daemonStartTimeout, out)
		case <-poll.C:
		}
	}
}

// probeDaemon probes a daemon the way the CLI would, with a banner wait
// long enough for a loaded machine: a server-first daemon answers long
// before it, a client-first one keeps silent through it.
func probeDaemon(t *testing.T, port int, bannerTimeout time.Duration) Result {
	t.Helper()
	o := DefaultOptions()
	o.ConnectTimeout = 30 * time.Second
	o.BannerTimeout = bannerTimeout
	return Probe(context.Background(), Target{Host: "127.0.0.1", Port: port}, o)
}

func TestDaemonMariaDB(t *testing.T) {
	daemonTest(t)
	mariadbd := findBinary(t, "mariadbd", "/usr/sbin/mariadbd")
	installDB := findBinary(t, "mariadb-install-db", "/usr/bin/mariadb-install-db")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	port := freeLoopbackPort(t)
	// --no-defaults keeps /etc/mysql out; running as root is allowed with --user=root.
	userArg := "--user=" + currentUserName(t)
	run(t, exec.Command(installDB, "--no-defaults", "--datadir="+data, userArg,
		"--auth-root-authentication-method=normal", "--skip-test-db"))
	startDaemon(t, exec.Command(mariadbd, "--no-defaults", "--datadir="+data, userArg,
		"--port="+strconv.Itoa(port), "--bind-address=127.0.0.1", "--socket="+filepath.Join(dir, "sock"),
		"--pid-file="+filepath.Join(dir, "pid"), "--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=16M"), port, syscall.SIGTERM)

	r := probeDaemon(t, port, 30*time.Second)
	if r.Outcome != OutcomeBanner || r.Protocol != ProtocolMySQL {
		t.Fatalf("MariaDB: got %q/%q (error %q), want banner/mysql", r.Outcome, r.Protocol, r.Error)
	}
	if !bytes.Contains(r.Bytes(), []byte("MariaDB")) {
		t.Errorf("MariaDB greeting %q does not name MariaDB", r.Bytes())
	}
}

func TestDaemonOpenSSH(t *testing.T) {
	daemonTest(t)
	sshd := findBinary(t, "sshd", "/usr/sbin/sshd")
	keygen := findBinary(t, "ssh-keygen", "/usr/bin/ssh-keygen")
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	run(t, exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey))
	if os.Geteuid() == 0 {
		// As root, sshd insists on its privilege separation directory, which
		// Debian creates only when the ssh service starts.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := filepath.Join(dir, "sshd_config")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
UsePAM no
StrictModes no
LogLevel ERROR
`, port, hostKey, filepath.Join(dir, "sshd.pid"))), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	// sshd re-executes itself, so it must be started by absolute path.
	startDaemon(t, exec.Command(sshd, "-D", "-e", "-f", config), port, syscall.SIGTERM)

	r := probeDaemon(t, port, 30*time.Second)
	if r.Outcome != OutcomeBanner || r.Protocol != ProtocolSSH {
		t.Fatalf("sshd: got %q/%q (error %q), want banner/ssh", r.Outcome, r.Protocol, r.Error)
	}
	if !strings.HasPrefix(r.Banner, "SSH-2.0-OpenSSH") || !strings.HasSuffix(r.Banner, "\r\n") {
		t.Errorf("sshd banner = %q, want one whole SSH-2.0-OpenSSH line", r.Banner)
	}
}

func TestDaemonRedisIsSilent(t *testing.T) {
	daemonTest(t)
	redis := findBinary(t, "redis-server", "/usr/bin/redis-server")
	dir := t.TempDir()
	port := freeLoopbackPort(t)
	startDaemon(t, exec.Command(redis, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"), port, syscall.SIGTERM)

	r := probeDaemon(t, port, time.Second)
	if r.Outcome != OutcomeSilent || r.FirstByteMs != nil {
		t.Fatalf("redis: got %q %q (error %q), want silent: redis waits for the client", r.Outcome, r.Banner, r.Error)
	}

	// The control proves the socket path works: asked, redis answers.
	o := DefaultOptions()
	o.Payload = []byte("PING\r\n")
	o.BannerTimeout = 30 * time.Second
	if r := Probe(context.Background(), Target{Host: "127.0.0.1", Port: port}, o); r.Banner != "+PONG\r\n" {
		t.Fatalf("redis PING: got %q %q (error %q), want +PONG", r.Outcome, r.Banner, r.Error)
	}
}

func TestDaemonPostgreSQLIsSilent(t *testing.T) {
	daemonTest(t)
	initdb := findBinary(t, "initdb", "/usr/lib/postgresql/*/bin/initdb")
	postgres := findBinary(t, "postgres", "/usr/lib/postgresql/*/bin/postgres")

	// PostgreSQL refuses to run as root: run it as nobody in a directory
	// nobody owns (t.TempDir's parent is private to root).
	var cred *syscall.Credential
	dir, err := os.MkdirTemp("", "serverfirst-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			skipOrFail(t, "no user nobody to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		gid, _ := strconv.Atoi(nobody.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	asUser := func(cmd *exec.Cmd) *exec.Cmd {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Dir = dir
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir, "LC_ALL=C"}
		return cmd
	}
	data := filepath.Join(dir, "data")
	port := freeLoopbackPort(t)
	run(t, asUser(exec.Command(initdb, "-D", data, "-U", "postgres", "-A", "trust", "--no-sync",
		"-E", "UTF8", "--locale=C")))
	startDaemon(t, asUser(exec.Command(postgres, "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=8MB")),
		port, syscall.SIGINT)

	r := probeDaemon(t, port, time.Second)
	if r.Outcome != OutcomeSilent || r.FirstByteMs != nil {
		t.Fatalf("postgres: got %q %q (error %q), want silent: postgres waits for the startup packet",
			r.Outcome, r.Banner, r.Error)
	}
}

// currentUserName is what mariadbd --user must name: itself, root included.
func currentUserName(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
