package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func float(v float64) *float64 { return &v }

// fixedResults cover every outcome and the rendering edge cases with fixed
// timings, so table, JSON and YAML output can be golden files.
func fixedResults() []probe.Result {
	mysql := []byte("d\x00\x00\x00\n5.5.5-10.11.19-MariaDB-0+deb12u1\x00\x05\x00\x00\x00:32A0kM|\x00\xfe\xf7\x08\x02\x00\xff\x81\x15")
	results := []probe.Result{
		{Target: "127.0.0.1:2525", Outcome: probe.OutcomeBanner, ConnectMs: 0.4, FirstByteMs: float(1.7),
			Banner: "220 mail ESMTP\r\n", Protocol: "smtp", Address: "127.0.0.1:2525"},
		{Target: "127.0.0.1:6379", Outcome: probe.OutcomeSilent, ConnectMs: 0.213, Address: "127.0.0.1:6379"},
		{Target: "db.example:3306", Outcome: probe.OutcomeBanner, DNSMs: float(12.5), ConnectMs: 3.412,
			FirstByteMs: float(120.4), Protocol: "mysql", Address: "10.0.0.7:3306"},
		{Target: "[::1]:22", Outcome: probe.OutcomeBanner, ConnectMs: 0.05, FirstByteMs: float(2501.3),
			Banner: "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", Protocol: "ssh", Address: "[::1]:22"},
		{Target: "127.0.0.1:2323", Outcome: probe.OutcomeBanner, ConnectMs: 0.3, FirstByteMs: float(0.9),
			Banner: "\x1b]0;pwned\x07\x1b[2J\u202eevil\u009b31m " + strings.Repeat("A", 80), Protocol: "unknown",
			Address: "127.0.0.1:2323"},
		{Target: "127.0.0.1:1", Outcome: probe.OutcomeRefused, ConnectMs: 0.09, Address: "127.0.0.1:1"},
		{Target: "127.0.0.1:8080", Outcome: probe.OutcomeClosed, ConnectMs: 0.1, Address: "127.0.0.1:8080"},
		{Target: "127.0.0.1:8081", Outcome: probe.OutcomeReset, ConnectMs: 0.1, Address: "127.0.0.1:8081"},
		{Target: "10.255.0.1:25", Outcome: probe.OutcomeConnectTimeout, ConnectMs: 3000.2, Address: "10.255.0.1:25"},
		{Target: "nope.invalid:25", Outcome: probe.OutcomeError, DNSMs: float(4.2),
			Error: "dns: no such host nope.invalid"},
		{Target: "127.0.0.1:9999", Outcome: probe.OutcomeError, Error: probe.CanceledError},
	}
	// The MySQL greeting is binary: set it as the prober would.
	results[2].Banner = string([]rune(string(mysql)))
	results[2].BannerBase64 = "ZAAAAAo1LjUuNS0xMC4xMS4xOS1NYXJpYURCLTArZGViMTJ1MQAFAAAAOjMyQTBrTXwA/vcIAgD/gRU="
	return results
}

func TestRenderProbeResultsGolden(t *testing.T) {
	for _, format := range []string{"table", "json", "yaml"} {
		t.Run(format, func(t *testing.T) {
			var out bytes.Buffer
			if err := renderProbeResults(&out, format, fixedResults()); err != nil {
				t.Fatal(err)
			}
			assertGolden(t, filepath.Join("testdata", "probe", "results."+format+".golden"), out.Bytes())
			// What reaches a terminal: no ESC, BEL or C1 controls in any
			// format, and no bidi overrides in table and JSON. (YAML leaves
			// format characters raw: its emitter offers no way to escape them
			// in a plain scalar.)
			for _, r := range out.String() {
				if r < 0x20 && r != '\n' || r == 0x7f || r >= 0x80 && r < 0xa0 || r == '\u202e' && format != "yaml" {
					t.Errorf("%s output contains control character %U", format, r)
				}
			}
		})
	}
}

