package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// ObjectRef names one object of a kind fixes change.
type ObjectRef struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
}

// String is "Kind namespace/name".
func (r ObjectRef) String() string { return r.Kind + " " + r.Namespace + "/" + r.Name }

// fixResources maps the kinds fixes produce to their API resources.
var fixResources = map[string]schema.GroupVersionResource{
	"v1/Service":                              {Version: "v1", Resource: "services"},
	"networking.istio.io/v1/ServiceEntry":     {Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"},
	"networking.istio.io/v1/DestinationRule":  {Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	"security.istio.io/v1/PeerAuthentication": {Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
}

// Applier changes the objects of a fix plan and puts them back.
type Applier struct {
	Dyn          dynamic.Interface
	FieldManager string
}

func (a Applier) resource(ref ObjectRef) (dynamic.ResourceInterface, error) {
	gvr, ok := fixResources[ref.APIVersion+"/"+ref.Kind]
	if !ok {
		return nil, fmt.Errorf("no API resource known for %s %s", ref.APIVersion, ref.Kind)
	}
	return a.Dyn.Resource(gvr).Namespace(ref.Namespace), nil
}

// Get reads the object as it is now; nil (and no error) when absent.
func (a Applier) Get(ctx context.Context, ref ObjectRef) (*unstructured.Unstructured, error) {
	res, err := a.resource(ref)
	if err != nil {
		return nil, err
	}
	u, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return u, err
}

func dryRun(on bool) []string {
	if on {
		return []string{metav1.DryRunAll}
	}
	return nil
}

// Apply is a server-side apply of obj (forced: the fix takes the fields
// it sets from whichever manager had them). It returns the object as the
// API server stored it (or would, in a dry run).
func (a Applier) Apply(ctx context.Context, ref ObjectRef, obj map[string]any, dry bool) (*unstructured.Unstructured, error) {
	res, err := a.resource(ref)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	force := true
	return res.Patch(ctx, ref.Name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: a.FieldManager, Force: &force, DryRun: dryRun(dry)})
}

// Restore puts back the spec, labels and annotations an object had before
// a fix (previous), exactly: an update of the whole spec, not a merge, so
// fields the fix added go and fields it changed return. It refuses when
// the object changed since the fix (its spec is no longer applied).
func (a Applier) Restore(ctx context.Context, ref ObjectRef, previous, applied *unstructured.Unstructured, dry bool) error {
	res, err := a.resource(ref)
	if err != nil {
		return err
	}
	cur, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s was deleted since the fix: nothing to restore", ref)
	}
	if err != nil {
		return err
	}
	if applied != nil && !SameSpec(cur, applied) {
		return fmt.Errorf("%s changed since the fix (its spec is not the one the fix left): not overwriting it; restore it by hand from the record", ref)
	}
	next := cur.DeepCopy()
	spec, ok := previous.Object["spec"]
	if ok {
		next.Object["spec"] = spec
	} else {
		delete(next.Object, "spec")
	}
	next.SetLabels(previous.GetLabels())
	next.SetAnnotations(previous.GetAnnotations())
	_, err = res.Update(ctx, next, metav1.UpdateOptions{FieldManager: a.FieldManager, DryRun: dryRun(dry)})
	return err
}

// DeleteCreated deletes an object a fix created, only if it is still that
// object (same UID) and unchanged since (its spec is applied's). An empty
// uid (the command stopped while applying it) checks neither.
func (a Applier) DeleteCreated(ctx context.Context, ref ObjectRef, uid types.UID, applied *unstructured.Unstructured, dry bool) error {
	res, err := a.resource(ref)
	if err != nil {
		return err
	}
	cur, err := res.Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && uid == "" {
		return nil // never created: nothing to undo
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%s was deleted since the fix: nothing to undo", ref)
	}
	if err != nil {
		return err
	}
	if uid == "" {
		uid = cur.GetUID()
	}
	if cur.GetUID() != uid {
		return fmt.Errorf("%s is not the object the fix created (uid %s, recorded %s): not deleting it", ref, cur.GetUID(), uid)
	}
	if applied != nil && !SameSpec(cur, applied) {
		return fmt.Errorf("%s changed since the fix (its spec is not the one the fix left): not deleting it", ref)
	}
	return res.Delete(ctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, DryRun: dryRun(dry)})
}

// SameSpec compares two objects' specs as the API server encodes them.
func SameSpec(a, b *unstructured.Unstructured) bool {
	x, errX := json.Marshal(a.Object["spec"])
	y, errY := json.Marshal(b.Object["spec"])
	return errX == nil && errY == nil && string(x) == string(y)
}
