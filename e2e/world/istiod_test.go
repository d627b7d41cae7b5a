package world

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireIstio finds Istio's binaries or skips (fails under CI=true).
func requireIstio(t *testing.T) IstioBinaries {
	t.Helper()
	b, err := LocateIstioBinaries("")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: failing instead of skipping)", err)
		}
		t.Skip(err)
	}
	return b
}

// waitGreeting dials addr from inside pod ns/name until a MariaDB greeting
// arrives.
func waitGreeting(t *testing.T, ctx context.Context, w *World, ns, name, addr string) {
	t.Helper()
	for {
		if got := wtFirstBytes(t, ctx, w, ns, name, addr, "", time.Second); strings.Contains(strings.ToLower(got), "mariadb") {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no MariaDB greeting at %s from %s/%s", addr, ns, name)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// containerLog is the log of a pod's container (all restarts).
func containerLog(t *testing.T, w *World, ns, name, container string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(w.StateDir, "node", "pods", ns+"_"+name+"_*", "logs", container+"-*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(data)
	}
	return b.String()
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func clusterIPOf(t *testing.T, ctx context.Context, w *World, ns, name string) string {
	t.Helper()
	svc, err := w.Kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return svc.Spec.ClusterIP
}

// adminConfigDump reads Envoy's admin /config_dump from inside the pod
// (127.0.0.1:15000, not captured), as `kubectl port-forward` + curl would.
func adminConfigDump(t *testing.T, ctx context.Context, w *World, ns, name string) map[string]any {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return w.DialFrom(ctx, ns, name, addr)
		},
		DisableKeepAlives: true,
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:15000/config_dump?include_eds", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s/%s /config_dump: %v", ns, name, err)
	}
	defer resp.Body.Close()
	var dump map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dump); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("%s/%s /config_dump: HTTP %d, %v", ns, name, resp.StatusCode, err)
	}
	return dump
}

// dumpListener finds a listener by name in a /config_dump document
// (configs[] -> ListenersConfigDump -> dynamic_listeners[].active_state.listener).
func dumpListener(t *testing.T, dump map[string]any, name string) map[string]any {
	t.Helper()
	var names []string
	configs, _ := dump["configs"].([]any)
	for _, c := range configs {
		cm, _ := c.(map[string]any)
		if cm["@type"] != "type.googleapis.com/envoy.admin.v3.ListenersConfigDump" {
			continue
		}
		dl, _ := cm["dynamic_listeners"].([]any)
		for _, l := range dl {
			lm, _ := l.(map[string]any)
			as, _ := lm["active_state"].(map[string]any)
			lis, _ := as["listener"].(map[string]any)
			if lis["name"] == name {
				return lis
			}
			names = append(names, fmt.Sprint(lis["name"]))
		}
	}
	t.Fatalf("no listener %s in the dump; listeners: %v", name, names)
	return nil
}

func listenerFilterNames(l map[string]any) []string {
	var out []string
	fs, _ := l["listener_filters"].([]any)
	for _, f := range fs {
		m, _ := f.(map[string]any)
		out = append(out, fmt.Sprint(m["name"]))
	}
	return out
}