func TestRenderProbeResultsEmpty(t *testing.T) {
	var out bytes.Buffer
	if err := renderProbeResults(&out, "json", nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != "{\n  \"results\": []\n}" {
		t.Errorf("empty JSON = %q, want an empty results array", got)
	}
}

// The JSON output is a contract: it must decode back into the same results,
// banner bytes included.
func TestProbeJSONRoundTrip(t *testing.T) {
	var out bytes.Buffer
	if err := renderProbeResults(&out, "json", fixedResults()); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Results []probe.Result `json:"results"`
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	want := fixedResults()
	if len(doc.Results) != len(want) {
		t.Fatalf("%d results decoded, want %d", len(doc.Results), len(want))
	}
	for i := range want {
		if !bytes.Equal(doc.Results[i].Bytes(), want[i].Bytes()) || doc.Results[i].Outcome != want[i].Outcome {
			t.Errorf("result %d decoded as %+v, want %+v", i, doc.Results[i], want[i])
		}
	}
}

// listenLoopback serves handle on a fresh 127.0.0.1 port until the test ends.
func listenLoopback(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, handle)
	return ln.Addr().String()
}

func greet(banner string) func(net.Conn) {
	return func(c net.Conn) {
		c.Write([]byte(banner))
		io.Copy(io.Discard, c)
	}
}

func waitForClient(c net.Conn) { io.Copy(io.Discard, c) }

// runCLI runs the real command tree as main does, without a kubeconfig.
func runCLI(t *testing.T, ctx context.Context, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runCLIWith(t, ctx, hooks{}, stdin, args...)
}

// runCLIWith is runCLI with test stand-ins (hooks).
func runCLIWith(t *testing.T, ctx context.Context, h hooks, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "does-not-exist"))
	t.Setenv("HOME", t.TempDir())
	var out, errOut bytes.Buffer
	root := newRootCommand(genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}, h)
	root.SetArgs(args)
	err = root.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

func decodeResults(t *testing.T, s string) []probe.Result {
	t.Helper()
	var doc struct {
		Results []probe.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		t.Fatalf("output is not the JSON document: %v\n%s", err, s)
	}
	return doc.Results
}

