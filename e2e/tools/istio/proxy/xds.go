package proxy

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpoint "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listener "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	route "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcm "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Envoy's type URLs for the four resource kinds the model asks for.
const (
	TypeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	TypeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	TypeListener = "type.googleapis.com/envoy.config.listener.v3.Listener"
	TypeRoute    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// Resource is one received xDS resource with the version it came in.
type Resource[T proto.Message] struct {
	Version     string
	LastUpdated time.Time
	Value       T
}

// Snapshot is the config a proxy holds: the latest state of the world for
// each kind, keyed by resource name.
type Snapshot struct {
	Versions  map[string]string // type URL -> version_info last accepted
	Clusters  map[string]Resource[*cluster.Cluster]
	Endpoints map[string]Resource[*endpoint.ClusterLoadAssignment]
	Listeners map[string]Resource[*listener.Listener]
	Routes    map[string]Resource[*route.RouteConfiguration]
	// Pushes counts the responses accepted, all kinds together.
	Pushes int
}

// Complete says whether the proxy holds a full config, as Envoy is
// "initialized": clusters, endpoints for every EDS cluster, and listeners.
func (s *Snapshot) Complete() bool {
	if s.Versions[TypeCluster] == "" || s.Versions[TypeListener] == "" {
		return false
	}
	for _, name := range edsNames(s.Clusters) {
		if _, ok := s.Endpoints[name]; !ok {
			return false
		}
	}
	return true
}

// Client is a state-of-the-world ADS client, sequencing its requests as
// Envoy does: CDS first, EDS for the EDS clusters received, then LDS, then
// RDS for the route names the listeners' HTTP connection managers use.
// Each accepted response is ACKed and published through OnUpdate.
type Client struct {
	Addr string
	Node *core.Node
	// OnUpdate receives every new snapshot (a private copy of the maps).
	OnUpdate func(*Snapshot)
	// Logf receives connection events; nil discards them.
	Logf func(format string, args ...any)

	mu   sync.Mutex
	snap Snapshot
}

// Snapshot returns a copy of the current config.
func (c *Client) Snapshot() *Snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.copySnapshot()
}

func (c *Client) copySnapshot() *Snapshot {
	s := &Snapshot{Versions: map[string]string{}, Clusters: map[string]Resource[*cluster.Cluster]{},
		Endpoints: map[string]Resource[*endpoint.ClusterLoadAssignment]{},
		Listeners: map[string]Resource[*listener.Listener]{}, Routes: map[string]Resource[*route.RouteConfiguration]{},
		Pushes: c.snap.Pushes}
	for k, v := range c.snap.Versions {
		s.Versions[k] = v
	}
	for k, v := range c.snap.Clusters {
		s.Clusters[k] = v
	}
	for k, v := range c.snap.Endpoints {
		s.Endpoints[k] = v
	}
	for k, v := range c.snap.Listeners {
		s.Listeners[k] = v
	}
	for k, v := range c.snap.Routes {
		s.Routes[k] = v
	}
	return s
}

