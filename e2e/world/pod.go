package world

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

type ctrKind int

const (
	kindInit ctrKind = iota
	kindRegular
	kindEphemeral
)

// ctr is one container of a pod: its spec and its current process.
type ctr struct {
	kind ctrKind
	spec corev1.Container

	// guarded by podWorker.mu
	proc        *exec.Cmd
	running     bool
	started     bool // ever started
	startedAt   time.Time
	exited      bool
	exitCode    int32
	finishedAt  time.Time
	reason      string
	restarts    int32
	ready       bool
	waiting     string // waiting reason when not running
	message     string
	lastTerm    *corev1.ContainerStateTerminated
	nextStart   time.Time // restart backoff
	logs        []string  // one file per run, oldest first
	exitedCh    chan struct{}
	probeCancel context.CancelFunc
	id          string
	// startupDone: the startupProbe passed once (or there is none); the
	// kubelet starts the container after a native sidecar only then.
	startupDone bool
}

func (c *ctr) sidecar() bool {
	return c.kind == kindInit && c.spec.RestartPolicy != nil && *c.spec.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// podWorker runs one pod: its namespace, its processes, its status.
type podWorker struct {
	node *Node
	uid  types.UID
	key  string // ns/name
	dir  string

	wake chan struct{}
	done chan struct{}

	mu         sync.Mutex
	pod        *corev1.Pod
	gone       bool
	netns      string
	ip         string
	inits      []*ctr
	regulars   []*ctr
	ephemerals []*ctr
	startTime  *metav1.Time
	phase      corev1.PodPhase
	terminal   bool
	failMsg    string
	lastStatus *corev1.PodStatus
	volumes    map[string]string // volume name -> prepared directory
}

func newPodWorker(n *Node, p *corev1.Pod) *podWorker {
	w := &podWorker{
		node:    n,
		uid:     p.UID,
		key:     p.Namespace + "/" + p.Name,
		dir:     filepath.Join(n.opts.StateDir, "pods", p.Namespace+"_"+p.Name+"_"+string(p.UID)),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		pod:     p,
		phase:   corev1.PodPending,
		volumes: map[string]string{},
	}
	for _, c := range p.Spec.InitContainers {
		w.inits = append(w.inits, &ctr{kind: kindInit, spec: c})
	}
	for _, c := range p.Spec.Containers {
		w.regulars = append(w.regulars, &ctr{kind: kindRegular, spec: c})
	}
	return w
}

func (w *podWorker) update(p *corev1.Pod) {
	w.mu.Lock()
	w.pod = p
	// Ephemeral containers only ever grow.
	have := map[string]bool{}
	for _, c := range w.ephemerals {
		have[c.spec.Name] = true
	}
	for _, ec := range p.Spec.EphemeralContainers {
		if !have[ec.Name] {
			w.ephemerals = append(w.ephemerals, &ctr{kind: kindEphemeral, spec: corev1.Container(ec.EphemeralContainerCommon)})
		}
	}
	w.mu.Unlock()
	kickChan(w.wake)
}

func (w *podWorker) markGone() {
	w.mu.Lock()
	w.gone = true
	w.mu.Unlock()
	kickChan(w.wake)
}

func (w *podWorker) netnsName() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.netns
}

func (w *podWorker) logf(format string, args ...any) {
	w.node.opts.Logf("world: pod %s: "+format, append([]any{w.key}, args...)...)
}

func (w *podWorker) all() []*ctr {
	out := append([]*ctr{}, w.inits...)
	out = append(out, w.regulars...)
	return append(out, w.ephemerals...)
}