func TestProbeCommandAgainstLoopback(t *testing.T) {
	smtp := listenLoopback(t, greet("220 mail.example.com ESMTP Postfix\r\n"))
	silent := listenLoopback(t, waitForClient)
	sshPort := listenLoopback(t, greet("SSH-2.0-OpenSSH_9.2\r\n"))
	_, port, _ := net.SplitHostPort(sshPort)
	file := filepath.Join(t.TempDir(), "targets.txt")
	if err := os.WriteFile(file, []byte("# mail first\n\n"+smtp+"   # the relay\n  \t\nlocalhost:"+port+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	stdout, stderr, err := runCLI(t, context.Background(), silent+"\n",
		"probe", sshPort, "-f", file, "-f", "-", "--timeout", "300ms", "-o", "json")
	if err != nil {
		t.Fatalf("probe failed: %v\n%s", err, stderr)
	}
	got := decodeResults(t, stdout)
	want := []struct {
		target, outcome, protocol string
	}{
		{sshPort, "banner", "ssh"},
		{smtp, "banner", "smtp"},
		{"localhost:" + port, "banner", "ssh"},
		{silent, "silent", ""},
	}
	if len(got) != len(want) {
		t.Fatalf("%d results, want %d:\n%s", len(got), len(want), stdout)
	}
	for i, w := range want {
		if got[i].Target != w.target || string(got[i].Outcome) != w.outcome || got[i].Protocol != w.protocol {
			t.Errorf("result %d = %s %s/%q, want %s %s/%q", i, got[i].Target, got[i].Outcome, got[i].Protocol,
				w.target, w.outcome, w.protocol)
		}
	}
}

func TestProbeCommandTable(t *testing.T) {
	smtp := listenLoopback(t, greet("220 mail.example.com ESMTP Postfix\r\n"))
	stdout, _, err := runCLI(t, context.Background(), "", "probe", smtp)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want a header and one row, got:\n%s", stdout)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "TARGET OUTCOME PROTOCOL CONNECT FIRST BYTE DETAIL" {
		t.Errorf("header = %q", lines[0])
	}
	if f := strings.Fields(lines[1]); len(f) < 6 || f[0] != smtp || f[1] != "banner" || f[2] != "smtp" ||
		!strings.Contains(lines[1], `220 mail.example.com ESMTP Postfix\r\n`) {
		t.Errorf("row = %q", lines[1])
	}
}

func TestProbeCommandSend(t *testing.T) {
	var mu sync.Mutex
	var received []byte
	echo := listenLoopback(t, func(c net.Conn) {
		buf := make([]byte, 6)
		n, _ := io.ReadFull(c, buf)
		mu.Lock()
		received = append(received, buf[:n]...)
		mu.Unlock()
		c.Write([]byte("+PONG\r\n"))
		io.Copy(io.Discard, c)
	})
	stdout, _, err := runCLI(t, context.Background(), "", "probe", "--send", `PI\x4eG\r\n`, "-o", "json", echo)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResults(t, stdout); len(r) != 1 || r[0].Banner != "+PONG\r\n" {
		t.Fatalf("got %s", stdout)
	}
	mu.Lock()
	defer mu.Unlock()
	if string(received) != "PING\r\n" {
		t.Errorf("server received %q, want the unescaped payload", received)
	}
}

func TestProbeCommandInterrupted(t *testing.T) {
	accepted := make(chan struct{}, 4)
	silent := listenLoopback(t, func(c net.Conn) {
		accepted <- struct{}{}
		waitForClient(c)
	})
	ctx, cancel := context.WithCancel(context.Background())
	type outcome struct {
		stdout string
		err    error
	}
	done := make(chan outcome)
	go func() {
		stdout, _, err := runCLI(t, ctx, "", "probe", "--timeout", "1h", "--concurrency", "1", "-o", "json", silent, silent)
		done <- outcome{stdout, err}
	}()
	<-accepted
	cancel()
	res := <-done
	if code := exitCode(res.err); res.err == nil || code != 130 {
		t.Fatalf("exit code %d (%v), want 130", code, res.err)
	}
	if res.err.Error() != "interrupted: 2 of 2 targets not probed" {
		t.Errorf("error = %q", res.err)
	}
	r := decodeResults(t, res.stdout)
	if len(r) != 2 || r[0].Error != probe.CanceledError || r[1].Error != probe.CanceledError {
		t.Errorf("results after interrupt = %s", res.stdout)
	}
}

func TestProbeCommandBadInput(t *testing.T) {
	dir := t.TempDir()
	badFile := filepath.Join(dir, "bad.txt")
	os.WriteFile(badFile, []byte("127.0.0.1:1\n\n# fine\nexample.com\n"), 0o644)
	emptyFile := filepath.Join(dir, "empty.txt")
	os.WriteFile(emptyFile, []byte("# nothing here\n\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no targets", []string{"probe"}, "no targets"},
		{"only comments", []string{"probe", "-f", emptyFile}, "no targets"},
		{"malformed target", []string{"probe", "127.0.0.1"}, `target "127.0.0.1" is missing a port`},
		{"scheme", []string{"probe", "tcp://127.0.0.1:25"}, "has a scheme"},
		{"port out of range", []string{"probe", "127.0.0.1:70000"}, "out of range"},
		{"bad line in file", []string{"probe", "-f", badFile}, "bad.txt:4: target \"example.com\" is missing a port"},
		{"unreadable file", []string{"probe", "-f", filepath.Join(dir, "missing.txt")}, "cannot read targets"},
		{"stdin twice", []string{"probe", "-f", "-", "-f", "-"}, "stdin can be read only once"},
		{"bad output", []string{"probe", "-o", "xml", "127.0.0.1:1"}, `unknown output format "xml"`},
		{"bad timeout", []string{"probe", "--timeout", "0s", "127.0.0.1:1"}, "--timeout must be positive"},
		{"bad connect timeout", []string{"probe", "--connect-timeout", "-1s", "127.0.0.1:1"}, "--connect-timeout must be positive"},
		{"bad concurrency", []string{"probe", "--concurrency", "-1", "127.0.0.1:1"}, "--concurrency must be 0 (automatic) or more"},
		{"bad per-ip", []string{"probe", "--per-ip", "0", "127.0.0.1:1"}, "--per-ip must be at least 1"},
		{"bad per-ip-port", []string{"probe", "--per-ip-port", "0", "127.0.0.1:1"}, "--per-ip-port must be at least 1"},
		{"bad escape", []string{"probe", "--send", `\q`, "127.0.0.1:1"}, `unknown escape \q`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, context.Background(), "", tc.args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", stdout)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			if exitCode(err) == 0 {
				t.Error("exit code 0 for bad input")
			}
			if stdout != "" {
				t.Errorf("bad input still printed results:\n%s", stdout)
			}
		})
	}
}

