package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// detectionFallback stands in for a sidecar under protocolDetectionTimeout
// d: it waits d for the client's bytes (Envoy's listener-filter timeout),
// then gives up sniffing and passes the connection to the server, whose
// banner then arrives. Its timer is the mesh's, not the test's pacing.
func detectionFallback(d time.Duration) func(server func(net.Conn)) func(net.Conn) {
	return func(server func(net.Conn)) func(net.Conn) {
		return func(c net.Conn) {
			buf := make([]byte, 1)
			_ = c.SetReadDeadline(time.Now().Add(d))
			if _, err := c.Read(buf); err == nil {
				return // the client spoke: not what these tests do
			}
			_ = c.SetReadDeadline(time.Time{})
			server(c)
		}
	}
}

// A mesh with protocolDetectionTimeout 4s and a server-first port that is
// merely slow through it: a plain scan (no --timeout) must not call the
// silence of its 3s default wait a DEADLOCK. The wait follows the mesh
// (4s + margin), the banner arrives, the verdict is DELAYED; with a
// --timeout shorter than the mesh's, the report says what to pass.
func TestScanWaitFollowsTheMeshDetectionTimeout(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	ctx := context.Background()
	if _, err := env.CreateNamespace(ctx, "istio-system", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Client.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio"},
		Data:       map[string]string{"mesh": "protocolDetectionTimeout: 4s\n"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	seedSidecarsWith(t, env, "app", detectionFallback(4*time.Second), map[string]func(net.Conn){
		"mariadb": greet("J\x00\x00\x00\x0a8.0.36\x00"),
	})
	fake := newFakePortForward(t)
	scan := []string{"scan", "-n", "app", "--vantage", "self", "--self-in-mesh", "true", "--direct", "-o", "json", "--kubeconfig", env.Kubeconfig}

	only := func(t *testing.T, r report.Report) report.Finding {
		t.Helper()
		if len(r.Findings) != 1 {
			t.Fatalf("findings %+v", r.Findings)
		}
		return r.Findings[0]
	}

	t.Run("plain scan: DELAYED, never DEADLOCK", func(t *testing.T) {
		out, errOut, err := fake.run(t, "", scan...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		f := only(t, r)
		if f.Verdict != report.Delayed || f.Code != "SF0403" {
			t.Errorf("verdict %s %s (%s), want DELAYED SF0403", f.Verdict, f.Code, f.Reason)
		}
		if r.Mesh.BannerWaitMs != 6000 || !strings.Contains(r.Mesh.BannerWait, "protocolDetectionTimeout 4s") {
			t.Errorf("banner wait %d ms (%q), want 6000 following the mesh", r.Mesh.BannerWaitMs, r.Mesh.BannerWait)
		}
		if !slices.ContainsFunc(r.Warnings, func(w string) bool { return strings.HasPrefix(w, "probes wait 6s for a banner, not 3s") }) {
			t.Errorf("warnings %q do not say the wait follows the mesh", r.Warnings)
		}
	})

	t.Run("--timeout shorter than the mesh's: not DEADLOCK, and what to pass", func(t *testing.T) {
		out, errOut, err := fake.run(t, "", append(scan, "--timeout", "1s")...)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		f := only(t, r)
		if f.Verdict != report.AtRisk || f.Code != "SF0502" {
			t.Errorf("verdict %s %s (%s), want AT-RISK SF0502", f.Verdict, f.Code, f.Reason)
		}
		if !strings.Contains(f.Reason, "--timeout 6s") {
			t.Errorf("reason %q does not say what --timeout to pass", f.Reason)
		}
		if r.Mesh.BannerWaitMs != 1000 || !strings.Contains(r.Mesh.BannerWait, "--timeout") {
			t.Errorf("banner wait %d ms (%q), want the user's 1s", r.Mesh.BannerWaitMs, r.Mesh.BannerWait)
		}
		if !slices.ContainsFunc(r.Warnings, func(w string) bool {
			return strings.HasPrefix(w, "--timeout 1s is not longer than protocolDetectionTimeout 4s")
		}) {
			t.Errorf("warnings %q do not say --timeout is too short", r.Warnings)
		}
	})

	// Istio 1.31's mode and a field this API does not know: the config
	// is read, not rejected whole, and the report says what was dropped.
	t.Run("ALLOW_ANY_DYNAMIC_DNS and an unknown field keep the rest", func(t *testing.T) {
		cm, err := env.Client.CoreV1().ConfigMaps("istio-system").Get(ctx, "istio", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["mesh"] = "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\nprotocolDetectionTimeout: 4s\nfutureKnob: {on: true}\n"
		if _, err := env.Client.CoreV1().ConfigMaps("istio-system").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := fake.run(t, "", "scan", "-n", "app", "--static", "-o", "json", "--kubeconfig", env.Kubeconfig)
		if err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		r := decodeReport(t, out)
		if r.Mesh.Source != "istio-system/istio" || r.Mesh.ProtocolDetectionTimeoutMs != 4000 || r.Mesh.OutboundTrafficPolicy != "ALLOW_ANY_DYNAMIC_DNS" {
			t.Errorf("mesh %+v", r.Mesh)
		}
		if !slices.ContainsFunc(r.Warnings, func(w string) bool {
			return strings.Contains(w, "istio-system/istio") && strings.Contains(w, "futureKnob")
		}) {
			t.Errorf("warnings %q do not name the unknown field", r.Warnings)
		}
	})
}
