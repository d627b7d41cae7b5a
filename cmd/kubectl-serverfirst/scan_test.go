package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/scan"
	"github.com/spf13/cobra"
)

// run runs the command tree in-process with a minute's deadline.
func run(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	return runWith(t, hooks{}, stdin, args...)
}

// runWith is run with test stand-ins (hooks).
func runWith(t *testing.T, h hooks, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return runCLIWith(t, ctx, h, stdin, args...)
}

// seedShop creates a small cluster that has one of every static case.
func seedShop(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := context.Background()
	kube := env.Client
	for ns, labels := range map[string]map[string]string{
		"istio-system": nil,
		"shop":         {"istio-injection": "enabled"},
		"legacy":       nil,
	} {
		if _, err := env.CreateNamespace(ctx, ns, labels); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := kube.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Data:       map[string]string{"mesh": "rootNamespace: istio-system\ndefaultConfig:\n  proxyMetadata: {}\n"},
	}, metav1.CreateOptions{})
	mustCreate(err)

	pod := func(ns, name, app, image, portName string, port int32, sidecar bool) {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{
				Name: app, Image: image, Ports: []corev1.ContainerPort{{Name: portName, ContainerPort: port}},
			}}},
		}
		if sidecar {
			p.Annotations = map[string]string{"sidecar.istio.io/status": `{"containers":["istio-proxy"]}`}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "istio-proxy", Image: "docker.io/istio/proxyv2:1.28.0"})
		}
		_, err := kube.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		mustCreate(err)
	}
	pod("shop", "orders-db-0", "orders-db", "docker.io/library/mysql:8.0", "mysql", 3306, true)
	pod("shop", "mail-0", "mail", "ghcr.io/example/postfix:3.8", "smtp", 2525, true)
	pod("shop", "cache-0", "cache", "redis:7", "redis", 6379, true)
	pod("shop", "queue-0", "queue", "nats:2.10", "client", 4222, true)
	pod("shop", "web-0", "web", "nginx:1.27", "http", 8080, true)
	pod("legacy", "ftp-0", "ftp", "fauria/vsftpd", "ftp", 21, false)

	svc := func(ns, name, app string, ports ...corev1.ServicePort) {
		_, err := kube.CoreV1().Services(ns).Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: ports},
		}, metav1.CreateOptions{})
		mustCreate(err)
	}
	str := func(s string) *string { return &s }
	svc("shop", "orders-db", "orders-db", corev1.ServicePort{Name: "db", Port: 3307, TargetPort: intstr.FromString("mysql")})
	svc("shop", "orders-db-tcp", "orders-db", corev1.ServicePort{Name: "tcp-mysql", Port: 3308, TargetPort: intstr.FromInt32(3306)})
	svc("shop", "orders-db-wk", "orders-db", corev1.ServicePort{Port: 3306})
	svc("shop", "mail", "mail",
		corev1.ServicePort{Name: "relay", Port: 2525, TargetPort: intstr.FromInt32(2525)},
		corev1.ServicePort{Name: "http-metrics", Port: 9090, TargetPort: intstr.FromInt32(9090)})
	svc("shop", "cache", "cache", corev1.ServicePort{Name: "redis", Port: 6379})
	svc("shop", "queue", "queue", corev1.ServicePort{Name: "tcp-client", Port: 4222, AppProtocol: str("nats.io/client")})
	svc("shop", "web", "web", corev1.ServicePort{Name: "http", Port: 8080})
	svc("legacy", "ftp", "ftp", corev1.ServicePort{Port: 21})

	ic, err := env.IstioClient()
	mustCreate(err)
	_, err = ic.NetworkingV1().ServiceEntries("shop").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "ext-smtp"},
		Spec: networkingapi.ServiceEntry{
			Hosts: []string{"smtp.example.com"}, Location: networkingapi.ServiceEntry_MESH_EXTERNAL,
			Resolution: networkingapi.ServiceEntry_DNS, Ports: []*networkingapi.ServicePort{{Number: 25, Name: "mail"}},
		},
	}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = ic.NetworkingV1().ServiceEntries("shop").Create(ctx, &networkingv1.ServiceEntry{
		ObjectMeta: metav1.ObjectMeta{Name: "ext-db"},
		Spec: networkingapi.ServiceEntry{
			Hosts: []string{"mysql.example.com"}, Location: networkingapi.ServiceEntry_MESH_EXTERNAL,
			Resolution: networkingapi.ServiceEntry_DNS, Ports: []*networkingapi.ServicePort{{Number: 8080, Name: "tcp", Protocol: "TCP"}},
		},
	}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = ic.SecurityV1().PeerAuthentications("istio-system").Create(ctx, &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       securityapi.PeerAuthentication{Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_STRICT}},
	}, metav1.CreateOptions{})
	mustCreate(err)
	_, err = ic.SecurityV1().PeerAuthentications("shop").Create(ctx, &securityv1.PeerAuthentication{
		ObjectMeta: metav1.ObjectMeta{Name: "default"},
		Spec:       securityapi.PeerAuthentication{Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: securityapi.PeerAuthentication_MutualTLS_PERMISSIVE}},
	}, metav1.CreateOptions{})
	mustCreate(err)
	_ = typeapi.WorkloadSelector{}
}

