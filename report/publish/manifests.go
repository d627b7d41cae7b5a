package publish

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// Names of the objects `job manifests` prints. The ServiceAccount, reader
// ClusterRole and mesh-config Role are those of deploy/rbac.yaml (a test
// keeps the rules identical), so applying both files is harmless.
const (
	DefaultJobNamespace = "serverfirst"
	DefaultSchedule     = "*/30 * * * *"
	DefaultReportName   = "serverfirst-report"
	DefaultMetricsFile  = "/var/run/serverfirst/serverfirst.prom"
	ServiceAccountName  = "serverfirst"
	ReaderRoleName      = "serverfirst-reader"
	MeshConfigRoleName  = "serverfirst-meshconfig-reader"
	PortForwardRoleName = "serverfirst-portforward"
	WriterRoleName      = "serverfirst-report-writer"
	ScanCronJobName     = "serverfirst-scan"
	OutsideCronJobName  = "serverfirst-scan-outside"
	// OutsideSuffix names the outside-client job's own report ConfigMap:
	// two jobs writing one report would overwrite each other's history.
	OutsideSuffix = "-outside"
	// RunIDEnv carries the Job's name into the pod: shards of one Job are
	// one run.
	RunIDEnv = "SERVERFIRST_RUN_ID"
	// JobNameLabel is set on a Job's pods by the Job controller.
	JobNameLabel = "batch.kubernetes.io/job-name"
	// ScanUID is the non-root user the scan runs as (distroless nonroot).
	ScanUID = 65532
)

// ReaderRules are the read-only rules of ClusterRole serverfirst-reader:
// everything cluster.Load lists, get and list only.
func ReaderRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "destinationrules", "sidecars"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: []string{"get", "list"}},
	}
}

// MeshConfigRules are the rules of Role serverfirst-meshconfig-reader in
// the Istio namespace (the mesh ConfigMap).
func MeshConfigRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list"}}}
}

// PortForwardRules are the rules of ClusterRole serverfirst-portforward,
// which `job manifests --direct` adds for `scan --direct`. The direct probe
// (cluster/vantage.RunDirect) calls only the pods/portforward subresource:
// client-go tries a WebSocket (GET, authorized as "get", and since
// Kubernetes 1.35 also checked for "create") and falls back to SPDY (POST,
// "create"). With "create" alone it works after a refused WebSocket
// attempt per pod; "get" spares that and gives no more power. The pods
// rules repeat serverfirst-reader's so the role stands alone.
func PortForwardRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
		{APIGroups: []string{""}, Resources: []string{"pods/portforward"}, Verbs: []string{"get", "create"}},
	}
}

// JobOptions shape the scheduled scan.
type JobOptions struct {
	Namespace string
	Schedule  string
	// Shards > 1 makes each Job Indexed with that many pods, each probing
	// its share of the targets; the last one to finish merges.
	Shards int
	Image  string
	// Outside adds a second CronJob without a sidecar (outside-client
	// evidence) writing to ReportName+"-outside".
	Outside bool
	// ReportName is the ConfigMap (in Namespace) the report goes to.
	ReportName     string
	IstioNamespace string
	MetricsFile    string
	Pushgateway    string
	// Direct adds the port-forward ClusterRole and runs the scans with
	// --direct: the direct half of a DEADLOCK proof.
	Direct bool
	// ActiveDeadline bounds one Job; 0 means 20 minutes.
	ActiveDeadline time.Duration
}

func (o *JobOptions) defaults() error {
	o.Namespace = cmp.Or(o.Namespace, DefaultJobNamespace)
	o.Schedule = cmp.Or(o.Schedule, DefaultSchedule)
	o.ReportName = cmp.Or(o.ReportName, DefaultReportName)
	o.IstioNamespace = cmp.Or(o.IstioNamespace, "istio-system")
	if o.ActiveDeadline <= 0 {
		o.ActiveDeadline = 20 * time.Minute
	}
	if o.Shards < 1 {
		o.Shards = 1
	}
	if o.Image == "" {
		return fmt.Errorf("job manifests: an image is required")
	}
	if f := strings.Fields(o.Schedule); len(f) != 5 && !strings.HasPrefix(o.Schedule, "@") {
		return fmt.Errorf("--schedule %q: want a cron expression of 5 fields, e.g. %q", o.Schedule, DefaultSchedule)
	}
	if o.Shards > 100 {
		return fmt.Errorf("--shards %d: at most 100", o.Shards)
	}
	if strings.Contains(o.ReportName, "/") {
		return fmt.Errorf("--report-configmap %q: a name only; it lives in --namespace", o.ReportName)
	}
	return nil
}

// Manifest is one document with the comment printed above it.
type Manifest struct {
	Comment string
	Object  runtime.Object
}

