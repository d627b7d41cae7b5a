package publish

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// splitYAML decodes a multi-document stream into unstructured objects.
func splitYAML(t *testing.T, b []byte) []*unstructured.Unstructured {
	t.Helper()
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var out []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// TestRBACMatchesDeployYAML: the generated roles and deploy/rbac.yaml
// cannot drift apart.
func TestRBACMatchesDeployYAML(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "deploy", "rbac.yaml"))
	if err != nil {
		t.Fatalf("deploy/rbac.yaml: %v", err)
	}
	found := map[string]bool{}
	for _, u := range splitYAML(t, b) {
		var rules []rbacv1.PolicyRule
		var want []rbacv1.PolicyRule
		switch {
		case u.GetKind() == "ClusterRole" && u.GetName() == ReaderRoleName:
			want = ReaderRules()
		case u.GetKind() == "Role" && u.GetName() == MeshConfigRoleName:
			want = MeshConfigRules()
		case u.GetKind() == "ServiceAccount":
			if u.GetName() != ServiceAccountName || u.GetNamespace() != DefaultJobNamespace {
				t.Errorf("deploy/rbac.yaml ServiceAccount %s/%s, manifests use %s/%s", u.GetNamespace(), u.GetName(), DefaultJobNamespace, ServiceAccountName)
			}
			continue
		default:
			continue
		}
		found[u.GetKind()] = true
		js, _ := u.MarshalJSON()
		var obj struct {
			Rules []rbacv1.PolicyRule `json:"rules"`
		}
		if err := yaml.Unmarshal(js, &obj); err != nil {
			t.Fatal(err)
		}
		rules = obj.Rules
		if !reflect.DeepEqual(rules, want) {
			t.Errorf("%s %s: deploy/rbac.yaml has\n%+v\nmanifests have\n%+v", u.GetKind(), u.GetName(), rules, want)
		}
	}
	if !found["ClusterRole"] || !found["Role"] {
		t.Errorf("deploy/rbac.yaml lacks %s or %s: %v", ReaderRoleName, MeshConfigRoleName, found)
	}
}

func renderOpts(t *testing.T, o JobOptions) ([]byte, []*unstructured.Unstructured) {
	t.Helper()
	var b bytes.Buffer
	if err := RenderJobManifests(&b, o, "header"); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), splitYAML(t, b.Bytes())
}

