package proxy

import (
	"regexp"
	"sort"

	admin "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	// Every Envoy extension type istiod may put into an Any (filters,
	// transport sockets) and Istio's own filter configs, so the dump can
	// print them.
	_ "istio.io/api/envoy/config/filter/http/alpn/v2alpha1"
	_ "istio.io/api/envoy/config/filter/network/tcp_cluster_rewrite/v2alpha1"
	_ "istio.io/api/envoy/extensions/stats"
	_ "istio.io/istio/pkg/config/xds"
)

// DumpOptions are the /config_dump query parameters the dump honours.
type DumpOptions struct {
	// Endpoints adds the EndpointsConfigDump (Envoy's ?include_eds).
	Endpoints bool
	// NameRegex keeps only the resources whose names match (Envoy's
	// ?name_regex=, RE2 like Go's regexp); nil keeps all. The kinds'
	// version_info stays.
	NameRegex *regexp.Regexp
}

func (o DumpOptions) keep(name string) bool {
	return o.NameRegex == nil || o.NameRegex.MatchString(name)
}

// ConfigDump is the config as Envoy's admin /config_dump prints it: a
// ConfigDump whose configs are a ClustersConfigDump, a ListenersConfigDump
// and a RoutesConfigDump (Envoy's order), plus an EndpointsConfigDump with
// o.Endpoints.
func (s *Snapshot) ConfigDump(o DumpOptions) (*admin.ConfigDump, error) {
	clusters := &admin.ClustersConfigDump{VersionInfo: s.Versions[TypeCluster]}
	for _, name := range sortedKeys(s.Clusters) {
		if !o.keep(name) {
			continue
		}
		r := s.Clusters[name]
		a, err := anypb.New(r.Value)
		if err != nil {
			return nil, err
		}
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters, &admin.ClustersConfigDump_DynamicCluster{
			VersionInfo: r.Version, Cluster: a, LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	listeners := &admin.ListenersConfigDump{VersionInfo: s.Versions[TypeListener]}
	for _, name := range sortedKeys(s.Listeners) {
		if !o.keep(name) {
			continue
		}
		r := s.Listeners[name]
		a, err := anypb.New(r.Value)
		if err != nil {
			return nil, err
		}
		listeners.DynamicListeners = append(listeners.DynamicListeners, &admin.ListenersConfigDump_DynamicListener{
			Name: name,
			ActiveState: &admin.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: a, LastUpdated: timestamppb.New(r.LastUpdated),
			},
		})
	}
	routes := &admin.RoutesConfigDump{}
	for _, name := range sortedKeys(s.Routes) {
		if !o.keep(name) {
			continue
		}
		r := s.Routes[name]
		a, err := anypb.New(r.Value)
		if err != nil {
			return nil, err
		}
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs, &admin.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: r.Version, RouteConfig: a, LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	parts := []proto.Message{clusters, listeners, routes}
	if o.Endpoints {
		eps := &admin.EndpointsConfigDump{}
		for _, name := range sortedKeys(s.Endpoints) {
			if !o.keep(name) {
				continue
			}
			r := s.Endpoints[name]
			a, err := anypb.New(r.Value)
			if err != nil {
				return nil, err
			}
			eps.DynamicEndpointConfigs = append(eps.DynamicEndpointConfigs, &admin.EndpointsConfigDump_DynamicEndpointConfig{
				VersionInfo: r.Version, EndpointConfig: a, LastUpdated: timestamppb.New(r.LastUpdated),
			})
		}
		parts = append(parts, eps)
	}
	out := &admin.ConfigDump{}
	for _, p := range parts {
		a, err := anypb.New(p)
		if err != nil {
			return nil, err
		}
		out.Configs = append(out.Configs, a)
	}
	return out, nil
}

// DumpJSON is ConfigDump in the JSON Envoy prints: proto field names,
// indented.
func (s *Snapshot) DumpJSON(o DumpOptions) ([]byte, error) {
	d, err := s.ConfigDump(o)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{UseProtoNames: true, Multiline: true, Indent: " "}.Marshal(d)
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