func labels(extra map[string]string) map[string]string {
	m := map[string]string{LabelName: LabelValue}
	maps.Copy(m, extra)
	return m
}

// nameFor keeps the shared objects' names of deploy/rbac.yaml for the
// default namespace and suffixes them otherwise, so two installs in two
// namespaces do not take each other's bindings.
func (o JobOptions) nameFor(base string) string {
	if o.Namespace == DefaultJobNamespace {
		return base
	}
	return base + "-" + o.Namespace
}

// JobManifests builds every object of the scheduled scan, in apply order.
func JobManifests(o JobOptions) ([]Manifest, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	sa := rbacv1.Subject{Kind: "ServiceAccount", Name: ServiceAccountName, Namespace: o.Namespace}
	reports := []string{o.ReportName}
	if o.Outside {
		reports = append(reports, o.ReportName+OutsideSuffix)
	}
	var out []Manifest
	add := func(comment string, obj runtime.Object) { out = append(out, Manifest{comment, obj}) }

	add(`The scan's namespace. Its own pods meet PodSecurity "restricted"; a pod with an
injected sidecar does only with Istio CNI (istio-init needs NET_ADMIN), so
"restricted" is warned and audited here, not enforced: add
pod-security.kubernetes.io/enforce: restricted when the mesh uses Istio CNI.`,
		&corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: labels(map[string]string{
				"pod-security.kubernetes.io/warn":  "restricted",
				"pod-security.kubernetes.io/audit": "restricted",
			})}})
	add("The identity of the scan.", &corev1.ServiceAccount{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: metav1.ObjectMeta{Name: ServiceAccountName, Namespace: o.Namespace, Labels: labels(nil)}})
	// A ClusterRole and its binding to the scan's ServiceAccount.
	addClusterRole := func(comment, name string, rules []rbacv1.PolicyRule) {
		add(comment, &rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(nil)}, Rules: rules})
		add("", &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: o.nameFor(name), Labels: labels(nil)},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{sa}})
	}
	addClusterRole("Read-only access to what the scan reads (same rules as deploy/rbac.yaml).", ReaderRoleName, ReaderRules())
	if o.Direct {
		addClusterRole(`--direct: port-forward into the pods behind Services and listen on their
loopback, past the sidecar: does the server speak first at all? That is the
direct half of a DEADLOCK; without it a server that is silent through the
mesh is only AT-RISK. A powerful right: it reaches any port of any pod,
around NetworkPolicy and mTLS. A RoleBinding per namespace instead of the
ClusterRoleBinding narrows it (the scan warns where it is missing).`, PortForwardRoleName, PortForwardRules())
	}
	// A Role and its binding (named binding) to the scan's ServiceAccount.
	addRole := func(comment, name, namespace, binding string, rules []rbacv1.PolicyRule) {
		add(comment, &rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels(nil)}, Rules: rules})
		add("", &rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: binding, Namespace: namespace, Labels: labels(nil)},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
			Subjects:   []rbacv1.Subject{sa}})
	}
	addRole(fmt.Sprintf(`The mesh config (ConfigMap istio or istio-<rev>) in %s. Without it the
scan assumes Istio's defaults and says so.`, o.IstioNamespace), MeshConfigRoleName, o.IstioNamespace, o.nameFor(MeshConfigRoleName), MeshConfigRules())
	for _, name := range reports {
		add(`The report: report.json, report.md, previous.json, updated (and note when
something had to give to fit 1 MiB). Created here, empty, so the scan needs
only get and update on it: RBAC cannot limit "create" by name.`, &corev1.ConfigMap{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels(nil)}})
	}
	addRole("Write access to the report ConfigMap(s) only.", WriterRoleName, o.Namespace, WriterRoleName,
		[]rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, ResourceNames: reports, Verbs: []string{"get", "update"}}})
	add(`The scan from a client with a sidecar (mesh-to-mesh and mesh-to-external
evidence). The proxy starts before the scan, and the scan stops it when done
(POST /quitquitquit) so the Job completes.`, o.cronJob(ScanCronJobName, o.ReportName, true))
	if o.Outside {
		add(`The scan from a client without a sidecar (external-to-mesh evidence:
PERMISSIVE inbound ports that wait for client bytes).`, o.cronJob(OutsideCronJobName, o.ReportName+OutsideSuffix, false))
	}
	return out, nil
}

