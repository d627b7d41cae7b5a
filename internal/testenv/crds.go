package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRDs creates every CustomResourceDefinition in the YAML file (an
// existing one is left alone) and waits until each is Established and its
// served versions appear in discovery, so clients that discover resources
// (kubectl, the scanner) see them at once.
func (e *Env) InstallCRDs(ctx context.Context, file string) error {
	return e.installCRDs(ctx, file)
}

func (e *Env) installCRDs(ctx context.Context, file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("read CRDs: %w", err)
	}
	defer f.Close()
	// group/version -> resource plurals that discovery must list.
	want := map[string][]string{}
	var names []string
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	for {
		var obj unstructured.Unstructured
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("parse %s: %w", file, err)
		}
		if obj.Object == nil || obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		group, _, _ := unstructured.NestedString(obj.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(obj.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(obj.Object, "spec", "versions")
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if served, _ := vm["served"].(bool); served {
				gv := group + "/" + fmt.Sprint(vm["name"])
				want[gv] = append(want[gv], plural)
			}
		}
		if _, err := e.Dynamic.Resource(crdGVR).Create(ctx, &obj, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("create CRD %s: %w", obj.GetName(), err)
		}
		names = append(names, obj.GetName())
	}
	if len(names) == 0 {
		return fmt.Errorf("no CustomResourceDefinition in %s", file)
	}
	return poll(ctx, "CRDs Established and discoverable", func() (bool, string, error) {
		for _, name := range names {
			crd, err := e.Dynamic.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err.Error(), nil
			}
			if !established(crd) {
				return false, name + " not Established", nil
			}
		}
		for _, gv := range sortedKeys(want) {
			list, err := e.Client.Discovery().ServerResourcesForGroupVersion(gv)
			if err != nil {
				return false, gv + ": " + err.Error(), nil
			}
			have := map[string]bool{}
			for _, r := range list.APIResources {
				have[r.Name] = true
			}
			for _, plural := range want[gv] {
				if !have[plural] {
					return false, gv + "/" + plural + " not in discovery", nil
				}
			}
		}
		return true, "", nil
	})
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		if cm["type"] == "Established" && cm["status"] == "True" {
			return true
		}
	}
	return false
}

// poll calls check every 100ms until it reports done, returns an error, or
// ctx ends; the error then says what was still missing.
func poll(ctx context.Context, what string, check func() (done bool, missing string, err error)) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		done, missing, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %v (still missing: %s)", what, ctx.Err(), strings.TrimSpace(missing))
		case <-tick.C:
		}
	}
}

func sortedKeys(m map[string][]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
