package world

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"
)

// ImageRepo is an image reference without registry host, tag or digest
// ("docker.io/library/mariadb:11" -> "library/mariadb"; the last element is
// what resolvers match on).
func ImageRepo(image string) string {
	if i := strings.IndexByte(image, '@'); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		image = image[:i]
	}
	if first, rest, ok := strings.Cut(image, "/"); ok && (strings.ContainsAny(first, ".:") || first == "localhost") {
		image = rest
	}
	return image
}

func imageBase(image string) string {
	repo := ImageRepo(image)
	return repo[strings.LastIndexByte(repo, '/')+1:]
}

// containerEnvList is the container spec's env as K=V (fieldRefs resolved),
// for $(VAR) expansion in command and args.
func containerEnvList(pod *corev1.Pod, c *corev1.Container, podIP string) []string {
	return containerEnv(pod, c, podIP, nil, nil)
}

// ServerfirstResolver runs any image whose repository ends in
// "kubectl-serverfirst" as binary, with the container's command and args
// ($(VAR) expanded); a command[0] naming kubectl-serverfirst maps to binary.
func ServerfirstResolver(binary string) ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, _ string) (Command, error) {
		if !strings.HasSuffix(ImageRepo(c.Image), "kubectl-serverfirst") {
			return Command{}, ErrUnknownImage
		}
		env := containerEnvList(pod, c, podIP)
		var args []string
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			args = append(args, ExpandVars(a, env))
		}
		if len(c.Command) > 0 {
			first := args[0]
			if filepath.Base(first) != "kubectl-serverfirst" {
				return Command{}, fmt.Errorf("container %q: command %q is not kubectl-serverfirst", c.Name, first)
			}
			args = args[1:]
		}
		return Command{Path: binary, Args: args}, nil
	}
}

// HostCommandResolver runs the command of general-purpose images (debian,
// ubuntu, busybox, alpine, bash, curlimages/curl, nicolaka/netshoot) as the
// host's binary of that name: `sh -c ...` in a pod runs the host's sh in the
// pod's network namespace. Handy for ephemeral and throw-away containers.
func HostCommandResolver() ImageResolver {
	known := map[string]bool{"debian": true, "ubuntu": true, "busybox": true, "alpine": true, "bash": true, "curl": true, "netshoot": true}
	return func(pod *corev1.Pod, c *corev1.Container, podIP, _ string) (Command, error) {
		if !known[imageBase(c.Image)] {
			return Command{}, ErrUnknownImage
		}
		env := containerEnvList(pod, c, podIP)
		var argv []string
		for _, a := range append(append([]string{}, c.Command...), c.Args...) {
			argv = append(argv, ExpandVars(a, env))
		}
		if len(argv) == 0 {
			argv = []string{"sh"}
		}
		path, err := lookPath(argv[0])
		if err != nil {
			return Command{}, fmt.Errorf("container %q: %w", c.Name, err)
		}
		return Command{Path: path, Args: argv[1:]}, nil
	}
}

// DaemonResolver runs real Debian daemons for well-known images, each a
// fresh throw-away instance listening on 0.0.0.0 and the container's first
// containerPort (else the daemon's usual port):
//   - mariadb, mysql: mariadbd (server-first: the MySQL greeting), datadir
//     under the pod's state dir, grant tables skipped;
//   - openssh, sshd, openssh-server: sshd -D -e with a generated host key,
//     on every containerPort
//     (server-first: the SSH-2.0 banner);
//   - redis: redis-server without persistence or protected mode
//     (client-first control);
//   - exim, smtp, postfix: Debian's exim4 in the foreground (server-first:
//     "220 ... ESMTP Exim"); needs exim4-daemon-light (hack/test-deps.sh
//     installs it).
func DaemonResolver() ImageResolver {
	return func(pod *corev1.Pod, c *corev1.Container, podIP, stateDir string) (Command, error) {
		base := imageBase(c.Image)
		switch {
		case strings.Contains(base, "mariadb") || strings.Contains(base, "mysql"):
			return mariadbCommand(pod, c, stateDir)
		case strings.Contains(base, "openssh") || strings.Contains(base, "sshd"):
			return sshdCommand(c, stateDir)
		case strings.Contains(base, "redis"):
			return redisCommand(pod, c, stateDir)
		case strings.Contains(base, "exim") || strings.Contains(base, "smtp") || strings.Contains(base, "postfix"):
			return eximCommand(c, stateDir)
		}
		return Command{}, ErrUnknownImage
	}
}

func firstPort(c *corev1.Container, def int32) string {
	for _, p := range c.Ports {
		if p.ContainerPort > 0 && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			return strconv.Itoa(int(p.ContainerPort))
		}
	}
	return strconv.Itoa(int(def))
}

// allPorts is every TCP containerPort of c, else def.
func allPorts(c *corev1.Container, def int32) []string {
	var out []string
	for _, p := range c.Ports {
		if p.ContainerPort > 0 && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) {
			out = append(out, strconv.Itoa(int(p.ContainerPort)))
		}
	}
	if len(out) == 0 {
		out = []string{strconv.Itoa(int(def))}
	}
	return out
}

