package world

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// TestPodAPIAccess: a pod running as a non-root uid finds its
// service-account token, CA and namespace where client libraries look,
// reaches the API server through the kubernetes Service's ClusterIP and is
// authenticated as its ServiceAccount; an emptyDir is shared with the node
// (PodVolumeDir) and private to the container (nothing shows on the host);
// automountServiceAccountToken: false means no token.
func TestPodAPIAccess(t *testing.T) {
	requireWorld(t)
	t.Parallel()
	for _, tool := range []string{"curl", "unshare", "setpriv"} {
		if _, err := lookPath(tool); err != nil {
			t.Fatalf("%s: %v (hack/test-deps.sh installs it)", tool, err)
		}
	}
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	apiServer, ca, err := apiAccess(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	node, err := StartNode(context.Background(), NodeOptions{
		Client: env.Client, StateDir: t.TempDir(), Resolver: HostCommandResolver(), Logf: t.Logf,
		APIServer: apiServer, ClusterCA: ca,
	})
	if err != nil {
		t.Fatalf("StartNode: %v", err)
	}
	t.Cleanup(func() { node.Stop() })
	ctx := context.Background()
	cs := env.Client
	if _, err := env.CreateNamespace(ctx, "apiaccess", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts("apiaccess").Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "scanner"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The mount target is created on the host (empty) if missing; the
	// mount itself must stay inside the container's namespace.
	const mountPath = "/var/run/serverfirst-world-test"
	_, statErr := os.Stat(mountPath)
	preexisting := statErr == nil
	t.Cleanup(func() {
		if !preexisting {
			os.Remove(mountPath)
		}
	})

	script := `set -eu
SA=/var/run/secrets/kubernetes.io/serviceaccount
echo "namespace=$(cat $SA/namespace) uid=$(id -u)"
echo "mode=$(cat /etc/serverfirst-world-test/mode) projected=$(cat /etc/serverfirst-world-test-projected/conf/mode) pod=$(cat /etc/serverfirst-world-test-projected/pod)"
test ! -e /etc/serverfirst-world-test-projected/secret
curl -sS --fail --cacert $SA/ca.crt -H "Authorization: Bearer $(cat $SA/token)" \
  -H 'Content-Type: application/json' -X POST \
  -d '{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}' \
  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/apis/authentication.k8s.io/v1/selfsubjectreviews" \
  > ` + mountPath + `/review.json
`
	if _, err := cs.CoreV1().ConfigMaps("apiaccess").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"}, Data: map[string]string{"mode": "strict"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"/etc/serverfirst-world-test", "/etc/serverfirst-world-test-projected"} {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			t.Cleanup(func() { os.Remove(dir) })
		}
	}
	uid := int64(65532)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "client", Namespace: "apiaccess"},
		Spec: corev1.PodSpec{
			RestartPolicy:      corev1.RestartPolicyNever,
			ServiceAccountName: "scanner",
			SecurityContext:    &corev1.PodSecurityContext{RunAsUser: &uid, RunAsGroup: &uid},
			Volumes: []corev1.Volume{
				{Name: "out", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
				{Name: "settings", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
					LocalObjectReference: corev1.LocalObjectReference{Name: "settings"}}}},
				{Name: "mixed", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "settings"},
						Items: []corev1.KeyToPath{{Key: "mode", Path: "conf/mode"}}}},
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "absent"}, Optional: ptr.To(true),
						Items: []corev1.KeyToPath{{Key: "k", Path: "secret"}}}},
					{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
						{Path: "pod", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
				}}}},
			},
			Containers: []corev1.Container{{Name: "main", Image: "debian:12", Command: []string{"sh", "-c", script},
				VolumeMounts: []corev1.VolumeMount{
					{Name: "out", MountPath: mountPath},
					{Name: "settings", MountPath: "/etc/serverfirst-world-test", ReadOnly: true},
					{Name: "mixed", MountPath: "/etc/serverfirst-world-test-projected", ReadOnly: true},
				}}},
		},
	}
	noToken := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "no-token", Namespace: "apiaccess"},
		Spec: corev1.PodSpec{
			RestartPolicy:                corev1.RestartPolicyNever,
			ServiceAccountName:           "scanner",
			AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{sh("main",
				`test ! -e /var/run/secrets/kubernetes.io/serviceaccount/token && echo "no token; host=$KUBERNETES_SERVICE_HOST"`)},
		},
	}
	for _, p := range []*corev1.Pod{pod, noToken} {
		if _, err := cs.CoreV1().Pods("apiaccess").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	terminal := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	for _, name := range []string{"client", "no-token"} {
		got := waitPod(t, cs, "apiaccess", name, time.Minute, terminal)
		logs := podLogs(t, cs, "apiaccess", name, "main")
		if got.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("pod %s: %s\n%s", name, got.Status.Phase, logs)
		}
		t.Logf("%s: %s", name, strings.TrimSpace(logs))
		switch name {
		case "client":
			if !strings.Contains(logs, "namespace=apiaccess uid=65532") {
				t.Errorf("client logs: want the namespace file and uid 65532, got %q", logs)
			}
			if !strings.Contains(logs, "mode=strict projected=strict pod=client") {
				t.Errorf("client logs: want the configMap and projected files, got %q", logs)
			}
		case "no-token":
			if !strings.Contains(logs, "no token; host=10.96.0.1") {
				t.Errorf("no-token logs: %q", logs)
			}
		}
	}

	dir := node.PodVolumeDir("apiaccess", "client", "out")
	if dir == "" {
		t.Fatal("PodVolumeDir: the emptyDir is unknown")
	}
	review, err := os.ReadFile(filepath.Join(dir, "review.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ssr authenticationv1.SelfSubjectReview
	if err := json.Unmarshal(review, &ssr); err != nil {
		t.Fatalf("SelfSubjectReview: %v\n%s", err, review)
	}
	if got := ssr.Status.UserInfo.Username; got != "system:serviceaccount:apiaccess:scanner" {
		t.Errorf("SelfSubjectReview: want the pod's ServiceAccount, got %q", got)
	}
	if got := ssr.Status.UserInfo.Extra["authentication.kubernetes.io/pod-name"]; len(got) != 1 || got[0] != "client" {
		t.Errorf("the token is not bound to the pod: extra %v", ssr.Status.UserInfo.Extra)
	}
	fi, err := os.Stat(filepath.Join(dir, "review.json"))
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); !ok || st.Uid != 65532 {
		t.Errorf("review.json owner: want uid 65532, got %+v", fi.Sys())
	}
	if _, err := os.Stat(filepath.Join(mountPath, "review.json")); !os.IsNotExist(err) {
		t.Errorf("the container's mount leaked to the host: stat %s/review.json: %v", mountPath, err)
	}
	if _, err := os.Stat(filepath.Join(ServiceAccountDir, "token")); !os.IsNotExist(err) {
		t.Errorf("a token showed up on the host: %v", err)
	}
}
