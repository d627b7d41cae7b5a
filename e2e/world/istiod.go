package world

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// IstioSystem is the namespace istiod runs in and reads its config from.
const IstioSystem = "istio-system"

// IstiodOptions configures StartIstiod.
type IstiodOptions struct {
	// PilotDiscovery is the pilot-discovery binary (hack/testbins.sh);
	// IstioWorld is e2e/tools/istio's istio-world, which renders Istio's
	// charts.
	PilotDiscovery, IstioWorld string
	// Revision is the control-plane revision ("" = default).
	Revision string
	// Dir holds istiod's kubeconfig, certificates and log.
	Dir string
	// Logf receives start-up events; nil discards them.
	Logf func(format string, args ...any)
}

// Istiod is a real istiod (pilot-discovery discovery) running as a local
// process against the world's API server. Its sidecar injector is the one
// the API server calls (the chart's MutatingWebhookConfiguration, pointing
// at its webhook port on 127.0.0.1), and its xDS server is what the
// sidecars of the world ask for their config.
type Istiod struct {
	Revision string
	// XDSAddr is the plaintext xDS (ADS) address, HOST:PORT (istiod's
	// --grpcAddr, 15010 in a cluster).
	XDSAddr string
	// WebhookURL is the injector's address the webhooks call.
	WebhookURL string
	// DebugURL is istiod's HTTP port (8080 in a cluster: /ready,
	// /debug/...).
	DebugURL string
	// LogPath is istiod's combined stdout/stderr.
	LogPath string
	// ConfigNames are the MutatingWebhookConfigurations registered.
	ConfigNames []string

	kube     kubernetes.Interface
	cmd      *exec.Cmd
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
}

// StartIstiod renders Istio's istio-discovery chart for the revision
// (the mesh config ConfigMap `istio[-REV]`, the injector's
// `istio-sidecar-injector[-REV]` ConfigMap and the
// MutatingWebhookConfiguration), applies them (an existing mesh config
// ConfigMap is kept: a test may have written its own), starts
// pilot-discovery and returns once istiod is ready and the API server's
// dry-run pod create is injected by it (the world's ServiceAccount
// defaulting webhook must be registered: see startSADefaulter). Stop ends the process and deletes
// the webhook configuration.
func StartIstiod(ctx context.Context, kube kubernetes.Interface, cfg *rest.Config, opts IstiodOptions) (_ *Istiod, err error) {
	for _, p := range []string{opts.PilotDiscovery, opts.IstioWorld} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("istiod: %w (run hack/testbins.sh)", err)
		}
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: IstioSystem}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("istiod: namespace %s: %w", IstioSystem, err)
	}
	kubeconfig := filepath.Join(opts.Dir, "kubeconfig")
	if err := writeKubeconfig(cfg, kubeconfig); err != nil {
		return nil, err
	}
	// The webhook server's certificate, from a CA the API server is told
	// about in the webhooks' caBundle (and istiod, as --caCertFile).
	caPEM, cert, err := webhookCertificates()
	if err != nil {
		return nil, fmt.Errorf("istiod: certificates: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM, err := marshalKey(cert.PrivateKey)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"ca.pem": caPEM, "cert.pem": certPEM, "key.pem": keyPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(opts.Dir, name), data, 0o600); err != nil {
			return nil, err
		}
	}
	ports, err := testenv.FreePorts(6)
	if err != nil {
		return nil, err
	}
	addr := func(i int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[i])) }
	d := &Istiod{
		Revision:   opts.Revision,
		XDSAddr:    addr(0),
		WebhookURL: "https://" + addr(1) + "/inject",
		DebugURL:   "http://" + addr(2),
		LogPath:    filepath.Join(opts.Dir, "istiod.log"),
		kube:       kube,
		done:       make(chan struct{}),
	}
	defer func() {
		if err != nil {
			d.Stop()
		}
	}()

	began := time.Now()
	rendered, err := exec.CommandContext(ctx, opts.IstioWorld, "render", "--revision", opts.Revision,
		"--injection-url", d.WebhookURL, "--ca-bundle", filepath.Join(opts.Dir, "ca.pem")).Output()
	if err != nil {
		return nil, fmt.Errorf("istiod: render the istio-discovery chart: %w%s", err, stderrOf(err))
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, "rendered.yaml"), rendered, 0o644); err != nil {
		return nil, err
	}
	if d.ConfigNames, err = applyRendered(ctx, kube, rendered); err != nil {
		return nil, err
	}
	opts.Logf("istiod: rendered and applied Istio's chart in %s", time.Since(began).Round(time.Millisecond))

	logFile, err := os.Create(d.LogPath)
	if err != nil {
		return nil, err
	}
	rev := opts.Revision
	if rev == "" {
		rev = "default"
	}
	d.cmd = exec.Command(opts.PilotDiscovery, "discovery",
		"--kubeconfig", kubeconfig,
		"--grpcAddr", addr(0),
		"--httpsAddr", addr(1),
		"--httpAddr", addr(2),
		"--secureGRPCAddr", addr(3),
		"--monitoringAddr", addr(4),
		"--ctrlz_address", "127.0.0.1", "--ctrlz_port", strconv.Itoa(ports[5]),
		"--tlsCertFile", filepath.Join(opts.Dir, "cert.pem"),
		"--tlsKeyFile", filepath.Join(opts.Dir, "key.pem"),
		"--caCertFile", filepath.Join(opts.Dir, "ca.pem"),
		"--domain", "cluster.local",
		"--keepaliveMaxServerConnectionAge", "30m",
	)
	// Run in its own dir: istiod looks for ./etc/istio/config/mesh and
	// ./var/lib/istio/inject relative to it, finds neither and reads the
	// ConfigMaps, as a cluster's istiod reads their mounted copies.
	d.cmd.Dir = opts.Dir
	d.cmd.Env = append(os.Environ(),
		"POD_NAMESPACE="+IstioSystem,
		"POD_NAME=istiod-"+rev+"-world",
		"REVISION="+rev,
		"KUBECONFIG="+kubeconfig,
		// The webhooks carry our CA already; istiod's patcher would
		// only rewrite the same bundle.
		"INJECTION_WEBHOOK_CONFIG_NAME=",
		"VALIDATION_WEBHOOK_CONFIG_NAME=",
		"PILOT_ENABLE_ANALYSIS=false",
	)
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("istiod: start: %w", err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		logFile.Close()
		close(d.done)
	}()
	if err := d.waitReady(ctx); err != nil {
		return nil, err
	}
	if err := d.waitInjecting(ctx); err != nil {
		return nil, err
	}
	opts.Logf("istiod: revision %s ready in %s (xDS %s, injector %s, log %s)", rev, time.Since(began).Round(time.Millisecond), d.XDSAddr, d.WebhookURL, d.LogPath)
	return d, nil
}

