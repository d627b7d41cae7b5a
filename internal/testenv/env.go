// Package testenv runs a real etcd and kube-apiserver on loopback for tests
// and the demo, with RBAC on, certificates and a service-account signing key
// made on the fly, an admin kubeconfig, and Istio's CRDs installed.
//
// What it is not: no kube-controller-manager, scheduler or kubelet runs, so
// nothing reconciles. In particular:
//   - Pods never run or get scheduled. Set phase and podIP yourself through
//     the status subresource (UpdateStatus); loopback pod IPs (127.0.0.x) are
//     accepted there.
//   - EndpointSlices are not derived from Services: create them yourself,
//     and note the API server REJECTS loopback addresses (127.0.0.0/8, ::1)
//     in EndpointSlice endpoints. Code that must dial a loopback server should
//     take the address from the pod status, not from the slice.
//   - The ServiceAccount admission plugin is disabled, so pods can be created
//     in a namespace that has no `default` ServiceAccount and get no token
//     volume injected; CreateNamespace still creates `default`, as the
//     controller-manager would.
//   - Namespaces are never finalised: a deleted namespace stays Terminating.
//
// Binaries come from `make test-deps` (hack/testbins.sh); see Binaries.
//
// It lives in the product's module, not in the e2e module, because the
// product's own tests (cmd, cluster, report/publish) run against it too; the
// e2e module imports it through its replace of the product's module. Only
// tests and hack/ import it: the shipped binary never does.
package testenv

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options tunes Start. The zero value is what most tests want.
type Options struct {
	// NoIstioCRDs skips installing Istio's CRDs, to test "Istio not installed".
	NoIstioCRDs bool
	// BinDir holds kube-apiserver and etcd; empty means Binaries' default.
	BinDir string
	// StartTimeout bounds the whole start-up; 0 means 90s, generous because
	// CI shares two cores with other work.
	StartTimeout time.Duration
	// ExtraAPIServerArgs are appended to kube-apiserver's command line
	// (later flags win), e.g. "--enable-admission-plugins=...".
	ExtraAPIServerArgs []string
}

// Env is a running etcd + kube-apiserver. Stop it when done.
type Env struct {
	// Dir is the temp folder holding certificates, etcd's data, kubeconfigs
	// and the logs (etcd.log, kube-apiserver.log); Stop removes it.
	Dir string
	// Host is the API server URL, https://127.0.0.1:PORT.
	Host string
	// Kubeconfig is the path of the admin kubeconfig (group system:masters).
	Kubeconfig string
	// Config is the admin REST config. Client-side rate limiting is off, so
	// seeding many objects is not throttled to client-go's default 5 QPS.
	Config *rest.Config
	// Client and Dynamic are admin clients built from Config.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// StartupTime is how long Start took, CRDs included.
	StartupTime time.Duration

	pki       *pki
	etcd      *process
	apiserver *process
	stopOnce  sync.Once
	done      chan struct{}
}

// Start launches etcd and kube-apiserver on free loopback ports and returns
// once the API server is ready (and Istio's CRDs are Established, unless
// opts.NoIstioCRDs). On failure it tears down what it started and the error
// carries the tail of the failing process's log.
func Start(ctx context.Context, opts Options) (*Env, error) {
	apiserverBin, etcdBin, err := Binaries(opts.BinDir)
	if err != nil {
		return nil, err
	}
	crdFile := ""
	if !opts.NoIstioCRDs {
		if crdFile, err = IstioCRDFile(); err != nil {
			return nil, err
		}
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 90 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	began := time.Now()
	removeStaleDirs()

	// A port picked by freePorts can be taken before the child binds it;
	// that is the one failure worth retrying.
	for attempt := 1; ; attempt++ {
		env, err := start(ctx, apiserverBin, etcdBin, opts)
		if errors.Is(err, errPortTaken) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		if crdFile != "" {
			if err := env.installCRDs(ctx, crdFile); err != nil {
				env.Stop()
				return nil, err
			}
		}
		env.StartupTime = time.Since(began)
		return env, nil
	}
}

const dirPattern = "serverfirst-testenv-*"

// removeStaleDirs deletes what earlier Envs left when their process was
// killed before Stop (a `go test -timeout` panic, SIGKILL): etcd preallocates
// its WAL, so each leak costs over 100 MB. The children themselves die with
// their parent (see sysProcAttr). A dir is stale when no process mentions it
// and it is old enough not to belong to an Env that is still starting.
func removeStaleDirs() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPattern))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || time.Since(fi.ModTime()) < 2*time.Minute {
			continue
		}
		if pids, err := PIDsMentioning(d); err == nil && len(pids) == 0 {
			_ = os.RemoveAll(d)
		}
	}
}

