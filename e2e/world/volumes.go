package world

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// ServiceAccountDir is where the kubelet mounts a pod's API credentials
// (token, ca.crt, namespace); client-go's rest.InClusterConfig reads them
// from there.
const ServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// automountVolume names the volume the ServiceAccount admission plugin
// would have added (testenv disables that plugin; the node adds the volume
// itself when it runs the pod).
const automountVolume = "kube-api-access-world"

// bindMount is one directory the node prepared, seen by a container at
// target through a private mount namespace.
type bindMount struct {
	source, target string
	readOnly       bool
}

// errUnsupportedVolume: the node cannot provide this kind of volume; the
// container runs without the mount (logged), rather than not at all.
var errUnsupportedVolume = errors.New("unsupported volume type")

// containerMounts prepares every volume c mounts (once per pod, under
// w.dir/volumes, so containers share them and restarts keep them) and
// returns the bind mounts, service-account automount included.
func (w *podWorker) containerMounts(pod *corev1.Pod, c *corev1.Container) ([]bindMount, error) {
	ctx, cancel := context.WithTimeout(w.node.ctx, 10*time.Second)
	defer cancel()
	vols := map[string]*corev1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var out []bindMount
	hasSA := false
	for _, vm := range c.VolumeMounts {
		v := vols[vm.Name]
		if v == nil {
			return nil, fmt.Errorf("volume mount %q: no such volume in the pod", vm.Name)
		}
		dir, err := w.volume(ctx, pod, v)
		if errors.Is(err, errUnsupportedVolume) {
			w.logf("container %s: volume %q: %v: not mounted", c.Name, vm.Name, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("volume %q: %w", vm.Name, err)
		}
		src := dir
		if vm.SubPath != "" {
			if !filepath.IsLocal(vm.SubPath) {
				return nil, fmt.Errorf("volume mount %q: subPath %q leaves the volume", vm.Name, vm.SubPath)
			}
			src = filepath.Join(dir, vm.SubPath)
			if err := os.MkdirAll(src, 0o777); err != nil {
				return nil, err
			}
		}
		if !filepath.IsAbs(vm.MountPath) {
			return nil, fmt.Errorf("volume mount %q: mountPath %q is not absolute", vm.Name, vm.MountPath)
		}
		target := filepath.Clean(vm.MountPath)
		if target == ServiceAccountDir || strings.HasPrefix(ServiceAccountDir, target+"/") {
			hasSA = true
		}
		out = append(out, bindMount{source: src, target: target, readOnly: vm.ReadOnly})
	}
	if !hasSA {
		dir, err := w.automountDir(ctx, pod)
		if err != nil {
			return nil, err
		}
		if dir != "" {
			out = append(out, bindMount{source: dir, target: ServiceAccountDir, readOnly: true})
		}
	}
	return out, nil
}

// volume returns the prepared directory of v, preparing it on first use.
func (w *podWorker) volume(ctx context.Context, pod *corev1.Pod, v *corev1.Volume) (string, error) {
	if dir, ok := w.preparedVolume(v.Name); ok {
		return dir, nil
	}
	dir := filepath.Join(w.dir, "volumes", v.Name)
	files := map[string][]byte{}
	var err error
	switch {
	case v.EmptyDir != nil:
		// The kubelet makes emptyDirs world-writable: any uid may use them.
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return "", err
		}
		if err := os.Chmod(dir, 0o777); err != nil {
			return "", err
		}
	case v.ConfigMap != nil:
		err = w.configMapFiles(ctx, pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, files)
	case v.Secret != nil:
		err = w.secretFiles(ctx, pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, files)
	case v.DownwardAPI != nil:
		err = downwardFiles(pod, v.DownwardAPI.Items, files)
	case v.Projected != nil:
	sources:
		for _, s := range v.Projected.Sources {
			switch {
			case s.ServiceAccountToken != nil:
				var tok string
				if tok, err = w.token(ctx, pod, s.ServiceAccountToken.Audience, s.ServiceAccountToken.ExpirationSeconds); err == nil {
					files[s.ServiceAccountToken.Path] = []byte(tok)
				}
			case s.ConfigMap != nil:
				err = w.configMapFiles(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, files)
			case s.Secret != nil:
				err = w.secretFiles(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, files)
			case s.DownwardAPI != nil:
				err = downwardFiles(pod, s.DownwardAPI.Items, files)
			default:
				err = errUnsupportedVolume
			}
			if err != nil {
				break sources
			}
		}
	default:
		err = errUnsupportedVolume
	}
	if err != nil {
		return "", err
	}
	if v.EmptyDir == nil {
		if err := writeVolumeFiles(dir, files); err != nil {
			return "", err
		}
	}
	w.rememberVolume(v.Name, dir)
	return dir, nil
}