// errIstiodPortTaken: a port picked by FreePorts was taken before istiod
// bound it; startIstiods retries with fresh ports.
var errIstiodPortTaken = errors.New("istiod: a picked port was taken meanwhile")

func (d *Istiod) exitedErr() error {
	select {
	case <-d.done:
		if data, _ := os.ReadFile(d.LogPath); bytes.Contains(data, []byte("address already in use")) {
			return fmt.Errorf("%w (log %s)", errIstiodPortTaken, d.LogPath)
		}
		return fmt.Errorf("istiod exited (%v); log %s:\n%s", d.waitErr, d.LogPath, tailLines(d.LogPath, 30))
	default:
		return nil
	}
}

// waitReady polls istiod's /ready (its readiness probe in a cluster).
func (d *Istiod) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		if err := d.exitedErr(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, d.DebugURL+"/ready", nil)
		resp, err := client.Do(req)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("HTTP %d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("istiod: not ready within 90s (%s); log %s:\n%s", last, d.LogPath, tailLines(d.LogPath, 30))
		case <-d.done:
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitInjecting dry-runs a pod that asks for injection until the API
// server returns it with an istio-proxy container: the webhook path (API
// server -> TLS with our CA -> istiod's injector, template loaded) works.
func (d *Istiod) waitInjecting(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	labels := map[string]string{"sidecar.istio.io/inject": "true", worldLabel: "injector-probe"}
	if d.Revision != "" {
		labels["istio.io/rev"] = d.Revision
	}
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "injector-probe-", Namespace: metav1.NamespaceDefault, Labels: labels},
		// No serviceAccountName: Istio's template mounts a projected
		// token, which the API server accepts only once the world's
		// ServiceAccount defaulting webhook (started first) has set one,
		// so an injected answer proves both webhooks are called.
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "probe", Image: "probe"}}},
	}
	var last error
	for {
		got, err := d.kube.CoreV1().Pods(probe.Namespace).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err == nil {
			for _, c := range append(append([]corev1.Container{}, got.Spec.InitContainers...), got.Spec.Containers...) {
				if c.Name == "istio-proxy" {
					return nil
				}
			}
			last = errors.New("the dry-run pod came back without istio-proxy")
		} else {
			last = err
		}
		if err := d.exitedErr(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("istiod: the API server did not get a sidecar injected by %s within 60s (last: %v); log %s:\n%s",
				d.WebhookURL, last, d.LogPath, tailLines(d.LogPath, 30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop deletes the webhook configurations (so pod creation does not fail
// closed once istiod is gone), then stops istiod (SIGTERM, SIGKILL after
// 5 s). Idempotent.
func (d *Istiod) Stop() error {
	var errs []error
	d.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, name := range d.ConfigNames {
			err := d.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, name, metav1.DeleteOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("istiod: delete %s: %w", name, err))
			}
		}
		if d.cmd == nil || d.cmd.Process == nil {
			return
		}
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
	})
	return errors.Join(errs...)
}

// applyRendered creates or updates the rendered ConfigMaps and webhook
// configurations. The mesh config ConfigMap (key "mesh") is only created:
// one already there is the test's. Returns the webhook configuration names.
func applyRendered(ctx context.Context, kube kubernetes.Interface, rendered []byte) ([]string, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(rendered), 4096)
	var names []string
	for {
		var u unstructured.Unstructured
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return names, nil
			}
			return nil, fmt.Errorf("istiod: rendered chart: %w", err)
		}
		switch u.GetKind() {
		case "ConfigMap":
			var cm corev1.ConfigMap
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &cm); err != nil {
				return nil, err
			}
			cms := kube.CoreV1().ConfigMaps(cm.Namespace)
			_, err := cms.Create(ctx, &cm, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				if _, isMesh := cm.Data["mesh"]; isMesh {
					continue
				}
				var old *corev1.ConfigMap
				if old, err = cms.Get(ctx, cm.Name, metav1.GetOptions{}); err == nil {
					cm.ResourceVersion = old.ResourceVersion
					_, err = cms.Update(ctx, &cm, metav1.UpdateOptions{})
				}
			}
			if err != nil {
				return nil, fmt.Errorf("istiod: ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
			}
		case "MutatingWebhookConfiguration":
			var mwc admissionregistrationv1.MutatingWebhookConfiguration
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &mwc); err != nil {
				return nil, err
			}
			if mwc.Labels == nil {
				mwc.Labels = map[string]string{}
			}
			mwc.Labels[worldLabel] = "istiod"
			if err := applyWebhookConfiguration(ctx, kube, &mwc); err != nil {
				return nil, err
			}
			names = append(names, mwc.Name)
		}
	}
}

