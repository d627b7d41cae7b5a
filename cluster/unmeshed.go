package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"istio.io/api/annotation"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
)

// annotationAmbientRedirection is what istio-cni sets to "enabled" on a
// pod whose traffic it redirects to ztunnel (pkg/config/constants
// AmbientRedirectionEnabled): an ambient client, whose HBONE the
// sidecar's plaintext inspector never sees.
var annotationAmbientRedirection = annotation.AmbientRedirection.Name

// unmeshedPhaseSelector leaves out finished pods, which are nobody's
// clients (the field selector pods support on status.phase).
const unmeshedPhaseSelector = "status.phase!=Succeeded,status.phase!=Failed"

// podMetadataAccept asks for PartialObjectMetadataList (protobuf, else
// JSON), as client-go's metadata client does: names, labels and
// annotations only, a fraction of a full Pod.
const podMetadataAccept = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1," +
	"application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"

// countUnmeshedElsewhere counts, per namespace outside scanned, the pods
// that are not finished and carry neither the injector's
// sidecar.istio.io/status annotation nor istio-cni's ambient redirection:
// the clients without a sidecar that a -n scan does not list. It is one
// paged LIST of pod metadata in all namespaces. A pod whose istio-proxy
// container was added by hand, without the annotation the injector and
// istioctl kube-inject both write, counts as without a sidecar here
// (metadata shows no containers). ok is false when the LIST was refused
// or failed.
func (l *loader) countUnmeshedElsewhere(scanned []string) (map[string]int, error) {
	rc := l.c.Kube.CoreV1().RESTClient()
	counts := map[string]int{}
	fetch := func(ctx context.Context, o metav1.ListOptions) (listPage, string, error) {
		o.FieldSelector = unmeshedPhaseSelector
		res := rc.Get().Resource("pods").VersionedParams(&o, scheme.ParameterCodec).SetHeader("Accept", podMetadataAccept).Do(ctx)
		if err := res.Error(); err != nil {
			return listPage{}, "", err
		}
		raw, _ := res.Raw()
		list := &metav1.PartialObjectMetadataList{}
		if envelope, found := strings.CutPrefix(string(raw), "k8s\x00"); found {
			body, found, ok := protobufField([]byte(envelope), 2)
			if !ok || !found {
				return listPage{}, "", errors.New("pod metadata: not a protobuf list")
			}
			if err := list.Unmarshal(body); err != nil {
				return listPage{}, "", fmt.Errorf("pod metadata: %w", err)
			}
		} else if err := json.Unmarshal(raw, list); err != nil {
			return listPage{}, "", fmt.Errorf("pod metadata: %w", err)
		}
		return listPage{list: list}, list.Continue, nil
	}
	decode := func(p listPage) (runtime.Object, error) { return p.list, nil }
	err := l.pipelined(fetch, decode, func(obj runtime.Object) {
		m := obj.(*metav1.PartialObjectMetadata)
		if slices.Contains(scanned, m.Namespace) {
			return // the scan's own pods are counted from their full objects
		}
		if _, injected := m.Annotations[annotationSidecarStatus]; injected || m.Annotations[annotationAmbientRedirection] == "enabled" {
			return
		}
		counts[m.Namespace]++
	})
	if err != nil {
		return nil, err
	}
	return counts, nil
}

// unmeshedElsewhere fills the inventory's count of clients without a
// sidecar outside a -n scan, or says why it could not.
func (l *loader) unmeshedElsewhere(inv *Inventory, scanned []string) {
	counts, err := l.countUnmeshedElsewhere(scanned)
	switch {
	case err == nil:
		inv.UnmeshedElsewhere = counts
		return
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		l.fail("pods", "", err)
		return
	}
	inv.UnmeshedElsewhereUnknown = true
	why := err.Error()
	if apierrors.IsForbidden(err) {
		why = "forbidden"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.warnings = append(l.warnings, fmt.Sprintf("cannot list pods in all namespaces (%s): clients without a sidecar outside the scanned namespaces (%s) are not counted, so the external-to-mesh path of PERMISSIVE ports may have more clients than the report says", why, strings.Join(scanned, ", ")))
}
