package cluster_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

func annotatedPod(kv ...string) *cluster.Pod {
	a := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		a[kv[i]] = kv[i+1]
	}
	return &cluster.Pod{Namespace: "shop", Name: "p", HasSidecar: true, Interception: cluster.ParseInterception(a)}
}

func TestInboundCaptured(t *testing.T) {
	cases := []struct {
		name string
		pod  *cluster.Pod
		port uint32
		want bool
	}{
		{"default: every port", annotatedPod(), 3306, true},
		{"no sidecar", &cluster.Pod{}, 3306, false},
		{"15090 always excluded", annotatedPod(), 15090, false},
		{"15021 always excluded", annotatedPod(), 15021, false},
		{"15020 (status) always excluded", annotatedPod(), 15020, false},
		{"15008 never captured", annotatedPod(), 15008, false},
		{"a moved status port is excluded instead", annotatedPod("status.sidecar.istio.io/port", "15999"), 15999, false},
		{"a moved status port frees 15020", annotatedPod("status.sidecar.istio.io/port", "15999"), 15020, true},
		{"excludeInboundPorts", annotatedPod(cluster.AnnotationExcludeInboundPorts, "3306,5432"), 3306, false},
		{"excludeInboundPorts other port", annotatedPod(cluster.AnnotationExcludeInboundPorts, "3306,5432"), 8080, true},
		{"excludeInboundPorts with spaces (trimmed)", annotatedPod(cluster.AnnotationExcludeInboundPorts, " 3306 , 5432 "), 5432, false},
		{"includeInboundPorts list", annotatedPod(cluster.AnnotationIncludeInboundPorts, "8080"), 3306, false},
		{"includeInboundPorts lists it", annotatedPod(cluster.AnnotationIncludeInboundPorts, "8080,3306"), 3306, true},
		{"includeInboundPorts empty: nothing", annotatedPod(cluster.AnnotationIncludeInboundPorts, ""), 3306, false},
		{"includeInboundPorts list ignores excludes", annotatedPod(cluster.AnnotationIncludeInboundPorts, "3306", cluster.AnnotationExcludeInboundPorts, "3306"), 3306, true},
		{"includeInboundPorts * explicit", annotatedPod(cluster.AnnotationIncludeInboundPorts, "*"), 3306, true},
		{"invalid includeInboundPorts ignored", annotatedPod(cluster.AnnotationIncludeInboundPorts, "80-90"), 3306, true},
		{"interceptionMode NONE", annotatedPod("sidecar.istio.io/interceptionMode", "NONE"), 3306, false},
		{"interceptionMode TPROXY captures", annotatedPod("sidecar.istio.io/interceptionMode", "TPROXY"), 3306, true},
	}
	for _, c := range cases {
		got, why := cluster.InboundCaptured(c.pod, c.port)
		if got != c.want || why == "" {
			t.Errorf("%s: InboundCaptured(%d) = %v (%s), want %v", c.name, c.port, got, why, c.want)
		}
	}
}

