package vantage

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"
)

const tinyDump = `{"configs":[{"@type":"type.googleapis.com/envoy.admin.v3.ListenersConfigDump","dynamic_listeners":[{"name":"virtualOutbound","active_state":{"listener":{"name":"virtualOutbound","address":{"socket_address":{"address":"0.0.0.0","port_value":15001}}}}}]}]}`

// An Envoy admin stand-in on loopback: the path asked, the body bounded.
func TestGetConfigDump(t *testing.T) {
	var paths []string
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.String())
		mu.Unlock()
		switch r.URL.Path {
		case "/config_dump":
			_, _ = w.Write([]byte(tinyDump))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	data, err := getConfigDump(context.Background(), host)
	if err != nil || string(data) != tinyDump {
		t.Fatalf("getConfigDump = %q, %v", data, err)
	}
	if len(paths) != 1 || paths[0] != "/config_dump" {
		t.Errorf("asked %v, want /config_dump without include_eds", paths)
	}

	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 1<<20)
		for i := 0; i <= proxyconfig.MaxDumpBytes>>20; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	defer big.Close()
	if _, err := getConfigDump(context.Background(), strings.TrimPrefix(big.URL, "http://")); !errors.Is(err, proxyconfig.ErrTooLarge) {
		t.Errorf("oversized dump: %v, want ErrTooLarge", err)
	}
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	if _, err := getConfigDump(context.Background(), strings.TrimPrefix(notFound.URL, "http://")); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("404: %v", err)
	}
}

// One fetch per proxy per scan, however many targets ask at once.
func TestConfigDumpsFetchOncePerProxy(t *testing.T) {
	var mu sync.Mutex
	asked := map[Proxy]int{}
	c := &ConfigDumps{Fetch: func(_ context.Context, p Proxy) ([]byte, error) {
		mu.Lock()
		asked[p]++
		mu.Unlock()
		if p.Pod == "broken" {
			return []byte("<html>"), nil
		}
		return []byte(tinyDump), nil
	}}
	proxies := []Proxy{{Namespace: "shop", Pod: "web"}, {Namespace: "shop", Pod: "broken"}, {Self: true}}
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for range 10 {
		for _, p := range proxies {
			wg.Go(func() {
				d, err := c.Get(context.Background(), p)
				if p.Pod == "broken" {
					if err == nil {
						errs <- errors.New("broken dump parsed")
					}
					return
				}
				if err != nil || d.ListenerByName("virtualOutbound") == nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, p := range proxies {
		if asked[p] != 1 {
			t.Errorf("%s fetched %d times, want 1", p, asked[p])
		}
	}
	if c.Fetches() != 3 {
		t.Errorf("Fetches() = %d, want 3", c.Fetches())
	}
}

func TestClientProxy(t *testing.T) {
	inv := &cluster.Inventory{Pods: []cluster.Pod{
		{Namespace: "shop", Name: "web-b", HasSidecar: true, Phase: "Running"},
		{Namespace: "shop", Name: "web-a", HasSidecar: true, Phase: "Pending"},
		{Namespace: "shop", Name: "db", HasSidecar: false, Phase: "Running"},
		{Namespace: "shop", Name: "api", HasSidecar: true, Phase: "Running"},
	}}
	if p, ok := ClientProxy(inv, "shop"); !ok || p != (Proxy{Namespace: "shop", Pod: "api"}) {
		t.Errorf("ClientProxy(shop) = %v, %v", p, ok)
	}
	if p, ok := ClientProxy(inv, "shop", cluster.PodRef{Namespace: "shop", Name: "api"}); !ok || p.Pod != "web-b" {
		t.Errorf("ClientProxy(shop) avoiding the target's backend api = %v, %v", p, ok)
	}
	if p, ok := ClientProxy(inv, "shop", cluster.PodRef{Namespace: "shop", Name: "api"}, cluster.PodRef{Namespace: "shop", Name: "web-b"}); !ok || p.Pod != "api" {
		t.Errorf("ClientProxy(shop) with only backends = %v, %v", p, ok)
	}
	if p, ok := ClientProxy(inv, "legacy"); ok {
		t.Errorf("ClientProxy(legacy) = %v, want none", p)
	}
}