// daemonDir makes stateDir/<container> owned by uid (nil = root).
func daemonDir(stateDir, name string, uid *uint32) (string, error) {
	dir := filepath.Join(stateDir, "daemons", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if uid != nil {
		if err := filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(*uid), int(*uid))
		}); err != nil {
			return "", err
		}
	}
	return dir, nil
}

func mariadbCommand(pod *corev1.Pod, c *corev1.Container, stateDir string) (Command, error) {
	mariadbd, err := lookPath("mariadbd")
	if err != nil {
		return Command{}, err
	}
	installDB, err := lookPath("mariadb-install-db")
	if err != nil {
		return Command{}, err
	}
	uid := EffectiveUID(pod, c, Command{})
	dir, err := daemonDir(stateDir, c.Name, uid)
	if err != nil {
		return Command{}, err
	}
	user := "root"
	if uid != nil {
		user = strconv.Itoa(int(*uid))
	}
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "mysql")); err != nil {
		cmd := exec.Command(installDB, "--no-defaults", "--datadir="+data, "--user="+user,
			"--auth-root-authentication-method=normal", "--skip-test-db")
		if uid != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: *uid, Gid: *uid, Groups: []uint32{}}}
		}
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			return Command{}, fmt.Errorf("mariadb-install-db: %v: %s", err, lastLines(out, 10))
		}
	}
	args := []string{"--no-defaults", "--datadir=" + data, "--port=" + firstPort(c, 3306),
		"--bind-address=0.0.0.0", "--socket=" + filepath.Join(dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(dir, "mysqld.pid"), "--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=16M", "--skip-grant-tables"}
	if uid == nil {
		args = append(args, "--user=root")
	}
	return Command{Path: mariadbd, Args: args, Dir: dir}, nil
}

func sshdCommand(c *corev1.Container, stateDir string) (Command, error) {
	sshd, err := lookPath("sshd")
	if err != nil {
		return Command{}, err
	}
	keygen, err := lookPath("ssh-keygen")
	if err != nil {
		return Command{}, err
	}
	dir, err := daemonDir(stateDir, c.Name, nil)
	if err != nil {
		return Command{}, err
	}
	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	if _, err := os.Stat(hostKey); err != nil {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
			return Command{}, fmt.Errorf("ssh-keygen: %v: %s", err, out)
		}
	}
	// As root, sshd insists on its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return Command{}, err
	}
	config := filepath.Join(dir, "sshd_config")
	// One Port line per TCP containerPort, so one pod can stand behind
	// many Service ports (the verdict grid; sshd takes at most 16, its
	// MAX_LISTEN_SOCKS); MaxStartups high so that many
	// probes at once that never authenticate are not dropped at random.
	var conf strings.Builder
	for _, p := range allPorts(c, 22) {
		fmt.Fprintf(&conf, "Port %s\n", p)
	}
	fmt.Fprintf(&conf, "ListenAddress 0.0.0.0\nHostKey %s\nPidFile %s\nUsePAM no\nStrictModes no\nLogLevel ERROR\nMaxStartups 1000\n",
		hostKey, filepath.Join(dir, "sshd.pid"))
	if err := os.WriteFile(config, []byte(conf.String()), 0o600); err != nil {
		return Command{}, err
	}
	// sshd re-executes itself, so it runs by absolute path.
	return Command{Path: sshd, Args: []string{"-D", "-e", "-f", config}, Dir: dir}, nil
}

func redisCommand(pod *corev1.Pod, c *corev1.Container, stateDir string) (Command, error) {
	redis, err := lookPath("redis-server")
	if err != nil {
		return Command{}, err
	}
	dir, err := daemonDir(stateDir, c.Name, EffectiveUID(pod, c, Command{}))
	if err != nil {
		return Command{}, err
	}
	// Protected mode would greet non-loopback clients with -DENIED: a
	// server-first reply that real deployments configure away.
	return Command{Path: redis, Args: []string{"--port", firstPort(c, 6379), "--bind", "0.0.0.0",
		"--protected-mode", "no", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"}, Dir: dir}, nil
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func eximCommand(c *corev1.Container, stateDir string) (Command, error) {
	exim, err := lookPath("exim4")
	if err != nil {
		if exim, err = lookPath("exim"); err != nil {
			return Command{}, fmt.Errorf("container %q: no MTA (apt-get install exim4-daemon-light): %w", c.Name, err)
		}
	}
	dir, err := daemonDir(stateDir, c.Name, nil)
	if err != nil {
		return Command{}, err
	}
	// -bdf: daemon in the foreground; -oX with an address replaces
	// local_interfaces (Debian's default is loopback only); -oP: own pid
	// file (the default one belongs to the system's exim). Runs as root, as
	// exim must to start its daemon; it drops privileges itself.
	return Command{Path: exim, Args: []string{"-bdf", "-oX", "0.0.0.0." + firstPort(c, 25),
		"-oP", filepath.Join(dir, "exim.pid")}, Dir: dir}, nil
}