// preparedVolume is the directory of a volume prepared earlier for this pod.
func (w *podWorker) preparedVolume(name string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	dir, ok := w.volumes[name]
	return dir, ok
}

func (w *podWorker) rememberVolume(name, dir string) {
	w.mu.Lock()
	w.volumes[name] = dir
	w.mu.Unlock()
}

// automountDir is the service-account volume the admission plugin would
// add: "" when the node gives pods no API access, the pod names no
// ServiceAccount, the pod or its ServiceAccount opts out, or the
// ServiceAccount does not exist (the plugin would have refused such a
// pod; here it simply gets no token).
func (w *podWorker) automountDir(ctx context.Context, pod *corev1.Pod) (string, error) {
	// Without the admission plugin a pod that names no ServiceAccount
	// keeps an empty serviceAccountName, and the API server binds tokens
	// only to a pod's own ServiceAccount: such pods get no token.
	if w.node.opts.APIServer == "" || pod.Spec.ServiceAccountName == "" {
		return "", nil
	}
	if dir, ok := w.preparedVolume(automountVolume); ok {
		return dir, nil
	}
	saName := serviceAccountName(pod)
	sa, err := w.node.client.CoreV1().ServiceAccounts(pod.Namespace).Get(ctx, saName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		w.logf("service account %q does not exist: no token mounted", saName)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("service account %q: %w", saName, err)
	}
	automount := true
	if sa.AutomountServiceAccountToken != nil {
		automount = *sa.AutomountServiceAccountToken
	}
	if pod.Spec.AutomountServiceAccountToken != nil {
		automount = *pod.Spec.AutomountServiceAccountToken
	}
	if !automount {
		return "", nil
	}
	// The kubelet asks for 3607 s: an hour plus a margin that marks the
	// token as one the kubelet refreshes.
	tok, err := w.token(ctx, pod, "", ptr.To(int64(3607)))
	if err != nil {
		return "", err
	}
	dir := filepath.Join(w.dir, "volumes", automountVolume)
	if err := writeVolumeFiles(dir, map[string][]byte{
		"token":     []byte(tok),
		"ca.crt":    w.node.opts.ClusterCA,
		"namespace": []byte(pod.Namespace),
	}); err != nil {
		return "", err
	}
	w.rememberVolume(automountVolume, dir)
	return dir, nil
}

func serviceAccountName(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}

// token is a TokenRequest bound to the pod, as the kubelet makes for
// projected serviceAccountToken sources ("" audience = the API server's).
func (w *podWorker) token(ctx context.Context, pod *corev1.Pod, audience string, expiration *int64) (string, error) {
	tr := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: expiration,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	saName := serviceAccountName(pod)
	out, err := w.node.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, saName, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for service account %q: %w", saName, err)
	}
	return out.Status.Token, nil
}

func (w *podWorker) configMapFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, files map[string][]byte) error {
	cm, err := w.node.client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	data := map[string][]byte{}
	if err == nil {
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			data[k] = v
		}
	}
	return objectFiles("configmap "+name, data, err, items, optional, files)
}

func (w *podWorker) secretFiles(ctx context.Context, ns, name string, items []corev1.KeyToPath, optional *bool, files map[string][]byte) error {
	s, err := w.node.client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	var data map[string][]byte
	if err == nil {
		data = s.Data
	}
	return objectFiles("secret "+name, data, err, items, optional, files)
}

