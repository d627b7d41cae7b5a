package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"google.golang.org/protobuf/encoding/protowire"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/version"
	apiversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

// A paged LIST is served from the API server's watch cache only for its
// first page: the continuation pages come from etcd unless the cache
// still holds a snapshot at the first page's revision (ListFromCacheSnapshot;
// the bench's seeded 1.37 server, idle after seeding, served every
// continuation from etcd, by its apiserver_storage_list_total). With
// 94,000 objects that was ~4 s of API server CPU and ~2 s of etcd's per
// scan, against ~1 s and none for one LIST per resource without a limit,
// which a server with consistent reads from the cache (on by default
// since Kubernetes 1.31) serves from the cache. So on such
// a server the built-in resources are listed whole, and the response is
// decoded item by item as it arrives (streamList): neither the body nor
// the typed list is ever held whole. Older servers would read such a
// LIST from etcd in one piece: they are paged as before.
var wholeListsSince = version.MajorMinor(1, 31)

// servesWholeListsFromCache asks the server's version (GET /version,
// readable by every authenticated user); any doubt means paging.
func servesWholeListsFromCache(ctx context.Context, kube kubernetes.Interface) bool {
	if kube == nil || kube.Discovery() == nil || kube.Discovery().RESTClient() == nil {
		return false
	}
	raw, err := kube.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return false
	}
	var info apiversion.Info
	if json.Unmarshal(raw, &info) != nil {
		return false
	}
	v, err := version.ParseGeneric(info.GitVersion)
	return err == nil && v.AtLeast(wholeListsSince)
}

// protoItem is a built-in object, which decodes itself from protobuf.
type protoItem interface {
	runtime.Object
	Unmarshal([]byte) error
}

// streamList lists one built-in resource in one scope with one request
// and no limit, calling each on every item as its bytes arrive.
func (l *loader) streamList(resource, ns string, rc rest.Interface, newList func() runtime.Object, newItem func() protoItem, each func(runtime.Object)) error {
	body, err := rc.Get().NamespaceIfScoped(ns, ns != "").Resource(resource).
		VersionedParams(&metav1.ListOptions{}, scheme.ParameterCodec).UseProtobufAsDefault().Stream(l.ctx)
	if err != nil {
		return err
	}
	defer body.Close()
	return decodeListStream(bufio.NewReaderSize(body, 64<<10), newList, newItem, each)
}

// decodeListStream reads a LIST response: in the Kubernetes protobuf
// envelope ("k8s\x00", then a runtime.Unknown whose field 2 holds the
// list, whose field 2 repeats the items) item by item; anything else
// (a server or proxy that answers JSON) whole, as the typed client would.
func decodeListStream(r *bufio.Reader, newList func() runtime.Object, newItem func() protoItem, each func(runtime.Object)) error {
	magic, err := r.Peek(4)
	if len(magic) == 0 {
		return fmt.Errorf("empty LIST response: %w", noEOF(err))
	}
	if !bytes.Equal(magic, []byte("k8s\x00")) {
		all, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		list := newList()
		if _, _, err := kubeDecoder.Decode(all, nil, list); err != nil {
			return err
		}
		return meta.EachListItem(list, func(obj runtime.Object) error { each(obj); return nil })
	}
	r.Discard(4)
	pr := &protoReader{r: r}
	var buf []byte
	sawList := false
	for {
		num, typ, err := pr.tag()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		switch {
		case num == 1 && typ == protowire.BytesType: // TypeMeta
			if buf, err = pr.bytes(buf); err != nil {
				return err
			}
			var tm runtime.TypeMeta
			if err := tm.Unmarshal(buf); err != nil {
				return err
			}
			if tm.Kind == "Status" {
				return fmt.Errorf("the API server answered the LIST with a Status")
			}
		case num == 2 && typ == protowire.BytesType: // the list
			n, err := pr.varint()
			if err != nil {
				return err
			}
			if buf, err = readListItems(pr, pr.read+int64(n), buf, newItem, each); err != nil {
				return err
			}
			sawList = true
		case num == 3 && typ == protowire.BytesType: // contentEncoding
			if buf, err = pr.bytes(buf); err != nil {
				return err
			}
			if len(buf) > 0 {
				return fmt.Errorf("LIST response with content encoding %q", buf)
			}
		default:
			if err := pr.skip(num, typ); err != nil {
				return err
			}
		}
	}
	if !sawList {
		return fmt.Errorf("LIST response without a list")
	}
	return nil
}

