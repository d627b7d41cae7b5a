package world

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// The sync marker: an EnvoyFilter in the root namespace (so istiod
// applies it to every sidecar of every revision, whatever Sidecar
// resources scope) that ADDs one static cluster whose metadata carries a
// generation. Nothing routes to it. WaitSidecarsSynced writes a new
// generation and waits until every sidecar's own config holds it.
const (
	SyncMarkerName = "serverfirst-world-sync"
	// syncMarkerKey is the filter_metadata namespace of the generation.
	syncMarkerKey = "world.serverfirst.io"
	// adminAddr is Envoy's admin listener inside every sidecar's pod.
	adminAddr = "127.0.0.1:15000"
)

// SidecarState is one running sidecar as the world sees it: what its own
// Envoy admin /config_dump holds of the sync marker, and what the istiod
// it is connected to says of its acknowledgements (/debug/syncz).
type SidecarState struct {
	Namespace, Name, PodIP string
	// ProxyID is istiod's ID of the proxy: POD.NS, the third part of the
	// xDS node ID sidecar~IP~POD.NS~NS.svc.cluster.local.
	ProxyID string
	// Marker is the sync marker generation in the sidecar's clusters (0 =
	// none yet); MarkerVersion is the xDS version of the push that
	// brought it (the cluster's version_info).
	Marker        uint64
	MarkerVersion string
	// Acks is istiod's record per xDS type URL (nil: not connected to
	// any istiod of the world).
	Acks map[string]XDSAck
	Err  error // its admin endpoint did not answer
}

// XDSAck is istiod's view of one xDS type for one proxy: the nonce it
// last sent and the one the proxy last acknowledged.
type XDSAck struct {
	Sent  string `json:"sent"`
	Acked string `json:"acked"`
}

// syncedSince says whether the sidecar holds the marker generation gen
// and has acknowledged, for every type it watches, a push at least as
// new as the one that brought the marker with nothing sent since: a push
// istiod built after it saw the marker. The marker's push carries every
// type (an EnvoyFilter in the root namespace affects clusters, endpoints,
// listeners and routes alike), so each type's version is comparable.
func (s SidecarState) syncedSince(gen uint64) (bool, string) {
	switch {
	case s.Err != nil:
		return false, s.Err.Error()
	case s.Marker < gen:
		return false, fmt.Sprintf("sync marker %d in its clusters, want %d", s.Marker, gen)
	case s.Acks == nil:
		return false, "not connected to an istiod"
	}
	want, ok := pushCounter(s.MarkerVersion)
	if !ok {
		return false, fmt.Sprintf("marker cluster version %q is not istiod's", s.MarkerVersion)
	}
	for _, typeURL := range sortedKeys(s.Acks) {
		a := s.Acks[typeURL]
		short := typeURL[strings.LastIndex(typeURL, ".")+1:]
		if a.Sent == "" || a.Acked != a.Sent {
			return false, fmt.Sprintf("%s sent %q, acked %q", short, a.Sent, a.Acked)
		}
		if got, ok := pushCounter(nonceVersion(a.Acked)); !ok || got < want {
			return false, fmt.Sprintf("%s acked %q, older than the marker's push %s", short, a.Acked, s.MarkerVersion)
		}
	}
	return true, ""
}

// pushCounter is the counter of an istiod push version
// (time.Now().Format(time.RFC3339) + "/" + counter, per istiod process).
func pushCounter(version string) (uint64, bool) {
	i := strings.LastIndexByte(version, '/')
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(version[i+1:], 10, 64)
	return n, err == nil
}