func TestJobManifestsShape(t *testing.T) {
	_, docs := renderOpts(t, JobOptions{Image: "img:1"})
	kinds := []string{}
	for _, d := range docs {
		kinds = append(kinds, d.GetKind())
	}
	want := "Namespace ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding ConfigMap Role RoleBinding CronJob"
	if strings.Join(kinds, " ") != want {
		t.Errorf("kinds %v, want %s", kinds, want)
	}
	_, docs = renderOpts(t, JobOptions{Image: "img:1", Shards: 3, Outside: true, Namespace: "scans", ReportName: "r"})
	var crons []batchv1.CronJob
	var writer rbacv1.Role
	for _, d := range docs {
		js, _ := d.MarshalJSON()
		switch d.GetKind() {
		case "CronJob":
			var c batchv1.CronJob
			if err := yaml.Unmarshal(js, &c); err != nil {
				t.Fatal(err)
			}
			crons = append(crons, c)
		case "Role":
			if d.GetName() == WriterRoleName {
				_ = yaml.Unmarshal(js, &writer)
			}
		case "ClusterRoleBinding":
			if d.GetName() != "serverfirst-reader-scans" {
				t.Errorf("binding %s in another namespace keeps the default name", d.GetName())
			}
		}
	}
	if len(crons) != 2 {
		t.Fatalf("%d CronJobs", len(crons))
	}
	if got := writer.Rules[0].ResourceNames; strings.Join(got, ",") != "r,r-outside" || strings.Join(writer.Rules[0].Verbs, ",") != "get,update" {
		t.Errorf("writer role %+v", writer.Rules)
	}
	for i, c := range crons {
		js := c.Spec.JobTemplate.Spec
		if *js.Completions != 3 || *js.Parallelism != 3 || *js.CompletionMode != batchv1.IndexedCompletion || *js.BackoffLimit != 1 {
			t.Errorf("cron %d job spec %+v", i, js)
		}
		p := js.Template
		args := strings.Join(p.Spec.Containers[0].Args, " ")
		inject := p.Labels["sidecar.istio.io/inject"]
		switch c.Name {
		case ScanCronJobName:
			if inject != "true" || !strings.Contains(p.Annotations["proxy.istio.io/config"], `"holdApplicationUntilProxyStarts": true`) ||
				!strings.Contains(args, "--report-configmap scans/r ") || strings.Contains(args, "self-in-mesh") {
				t.Errorf("mesh cron: inject %q args %q annotations %v", inject, args, p.Annotations)
			}
		case OutsideCronJobName:
			if inject != "false" || !strings.Contains(args, "--self-in-mesh false") || !strings.Contains(args, "--report-configmap scans/r-outside ") {
				t.Errorf("outside cron: inject %q args %q", inject, args)
			}
		default:
			t.Errorf("cron %s", c.Name)
		}
		if !strings.Contains(args, "--shards 3") || c.Spec.ConcurrencyPolicy != batchv1.ForbidConcurrent {
			t.Errorf("cron %s: args %q policy %s", c.Name, args, c.Spec.ConcurrencyPolicy)
		}
	}
	for _, c := range crons {
		if args := strings.Join(c.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " "); strings.Contains(args, "--direct") {
			t.Errorf("cron %s without Direct: args %q", c.Name, args)
		}
	}

	// Direct: the port-forward role and binding after the reader's, and
	// --direct in every scan (in-mesh, outside, sharded).
	_, docs = renderOpts(t, JobOptions{Image: "img:1", Shards: 3, Outside: true, Direct: true, Namespace: "scans"})
	var names []string
	var direct int
	for _, d := range docs {
		names = append(names, d.GetKind()+"/"+d.GetName())
		if d.GetKind() == "CronJob" {
			js, _ := d.MarshalJSON()
			var c batchv1.CronJob
			if err := yaml.Unmarshal(js, &c); err != nil {
				t.Fatal(err)
			}
			args := strings.Join(c.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Args, " ")
			if !strings.Contains(args, "--vantage self --direct ") || !strings.Contains(args, "--shards 3") {
				t.Errorf("cron %s with Direct: args %q", c.Name, args)
			}
			direct++
		}
		if strings.HasPrefix(d.GetName(), PortForwardRoleName) && d.GetLabels()[LabelName] != LabelValue {
			t.Errorf("%s %s: labels %v", d.GetKind(), d.GetName(), d.GetLabels())
		}
	}
	if want := "ClusterRole/" + ReaderRoleName + " ClusterRoleBinding/serverfirst-reader-scans ClusterRole/" + PortForwardRoleName + " ClusterRoleBinding/serverfirst-portforward-scans"; !strings.Contains(strings.Join(names, " "), want) || direct != 2 {
		t.Errorf("Direct: objects %v (want %s and 2 CronJobs)", names, want)
	}

	for _, bad := range []JobOptions{{}, {Image: "x", Schedule: "nope"}, {Image: "x", ReportName: "a/b"}, {Image: "x", Shards: 1000}} {
		if _, err := JobManifests(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestJobManifestsAdmitted: every document passes the real API server's
// validation (server-side dry-run), and the scan's pod passes PodSecurity
// "restricted" enforcement.
func TestJobManifestsAdmitted(t *testing.T) {
	ns := "psa"
	env := newEnv(t, &ns) // only to start the server; the manifests bring their own namespace
	ctx := ctxFor(t)
	for n, o := range []JobOptions{
		{Image: "ghcr.io/serverfirst/kubectl-serverfirst:v1", MetricsFile: DefaultMetricsFile},
		{Image: "ghcr.io/serverfirst/kubectl-serverfirst:v1", Shards: 3, Outside: true, Namespace: "scans", IstioNamespace: "istio-system", Pushgateway: "http://pushgateway.monitoring:9091"},
		{Image: "ghcr.io/serverfirst/kubectl-serverfirst:v1", Shards: 2, Outside: true, Direct: true, Namespace: "scans-direct", MetricsFile: DefaultMetricsFile},
	} {
		_, docs := renderOpts(t, o)
		if _, err := env.CreateNamespace(ctx, "istio-system", nil); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		var podTemplates []corev1.PodTemplateSpec
		for _, d := range docs {
			if d.GetKind() == "Namespace" {
				// Really created: dry-run objects in it need it to exist.
				if err := applyDoc(ctx, env, d, false); err != nil {
					t.Fatalf("Namespace: %v", err)
				}
				continue
			}
			if err := applyDoc(ctx, env, d, true); err != nil {
				t.Errorf("%s %s/%s rejected: %v", d.GetKind(), d.GetNamespace(), d.GetName(), err)
			}
			if d.GetKind() == "CronJob" {
				js, _ := d.MarshalJSON()
				var c batchv1.CronJob
				if err := yaml.Unmarshal(js, &c); err != nil {
					t.Fatal(err)
				}
				podTemplates = append(podTemplates, c.Spec.JobTemplate.Spec.Template)
			}
		}
		// Creating a CronJob admits no pod: create the pod itself (dry
		// run) in a namespace that enforces "restricted".
		restricted := fmt.Sprintf("%s-restricted-%d", ns, n)
		if _, err := env.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: restricted, Labels: map[string]string{
			"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest",
		}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		for i, tpl := range podTemplates {
			pod := &corev1.Pod{ObjectMeta: tpl.ObjectMeta, Spec: tpl.Spec}
			pod.Name, pod.Namespace = "scan-"+string(rune('a'+i)), restricted
			if _, err := env.Client.CoreV1().Pods(restricted).Create(ctx, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("the scan's pod is not admitted under restricted: %v", err)
			}
			// Control: the same pod with one restricted rule broken is
			// refused, so the admission above was a real check.
			bad := pod.DeepCopy()
			bad.Spec.Containers[0].SecurityContext.AllowPrivilegeEscalation = nil
			_, err := env.Client.CoreV1().Pods(restricted).Create(ctx, bad, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil || !strings.Contains(err.Error(), "PodSecurity") {
				t.Errorf("control pod without allowPrivilegeEscalation=false: err = %v, want a PodSecurity rejection", err)
			}
		}
		if len(podTemplates) == 0 {
			t.Errorf("no CronJob in %+v", o)
		}
	}
}

// applyDoc creates one document with the typed client of its kind.
func applyDoc(ctx context.Context, env *testenv.Env, u *unstructured.Unstructured, dryRun bool) error {
	opts := metav1.CreateOptions{}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	js, err := u.MarshalJSON()
	if err != nil {
		return err
	}
	decode := func(into runtime.Object) error { return yaml.UnmarshalStrict(js, into) }
	k := env.Client
	ns := u.GetNamespace()
	var c kubernetes.Interface = k
	switch u.GetKind() {
	case "Namespace":
		var o corev1.Namespace
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.CoreV1().Namespaces().Create(ctx, &o, opts)
		if apierrors.IsAlreadyExists(err) {
			err = nil
		}
	case "ServiceAccount":
		var o corev1.ServiceAccount
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.CoreV1().ServiceAccounts(ns).Create(ctx, &o, opts)
	case "ConfigMap":
		var o corev1.ConfigMap
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.CoreV1().ConfigMaps(ns).Create(ctx, &o, opts)
	case "ClusterRole":
		var o rbacv1.ClusterRole
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.RbacV1().ClusterRoles().Create(ctx, &o, opts)
	case "ClusterRoleBinding":
		var o rbacv1.ClusterRoleBinding
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, &o, opts)
	case "Role":
		var o rbacv1.Role
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.RbacV1().Roles(ns).Create(ctx, &o, opts)
	case "RoleBinding":
		var o rbacv1.RoleBinding
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.RbacV1().RoleBindings(ns).Create(ctx, &o, opts)
	case "CronJob":
		var o batchv1.CronJob
		if err := decode(&o); err != nil {
			return err
		}
		_, err = c.BatchV1().CronJobs(ns).Create(ctx, &o, opts)
	default:
		return errors.New("no client for kind " + u.GetKind())
	}
	return err
}

// TestJobManifestsRBACSuffices applies the manifests for real and acts as
// the scan's ServiceAccount: it can read what the scan reads, write its
// report (and shards) with get+update only, and nothing else.
func TestJobManifestsRBACSuffices(t *testing.T) {
	ns := "unused"
	env := newEnv(t, &ns)
	ctx := ctxFor(t)
	o := JobOptions{Namespace: "sf-rbac", Image: "img:1", Outside: true}
	_, docs := renderOpts(t, o)
	if _, err := env.CreateNamespace(ctx, "istio-system", nil); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	for _, d := range docs {
		if err := applyDoc(ctx, env, d, false); err != nil {
			t.Fatalf("%s %s: %v", d.GetKind(), d.GetName(), err)
		}
	}
	kc, err := env.KubeconfigFor("sf-rbac", ServiceAccountName)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	for _, name := range []string{DefaultReportName, DefaultReportName + OutsideSuffix} {
		res, err := (ConfigMapSink{Client: sa, Namespace: "sf-rbac", Name: name}).Publish(ctx, smallReport("by the job"), []byte("# md\n"), time.Now())
		if err != nil || res.Created {
			t.Fatalf("%s: the job's ServiceAccount cannot publish: %+v %v", name, res, err)
		}
	}
	sh := NewShard("job-1", 0, 2, smallReport("shard"), nil, time.Now())
	if _, err := (ConfigMapSink{Client: sa, Namespace: "sf-rbac", Name: DefaultReportName}).PublishShard(ctx, sh, time.Now()); err != nil {
		t.Fatalf("shard write: %v", err)
	}
	_, err = (ConfigMapSink{Client: sa, Namespace: "sf-rbac", Name: "another"}).Publish(ctx, smallReport("x"), nil, time.Now())
	if !apierrors.IsForbidden(err) {
		t.Errorf("writing another ConfigMap: %v, want forbidden", err)
	}
	if _, err := sa.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods cluster-wide: %v", err)
	}
	if _, err := sa.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list endpointslices: %v", err)
	}
	if _, err := sa.CoreV1().ConfigMaps("istio-system").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list the mesh config: %v", err)
	}
	// Without --direct: no port-forward anywhere.
	pf := vantage.DirectProbe{Namespace: "sf-rbac", Pod: "nowhere", Ports: map[int32][]target.TargetKey{80: nil}}
	if denied, err := vantage.PortForwardDenied(ctx, sa, []string{"sf-rbac", "kube-system"}); err != nil || len(denied) != 2 {
		t.Errorf("without --direct: port-forward denied in %v (%v), want both namespaces", denied, err)
	}
	if _, err := vantage.RunDirect(ctx, cfg, sa, pf, probe.Options{}); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("without --direct: port-forward: %v, want forbidden", err)
	}
	// --direct adds the port-forward role, and it is enough for client-go's
	// port-forward (WebSocket, then SPDY) as the scan makes it: the API
	// server gets as far as looking for the pod.
	o.Direct = true
	_, withDirect := renderOpts(t, o)
	added := 0
	for _, d := range withDirect {
		if strings.HasPrefix(d.GetName(), PortForwardRoleName) {
			if err := applyDoc(ctx, env, d, false); err != nil {
				t.Fatalf("%s %s: %v", d.GetKind(), d.GetName(), err)
			}
			added++
		}
	}
	if added != 2 {
		t.Fatalf("--direct added %d objects, want a ClusterRole and its binding", added)
	}
	// The API server's RBAC authorizer learns of the new binding from its
	// own informer, a moment after the create returns: ask until it does
	// (the only way to observe it), or fail.
	var denied []string
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		denied, err = vantage.PortForwardDenied(ctx, sa, []string{"sf-rbac"})
		return err == nil && len(denied) == 0, err
	})
	if err != nil {
		t.Errorf("with --direct: port-forward denied in %v (%v)", denied, err)
	}
	if _, err := vantage.RunDirect(ctx, cfg, sa, pf, probe.Options{}); err == nil || !strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "forbidden") {
		t.Errorf("with --direct: port-forward to a missing pod: %v, want not found", err)
	}
	for what, err := range map[string]error{
		"list secrets":               func() error { _, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); return err }(),
		"list configmaps in sf-rbac": func() error { _, err := sa.CoreV1().ConfigMaps("sf-rbac").List(ctx, metav1.ListOptions{}); return err }(),
		"delete the report":          sa.CoreV1().ConfigMaps("sf-rbac").Delete(ctx, DefaultReportName, metav1.DeleteOptions{}),
		"delete a pod":               sa.CoreV1().Pods("sf-rbac").Delete(ctx, "x", metav1.DeleteOptions{}),
		"list configmaps in kube-system": func() error {
			_, err := sa.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{})
			return err
		}(),
	} {
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want forbidden", what, err)
		}
	}
}