// container finds a container of any kind by name.
func (w *podWorker) container(name string) *ctr {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.all() {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}

// run is the worker's loop: it ends when the pod is deleted (or vanishes)
// or the node stops.
func (w *podWorker) run() {
	defer close(w.done)
	defer w.node.forget(w)
	if err := os.MkdirAll(filepath.Join(w.dir, "logs"), 0o755); err != nil {
		w.logf("state dir: %v", err)
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		pod, gone := w.pod, w.gone
		w.mu.Unlock()
		if w.node.ctx.Err() != nil {
			w.terminate(5 * time.Second)
			w.teardown()
			return
		}
		if gone || pod.DeletionTimestamp != nil {
			grace := 30 * time.Second
			if pod.DeletionGracePeriodSeconds != nil {
				grace = time.Duration(*pod.DeletionGracePeriodSeconds) * time.Second
			}
			if gone {
				grace = 2 * time.Second
			}
			w.terminate(grace)
			w.teardown()
			if !gone {
				w.sync() // report the containers terminated, as the kubelet does
				w.node.finalDelete(pod)
			}
			_ = os.RemoveAll(w.dir)
			return
		}
		w.step()
		w.sync()
		select {
		case <-w.wake:
		case <-tick.C:
		case <-w.node.ctx.Done():
		}
	}
}

// step advances the pod's lifecycle by one notch.
func (w *podWorker) step() {
	w.mu.Lock()
	terminal := w.terminal
	w.mu.Unlock()
	if terminal {
		return
	}
	if w.netnsName() == "" {
		pod := w.currentPod()
		name := w.node.net.podNetnsName(pod.Namespace, pod.Name, string(pod.UID))
		ip, err := w.node.net.addPod(name)
		w.mu.Lock()
		if err != nil {
			w.failMsg = "pod network: " + err.Error()
			w.mu.Unlock()
			w.logf("%v", err)
			return
		}
		w.netns, w.ip = name, ip
		now := metav1.Now()
		w.startTime = &now
		w.mu.Unlock()
		kickChan(w.node.proxyKick)
	}
	now := time.Now()
	policy := w.currentPod().Spec.RestartPolicy

	// Init containers, in order.
	initDone := true
	for _, c := range w.inits {
		w.mu.Lock()
		running, exited, code, started := c.running, c.exited, c.exitCode, c.started
		w.mu.Unlock()
		if c.sidecar() {
			if !running && now.After(c.nextStart) {
				w.startContainer(c)
			}
			w.mu.Lock()
			ok := (c.running || c.started) && c.startupDone
			w.mu.Unlock()
			if !ok {
				initDone = false
				break
			}
			continue
		}
		if exited && code == 0 {
			continue
		}
		initDone = false
		if running {
			break
		}
		if exited && policy == corev1.RestartPolicyNever {
			w.finish(corev1.PodFailed, fmt.Sprintf("init container %s exited with %d", c.spec.Name, code))
			return
		}
		if !started || now.After(c.nextStart) {
			w.startContainer(c)
		}
		break
	}
	if initDone {
		for _, c := range w.regulars {
			w.mu.Lock()
			running, exited, code, started, next := c.running, c.exited, c.exitCode, c.started, c.nextStart
			w.mu.Unlock()
			if running {
				continue
			}
			restart := !started ||
				(exited && (policy == corev1.RestartPolicyAlways || policy == "" ||
					(policy == corev1.RestartPolicyOnFailure && code != 0)))
			if restart && now.After(next) {
				w.startContainer(c)
			}
		}
	}
	// Native sidecars restart whatever the pod's policy.
	for _, c := range w.inits {
		w.mu.Lock()
		again := c.sidecar() && c.exited && !c.running && initDone && now.After(c.nextStart)
		w.mu.Unlock()
		if again {
			w.startContainer(c)
		}
	}
	// Ephemeral containers run once.
	w.mu.Lock()
	eph := append([]*ctr{}, w.ephemerals...)
	w.mu.Unlock()
	for _, c := range eph {
		w.mu.Lock()
		start := !c.started && c.waiting == ""
		w.mu.Unlock()
		if start {
			w.startContainer(c)
		}
	}

	// Terminal? Only with a policy that lets every regular container stay
	// stopped.
	if initDone && policy != corev1.RestartPolicyAlways && policy != "" {
		allDone, failed := true, false
		w.mu.Lock()
		for _, c := range w.regulars {
			if !c.exited || c.running {
				allDone = false
				break
			}
			if c.exitCode != 0 {
				failed = true
			}
		}
		w.mu.Unlock()
		if allDone && (failed && policy == corev1.RestartPolicyNever || !failed) {
			if failed {
				w.finish(corev1.PodFailed, "")
			} else {
				w.finish(corev1.PodSucceeded, "")
			}
		}
	}
}

func (w *podWorker) currentPod() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod
}

// finish makes the pod terminal: native sidecars and ephemeral containers
// are stopped, the network namespace goes, the logs stay.
func (w *podWorker) finish(phase corev1.PodPhase, msg string) {
	w.terminate(10 * time.Second)
	w.mu.Lock()
	w.terminal = true
	w.phase = phase
	if msg != "" {
		w.failMsg = msg
	}
	w.mu.Unlock()
	w.teardown()
	kickChan(w.node.proxyKick)
}