// nonceVersion is the push version a nonce of istiod's starts with: it
// appends a UUID (36 characters) to the version.
func nonceVersion(nonce string) string {
	const uuidLen = 36
	if len(nonce) <= uuidLen {
		return ""
	}
	return nonce[:len(nonce)-uuidLen]
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// WaitSidecarsSynced waits until every running sidecar's config includes
// everything the API server accepted before `after` (e.g. the moment
// before `fix --apply`):
//  1. the node's EndpointSlice writer finishes a pass that began after
//     `after` (pods that turned Ready have their endpoints written);
//  2. the world writes a new generation of the sync marker, an EnvoyFilter
//     istiod applies to every sidecar;
//  3. every running sidecar's own /config_dump holds that generation, and
//     its istiod's /debug/syncz shows it acknowledged, for every xDS type,
//     a push at least as new as the one that brought the marker.
//
// istiod reads each kind through its own watch, so (3) proves that istiod
// built the sidecar's config after it saw the marker; a change of another
// kind accepted before `after` is in it as long as its watch event reached
// istiod before the marker's (one API server on loopback: it always has
// here, but nothing orders watches of different kinds). Sidecars not
// synced by ctx's deadline are named in the error.
func (w *World) WaitSidecarsSynced(ctx context.Context, after time.Time) error {
	if err := w.Node.WaitEndpointsSynced(ctx, after); err != nil {
		return err
	}
	gen, err := w.bumpSyncMarker(ctx)
	if err != nil {
		return err
	}
	for {
		states, err := w.Sidecars(ctx)
		var pending []string
		if err == nil {
			for _, s := range states {
				if ok, why := s.syncedSince(gen); !ok {
					pending = append(pending, fmt.Sprintf("%s/%s (%s)", s.Namespace, s.Name, why))
				}
			}
			if len(pending) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("sidecars not synced with marker %d: %w (%v)", gen, ctx.Err(), err)
			}
			return fmt.Errorf("sidecars not synced with marker %d: %w: %s", gen, ctx.Err(), strings.Join(pending, "; "))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bumpSyncMarker writes the next marker generation and returns it.
func (w *World) bumpSyncMarker(ctx context.Context) (uint64, error) {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	api := w.Istio.NetworkingV1alpha3().EnvoyFilters(IstioSystem)
	for {
		old, err := api.Get(ctx, SyncMarkerName, metav1.GetOptions{})
		exists := err == nil
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, fmt.Errorf("world: sync marker: %w", err)
		}
		if exists {
			// Also one left by an earlier world on this API server: count on.
			w.syncGen = max(w.syncGen, markerGeneration(old))
		}
		gen := w.syncGen + 1
		ef, err := syncMarker(gen)
		if err != nil {
			return 0, err
		}
		if exists {
			ef.ResourceVersion = old.ResourceVersion
			_, err = api.Update(ctx, ef, metav1.UpdateOptions{})
		} else {
			_, err = api.Create(ctx, ef, metav1.CreateOptions{})
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("world: sync marker: %w", err)
		}
		w.syncGen = gen
		return gen, nil
	}
}

func syncMarker(gen uint64) (*networkingv1alpha3.EnvoyFilter, error) {
	value, err := structpb.NewStruct(map[string]any{
		"name":            SyncMarkerName,
		"type":            "STATIC",
		"connect_timeout": "1s",
		"metadata": map[string]any{"filter_metadata": map[string]any{
			syncMarkerKey: map[string]any{"generation": strconv.FormatUint(gen, 10)},
		}},
	})
	if err != nil {
		return nil, err
	}
	return &networkingv1alpha3.EnvoyFilter{
		ObjectMeta: metav1.ObjectMeta{Name: SyncMarkerName, Namespace: IstioSystem, Labels: map[string]string{worldLabel: "sync"}},
		Spec: networkingapi.EnvoyFilter{ConfigPatches: []*networkingapi.EnvoyFilter_EnvoyConfigObjectPatch{{
			ApplyTo: networkingapi.EnvoyFilter_CLUSTER,
			Match:   &networkingapi.EnvoyFilter_EnvoyConfigObjectMatch{Context: networkingapi.EnvoyFilter_SIDECAR_OUTBOUND},
			Patch:   &networkingapi.EnvoyFilter_Patch{Operation: networkingapi.EnvoyFilter_Patch_ADD, Value: value},
		}}},
	}, nil
}

func markerGeneration(ef *networkingv1alpha3.EnvoyFilter) uint64 {
	for _, p := range ef.Spec.GetConfigPatches() {
		md := p.GetPatch().GetValue().GetFields()["metadata"].GetStructValue().GetFields()["filter_metadata"].GetStructValue()
		g := md.GetFields()[syncMarkerKey].GetStructValue().GetFields()["generation"].GetStringValue()
		if n, err := strconv.ParseUint(g, 10, 64); err == nil {
			return n
		}
	}
	return 0
}

func (w *World) deleteSyncMarker() error {
	if w.Istio == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := w.Istio.NetworkingV1alpha3().EnvoyFilters(IstioSystem).Delete(ctx, SyncMarkerName, metav1.DeleteOptions{})
	if err == nil || apierrors.IsNotFound(err) || w.syncGen == 0 {
		return nil
	}
	return fmt.Errorf("world: delete the sync marker: %w", err)
}

// Sidecars reports every running sidecar (pods whose istio-proxy
// container runs): its marker from its own /config_dump (read from inside
// its pod, as `kubectl exec ... curl localhost:15000` would) and its
// acknowledgements from istiod's /debug/syncz. Sorted by namespace/name.
func (w *World) Sidecars(ctx context.Context) ([]SidecarState, error) {
	pods, err := w.Kube.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	acks, err := w.syncz(ctx)
	if err != nil {
		return nil, err
	}
	var out []SidecarState
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !proxyRunning(p) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := SidecarState{Namespace: p.Namespace, Name: p.Name, PodIP: p.Status.PodIP}
			st.ProxyID = p.Name + "." + p.Namespace
			st.Acks = acks[st.ProxyID]
			st.Marker, st.MarkerVersion, st.Err = w.sidecarMarker(ctx, p.Namespace, p.Name)
			mu.Lock()
			out = append(out, st)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out, nil
}

func proxyRunning(p *corev1.Pod) bool {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.ContainerStatuses...), p.Status.InitContainerStatuses...) {
		if cs.Name == cluster.ProxyContainerName && cs.State.Running != nil {
			return true
		}
	}
	return false
}