func TestScanFixAgainstAPIServer(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	seedShop(t, env)
	kc := env.Kubeconfig
	apiPort := env.Config.Host[strings.LastIndexByte(env.Config.Host, ':')+1:]

	t.Run("static goldens", func(t *testing.T) {
		for _, format := range []string{"table", "wide", "json", "yaml", "markdown"} {
			out, errOut, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", kc, "-o", format)
			if err != nil {
				t.Fatalf("%s: %v\n%s", format, err, errOut)
			}
			// The kubernetes Service's targetPort is the test API server's random port.
			out = strings.NewReplacer(`"targetPort": "`+apiPort+`"`, `"targetPort": "APIPORT"`, `targetPort: "`+apiPort+`"`, `targetPort: "APIPORT"`).Replace(out)
			assertGolden(t, filepath.Join("testdata", "scan", "shop."+format+".golden"), []byte(out))
		}
	})

	// The seed's third scenario without probes (issue 13): a declared-TCP
	// MySQL behind a PERMISSIVE sidecar, and a pod without a sidecar in
	// the cluster (legacy/ftp-0).
	t.Run("static external-to-mesh path", func(t *testing.T) {
		f := findingOf(t, kc, "Service/orders-db-tcp/3308")
		if f.Verdict != report.AtRisk || f.Code != "SF0203" || f.Scenario != report.ExternalToMesh ||
			!strings.Contains(f.Reason, "1 pod(s) without a sidecar in 1 namespace(s): legacy") {
			t.Errorf("orders-db-tcp:3308 is %s %s %s (%s), want AT-RISK SF0203 external-to-mesh naming legacy", f.Verdict, f.Code, f.Scenario, f.Reason)
		}
		var codes []report.Code
		for _, p := range f.Paths {
			codes = append(codes, p.Code)
		}
		if len(codes) != 2 || codes[0] != "SF0203" || codes[1] != "SF0109" {
			t.Errorf("paths %v, want the external-to-mesh risk and the OK mesh path", codes)
		}
	})

	t.Run("static JSON contract", func(t *testing.T) {
		out, _, err := run(t, "", "scan", "--static", "-n", "shop", "--kubeconfig", kc, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Findings []map[string]any `json:"findings"`
			Warnings []string         `json:"warnings"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatal(err)
		}
		want := map[string]map[string]any{
			"Service/orders-db/3307": {"protocol": "auto", "protocolSource": "none", "serverInMesh": true, "mtlsMode": "PERMISSIVE", "verdict": "AT-RISK", "targetPort": "3306"},
			// Declared, but PERMISSIVE with a client without a sidecar in
			// legacy: -n shop counts it too (cluster-wide pod metadata), as
			// -A does (SF0203).
			"Service/orders-db-wk/3306":  {"protocol": "TCP", "protocolSource": "well-known-port", "verdict": "AT-RISK", "code": "SF0203"},
			"Service/orders-db-tcp/3308": {"protocol": "TCP", "protocolSource": "name", "verdict": "AT-RISK", "code": "SF0203"},
			"Service/queue/4222":         {"protocol": "auto", "protocolSource": "none", "appProtocolTrap": true, "verdict": "AT-RISK"},
			"Service/web/8080":           {"protocol": "HTTP", "protocolSource": "name", "verdict": "OK"},
			"ServiceEntry/ext-smtp/25":   {"protocol": "auto", "verdict": "AT-RISK", "serverInMesh": false},
			"ServiceEntry/ext-db/8080":   {"protocol": "TCP", "verdict": "AT-RISK"},
		}
		seen := map[string]bool{}
		for _, f := range doc.Findings {
			if f["namespace"] != "shop" {
				t.Errorf("-n shop returned a finding in %v", f["namespace"])
			}
			key := f["kind"].(string) + "/" + f["name"].(string) + "/" + jsonNumber(f["port"])
			seen[key] = true
			for k, v := range want[key] {
				if f[k] != v {
					t.Errorf("%s: %s = %v, want %v", key, k, f[k], v)
				}
			}
		}
		for k := range want {
			if !seen[k] {
				t.Errorf("no finding for %s", k)
			}
		}
		if doc.Warnings == nil {
			t.Error(`"warnings" must be an array, not null`)
		}

		// The CI gate: exit 3 only when a finding matches.
		_, _, err = run(t, "", "scan", "--static", "-A", "--kubeconfig", kc, "--fail-on", "at-risk", "-o", "json")
		if exitCode(err) != 3 {
			t.Errorf("--fail-on at-risk: exit %d (%v), want 3", exitCode(err), err)
		}
		if _, _, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", kc, "--fail-on", "deadlock,delayed"); err != nil {
			t.Errorf("--fail-on deadlock,delayed with static findings only: %v", err)
		}
	})

	t.Run("every fix manifest passes server-side dry-run", func(t *testing.T) {
		// Static findings give Service and ServiceEntry fixes; add the
		// evidence that makes an external-to-mesh finding so the
		// PeerAuthentication fix is checked too.
		clients, _, err := (&rootOptions{configFlags: configFlagsFor(kc)}).clients()
		if err != nil {
			t.Fatal(err)
		}
		inv, err := cluster.Load(context.Background(), clients, cluster.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		fb := 3.0
		key := target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "orders-db-tcp", Port: 3308}
		r := report.Build(report.Input{Inventory: inv, Observations: []target.Observation{
			{Target: key, Vantage: target.VantageDirect, Result: probe.Result{Outcome: probe.OutcomeBanner, FirstByteMs: &fb, Protocol: "mysql"}},
			{Target: key, Vantage: target.VantageOutsideClient, Result: probe.Result{Outcome: probe.OutcomeSilent}},
		}})
		dyn, err := dynamic.NewForConfig(env.Config)
		if err != nil {
			t.Fatal(err)
		}
		ap := cluster.Applier{Clients: clients, Dyn: dyn, FieldManager: report.ManagerName}
		kinds := map[string]int{}
		for _, f := range r.Findings {
			for _, fix := range f.Fixes {
				if fix.Manifest == "" {
					continue
				}
				if fix.Change == nil {
					// A manifest fix only prints (a DestinationRule, a
					// headless Service): the API server must take it too.
					u := &unstructured.Unstructured{}
					if err := yaml.Unmarshal([]byte(fix.Manifest), &u.Object); err != nil {
						t.Fatalf("%s: %v", fix.Title, err)
					}
					gvr, _ := meta.UnsafeGuessKindToResource(u.GroupVersionKind())
					if _, err := dyn.Resource(gvr).Namespace(u.GetNamespace()).Apply(context.Background(), u.GetName(), u,
						metav1.ApplyOptions{FieldManager: report.ManagerName, Force: true, DryRun: []string{metav1.DryRunAll}}); err != nil {
						t.Errorf("%s rejected by the API server: %v\n%s", fix.Title, err, fix.Manifest)
					}
					continue
				}
				obj, err := report.ObjectOf(fix)
				if err != nil {
					t.Fatalf("%s: %v", fix.Title, err)
				}
				if _, err := ap.Apply(context.Background(), obj, true); err != nil {
					t.Errorf("%s rejected by the API server: %v\n%s", fix.Title, err, fix.Manifest)
				}
				kinds[fix.Change.Kind]++
			}
		}
		for _, k := range []string{"Service", "ServiceEntry", "PeerAuthentication"} {
			if kinds[k] == 0 {
				t.Errorf("no %s fix was checked", k)
			}
		}
	})

	t.Run("fix prints, applies, and is idempotent", func(t *testing.T) {
		out, _, err := run(t, "", "fix", "-A", "--static", "--kubeconfig", kc)
		if err != nil {
			t.Fatal(err)
		}
		assertGolden(t, filepath.Join("testdata", "scan", "shop.fix.golden"), []byte(out))
		out, _, err = run(t, "", "fix", "-A", "--static", "--all", "--kubeconfig", kc)
		if err != nil {
			t.Fatal(err)
		}
		assertGolden(t, filepath.Join("testdata", "scan", "shop.fix-all.golden"), []byte(out))

		// No --yes and "n" on stdin: nothing changes.
		if _, _, err := run(t, "n\n", "fix", "-A", "--static", "--apply", "--kubeconfig", kc); err == nil {
			t.Fatal("fix --apply without confirmation succeeded")
		}
		if got := verdictOf(t, kc, "Service/orders-db/3307"); got != "AT-RISK" {
			t.Fatalf("declined fix changed the cluster: verdict %s", got)
		}

		_, errOut, err := run(t, "", "fix", "-A", "--static", "--apply", "--yes", "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		for _, k := range []string{"Service/ftp/21", "ServiceEntry/ext-smtp/25"} {
			if got := verdictOf(t, kc, k); got != "OK" {
				t.Errorf("after fix --apply, %s is %s, want OK", k, got)
			}
		}
		// The mesh clients' path is fixed; clients without a sidecar
		// (legacy/ftp-0) still meet the PERMISSIVE TLS inspector, whose
		// fix (a port-level DISABLE) needs --allow-plaintext.
		for _, k := range []string{"Service/orders-db/3307", "Service/mail/2525", "Service/queue/4222"} {
			f := findingOf(t, kc, k)
			if f.Verdict != report.AtRisk || f.Code != "SF0203" || !strings.Contains(f.Reason, "1 pod(s) without a sidecar in 1 namespace(s): legacy") {
				t.Errorf("after fix --apply, %s is %s %s (%s), want AT-RISK SF0203 external-to-mesh", k, f.Verdict, f.Code, f.Reason)
			}
			for _, p := range f.Paths {
				if p.Scenario == report.MeshToMesh && p.Verdict != report.OK {
					t.Errorf("after fix --apply, %s mesh-to-mesh is %s (%s), want OK", k, p.Verdict, p.Reason)
				}
			}
		}
		// The other port of the mail Service survived the merge.
		svc, err := env.Client.CoreV1().Services("shop").Get(context.Background(), "mail", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(svc.Spec.Ports) != 2 || svc.Spec.Ports[1].Name != "http-metrics" {
			t.Errorf("mail Service ports after fix: %+v", svc.Spec.Ports)
		}
		before := svc.ResourceVersion
		_, errOut, err = run(t, "", "fix", "-A", "--static", "--apply", "--yes", "--kubeconfig", kc)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		svc, _ = env.Client.CoreV1().Services("shop").Get(context.Background(), "mail", metav1.GetOptions{})
		if svc.ResourceVersion != before {
			t.Errorf("second fix --apply changed the mail Service again")
		}
	})
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func verdictOf(t *testing.T, kc, key string) string {
	t.Helper()
	return string(findingOf(t, kc, key).Verdict)
}

func findingOf(t *testing.T, kc, key string) report.Finding {
	t.Helper()
	out, errOut, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", kc, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var doc report.Report
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	for _, f := range doc.Findings {
		if f.Kind+"/"+f.Name+"/"+jsonNumber(f.Port) == key {
			return f
		}
	}
	t.Fatalf("no finding %s", key)
	return report.Finding{}
}

// configFlagsFor is the flags a --kubeconfig PATH would give.
func configFlagsFor(kubeconfig string) *genericclioptions.ConfigFlags {
	f := genericclioptions.NewConfigFlags(true)
	f.KubeConfig = &kubeconfig
	return f
}

// TestAutoVantage: the default vantage creates no pod outside a pod (the
// proxies' config and the direct port-forward), dials from itself inside
// one, and probe pods come only with --vantage pods.
func TestAutoVantage(t *testing.T) {
	for _, tc := range []struct {
		vantage, serviceHost string
		want                 scan.From
	}{
		{"auto", "", scan.FromConfig},
		{"auto", "10.96.0.1", scan.FromSelf},
		{"pods", "", scan.FromPods},
		{"pods", "10.96.0.1", scan.FromPods},
		{"config", "10.96.0.1", scan.FromConfig},
	} {
		t.Setenv("KUBERNETES_SERVICE_HOST", tc.serviceHost)
		cmd := &cobra.Command{}
		var f scanFlags
		f.add(cmd)
		if err := cmd.Flags().Set("vantage", tc.vantage); err != nil {
			t.Fatal(err)
		}
		cfg, err := f.config(&rootOptions{}, nil)
		if err != nil {
			t.Fatalf("--vantage %s: %v", tc.vantage, err)
		}
		if cfg.From != tc.want {
			t.Errorf("--vantage %s with KUBERNETES_SERVICE_HOST=%q: %s, want %s", tc.vantage, tc.serviceHost, cfg.From, tc.want)
		}
	}
}