// terminate stops every process: regular and ephemeral containers first,
// then (native) sidecars, SIGTERM and after grace SIGKILL.
func (w *podWorker) terminate(grace time.Duration) {
	deadline := time.Now().Add(grace)
	w.mu.Lock()
	var first, second []*ctr
	for _, c := range w.all() {
		if c.kind == kindInit {
			second = append(second, c)
		} else {
			first = append(first, c)
		}
	}
	w.mu.Unlock()
	for _, group := range [][]*ctr{first, second} {
		var waits []chan struct{}
		for _, c := range group {
			w.mu.Lock()
			if c.running && c.proc != nil {
				_ = syscall.Kill(-c.proc.Process.Pid, syscall.SIGTERM)
				waits = append(waits, c.exitedCh)
			}
			w.mu.Unlock()
		}
		for _, ch := range waits {
			select {
			case <-ch:
			case <-time.After(time.Until(deadline)):
			}
		}
	}
	w.mu.Lock()
	var waits []chan struct{}
	for _, c := range w.all() {
		if c.running && c.proc != nil {
			_ = syscall.Kill(-c.proc.Process.Pid, syscall.SIGKILL)
			waits = append(waits, c.exitedCh)
		}
	}
	w.mu.Unlock()
	for _, ch := range waits {
		<-ch
	}
}

func (w *podWorker) teardown() {
	w.mu.Lock()
	name := w.netns
	w.netns = ""
	w.mu.Unlock()
	if name == "" {
		return
	}
	killNetnsProcesses(name) // daemons' stray children
	if err := w.node.net.delPod(name); err != nil {
		w.logf("delete netns: %v", err)
	}
}

// startContainer resolves and starts one container's process.
func (w *podWorker) startContainer(c *ctr) {
	pod := w.currentPod()
	w.mu.Lock()
	ip, netns := w.ip, w.netns
	spec := c.spec
	w.mu.Unlock()
	fail := func(reason string, err error) {
		w.mu.Lock()
		c.waiting, c.message = reason, err.Error()
		c.nextStart = time.Now().Add(2 * time.Second)
		if c.kind == kindEphemeral {
			c.exited, c.exitCode, c.reason, c.finishedAt = true, 128, reason, time.Now()
		}
		w.mu.Unlock()
		w.logf("container %s: %v", spec.Name, err)
	}
	if netns == "" {
		return
	}
	cmd, err := w.node.opts.Resolver(pod, &spec, ip, w.dir)
	if err != nil {
		fail("ErrImagePull", err)
		return
	}
	path, err := lookPath(cmd.Path)
	if err != nil {
		fail("CreateContainerError", err)
		return
	}
	args := cmd.Args
	uid, gid := effectiveIDs(pod, &spec, cmd)
	mounts, err := w.containerMounts(pod, &spec)
	if err != nil {
		fail("CreateContainerConfigError", err)
		return
	}
	if len(mounts) > 0 {
		// The wrapper starts as root to mount, then drops to uid/gid.
		if path, args, err = withMounts(mounts, path, args, uid, gid); err != nil {
			fail("CreateContainerError", err)
			return
		}
		uid, gid = nil, nil
	}
	w.mu.Lock()
	run := len(c.logs)
	w.mu.Unlock()
	logPath := filepath.Join(w.dir, "logs", fmt.Sprintf("%s-%d.log", spec.Name, run))
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail("CreateContainerError", err)
		return
	}
	defer logFile.Close()
	ec := exec.Command(path, args...)
	ec.Env = containerEnv(pod, &spec, ip, w.node.apiEnv, cmd.Env)
	ec.Dir = cmd.Dir
	if ec.Dir == "" {
		ec.Dir = spec.WorkingDir
	}
	if ec.Dir == "" {
		ec.Dir = "/"
	}
	ec.Stdout, ec.Stderr = logFile, logFile
	ec.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if uid != nil || gid != nil {
		cred := &syscall.Credential{Groups: []uint32{}}
		if uid != nil {
			cred.Uid = *uid
		}
		if gid != nil {
			cred.Gid = *gid
		}
		ec.SysProcAttr.Credential = cred
	}
	if err := inNetns(netns, ec.Start); err != nil {
		fail("CreateContainerError", err)
		return
	}
	exitedCh := make(chan struct{})
	ctx, cancel := context.WithCancel(w.node.ctx)
	w.mu.Lock()
	if c.exited {
		c.lastTerm = &corev1.ContainerStateTerminated{
			ExitCode: c.exitCode, Reason: c.reason,
			StartedAt: metav1.NewTime(c.startedAt), FinishedAt: metav1.NewTime(c.finishedAt),
			ContainerID: c.id,
		}
		c.restarts++
	}
	c.proc, c.running, c.started, c.exited = ec, true, true, false
	c.startedAt, c.waiting, c.message, c.reason = time.Now(), "", "", ""
	c.logs = append(c.logs, logPath)
	c.exitedCh = exitedCh
	c.probeCancel = cancel
	c.id = fmt.Sprintf("world://%s-%s-%d-%d", w.uid, spec.Name, run, ec.Process.Pid)
	c.ready = spec.ReadinessProbe == nil
	w.mu.Unlock()
	if spec.ReadinessProbe != nil && c.kind != kindEphemeral {
		go w.probeLoop(ctx, c, spec)
	}
	if spec.StartupProbe != nil && c.kind != kindEphemeral {
		go w.startupLoop(ctx, c, spec)
	} else {
		w.mu.Lock()
		c.startupDone = true
		w.mu.Unlock()
	}
	go func() {
		err := ec.Wait()
		code := int32(0)
		reason := "Completed"
		if err != nil {
			reason = "Error"
			code = 1
			if ee, ok := err.(*exec.ExitError); ok {
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
					if ws.Signaled() {
						code = 128 + int32(ws.Signal())
					} else {
						code = int32(ws.ExitStatus())
					}
				}
			}
		}
		cancel()
		w.mu.Lock()
		c.running, c.exited, c.exitCode, c.reason, c.finishedAt, c.ready = false, true, code, reason, time.Now(), false
		// Back off restarts: 1s, 2s, 4s ... 10s.
		backoff := time.Second << min(c.restarts, 4)
		c.nextStart = time.Now().Add(min(backoff, 10*time.Second))
		w.mu.Unlock()
		close(exitedCh)
		kickChan(w.wake)
	}()
}

