package testenv

import (
	"bytes"
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// exported are the resources a scan reads, in the order ExportManifests
// writes them.
var exported = []schema.GroupVersionResource{
	{Version: "v1", Resource: "namespaces"},
	{Version: "v1", Resource: "configmaps"},
	{Version: "v1", Resource: "services"},
	{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
	{Version: "v1", Resource: "pods"},
	{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"},
	{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
	{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	{Group: "networking.istio.io", Version: "v1", Resource: "sidecars"},
}

// ExportManifests writes what a scan would read from the API server as a
// manifest file, the way `kubectl get -o yaml` does: the pods as one List
// object, everything else one YAML document per object. Resources whose
// CRD is not installed are left out.
func (e *Env) ExportManifests(ctx context.Context) ([]byte, error) {
	var out bytes.Buffer
	for _, gvr := range exported {
		list, err := e.Dynamic.Resource(gvr).List(ctx, metav1.ListOptions{})
		if err != nil {
			if gvr.Group != "" && apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("export %s: %w", gvr.Resource, err)
		}
		if gvr.Resource == "pods" {
			doc := unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{}}}
			items := []any{}
			for _, item := range list.Items {
				items = append(items, item.Object)
			}
			doc.Object["items"] = items
			if err := writeDocument(&out, doc.Object); err != nil {
				return nil, err
			}
			continue
		}
		for _, item := range list.Items {
			if err := writeDocument(&out, item.Object); err != nil {
				return nil, err
			}
		}
	}
	return out.Bytes(), nil
}

func writeDocument(out *bytes.Buffer, obj map[string]any) error {
	b, err := yaml.Marshal(obj)
	if err != nil {
		return err
	}
	out.WriteString("---\n")
	out.Write(b)
	return nil
}