// objectFiles turns a ConfigMap's or Secret's data (or the error reading
// it) into volume files: a missing optional object gives none, a missing
// required one blocks the container as it does under the kubelet.
func objectFiles(what string, data map[string][]byte, err error, items []corev1.KeyToPath, optional *bool, files map[string][]byte) error {
	if apierrors.IsNotFound(err) && optional != nil && *optional {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return keyFiles(what, data, items, files)
}

// keyFiles maps keys to file paths: every key, or only the listed items.
func keyFiles(what string, data map[string][]byte, items []corev1.KeyToPath, files map[string][]byte) error {
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			return fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = v
	}
	return nil
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, files map[string][]byte) error {
	for _, it := range items {
		if it.FieldRef == nil {
			return fmt.Errorf("downward API file %q: only fieldRef: %w", it.Path, errUnsupportedVolume)
		}
		val := fieldRef(pod, it.FieldRef.FieldPath, pod.Status.PodIP)
		if it.FieldRef.FieldPath == "metadata.labels" || it.FieldRef.FieldPath == "metadata.annotations" {
			m := pod.Labels
			if it.FieldRef.FieldPath == "metadata.annotations" {
				m = pod.Annotations
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var b strings.Builder
			for _, k := range keys {
				fmt.Fprintf(&b, "%s=%q\n", k, m[k])
			}
			val = b.String()
		}
		files[it.Path] = []byte(val)
	}
	return nil
}

// writeVolumeFiles writes a read-only volume's files, readable by any uid
// (the node does not apply fsGroup or defaultMode).
func writeVolumeFiles(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for rel, data := range files {
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("volume file %q leaves the volume", rel)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// mountScript runs as root in a fresh private mount namespace (unshare
// --mount): it bind-mounts each (source, target, rw|ro) triple, then
// execs the rest of its arguments. Targets that do not exist are created
// on the host's file system (an empty directory; the mount itself is
// private to the container).
const mountScript = `set -e
while [ "$1" != "--" ]; do
	mkdir -p "$2"
	mount --bind "$1" "$2"
	if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
	shift 3
done
shift
exec "$@"`

// withMounts wraps path+args so the container sees mounts: unshare makes a
// private mount namespace (no mount reaches the host), sh binds, setpriv
// drops to uid/gid (nil = stay root) and keeps the parent-death signal
// that the uid change would otherwise clear.
func withMounts(mounts []bindMount, path string, args []string, uid, gid *uint32) (string, []string, error) {
	unshare, err := lookPath("unshare")
	if err != nil {
		return "", nil, err
	}
	sh, err := lookPath("sh")
	if err != nil {
		return "", nil, err
	}
	argv := []string{"--mount", "--propagation", "private", "--", sh, "-c", mountScript, "sh"}
	for _, m := range mounts {
		mode := "rw"
		if m.readOnly {
			mode = "ro"
		}
		argv = append(argv, m.source, m.target, mode)
	}
	argv = append(argv, "--")
	if uid != nil || gid != nil {
		setpriv, err := lookPath("setpriv")
		if err != nil {
			return "", nil, err
		}
		argv = append(argv, setpriv)
		if uid != nil {
			argv = append(argv, fmt.Sprintf("--reuid=%d", *uid))
		}
		if gid != nil {
			argv = append(argv, fmt.Sprintf("--regid=%d", *gid))
		}
		argv = append(argv, "--clear-groups", "--pdeathsig", "KILL", "--")
	}
	argv = append(argv, path)
	argv = append(argv, args...)
	return unshare, argv, nil
}

// PodVolumeDir is the node-side directory of a pod's volume (emptyDir,
// configMap, ...), "" when the pod is unknown or the volume was never
// mounted. It lives until the pod is deleted, terminal pods included.
func (n *Node) PodVolumeDir(namespace, name, volume string) string {
	n.mu.Lock()
	w := n.byName[namespace+"/"+name]
	n.mu.Unlock()
	if w == nil {
		return ""
	}
	dir, _ := w.preparedVolume(volume)
	return dir
}