// probeLoop runs a readiness probe against a running container until it
// exits, setting ready. Only tcpSocket and httpGet probe; exec probes pass.
func (w *podWorker) probeLoop(ctx context.Context, c *ctr, spec corev1.Container) {
	p := spec.ReadinessProbe
	if d := time.Duration(p.InitialDelaySeconds) * time.Second; d > 0 {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
	period := time.Duration(p.PeriodSeconds) * time.Second
	if period <= 0 || period > 2*time.Second {
		period = 2 * time.Second
	}
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	for {
		ok := w.probeOnce(p, &spec, timeout)
		w.mu.Lock()
		changed := c.running && c.ready != ok
		if c.running {
			c.ready = ok
		}
		w.mu.Unlock()
		if changed {
			kickChan(w.wake)
		}
		wait := period
		if !ok {
			wait = 300 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// startupLoop runs a startup probe until it passes once; the container
// counts as started for the containers after it from then on (failure
// thresholds are not applied: a sidecar that never starts blocks the pod,
// as the kubelet's restarts would).
func (w *podWorker) startupLoop(ctx context.Context, c *ctr, spec corev1.Container) {
	p := spec.StartupProbe
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = time.Second
	}
	for {
		if w.probeOnce(p, &spec, timeout) {
			w.mu.Lock()
			c.startupDone = true
			w.mu.Unlock()
			kickChan(w.wake)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (w *podWorker) probeOnce(p *corev1.Probe, spec *corev1.Container, timeout time.Duration) bool {
	w.mu.Lock()
	ip := w.ip
	w.mu.Unlock()
	node := w.node.net.node
	switch {
	case p.TCPSocket != nil:
		port, ok := resolvePort(p.TCPSocket.Port, spec)
		if !ok {
			return false
		}
		host := ip
		if p.TCPSocket.Host != "" {
			host = p.TCPSocket.Host
		}
		conn, err := dialIn(node, net.JoinHostPort(host, strconv.Itoa(int(port))), net.Dialer{Timeout: timeout})
		if err != nil {
			return false
		}
		conn.Close()
		return true
	case p.HTTPGet != nil:
		port, ok := resolvePort(p.HTTPGet.Port, spec)
		if !ok {
			return false
		}
		host := ip
		if p.HTTPGet.Host != "" {
			host = p.HTTPGet.Host
		}
		conn, err := dialIn(node, net.JoinHostPort(host, strconv.Itoa(int(port))), net.Dialer{Timeout: timeout})
		if err != nil {
			return false
		}
		path := p.HTTPGet.Path
		if path == "" {
			path = "/"
		}
		client := &http.Client{
			Timeout: timeout,
			Transport: &http.Transport{
				DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil },
			},
		}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodGet, "http://"+net.JoinHostPort(host, strconv.Itoa(int(port)))+path, nil)
		for _, h := range p.HTTPGet.HTTPHeaders {
			req.Header.Add(h.Name, h.Value)
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	default:
		return true
	}
}

// resolvePort turns a number or a named container port into a number.
func resolvePort(p intstr.IntOrString, c *corev1.Container) (int32, bool) {
	if p.Type == intstr.Int {
		return p.IntVal, p.IntVal > 0
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return int32(n), n > 0
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// containerEnv is a container's environment: a base PATH and HOME, the pod
// identity Istio's injector sets (POD_NAME, POD_NAMESPACE, INSTANCE_IP), the
// node's service variables (KUBERNETES_SERVICE_HOST ...), the container
// spec's env (plain values and downward-API fieldRefs), then the
// resolver's Command.Env, which wins.
func containerEnv(pod *corev1.Pod, c *corev1.Container, podIP string, base, extra []string) []string {
	vals := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOME", "/root")
	set("HOSTNAME", pod.Name)
	set("POD_NAME", pod.Name)
	set("POD_NAMESPACE", pod.Namespace)
	set("INSTANCE_IP", podIP)
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, expandVars(e.Value, vals))
			continue
		}
		if f := e.ValueFrom.FieldRef; f != nil {
			set(e.Name, fieldRef(pod, f.FieldPath, podIP))
		}
	}
	for _, kv := range extra {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

func fieldRef(pod *corev1.Pod, path, podIP string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "status.podIP":
		return podIP
	case "status.podIPs":
		return podIP
	case "status.hostIP", "status.hostIPs":
		return "127.0.0.1"
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	}
	for _, pre := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(path, pre) && strings.HasSuffix(path, "']") {
			k := strings.TrimSuffix(strings.TrimPrefix(path, pre), "']")
			if strings.HasPrefix(pre, "metadata.labels") {
				return pod.Labels[k]
			}
			return pod.Annotations[k]
		}
	}
	return ""
}

// ExpandVars expands $(VAR) references in s from env ("K=V" entries) the way
// the kubelet expands container command and args; $$ escapes a $ and
// unknown references stay as written.
func ExpandVars(s string, env []string) string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return expandVars(s, m)
}

func expandVars(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vals[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// effectiveIDs is the uid/gid a container runs as: the container's
// securityContext, else the pod's, else the Command's.
func effectiveIDs(pod *corev1.Pod, c *corev1.Container, cmd Command) (uid, gid *uint32) {
	uid, gid = cmd.UID, cmd.GID
	u32 := func(v *int64) *uint32 {
		x := uint32(*v)
		return &x
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.RunAsUser != nil {
			uid = u32(psc.RunAsUser)
		}
		if psc.RunAsGroup != nil {
			gid = u32(psc.RunAsGroup)
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = u32(sc.RunAsUser)
		}
		if sc.RunAsGroup != nil {
			gid = u32(sc.RunAsGroup)
		}
	}
	if uid != nil && gid == nil {
		g := *uid // the image's primary group is unknown; use the uid's
		gid = &g
	}
	return uid, gid
}

// EffectiveUID is the uid a container of pod will run as when its resolver
// returns cmd (nil = root): resolvers use it to give files to that user.
func EffectiveUID(pod *corev1.Pod, c *corev1.Container, cmd Command) *uint32 {
	uid, _ := effectiveIDs(pod, c, cmd)
	return uid
}

// status builds the pod status from the worker's state.
func (w *podWorker) status() corev1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := corev1.PodStatus{
		Phase:     w.phase,
		HostIP:    "127.0.0.1",
		HostIPs:   []corev1.HostIP{{IP: "127.0.0.1"}},
		StartTime: w.startTime,
		QOSClass:  w.pod.Status.QOSClass,
	}
	if w.ip != "" {
		st.PodIP = w.ip
		st.PodIPs = []corev1.PodIP{{IP: w.ip}}
	}
	initDone := true
	for _, c := range w.inits {
		s := w.ctrStatus(c)
		st.InitContainerStatuses = append(st.InitContainerStatuses, s)
		if c.sidecar() {
			if !c.started {
				initDone = false
			}
		} else if !(c.exited && c.exitCode == 0) {
			initDone = false
		}
	}
	allStarted, ready := true, !w.terminal
	for _, c := range w.regulars {
		s := w.ctrStatus(c)
		st.ContainerStatuses = append(st.ContainerStatuses, s)
		if !c.started {
			allStarted = false
		}
		if !s.Ready {
			ready = false
		}
	}
	for _, c := range w.inits {
		if c.sidecar() && !(c.running && c.ready) {
			ready = false
		}
	}
	for _, c := range w.ephemerals {
		st.EphemeralContainerStatuses = append(st.EphemeralContainerStatuses, w.ctrStatus(c))
	}
	if !w.terminal {
		if initDone && allStarted {
			st.Phase = corev1.PodRunning
		} else {
			st.Phase = corev1.PodPending
		}
		w.phase = st.Phase
	}
	if w.failMsg != "" {
		st.Message = w.failMsg
	}
	cond := func(t corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionFalse, Reason: reason}
		if ok {
			c.Status, c.Reason = corev1.ConditionTrue, ""
		}
		return c
	}
	notReady := "ContainersNotReady"
	if w.terminal {
		notReady = "PodCompleted"
	}
	st.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.netns != "", ""),
		cond(corev1.PodInitialized, initDone, "ContainersNotInitialized"),
		cond(corev1.ContainersReady, ready, notReady),
		cond(corev1.PodReady, ready, notReady),
		cond(corev1.PodScheduled, true, ""),
	}
	return st
}

func (w *podWorker) ctrStatus(c *ctr) corev1.ContainerStatus {
	s := corev1.ContainerStatus{
		Name:                 c.spec.Name,
		Image:                c.spec.Image,
		ImageID:              "world://" + c.spec.Image,
		ContainerID:          c.id,
		RestartCount:         c.restarts,
		Ready:                c.running && c.ready,
		LastTerminationState: corev1.ContainerState{Terminated: c.lastTerm},
	}
	started := c.running
	s.Started = &started
	switch {
	case c.running:
		s.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt)}
	case c.exited && c.started:
		s.State.Terminated = &corev1.ContainerStateTerminated{
			ExitCode: c.exitCode, Reason: c.reason, ContainerID: c.id,
			StartedAt: metav1.NewTime(c.startedAt), FinishedAt: metav1.NewTime(c.finishedAt),
		}
	case c.exited:
		s.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: c.exitCode, Reason: c.reason, Message: c.message,
			FinishedAt: metav1.NewTime(c.finishedAt)}
	default:
		reason, msg := c.waiting, c.message
		if reason == "" {
			reason = "ContainerCreating"
			if c.kind == kindRegular && len(w.inits) > 0 {
				reason = "PodInitializing"
			}
		}
		s.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason, Message: msg}
	}
	if c.exited && !c.running && c.started && c.kind != kindEphemeral && !w.terminal && time.Now().Before(c.nextStart) && c.restarts > 0 {
		s.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
	}
	return s
}

// sync patches the pod status when it changed.
func (w *podWorker) sync() {
	st := w.status()
	w.mu.Lock()
	same := w.lastStatus != nil && reflect.DeepEqual(*w.lastStatus, st)
	pod := w.pod
	w.mu.Unlock()
	if same {
		return
	}
	body, err := json.Marshal(map[string]any{
		"metadata": map[string]any{"uid": pod.UID},
		"status":   st,
	})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(w.node.ctx, 10*time.Second)
	defer cancel()
	_, err = w.node.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, body, metav1.PatchOptions{}, "status")
	if err != nil {
		if !apierrors.IsNotFound(err) && w.node.ctx.Err() == nil {
			w.logf("status: %v", err)
		}
		return
	}
	w.mu.Lock()
	w.lastStatus = &st
	w.mu.Unlock()
}
