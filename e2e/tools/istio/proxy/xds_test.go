package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	cluster "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func cdsResponse(t *testing.T, version string, clusters ...*cluster.Cluster) *discovery.DiscoveryResponse {
	t.Helper()
	resp := &discovery.DiscoveryResponse{TypeUrl: TypeCluster, VersionInfo: version}
	for _, c := range clusters {
		a, err := anypb.New(c)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func newTestClient() *Client {
	c := &Client{}
	c.snap = Snapshot{Versions: map[string]string{}, Clusters: map[string]Resource[*cluster.Cluster]{}}
	return c
}

// TestAcceptKeepsVersionOfUnchanged: as in Envoy's config dump, a
// resource's version_info is the version it last changed in, while the
// kind's version_info is the last accepted response's. (The world's sync
// wait relies on it: the push that first carried its marker is the
// marker cluster's version.)
func TestAcceptKeepsVersionOfUnchanged(t *testing.T) {
	c := newTestClient()
	a := &cluster.Cluster{Name: "a", ConnectTimeout: durationpb.New(1e9)}
	b := &cluster.Cluster{Name: "b", ConnectTimeout: durationpb.New(1e9)}
	if err := c.accept(cdsResponse(t, "v1", a, b)); err != nil {
		t.Fatal(err)
	}
	b2 := &cluster.Cluster{Name: "b", ConnectTimeout: durationpb.New(2e9)}
	if err := c.accept(cdsResponse(t, "v2", a, b2)); err != nil {
		t.Fatal(err)
	}
	s := c.Snapshot()
	if got := s.Versions[TypeCluster]; got != "v2" {
		t.Errorf("CDS version %q, want v2", got)
	}
	if got := s.Clusters["a"].Version; got != "v1" {
		t.Errorf("unchanged cluster a: version %q, want v1", got)
	}
	if got := s.Clusters["b"].Version; got != "v2" {
		t.Errorf("changed cluster b: version %q, want v2", got)
	}
	// State of the world: a cluster left out is gone.
	if err := c.accept(cdsResponse(t, "v3", a)); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Snapshot().Clusters["b"]; ok {
		t.Error("cluster b still there after a CDS response without it")
	}
}

// TestConfigDumpNameRegex: ?name_regex= keeps the matching resources and
// every kind's version_info, as Envoy's admin does.
func TestConfigDumpNameRegex(t *testing.T) {
	c := newTestClient()
	if err := c.accept(cdsResponse(t, "v1", &cluster.Cluster{Name: "outbound|80||a"}, &cluster.Cluster{Name: "marker"})); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(AdminHandler(c))
	defer srv.Close()
	for _, tc := range []struct {
		query string
		want  []string
		code  int
	}{
		{"", []string{"marker", "outbound|80||a"}, http.StatusOK},
		{"?name_regex=^marker$", []string{"marker"}, http.StatusOK},
		{"?name_regex=nothing", nil, http.StatusOK},
		{"?name_regex=(", nil, http.StatusBadRequest},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := http.Get(srv.URL + "/config_dump" + tc.query)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("HTTP %d, want %d", resp.StatusCode, tc.code)
			}
			if tc.code != http.StatusOK {
				return
			}
			var dump struct {
				Configs []struct {
					Type     string `json:"@type"`
					Version  string `json:"version_info"`
					Clusters []struct {
						Cluster struct {
							Name string `json:"name"`
						} `json:"cluster"`
					} `json:"dynamic_active_clusters"`
				} `json:"configs"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil {
				t.Fatal(err)
			}
			var names []string
			version := ""
			for _, cfg := range dump.Configs {
				if cfg.Type != "type.googleapis.com/envoy.admin.v3.ClustersConfigDump" {
					continue
				}
				version = cfg.Version
				for _, cl := range cfg.Clusters {
					names = append(names, cl.Cluster.Name)
				}
			}
			if !slices.Equal(names, tc.want) || version != "v1" {
				t.Errorf("clusters %v (version %q), want %v (v1)", names, version, tc.want)
			}
		})
	}
}