// readListItems decodes the items (field 2) of a list message that ends
// at byte end of the stream, skipping its other fields (the ListMeta).
func readListItems(pr *protoReader, end int64, buf []byte, newItem func() protoItem, each func(runtime.Object)) ([]byte, error) {
	for pr.read < end {
		num, typ, err := pr.tag()
		if err != nil {
			return buf, noEOF(err)
		}
		if num != 2 || typ != protowire.BytesType {
			if err := pr.skip(num, typ); err != nil {
				return buf, err
			}
			continue
		}
		if buf, err = pr.bytes(buf); err != nil {
			return buf, err
		}
		item := newItem()
		if err := item.Unmarshal(buf); err != nil {
			return buf, err
		}
		each(item)
	}
	if pr.read != end {
		return buf, errors.New("malformed LIST response: a field runs past the list")
	}
	return buf, nil
}

// protoReader reads protobuf wire format from a stream, counting bytes.
type protoReader struct {
	r    *bufio.Reader
	read int64
}

// maxField bounds one length-delimited field (an item, the TypeMeta); the
// list itself is never read whole. The API server refuses objects over
// about 1.5 MB, and etcd's request limit is of that order.
const maxField = 64 << 20

func (p *protoReader) ReadByte() (byte, error) {
	b, err := p.r.ReadByte()
	if err == nil {
		p.read++
	}
	return b, err
}

// varint reads a varint: io.EOF when the stream ends before it,
// io.ErrUnexpectedEOF inside it.
func (p *protoReader) varint() (uint64, error) { return binary.ReadUvarint(p) }

// tag reads a field's number and wire type; io.EOF only at the end of
// the stream between fields.
func (p *protoReader) tag() (protowire.Number, protowire.Type, error) {
	v, err := p.varint()
	if err != nil {
		return 0, 0, err
	}
	num, typ := protowire.DecodeTag(v)
	if num < protowire.MinValidNumber {
		return 0, 0, errors.New("malformed LIST response: field number 0")
	}
	return num, typ, nil
}

// bytes reads a length-delimited value into buf's storage.
func (p *protoReader) bytes(buf []byte) ([]byte, error) {
	n, err := p.varint()
	if err != nil {
		return buf, noEOF(err)
	}
	if n > maxField {
		return buf, fmt.Errorf("malformed LIST response: a field of %d bytes", n)
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	k, err := io.ReadFull(p.r, buf)
	p.read += int64(k)
	return buf, noEOF(err)
}

func (p *protoReader) skip(num protowire.Number, typ protowire.Type) error {
	var n int64
	switch typ {
	case protowire.VarintType:
		_, err := p.varint()
		return noEOF(err)
	case protowire.Fixed32Type:
		n = 4
	case protowire.Fixed64Type:
		n = 8
	case protowire.BytesType:
		v, err := p.varint()
		if err != nil {
			return noEOF(err)
		}
		if v > maxField {
			return fmt.Errorf("malformed LIST response: a field of %d bytes", v)
		}
		n = int64(v)
	default:
		return fmt.Errorf("malformed LIST response: field %d has wire type %d", num, typ)
	}
	k, err := p.r.Discard(int(n))
	p.read += int64(k)
	return noEOF(err)
}

// noEOF: a stream that ends inside a field is cut short.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