func start(ctx context.Context, apiserverBin, etcdBin string, opts Options) (env *Env, err error) {
	dir, err := os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, err
	}
	env = &Env{Dir: dir, done: make(chan struct{})}
	defer func() {
		if err != nil {
			env.Stop()
		}
	}()

	ports, err := freePorts(3)
	if err != nil {
		return env, err
	}
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]

	if env.pki, err = newPKI(); err != nil {
		return env, fmt.Errorf("make CA: %w", err)
	}
	files := map[string][]byte{"ca.crt": env.pki.caPEM}
	files["apiserver.crt"], files["apiserver.key"], err = env.pki.issue("kube-apiserver", nil,
		// 10.96.0.1: the kubernetes Service's ClusterIP (first address of
		// --service-cluster-ip-range), which in-cluster clients dial.
		[]string{"127.0.0.1", "::1", "10.96.0.1", "localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return env, fmt.Errorf("make serving certificate: %w", err)
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return env, err
		}
	}
	saKey, saPub, err := writeServiceAccountKeys(dir)
	if err != nil {
		return env, fmt.Errorf("make service-account key: %w", err)
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdClient)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	env.etcd, err = startProcess("etcd", etcdBin, []string{
		"--name=testenv",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=testenv=" + peerURL,
		// Throw-away data: fsync only slows seeding thousands of objects.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	}, filepath.Join(dir, "etcd.log"))
	if err != nil {
		return env, err
	}
	if err := waitReady(ctx, env.etcd, http.DefaultClient, etcdURL+"/health"); err != nil {
		return env, err
	}

	env.Host = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	args := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		// The endpoint reconcilers refuse a loopback advertise address; with
		// none, the `kubernetes` Service simply has no endpoints.
		"--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
		"--client-ca-file=" + filepath.Join(dir, "ca.crt"),
		// Node lets a test node agent authenticate as system:node:NAME.
		"--authorization-mode=Node,RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--allow-privileged=true",
		// No controller-manager creates `default` ServiceAccounts; see the
		// package comment.
		"--disable-admission-plugins=ServiceAccount",
		"--profiling=false",
		"--v=1",
	}
	args = append(args, opts.ExtraAPIServerArgs...)
	env.apiserver, err = startProcess("kube-apiserver", apiserverBin, args, filepath.Join(dir, "kube-apiserver.log"))
	if err != nil {
		return env, err
	}

	if err := env.setupAdmin(); err != nil {
		return env, err
	}
	tlsClient, err := rest.HTTPClientFor(env.Config)
	if err != nil {
		return env, err
	}
	if err := waitReady(ctx, env.apiserver, tlsClient, env.Host+"/readyz"); err != nil {
		return env, err
	}
	// The `default` namespace exists once /readyz passes (its bootstrap
	// controller is a readiness check); give it the ServiceAccount too.
	if err := env.ensureDefaultServiceAccount(ctx, metav1.NamespaceDefault); err != nil {
		return env, err
	}
	go env.watchChildren()
	return env, nil
}

// waitReady polls url until it answers 200, the process dies, or ctx ends.
func waitReady(ctx context.Context, p *process, client *http.Client, url string) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		if p.exited() {
			if logSaysPortTaken(p.logPath) {
				return fmt.Errorf("%s: %w", p.name, errPortTaken)
			}
			return fmt.Errorf("%s exited during start-up (%v); last lines of %s:\n%s",
				p.name, p.waitErr, p.logPath, p.logTail(30))
		}
		reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		req, _ := http.NewRequestWithContext(reqCtx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			body := make([]byte, 2048)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return nil
			}
			last = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, body[:n])
		} else {
			last = err.Error()
		}
		cancel()
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s (%v; last answer: %s); last lines of %s:\n%s",
				p.name, url, ctx.Err(), strings.TrimSpace(last), p.logPath, p.logTail(30))
		case <-tick.C:
		}
	}
}

// watchChildren closes done when etcd or the API server exits on its own.
func (e *Env) watchChildren() {
	select {
	case <-e.etcd.done:
	case <-e.apiserver.done:
	}
	e.closeDone()
}

func (e *Env) closeDone() {
	select {
	case <-e.done:
	default:
		close(e.done)
	}
}

// Done is closed when the Env stops: by Stop, or because etcd or the API
// server died (long-running users such as testcluster watch it).
func (e *Env) Done() <-chan struct{} { return e.done }

// PIDs are the process ids of the API server and etcd: a benchmark reads
// their CPU time, the server's share of a request's cost.
func (e *Env) PIDs() (apiserver, etcd int) {
	return e.apiserver.cmd.Process.Pid, e.etcd.cmd.Process.Pid
}

// Stop kills the API server and etcd (whole process groups) and removes
// Dir. It is safe to call more than once and from a t.Cleanup.
func (e *Env) Stop() error {
	var err error
	e.stopOnce.Do(func() {
		// API server first: etcd going away under it only makes it log noise.
		e.apiserver.stop()
		e.etcd.stop()
		e.closeDone()
		err = os.RemoveAll(e.Dir)
	})
	return err
}

// LogTail returns the last n lines of the API server's log (which is
// "apiserver") or etcd's ("etcd"), to diagnose a failing test before Stop
// removes them.
func (e *Env) LogTail(which string, n int) string {
	name := "kube-apiserver.log"
	if which == "etcd" {
		name = "etcd.log"
	}
	return tailFile(filepath.Join(e.Dir, name), n)
}

func (e *Env) setupAdmin() error {
	certPEM, keyPEM, err := e.pki.issue("serverfirst-admin", []string{"system:masters"}, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return fmt.Errorf("make admin certificate: %w", err)
	}
	e.Config = e.restConfig(rest.TLSClientConfig{CertData: certPEM, KeyData: keyPEM}, "")
	e.Kubeconfig = filepath.Join(e.Dir, "admin.kubeconfig")
	if err := e.writeKubeconfig(e.Kubeconfig, "admin", certPEM, keyPEM, "", ""); err != nil {
		return err
	}
	if e.Client, err = kubernetes.NewForConfig(e.Config); err != nil {
		return err
	}
	e.Dynamic, err = dynamic.NewForConfig(e.Config)
	return err
}

func (e *Env) restConfig(tlsc rest.TLSClientConfig, token string) *rest.Config {
	tlsc.CAData = e.pki.caPEM
	return &rest.Config{
		Host:            e.Host,
		TLSClientConfig: tlsc,
		BearerToken:     token,
		// Negative QPS disables client-go's token-bucket limiter.
		QPS:   -1,
		Burst: 0,
	}
}

func (e *Env) ensureDefaultServiceAccount(ctx context.Context, ns string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	_, err := e.Client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create ServiceAccount %s/default: %w", ns, err)
	}
	return nil
}
