package cluster

import (
	"strings"
	"testing"
	"time"
)

// The waits a silent client meets, per path and mesh config, as Istio
// builds the listeners (see Waits for the source lines).
func TestWaitBound(t *testing.T) {
	mc := func(pdt time.Duration, mode string) MeshConfig {
		return MeshConfig{Found: true, ProtocolDetectionTimeout: pdt, OutboundTrafficPolicy: mode}
	}
	for _, tt := range []struct {
		name  string
		mesh  MeshConfig
		path  string
		bound time.Duration
		why   string
	}{
		{"default mesh: sniffing waits forever", mc(0, OutboundAllowAny), PathMeshClient, 0, ""},
		{"default mesh inbound: forever", mc(0, OutboundAllowAny), PathInbound, 0, ""},
		{"default mesh catch-all: no inspector", mc(0, OutboundAllowAny), PathCatchAll, 0, ""},
		{"detection timeout outbound", mc(5*time.Second, OutboundAllowAny), PathMeshClient, 5 * time.Second, "protocolDetectionTimeout 5s"},
		{"detection timeout inbound", mc(5*time.Second, OutboundAllowAny), PathInbound, 5 * time.Second, "protocolDetectionTimeout 5s"},
		{"detection timeout does not reach the catch-all", mc(5*time.Second, OutboundAllowAny), PathCatchAll, 0, ""},
		{"registry only: the catch-all closes at once, nothing waits", mc(0, OutboundRegistryOnly), PathCatchAll, 0, ""},
		{"dynamic DNS catch-all: Envoy's 15s then close", mc(0, OutboundAllowAnyDynamicDNS), PathCatchAll, 15 * time.Second, "15s listener-filter timeout"},
		{"dynamic DNS comes first on a sniffed port, and closes", mc(5*time.Second, OutboundAllowAnyDynamicDNS), PathMeshClient, 15 * time.Second, "ALLOW_ANY_DYNAMIC_DNS"},
		{"dynamic DNS is outbound only", mc(0, OutboundAllowAnyDynamicDNS), PathInbound, 0, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bound, why := WaitBound(tt.mesh, tt.path)
			if bound != tt.bound || (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
				t.Errorf("WaitBound = %s %q, want %s %q", bound, why, tt.bound, tt.why)
			}
		})
	}
}