// syncz reads /debug/syncz of every istiod: proxy ID -> type URL -> ack.
func (w *World) syncz(ctx context.Context) (map[string]map[string]XDSAck, error) {
	out := map[string]map[string]XDSAck{}
	client := &http.Client{Timeout: 5 * time.Second}
	for _, d := range w.Istiods {
		var status []struct {
			ProxyID   string            `json:"proxy"`
			Resources map[string]XDSAck `json:"resources"`
		}
		if err := getJSON(ctx, client, d.DebugURL+"/debug/syncz", &status); err != nil {
			return nil, err
		}
		for _, s := range status {
			if s.Resources == nil {
				s.Resources = map[string]XDSAck{}
			}
			out[s.ProxyID] = s.Resources
		}
	}
	return out, nil
}

// sidecarMarker reads the marker cluster from the sidecar's admin
// /config_dump (?name_regex= keeps just it).
func (w *World) sidecarMarker(ctx context.Context, ns, name string) (uint64, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return w.DialFrom(ctx, ns, name, addr)
		},
		DisableKeepAlives: true,
	}}
	var dump struct {
		Configs []struct {
			Clusters []struct {
				Version string `json:"version_info"`
				Cluster struct {
					Name     string `json:"name"`
					Metadata struct {
						FilterMetadata map[string]map[string]any `json:"filter_metadata"`
					} `json:"metadata"`
				} `json:"cluster"`
			} `json:"dynamic_active_clusters"`
		} `json:"configs"`
	}
	if err := getJSON(ctx, client, "http://"+adminAddr+"/config_dump?name_regex=^"+SyncMarkerName+"$", &dump); err != nil {
		return 0, "", err
	}
	for _, c := range dump.Configs {
		for _, cl := range c.Clusters {
			if cl.Cluster.Name != SyncMarkerName {
				continue
			}
			g, _ := cl.Cluster.Metadata.FilterMetadata[syncMarkerKey]["generation"].(string)
			n, err := strconv.ParseUint(g, 10, 64)
			if err != nil {
				return 0, "", fmt.Errorf("marker cluster generation %q: %w", g, err)
			}
			return n, cl.Version, nil
		}
	}
	return 0, "", nil
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: HTTP %d: %s", url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return nil
}
