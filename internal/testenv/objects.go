package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// FixKinds are the resources kubectl-serverfirst's fixes write.
var FixKinds = []schema.GroupVersionResource{
	{Version: "v1", Resource: "services"},
	{Group: "networking.istio.io", Version: "v1", Resource: "serviceentries"},
	{Group: "networking.istio.io", Version: "v1", Resource: "destinationrules"},
	{Group: "security.istio.io", Version: "v1", Resource: "peerauthentications"},
}

// ObjectState is every object of kinds: its spec, labels and annotations
// as the API server encodes them, by "resource namespace/name". Two states
// are equal when fix --undo put everything back.
func ObjectState(ctx context.Context, dyn dynamic.Interface, kinds []schema.GroupVersionResource) (map[string]string, error) {
	out := map[string]string{}
	for _, gvr := range kinds {
		list, err := dyn.Resource(gvr).Namespace("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, u := range list.Items {
			b, err := json.Marshal([]any{u.Object["spec"], u.GetLabels(), u.GetAnnotations()})
			if err != nil {
				return nil, err
			}
			out[gvr.Resource+" "+u.GetNamespace()+"/"+u.GetName()] = string(b)
		}
	}
	return out, nil
}

// DiffStates lists how got differs from want, one line per object, sorted.
func DiffStates(want, got map[string]string) []string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, k+": gone")
		} else if g != w {
			out = append(out, fmt.Sprintf("%s:\n got %s\nwant %s", k, g, w))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			out = append(out, k+": left behind")
		}
	}
	sort.Strings(out)
	return out
}

// SniffingEgressSidecar is a Sidecar resource named "egress" whose egress
// listener on port imports importNS's services without a protocol, so its
// namespace's clients sniff that port whatever the Service declares
// (SF0804); a second listener keeps every other host in scope.
func SniffingEgressSidecar(port uint32, importNS string) *networkingv1.Sidecar {
	return &networkingv1.Sidecar{
		ObjectMeta: metav1.ObjectMeta{Name: "egress"},
		Spec: networkingapi.Sidecar{Egress: []*networkingapi.IstioEgressListener{
			{Port: &networkingapi.SidecarPort{Number: port, Name: "sniffed"}, Hosts: []string{importNS + "/*"}},
			{Hosts: []string{"*/*"}},
		}},
	}
}
