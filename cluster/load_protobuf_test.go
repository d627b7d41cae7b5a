package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	"k8s.io/client-go/kubernetes/scheme"
)

// protobufBody is a LIST response as the API server writes it in
// application/vnd.kubernetes.protobuf.
func protobufBody(t *testing.T, list runtime.Object) []byte {
	t.Helper()
	enc := scheme.Codecs.EncoderForVersion(protobuf.NewSerializer(scheme.Scheme, scheme.Scheme), corev1.SchemeGroupVersion)
	var b bytes.Buffer
	if err := enc.Encode(list, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestProtobufListContinue(t *testing.T) {
	pods := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "42", Continue: "eyJ2IjoibWV0YS5rOHMuaW8vdjEiLCJydiI6NDIsInN0YXJ0IjoicC0wNDk5XHUwMDAwIn0", RemainingItemCount: new(int64(7))}}
	for i := range 3 {
		pods.Items = append(pods.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "ns", Labels: map[string]string{"app": "a"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}})
	}
	body := protobufBody(t, pods)
	if got, ok := protobufListContinue(body); !ok || got != pods.Continue {
		t.Errorf("continue = %q, %v; want %q", got, ok, pods.Continue)
	}
	// What the consumer decodes is the whole page.
	var back corev1.PodList
	if _, _, err := kubeDecoder.Decode(body, nil, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Items) != 3 || back.Items[2].Name != "p-2" || back.Continue != pods.Continue {
		t.Errorf("decoded %d items, continue %q", len(back.Items), back.Continue)
	}

	// The last page: no continue token, or no ListMeta at all.
	last := protobufBody(t, &corev1.PodList{Items: pods.Items[:1]})
	if got, ok := protobufListContinue(last); !ok || got != "" {
		t.Errorf("last page: continue = %q, %v; want \"\", true", got, ok)
	}
	empty := protobufBody(t, &corev1.ServiceList{})
	if got, ok := protobufListContinue(empty); !ok || got != "" {
		t.Errorf("empty list: continue = %q, %v; want \"\", true", got, ok)
	}

	// Not protobuf, or cut short: the caller decodes it the usual way.
	js, err := json.Marshal(pods)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"json": js, "empty": nil, "magic only": []byte("k8s\x00"), "truncated": body[:20]} {
		if got, ok := protobufListContinue(b); ok {
			t.Errorf("%s: continue = %q, ok; want not ok", name, got)
		}
	}
	// Every truncation of the front either fails or finds the token.
	for n := range 200 {
		if got, ok := protobufListContinue(body[:n]); ok && got != pods.Continue {
			t.Errorf("cut at %d: continue = %q", n, got)
		}
	}
}