func (o JobOptions) cronJob(name, reportName string, mesh bool) *batchv1.CronJob {
	args := []string{"scan", "--all-namespaces", "--in-cluster", "--vantage", "self"}
	if o.Direct {
		args = append(args, "--direct")
	}
	args = append(args, "--report-configmap", o.Namespace+"/"+reportName)
	if o.IstioNamespace != "istio-system" {
		args = append(args, "--istio-namespace", o.IstioNamespace)
	}
	if !mesh {
		args = append(args, "--self-in-mesh", "false")
	}
	if o.Shards > 1 {
		args = append(args, "--shards", strconv.Itoa(o.Shards))
	}
	if o.MetricsFile != "" {
		args = append(args, "--metrics-file", o.MetricsFile)
	}
	if o.Pushgateway != "" {
		args = append(args, "--pushgateway", o.Pushgateway)
	}
	inject := "false"
	podAnnotations := map[string]string{}
	if mesh {
		inject = "true"
		podAnnotations["proxy.istio.io/config"] = `{"holdApplicationUntilProxyStarts": true}`
		// Where Istio runs the proxy as a native sidecar, the Job
		// completes on its own; /quitquitquit covers the rest.
		podAnnotations["sidecar.istio.io/nativeSidecar"] = "true"
	}
	component := "scan"
	if !mesh {
		component = "scan-outside"
	}
	podLabels := labels(map[string]string{"app.kubernetes.io/component": component, "sidecar.istio.io/inject": inject})
	t, f := true, false
	uid := int64(ScanUID)
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if o.MetricsFile != "" {
		dir := cmp.Or(o.MetricsFile[:strings.LastIndexByte(o.MetricsFile, '/')+1], "/")
		volumes = append(volumes, corev1.Volume{Name: "metrics", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr.To(resource.MustParse("16Mi"))}}})
		mounts = append(mounts, corev1.VolumeMount{Name: "metrics", MountPath: strings.TrimSuffix(dir, "/")})
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
		Spec: corev1.PodSpec{
			ServiceAccountName:           ServiceAccountName,
			AutomountServiceAccountToken: &t,
			RestartPolicy:                corev1.RestartPolicyNever,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name:  "scan",
				Image: o.Image,
				Args:  args,
				Env: []corev1.EnvVar{
					fieldEnv("POD_NAME", "metadata.name"),
					fieldEnv("POD_NAMESPACE", "metadata.namespace"),
					fieldEnv(RunIDEnv, "metadata.labels['"+JobNameLabel+"']"),
				},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("512Mi")},
				},
				SecurityContext: &corev1.SecurityContext{
					RunAsNonRoot: &t, RunAsUser: &uid, RunAsGroup: &uid,
					AllowPrivilegeEscalation: &f, ReadOnlyRootFilesystem: &t,
					Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
					SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
				},
				VolumeMounts: mounts,
			}},
			Volumes: volumes,
		},
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	deadline := int64(o.ActiveDeadline.Seconds())
	job := batchv1.JobSpec{
		BackoffLimit:          ptr.To(int32(1)),
		ActiveDeadlineSeconds: &deadline,
		Template:              pod,
	}
	if o.Shards > 1 {
		n := int32(o.Shards)
		mode := batchv1.IndexedCompletion
		job.CompletionMode, job.Completions, job.Parallelism = &mode, &n, &n
	}
	return &batchv1.CronJob{
		TypeMeta:   metav1.TypeMeta{APIVersion: "batch/v1", Kind: "CronJob"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels(map[string]string{"app.kubernetes.io/component": component})},
		Spec: batchv1.CronJobSpec{
			Schedule:                   o.Schedule,
			ConcurrencyPolicy:          batchv1.ForbidConcurrent,
			StartingDeadlineSeconds:    ptr.To(int64(300)),
			SuccessfulJobsHistoryLimit: ptr.To(int32(3)),
			FailedJobsHistoryLimit:     ptr.To(int32(3)),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(map[string]string{"app.kubernetes.io/component": component})},
				Spec:       job,
			},
		},
	}
}

// RenderJobManifests writes the manifests as one multi-document YAML
// stream for `kubectl apply -f -`.
func RenderJobManifests(w io.Writer, o JobOptions, header string) error {
	ms, err := JobManifests(o)
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
		if line != "" {
			b.WriteString("# " + line + "\n")
		}
	}
	for i, m := range ms {
		if i > 0 || header != "" {
			b.WriteString("---\n")
		}
		if m.Comment != "" {
			for _, line := range strings.Split(m.Comment, "\n") {
				b.WriteString("# " + line + "\n")
			}
		}
		y, err := cleanYAML(m.Object)
		if err != nil {
			return err
		}
		b.Write(y)
	}
	_, err = io.WriteString(w, b.String())
	return err
}

// cleanYAML drops what typed objects marshal but nobody writes
// (creationTimestamp: null, status: {}, empty resources).
func cleanYAML(obj runtime.Object) ([]byte, error) {
	js, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	prune(m)
	return yaml.Marshal(m)
}

func prune(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if val == nil || prune(val) {
				delete(x, k)
			}
		}
		return len(x) == 0
	case []any:
		for _, e := range x {
			prune(e)
		}
		return false
	}
	return false
}
