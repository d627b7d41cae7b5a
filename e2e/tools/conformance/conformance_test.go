// Package conformance proves that cluster.ConvertProtocol and
// cluster.ServiceEntryPortProtocol compute exactly what Istio computes, by
// calling Istio's own functions (istio.io/istio pkg/config/kube and
// pkg/config/protocol, pinned in go.mod) on the same inputs.
//
// Istio's protocol.Unsupported ("UnsupportedProtocol") is our
// cluster.ProtocolAuto ("auto"); every other protocol has the same name.
package conformance

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"istio.io/istio/pkg/config/kube"
	"istio.io/istio/pkg/config/protocol"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// minCombinations is the floor the generative test must reach.
const minCombinations = 10_000

// seed fixes the pseudo-random corpus extension, so every run checks the
// same inputs.
const seed = 0x5e4f1257

// recognised are the names protocol.Parse knows, lower-case.
var recognised = []string{
	"tcp", "udp", "grpc", "grpc-web", "http", "http_proxy", "http2",
	"https", "tls", "mongo", "redis", "mysql",
}

// wellKnownPorts are the Service ports kube.ConvertProtocol treats as TCP.
var wellKnownPorts = map[int32]bool{25: true, 53: true, 3306: true, 27017: true}

// portNames hits every branch of the name rule: empty, each recognised
// name in several cases with and without a suffix, the grpc-web prefix
// and its near misses, dashes in odd places, Unicode (including runes that
// strings.ToLower folds to ASCII), and junk.
func portNames() []string {
	names := []string{
		"", "-", "--", "x", "web", "client", "metrics", "smtp", "dns", "pop3",
		"postgres", "nats", "kubernetes.io/h2c", "kubernetes.io/ws",
		// grpc-web and its near misses.
		"grpc-web", "GRPC-WEB", "Grpc-Web", "grpc-web-ui", "GRPC-WEB-x",
		"grpc-webx", "grpc-web_", "grpcweb", "grpc_web", "grpc-we", "grpc-",
		"grpc-wéb", "grpc-w", "grpc--web",
		// http_proxy and other underscores.
		"http_proxy", "HTTP_PROXY", "Http_Proxy-egress", "http-proxy", "tcp_db",
		// tcp with dashes in every position.
		"tcp", "-tcp", "tcp-", "tcp--", "tcp-a-b-c", "a-tcp", "client-tcp",
		"tcpx", "tcp2", " tcp", "tcp ",
		// udp as a name (the L4 protocol is separate).
		"udp", "udp-x", "UDP-dns",
		// mysql and friends on and off their usual ports.
		"mysql", "mysql-main", "MySQL", "mongo-db", "mongodb", "redis-cache",
		// Unicode: İ lowers to i, K (Kelvin) lowers to k, ſ stays.
		"REDİS", "redİs-cache", "mySQL-ĸ", "ﬁle", "http-ünicode", "ünicode",
		"httpſ", "日本語", "tcp-日本", "\u00a0tcp", "h\u200dttp",
		// Other oddities.
		"DoubleHBONE", "doublehbone", "HBONE", "hbone", "UnsupportedProtocol",
		"auto", "SCTP", "sctp-x", "http2-", "https-x-y", "tls-", "Tls",
	}
	for _, r := range recognised {
		for _, v := range caseVariants(r) {
			names = append(names, v, v+"-suffix", v+"-", v+"-a-b", v+"x")
		}
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 40 {
		names = append(names, junk(rng))
	}
	return dedupe(names)
}

// appProtocols is the appProtocol corpus; nil is tried separately.
func appProtocols() []string {
	apps := []string{
		"", "kubernetes.io/h2c", "kubernetes.io/ws", "kubernetes.io/wss",
		"Kubernetes.io/h2c", "KUBERNETES.IO/WS", "kubernetes.io/WSS",
		"kubernetes.io/h2c ", "kubernetes.io/", "kubernetes.io/http2",
		"nats.io/client", "mysql.com/x", "vendor.io/mysql", "example.com/tcp",
		"tcp", "TCP", "Tcp-x", "udp", "grpc-web", "GRPC-Web", "grpc-web-x",
		"grpcweb", "http", "HTTP", "http-custom", "http2", "h2c", "https",
		"tls", "grpc", "mongo", "redis", "mysql", "MySQL", "http_proxy",
		"ws", "wss", "-", "REDİS", "DoubleHBONE",
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	for range 10 {
		apps = append(apps, junk(rng))
	}
	return dedupe(apps)
}

// l4s are Kubernetes Service port protocols; "" means unset (TCP).
// "udp" is not a valid value, but must not count as UDP.
var l4s = []string{"TCP", "UDP", "SCTP", "", "udp"}

// ports covers every well-known port and neighbours, plus the extremes.
var ports = []int32{0, 1, 24, 25, 26, 53, 80, 443, 3306, 3307, 8080, 27017, 27018, 65535, -1}

// caseVariants returns s lower, UPPER, Title and aLtErNaTiNg.
func caseVariants(s string) []string {
	var alt strings.Builder
	for i, r := range s {
		if i%2 == 1 {
			alt.WriteString(strings.ToUpper(string(r)))
		} else {
			alt.WriteRune(r)
		}
	}
	return dedupe([]string{s, strings.ToUpper(s), strings.ToUpper(s[:1]) + s[1:], alt.String()})
}

// junk builds a name from pieces likely to confuse the parser.
func junk(rng *rand.Rand) string {
	pieces := []string{
		"tcp", "TCP", "http", "Http", "grpc", "web", "WEB", "-", "-", "_",
		"proxy", "2", "s", "x", "mysql", "redis", "udp", "é", "İ", "/", ".",
		"kubernetes.io", "h2c", "ws",
	}
	var b strings.Builder
	for range 1 + rng.IntN(5) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

func dedupe(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := in[:0:0]
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// fromIstio maps an Istio protocol to ours.
func fromIstio(p protocol.Instance) cluster.Protocol {
	if p == protocol.Unsupported {
		return cluster.ProtocolAuto
	}
	return cluster.Protocol(p)
}

func describeApp(app *string) string {
	if app == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q", *app)
}

// checkConvert compares one input and the promises that go with it.
func checkConvert(t *testing.T, port int32, name, l4 string, app *string) {
	t.Helper()
	got := cluster.ConvertProtocol(port, name, l4, app)
	want := kube.ConvertProtocol(port, name, corev1.Protocol(l4), app)
	in := fmt.Sprintf("(%d, %q, %q, %s)", port, name, l4, describeApp(app))

	if got.Protocol != fromIstio(want) {
		t.Fatalf("ConvertProtocol%s = %q, Istio says %q", in, got.Protocol, want)
	}
	if got.Sniffed() != (want == protocol.Unsupported) {
		t.Fatalf("ConvertProtocol%s.Sniffed() = %v, Istio says %q", in, got.Sniffed(), want)
	}

	// AppProtocolTrap promises: an appProtocol was set, Istio sniffs the
	// port, and without that appProtocol Istio would have declared it (the
	// port name alone would have decided).
	wantTrap := app != nil && want == protocol.Unsupported &&
		kube.ConvertProtocol(port, name, corev1.Protocol(l4), nil) != protocol.Unsupported
	if got.AppProtocolTrap != wantTrap {
		t.Fatalf("ConvertProtocol%s.AppProtocolTrap = %v, want %v", in, got.AppProtocolTrap, wantTrap)
	}

	// Source promises: why the protocol is what it is.
	var ok bool
	switch got.Source {
	case cluster.SourceProtocol:
		ok = l4 == string(corev1.ProtocolUDP) && got.Protocol == cluster.ProtocolUDP
	case cluster.SourceAppProtocol:
		ok = app != nil && l4 != string(corev1.ProtocolUDP) && !got.Sniffed()
	case cluster.SourceName:
		ok = app == nil && l4 != string(corev1.ProtocolUDP) && !got.Sniffed()
	case cluster.SourceWellKnownPort:
		ok = wellKnownPorts[port] && got.Protocol == cluster.ProtocolTCP &&
			protocol.Parse(prefixOf(name, app)) == protocol.Unsupported
	case cluster.SourceNone:
		ok = got.Sniffed()
	}
	if !ok {
		t.Fatalf("ConvertProtocol%s = %+v: Source %q does not explain the result", in, got, got.Source)
	}
}

// prefixOf is the text Istio parses when the grpc-web prefix misses:
// appProtocol if set, else the name, up to the first '-'.
func prefixOf(name string, app *string) string {
	if app != nil {
		name = *app
	}
	if i := strings.IndexByte(name, '-'); i >= 0 {
		name = name[:i]
	}
	return name
}

// TestConvertProtocolConformance runs the full cross product of the
// corpora through both implementations.
func TestConvertProtocolConformance(t *testing.T) {
	names, apps := portNames(), appProtocols()
	appPtrs := []*string{nil}
	for i := range apps {
		appPtrs = append(appPtrs, &apps[i])
	}

	count := 0
	seen := map[cluster.Protocol]int{}
	sources := map[cluster.ProtocolSource]int{}
	traps := 0
	for _, port := range ports {
		for _, name := range names {
			for _, l4 := range l4s {
				for _, app := range appPtrs {
					checkConvert(t, port, name, l4, app)
					r := cluster.ConvertProtocol(port, name, l4, app)
					seen[r.Protocol]++
					sources[r.Source]++
					if r.AppProtocolTrap {
						traps++
					}
					count++
				}
			}
		}
	}
	t.Logf("compared %d combinations (%d port names x %d appProtocols incl. nil x %d L4 protocols x %d ports); %d traps",
		count, len(names), len(appPtrs), len(l4s), len(ports), traps)
	t.Logf("protocols: %v", seen)
	t.Logf("sources: %v", sources)
	if count < minCombinations {
		t.Fatalf("only %d combinations compared, want at least %d", count, minCombinations)
	}

	// The corpus must reach every outcome and every reason, or it does not
	// cover every branch.
	for _, p := range []cluster.Protocol{
		cluster.ProtocolTCP, cluster.ProtocolUDP, cluster.ProtocolHTTP, cluster.ProtocolHTTPProxy,
		cluster.ProtocolHTTP2, cluster.ProtocolHTTPS, cluster.ProtocolTLS, cluster.ProtocolGRPC,
		cluster.ProtocolGRPCWeb, cluster.ProtocolMongo, cluster.ProtocolRedis, cluster.ProtocolMySQL,
		cluster.ProtocolAuto,
	} {
		if seen[p] == 0 {
			t.Errorf("corpus never produced %q", p)
		}
	}
	for _, s := range []cluster.ProtocolSource{
		cluster.SourceName, cluster.SourceAppProtocol, cluster.SourceWellKnownPort,
		cluster.SourceProtocol, cluster.SourceNone,
	} {
		if sources[s] == 0 {
			t.Errorf("corpus never produced source %q", s)
		}
	}
	if traps == 0 {
		t.Error("corpus never produced an AppProtocolTrap")
	}
}

// serviceEntryProtocols is the corpus for ServiceEntry port protocols:
// every Istio protocol name in several cases, our own names, and
// everything from the Service corpora.
func serviceEntryProtocols() []string {
	in := []string{
		"", " TCP", "TCP ", "auto", "AUTO", "UnsupportedProtocol", "HBONE",
		"DoubleHBONE", "doublehbone", "SCTP", "GRPC_WEB", "GRPCWeb",
	}
	for _, p := range []protocol.Instance{
		protocol.GRPC, protocol.GRPCWeb, protocol.HTTP, protocol.HTTP_PROXY,
		protocol.HTTP2, protocol.HTTPS, protocol.TCP, protocol.TLS, protocol.UDP,
		protocol.Mongo, protocol.Redis, protocol.MySQL, protocol.HBONE,
		protocol.DoubleHBONE, protocol.Unsupported,
	} {
		in = append(in, caseVariants(string(p))...)
		in = append(in, strings.ToLower(string(p)))
	}
	in = append(in, portNames()...)
	in = append(in, appProtocols()...)
	return dedupe(in)
}

func checkServiceEntry(t *testing.T, in string) {
	t.Helper()
	got := cluster.ServiceEntryPortProtocol(in)
	want := protocol.Parse(in)
	if got.Protocol != fromIstio(want) {
		t.Fatalf("ServiceEntryPortProtocol(%q) = %q, Istio protocol.Parse says %q", in, got.Protocol, want)
	}
	wantSource := cluster.SourceProtocol
	if want == protocol.Unsupported {
		wantSource = cluster.SourceNone
	}
	if got.Source != wantSource || got.AppProtocolTrap {
		t.Fatalf("ServiceEntryPortProtocol(%q) = %+v, want source %q and no trap", in, got, wantSource)
	}
}

func TestServiceEntryPortProtocolConformance(t *testing.T) {
	corpus := serviceEntryProtocols()
	for _, in := range corpus {
		checkServiceEntry(t, in)
	}
	t.Logf("compared %d ServiceEntry protocol strings", len(corpus))
}

// TestProtocolFamiliesConformance compares TCPFamily and HTTPFamily with
// Istio's IsTCP and IsHTTP for every protocol either side knows.
func TestProtocolFamiliesConformance(t *testing.T) {
	for _, p := range []protocol.Instance{
		protocol.GRPC, protocol.GRPCWeb, protocol.HTTP, protocol.HTTP_PROXY,
		protocol.HTTP2, protocol.HTTPS, protocol.TCP, protocol.TLS, protocol.UDP,
		protocol.Mongo, protocol.Redis, protocol.MySQL, protocol.Unsupported,
	} {
		ours := fromIstio(p)
		if ours.TCPFamily() != p.IsTCP() {
			t.Errorf("%s.TCPFamily() = %v, Istio IsTCP = %v", ours, ours.TCPFamily(), p.IsTCP())
		}
		if ours.HTTPFamily() != p.IsHTTP() {
			t.Errorf("%s.HTTPFamily() = %v, Istio IsHTTP = %v", ours, ours.HTTPFamily(), p.IsHTTP())
		}
	}
}

// FuzzConvertProtocol compares both implementations on fuzzed input. Plain
// `go test` runs the seed corpus; `go test -fuzz=FuzzConvertProtocol`
// explores further.
func FuzzConvertProtocol(f *testing.F) {
	apps := appProtocols()
	for i, name := range portNames() {
		port := ports[i%len(ports)]
		l4 := l4s[i%len(l4s)]
		f.Add(port, name, "", false, l4)
		f.Add(port, name, apps[i%len(apps)], true, l4)
	}
	f.Fuzz(func(t *testing.T, port int32, name, app string, hasApp bool, l4 string) {
		var appPtr *string
		if hasApp {
			appPtr = &app
		}
		checkConvert(t, port, name, l4, appPtr)
		// A fuzzed string is as good a ServiceEntry protocol as any.
		checkServiceEntry(t, name)
		checkServiceEntry(t, app)
	})
}

// FuzzServiceEntryPortProtocol compares ServiceEntryPortProtocol with
// protocol.Parse on fuzzed input.
func FuzzServiceEntryPortProtocol(f *testing.F) {
	for _, in := range serviceEntryProtocols() {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkServiceEntry(t, in)
	})
}
