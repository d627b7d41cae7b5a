package cluster

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
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

// protobufField reads the wire format with protowire, which differs from
// the hand-written reader it replaced at two edges, neither of which the
// API server writes: field number 0 is not a field (it was read as one),
// and a group is skipped like any other field (it failed the message).
func TestProtobufField(t *testing.T) {
	msg := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tag := func(n protowire.Number, typ protowire.Type) []byte { return protowire.AppendTag(nil, n, typ) }
	bytesField := func(n protowire.Number, v string) []byte {
		return protowire.AppendString(tag(n, protowire.BytesType), v)
	}
	varintField := func(n protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(tag(n, protowire.VarintType), v)
	}
	group := func(n protowire.Number, inner []byte) []byte {
		return msg(tag(n, protowire.StartGroupType), inner, tag(n, protowire.EndGroupType))
	}
	for _, c := range []struct {
		name      string
		msg       []byte
		want      string
		found, ok bool
	}{
		{"first field", msg(bytesField(2, "list"), bytesField(2, "other")), "list", true, true},
		{"after fields of every other wire type", msg(varintField(1, 300), protowire.AppendFixed64(tag(3, protowire.Fixed64Type), 1),
			protowire.AppendFixed32(tag(4, protowire.Fixed32Type), 1), bytesField(1, "meta"), bytesField(2, "list")), "list", true, true},
		{"the number with another wire type is skipped", msg(varintField(2, 7), bytesField(2, "list")), "list", true, true},
		{"absent", msg(bytesField(1, "meta")), "", false, true},
		{"empty message", nil, "", false, true},
		{"a group is skipped", msg(group(5, varintField(1, 1)), bytesField(2, "list")), "list", true, true},
		{"field number 0 does not parse", msg(varintField(0, 1), bytesField(2, "list")), "", false, false},
		{"length past the end", msg(tag(2, protowire.BytesType), protowire.AppendVarint(nil, 100), []byte("short")), "", false, false},
		{"varint longer than 10 bytes", msg(tag(1, protowire.VarintType), bytes.Repeat([]byte{0x80}, 10), []byte{0}, bytesField(2, "list")), "", false, false},
		{"truncated fixed64", msg(tag(1, protowire.Fixed64Type), []byte{1, 2, 3}), "", false, false},
		{"reserved wire type", []byte{0x0e}, "", false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, found, ok := protobufField(c.msg, 2)
			if string(got) != c.want || found != c.found || ok != c.ok {
				t.Errorf("protobufField = %q, found %v, ok %v; want %q, %v, %v", got, found, ok, c.want, c.found, c.ok)
			}
		})
	}
}

// TestDecodeListStream: a LIST response read item by item gives the items
// the typed client's decoder gives, from protobuf and from JSON; a body
// cut anywhere, or holding something else, is an error, never fewer items.
func TestDecodeListStream(t *testing.T) {
	pods := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "42"}}
	for i := range 5 {
		pods.Items = append(pods.Items, corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%d", i), Namespace: "ns", Labels: map[string]string{"app": "a"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}})
	}
	body := protobufBody(t, pods)
	js, err := json.Marshal(pods)
	if err != nil {
		t.Fatal(err)
	}
	read := func(b []byte) ([]string, error) {
		var names []string
		err := decodeListStream(bufio.NewReader(bytes.NewReader(b)), func() runtime.Object { return &corev1.PodList{} }, func() protoItem { return &corev1.Pod{} },
			func(obj runtime.Object) {
				p := obj.(*corev1.Pod)
				names = append(names, p.Namespace+"/"+p.Name+" "+p.Spec.Containers[0].Image+" "+p.Labels["app"])
			})
		return names, err
	}
	want := []string{"ns/p-0 busybox a", "ns/p-1 busybox a", "ns/p-2 busybox a", "ns/p-3 busybox a", "ns/p-4 busybox a"}
	for name, b := range map[string][]byte{"protobuf": body, "json": js} {
		got, err := read(b)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	if got, err := read(protobufBody(t, &corev1.PodList{})); err != nil || len(got) != 0 {
		t.Errorf("empty list: %q, %v", got, err)
	}
	// A cut inside the list fails; after it, between the envelope's
	// last fields (its empty content encoding and type), the message
	// is whole as far as protobuf can tell.
	for n := range len(body) {
		if got, err := read(body[:n]); err == nil && !slices.Equal(got, want) {
			t.Errorf("cut at %d of %d: %d items, no error", n, len(body), len(got))
		}
	}
	status := protobufBody(t, &metav1.Status{Status: metav1.StatusFailure, Message: "no"})
	for name, b := range map[string][]byte{"status": status, "not a list": []byte("k8s\x00\x08\x01"), "field 0": []byte("k8s\x00\x00")} {
		if got, err := read(b); err == nil {
			t.Errorf("%s: %q, no error", name, got)
		}
	}
}
