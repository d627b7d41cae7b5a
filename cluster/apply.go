package cluster

import (
	"context"
	"encoding/json"
	"fmt"

	networkingac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	securityac "istio.io/client-go/pkg/applyconfiguration/security/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"
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

// Applier changes the objects of a fix plan and puts them back. Fixes
// go in as typed apply configurations through the typed clientsets'
// Apply; the record and undo read and write the objects raw (Dyn),
// because Istio's typed objects go through protobuf, which drops fields
// set to an enum's zero value (location: MESH_EXTERNAL, mode: UNSET):
// undo restores a spec byte for byte.
type Applier struct {
	Clients      Clients
	Dyn          dynamic.Interface
	FieldManager string
}

// resource is the raw client of the object's kind. Every kind fixes
// change has a regular plural, so the resource name is the guessed one.
func (a Applier) resource(ref ObjectRef) dynamic.ResourceInterface {
	gvr, _ := meta.UnsafeGuessKindToResource(schema.FromAPIVersionAndKind(ref.APIVersion, ref.Kind))
	return a.Dyn.Resource(gvr).Namespace(ref.Namespace)
}

// Get reads the object as it is now; nil (and no error) when absent.
func (a Applier) Get(ctx context.Context, ref ObjectRef) (*unstructured.Unstructured, error) {
	u, err := a.resource(ref).Get(ctx, ref.Name, metav1.GetOptions{})
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

// Apply is a server-side apply of a typed apply configuration (a
// Service's, or a ServiceEntry's or PeerAuthentication's of Istio's
// client-go), forced: the fix takes the fields it sets from whichever
// manager had them. It returns the UID of the object as the API server
// stored it (or would, in a dry run).
func (a Applier) Apply(ctx context.Context, obj any, dry bool) (types.UID, error) {
	opts := metav1.ApplyOptions{FieldManager: a.FieldManager, Force: true, DryRun: dryRun(dry)}
	switch o := obj.(type) {
	case *corev1ac.ServiceApplyConfiguration:
		return uidOf(a.Clients.Kube.CoreV1().Services(ptr.Deref(o.Namespace, "")).Apply(ctx, o, opts))
	case *networkingac.ServiceEntryApplyConfiguration:
		return uidOf(a.Clients.Istio.NetworkingV1().ServiceEntries(ptr.Deref(o.Namespace, "")).Apply(ctx, o, opts))
	case *securityac.PeerAuthenticationApplyConfiguration:
		return uidOf(a.Clients.Istio.SecurityV1().PeerAuthentications(ptr.Deref(o.Namespace, "")).Apply(ctx, o, opts))
	}
	return "", fmt.Errorf("fix does not apply a %T", obj)
}

// uidOf is the UID of what a typed Apply returned.
func uidOf(got metav1.Object, err error) (types.UID, error) {
	if err != nil {
		return "", err
	}
	return got.GetUID(), nil
}

// Restore puts back the spec, labels and annotations an object had before
// a fix (previous), exactly: an update of the whole spec, not a merge, so
// fields the fix added go and fields it changed return. It refuses when
// the object changed since the fix (its spec is no longer applied).
func (a Applier) Restore(ctx context.Context, ref ObjectRef, previous, applied *unstructured.Unstructured, dry bool) error {
	res := a.resource(ref)
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
	res := a.resource(ref)
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