func (c *Client) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Run keeps a stream to Addr until ctx ends, reconnecting after errors
// (Envoy's behaviour: the last config stays in force meanwhile).
func (c *Client) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	c.mu.Lock()
	c.snap = Snapshot{Versions: map[string]string{}, Clusters: map[string]Resource[*cluster.Cluster]{},
		Endpoints: map[string]Resource[*endpoint.ClusterLoadAssignment]{},
		Listeners: map[string]Resource[*listener.Listener]{}, Routes: map[string]Resource[*route.RouteConfiguration]{}}
	c.mu.Unlock()
	for {
		err := c.stream(ctx, discovery.NewAggregatedDiscoveryServiceClient(conn))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c.logf("xds: stream to %s ended: %v; reconnecting", c.Addr, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// stream runs one ADS stream.
func (c *Client) stream(ctx context.Context, ads discovery.AggregatedDiscoveryServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	// subscribed: the resource names last requested per type (nil = wildcard).
	subscribed := map[string][]string{}
	nonces := map[string]string{}
	first := true
	send := func(typeURL string, names []string, errDetail string) error {
		req := &discovery.DiscoveryRequest{
			TypeUrl:       typeURL,
			ResourceNames: names,
			ResponseNonce: nonces[typeURL],
		}
		c.mu.Lock()
		req.VersionInfo = c.snap.Versions[typeURL]
		c.mu.Unlock()
		if errDetail != "" {
			req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: errDetail}
		}
		if first {
			req.Node = c.Node
			first = false
		}
		subscribed[typeURL] = names
		return s.Send(req)
	}
	if err := send(TypeCluster, nil, ""); err != nil {
		return err
	}
	ldsSent := false
	for {
		resp, err := s.Recv()
		if err != nil {
			return err
		}
		nonces[resp.TypeUrl] = resp.Nonce
		if err := c.accept(resp); err != nil {
			c.logf("xds: NACK %s version %s: %v", resp.TypeUrl, resp.VersionInfo, err)
			if err := send(resp.TypeUrl, subscribed[resp.TypeUrl], err.Error()); err != nil {
				return err
			}
			continue
		}
		// ACK with the same subscription.
		if err := send(resp.TypeUrl, subscribed[resp.TypeUrl], ""); err != nil {
			return err
		}
		c.mu.Lock()
		eds := edsNames(c.snap.Clusters)
		rds := routeNames(c.snap.Listeners)
		c.mu.Unlock()
		switch resp.TypeUrl {
		case TypeCluster:
			if len(eds) > 0 && !equal(eds, subscribed[TypeEndpoint]) {
				if err := send(TypeEndpoint, eds, ""); err != nil {
					return err
				}
			}
			if !ldsSent {
				ldsSent = true
				if err := send(TypeListener, nil, ""); err != nil {
					return err
				}
			}
		case TypeListener:
			if len(rds) > 0 && !equal(rds, subscribed[TypeRoute]) {
				if err := send(TypeRoute, rds, ""); err != nil {
					return err
				}
			}
		}
		if c.OnUpdate != nil {
			c.mu.Lock()
			snap := c.copySnapshot()
			c.mu.Unlock()
			c.OnUpdate(snap)
		}
	}
}

// accept stores a response's resources (state of the world: a CDS or LDS
// response replaces the whole set; EDS and RDS replace the named ones).
// A resource that comes back unchanged keeps the version and time it last
// changed in, as Envoy's config dump reports them; the kind's version is
// the response's.
func (c *Client) accept(resp *discovery.DiscoveryResponse) error {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	switch resp.TypeUrl {
	case TypeCluster:
		m, err := decodeAll(resp, c.snap.Clusters, func() *cluster.Cluster { return &cluster.Cluster{} }, (*cluster.Cluster).GetName, now)
		if err != nil {
			return err
		}
		c.snap.Clusters = m
	case TypeListener:
		m, err := decodeAll(resp, c.snap.Listeners, func() *listener.Listener { return &listener.Listener{} }, (*listener.Listener).GetName, now)
		if err != nil {
			return err
		}
		c.snap.Listeners = m
	case TypeEndpoint:
		m, err := decodeAll(resp, c.snap.Endpoints, func() *endpoint.ClusterLoadAssignment { return &endpoint.ClusterLoadAssignment{} }, (*endpoint.ClusterLoadAssignment).GetClusterName, now)
		if err != nil {
			return err
		}
		maps.Copy(c.snap.Endpoints, m)
	case TypeRoute:
		m, err := decodeAll(resp, c.snap.Routes, func() *route.RouteConfiguration { return &route.RouteConfiguration{} }, (*route.RouteConfiguration).GetName, now)
		if err != nil {
			return err
		}
		maps.Copy(c.snap.Routes, m)
	default:
		return fmt.Errorf("unexpected type %s", resp.TypeUrl)
	}
	c.snap.Versions[resp.TypeUrl] = resp.VersionInfo
	c.snap.Pushes++
	return nil
}

// decodeAll decodes a response's resources by name; one equal to its
// entry in prev keeps that entry's version and time.
func decodeAll[T proto.Message](resp *discovery.DiscoveryResponse, prev map[string]Resource[T], mk func() T, name func(T) string, now time.Time) (map[string]Resource[T], error) {
	out := map[string]Resource[T]{}
	for _, a := range resp.Resources {
		v := mk()
		if err := anypb.UnmarshalTo(a, v, proto.UnmarshalOptions{}); err != nil {
			return nil, fmt.Errorf("decode %s: %w", a.TypeUrl, err)
		}
		n := name(v)
		if old, ok := prev[n]; ok && proto.Equal(old.Value, v) {
			out[n] = old
			continue
		}
		out[n] = Resource[T]{Version: resp.VersionInfo, LastUpdated: now, Value: v}
	}
	return out, nil
}

// edsNames are the EDS service names of the clusters of type EDS, sorted.
func edsNames(cs map[string]Resource[*cluster.Cluster]) []string {
	var out []string
	for name, r := range cs {
		if r.Value.GetType() != cluster.Cluster_EDS {
			continue
		}
		if sn := r.Value.GetEdsClusterConfig().GetServiceName(); sn != "" {
			name = sn
		}
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}

// routeNames are the RDS route names the listeners' HTTP connection
// managers refer to, sorted and unique.
func routeNames(ls map[string]Resource[*listener.Listener]) []string {
	seen := map[string]bool{}
	for _, r := range ls {
		chains := append([]*listener.FilterChain{}, r.Value.GetFilterChains()...)
		if d := r.Value.GetDefaultFilterChain(); d != nil {
			chains = append(chains, d)
		}
		for _, fc := range chains {
			for _, f := range fc.GetFilters() {
				if f.GetTypedConfig().GetTypeUrl() != "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager" {
					continue
				}
				var h hcm.HttpConnectionManager
				if err := f.GetTypedConfig().UnmarshalTo(&h); err != nil {
					continue
				}
				if n := h.GetRds().GetRouteConfigName(); n != "" {
					seen[n] = true
				}
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