// writeKubeconfig writes cfg (host, CA, client certificate or token) as a
// kubeconfig file for istiod.
func writeKubeconfig(cfg *rest.Config, path string) error {
	c := clientcmdapi.NewConfig()
	c.Clusters["world"] = &clientcmdapi.Cluster{
		Server:                   cfg.Host,
		CertificateAuthority:     cfg.TLSClientConfig.CAFile,
		CertificateAuthorityData: cfg.TLSClientConfig.CAData,
		InsecureSkipTLSVerify:    cfg.TLSClientConfig.Insecure,
	}
	c.AuthInfos["world"] = &clientcmdapi.AuthInfo{
		ClientCertificate:     cfg.TLSClientConfig.CertFile,
		ClientCertificateData: cfg.TLSClientConfig.CertData,
		ClientKey:             cfg.TLSClientConfig.KeyFile,
		ClientKeyData:         cfg.TLSClientConfig.KeyData,
		Token:                 cfg.BearerToken,
		TokenFile:             cfg.BearerTokenFile,
	}
	c.Contexts["world"] = &clientcmdapi.Context{Cluster: "world", AuthInfo: "world"}
	c.CurrentContext = "world"
	return clientcmd.WriteToFile(*c, path)
}

func marshalKey(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

func tailLines(path string, n int) string { return testenv.TailFile(path, n) }