func TestOutboundCaptured(t *testing.T) {
	ext := netip.MustParseAddr("203.0.113.5")
	svc := netip.MustParseAddr("10.96.0.7")
	v6 := netip.MustParseAddr("fd00::7")
	cases := []struct {
		name string
		pod  *cluster.Pod
		ip   netip.Addr
		port uint32
		want bool
	}{
		{"default: everything", annotatedPod(), ext, 25, true},
		{"no sidecar", &cluster.Pod{}, ext, 25, false},
		{"loopback", annotatedPod(), netip.MustParseAddr("127.0.0.1"), 25, false},
		{"v4-mapped loopback", annotatedPod(), netip.MustParseAddr("::ffff:127.0.0.1"), 25, false},
		{"excludeOutboundPorts", annotatedPod(cluster.AnnotationExcludeOutboundPorts, "25,587"), ext, 587, false},
		{"excludeOutboundPorts first of all", annotatedPod(cluster.AnnotationExcludeOutboundPorts, "25", cluster.AnnotationIncludeOutboundPorts, "25"), ext, 25, false},
		{"excludeOutboundIPRanges", annotatedPod(cluster.AnnotationExcludeOutboundIPRanges, "203.0.113.0/24"), ext, 25, false},
		{"excludeOutboundIPRanges before includeOutboundPorts", annotatedPod(cluster.AnnotationExcludeOutboundIPRanges, "203.0.113.0/24", cluster.AnnotationIncludeOutboundPorts, "25"), ext, 25, false},
		{"includeOutboundIPRanges misses", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, "10.96.0.0/12"), ext, 25, false},
		{"includeOutboundIPRanges holds", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, "10.96.0.0/12"), svc, 25, true},
		{"includeOutboundIPRanges v4 only misses v6", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, "10.96.0.0/12"), v6, 25, false},
		{"includeOutboundPorts beats includeOutboundIPRanges", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, "10.96.0.0/12", cluster.AnnotationIncludeOutboundPorts, "25"), ext, 25, true},
		{"includeOutboundIPRanges empty: nothing", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, ""), svc, 25, false},
		{"invalid exclude * ignored", annotatedPod(cluster.AnnotationExcludeOutboundIPRanges, "*"), ext, 25, true},
		{"unknown IP: ports decide", annotatedPod(cluster.AnnotationIncludeOutboundIPRanges, "10.0.0.0/8", cluster.AnnotationIncludeOutboundPorts, "25"), netip.Addr{}, 25, true},
		{"interceptionMode NONE", annotatedPod("sidecar.istio.io/interceptionMode", "NONE"), ext, 25, false},
	}
	for _, c := range cases {
		got, why := cluster.OutboundCaptured(c.pod, c.ip, c.port)
		if got != c.want || why == "" {
			t.Errorf("%s: OutboundCaptured(%s, %d) = %v (%s), want %v", c.name, c.ip, c.port, got, why, c.want)
		}
	}
}

// TestParseInterceptionValidation: "*" only where the injector accepts it.
func TestParseInterceptionValidation(t *testing.T) {
	for _, c := range []struct {
		name, value string
		invalid     bool
	}{
		{cluster.AnnotationIncludeInboundPorts, "*", false},
		{cluster.AnnotationIncludeInboundPorts, " *", true},
		{cluster.AnnotationIncludeInboundPorts, "", false},
		{cluster.AnnotationIncludeInboundPorts, "80,", true},
		{cluster.AnnotationIncludeInboundPorts, "65536", true},
		{cluster.AnnotationExcludeInboundPorts, "*", true},
		{cluster.AnnotationExcludeInboundPorts, "", false},
		{cluster.AnnotationExcludeOutboundPorts, "*", true},
		{cluster.AnnotationExcludeOutboundPorts, "25, 587", false},
		{cluster.AnnotationIncludeOutboundPorts, "*", true},
		{cluster.AnnotationIncludeOutboundIPRanges, "*", false},
		{cluster.AnnotationIncludeOutboundIPRanges, "10.0.0.0/8, 192.168.0.0/16", true},
		{cluster.AnnotationIncludeOutboundIPRanges, "10.0.0.1", true},
		{cluster.AnnotationExcludeOutboundIPRanges, "*", true},
		{cluster.AnnotationExcludeOutboundIPRanges, "", false},
		{cluster.AnnotationExcludeOutboundIPRanges, "10.0.0.0/8,::1/128", false},
		{"sidecar.istio.io/interceptionMode", "redirect", true},
		{"status.sidecar.istio.io/port", "x", true},
	} {
		ic := cluster.ParseInterception(map[string]string{c.name: c.value})
		if got := len(ic.Invalid) > 0; got != c.invalid {
			t.Errorf("%s=%q: invalid %v (%q), want %v", c.name, c.value, got, ic.Invalid, c.invalid)
		}
		if c.invalid && !strings.Contains(ic.Invalid[0], c.name) {
			t.Errorf("%s=%q: %q does not name the annotation", c.name, c.value, ic.Invalid[0])
		}
	}
}

func FuzzParseInterception(f *testing.F) {
	for _, s := range []string{"*", "", "80,443", " 80 ", "10.0.0.0/8", "::/0", "*,80", "65535", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, name := range []string{cluster.AnnotationIncludeInboundPorts, cluster.AnnotationExcludeInboundPorts, cluster.AnnotationIncludeOutboundPorts,
			cluster.AnnotationExcludeOutboundPorts, cluster.AnnotationIncludeOutboundIPRanges, cluster.AnnotationExcludeOutboundIPRanges} {
			p := &cluster.Pod{HasSidecar: true, Interception: cluster.ParseInterception(map[string]string{name: v})}
			cluster.InboundCaptured(p, 3306)
			cluster.OutboundCaptured(p, netip.MustParseAddr("10.0.0.1"), 3306)
		}
	})
}