func TestProbeCommandHelpTeaches(t *testing.T) {
	stdout, _, err := runCLI(t, context.Background(), "", "probe", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Examples:", "kubectl serverfirst probe -f targets.txt", "--send", "silent", "Exit status"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestUnescapePayload(t *testing.T) {
	tests := []struct {
		in, want, wantErr string
	}{
		{in: "", want: ""},
		{in: "plain", want: "plain"},
		{in: `PING\r\n`, want: "PING\r\n"},
		{in: `a\tb\0c\\d`, want: "a\tb\x00c\\d"},
		{in: `\x00\xff\x1B`, want: "\x00\xff\x1b"},
		{in: `ends\`, wantErr: "trailing backslash"},
		{in: `\x4`, wantErr: "two hex digits"},
		{in: `\xzz`, wantErr: "not two hex digits"},
		{in: `\u0041`, wantErr: `unknown escape \u`},
	}
	for _, tc := range tests {
		got, err := unescapePayload(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("unescapePayload(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("unescapePayload(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestCapConcurrency(t *testing.T) {
	limit, ok := probe.OpenFileLimit()
	if !ok {
		t.Skip("open-files limit unknown here")
	}
	var warn bytes.Buffer
	if got := capConcurrency(10, 1000, &warn); got != 10 || warn.Len() != 0 {
		t.Errorf("capConcurrency(10) = %d, warning %q; want 10, none", got, warn.String())
	}
	huge := limit * 2
	if got := capConcurrency(huge, huge, &warn); got >= limit || got < 1 || !strings.Contains(warn.String(), strconv.Itoa(limit)) {
		t.Errorf("capConcurrency(%d) with limit %d = %d, warning %q", huge, limit, got, warn.String())
	}
	warn.Reset()
	if got := capConcurrency(huge, 3, &warn); got != huge || warn.Len() != 0 {
		t.Errorf("few targets need no cap: got %d, warning %q", got, warn.String())
	}
}

func TestFormatMillis(t *testing.T) {
	for _, tc := range []struct {
		in   *float64
		want string
	}{
		{nil, "-"}, {float(0.213), "0.21ms"}, {float(3.44), "3.4ms"}, {float(120.4), "120ms"}, {float(2501.3), "2.50s"},
	} {
		if got := formatMillis(tc.in); got != tc.want {
			t.Errorf("formatMillis(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzUnescapePayload: --send text never panics, and the bytes are never
// longer than the text (every escape shrinks).
func FuzzUnescapePayload(f *testing.F) {
	for _, s := range []string{`PING\r\n`, `\x1b`, `\`, `\x`, `\xg0`, `a\\b`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := unescapePayload(s)
		if err == nil && len(b) > len(s) {
			t.Fatalf("unescapePayload(%q) = %q grew", s, b)
		}
		if err == nil && !strings.Contains(s, `\`) && string(b) != s {
			t.Fatalf("unescapePayload(%q) = %q changed text without escapes", s, b)
		}
	})
}

// Off a terminal (a pipe, a file, a buffer) the prober prints no progress.
func TestLiveProgressOnlyOnATerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, w := range []io.Writer{&bytes.Buffer{}, f} {
		progress, stop := liveProgress(w, 10)
		if progress != nil {
			t.Errorf("%T: a progress callback off a terminal", w)
		}
		stop()
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
		t.Errorf("progress written to a file: %v bytes (%v)", fi.Size(), err)
	}
}

func TestProbeLimitsFlags(t *testing.T) {
	tests := []struct {
		limits  probeLimits
		wantErr string
	}{
		{probeLimits{concurrency: 0, perIP: 4, perIPPort: 1}, ""},
		{probeLimits{concurrency: 10, perIP: 1, perIPPort: 1}, ""},
		{probeLimits{concurrency: -1, perIP: 4, perIPPort: 1}, "--concurrency"},
		{probeLimits{perIP: 0, perIPPort: 1}, "--per-ip must"},
		{probeLimits{perIP: 4, perIPPort: 0}, "--per-ip-port must"},
	}
	for _, tc := range tests {
		err := tc.limits.validate()
		if (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%+v: error %v, want %q", tc.limits, err, tc.wantErr)
		}
		var o probe.Options
		if err == nil {
			tc.limits.apply(&o, 100, io.Discard)
			if o.Concurrency != tc.limits.concurrency || o.PerIP != tc.limits.perIP || o.PerIPPort != tc.limits.perIPPort {
				t.Errorf("%+v applied as %+v", tc.limits, o)
			}
		}
	}
}
