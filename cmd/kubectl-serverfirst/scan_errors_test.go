package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad input gives one clear line and exit 1, never a panic or a report.
func TestScanBadInput(t *testing.T) {
	// A port that surely refuses: listen, note it, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://`+addr+`", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: shop}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"scan", "--kubeconfig", kc, "--static"}, "cannot reach the API server at https://" + addr},
		{[]string{"scan", "--kubeconfig", filepath.Join(t.TempDir(), "missing")}, "no usable kubeconfig"},
		{[]string{"scan", "--kubeconfig", kc, "-o", "xml"}, `unknown output format "xml"`},
		{[]string{"scan", "--kubeconfig", kc, "--fail-on", "deadlock,sometimes"}, `--fail-on: unknown verdict "sometimes"`},
		{[]string{"scan", "--kubeconfig", kc, "--vantage", "moon"}, `--vantage "moon"`},
		{[]string{"scan", "--kubeconfig", kc, "--external", "http://db:3306"}, "--external"},
		{[]string{"scan", "--kubeconfig", kc, "--from-pod", "justapod"}, "want NAMESPACE/POD"},
		{[]string{"fix", "--kubeconfig", kc, "--static"}, "cannot reach the API server"},
		{[]string{"explain", "SLOW"}, `nothing to explain about "SLOW"`},
		{[]string{"explain", "SF9999"}, `no rule has the code "SF9999"`},
	}
	for _, c := range cases {
		out, _, err := runCLI(t, t.Context(), "", c.args...)
		if err == nil {
			t.Errorf("%v: no error (stdout %q)", c.args, out)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, c.want) || strings.Contains(msg, "\n") {
			t.Errorf("%v: error %q, want one line containing %q", c.args, msg, c.want)
		}
		if exitCode(err) != 1 {
			t.Errorf("%v: exit code %d, want 1", c.args, exitCode(err))
		}
	}
}
