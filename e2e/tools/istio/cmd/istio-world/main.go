// Command istio-world is the e2e world's bridge to real Istio code (test
// tooling only; it never ships in kubectl-serverfirst):
//
//	istio-world render --revision REV --injection-url URL --ca-bundle FILE
//	    prints, as one YAML stream, the ConfigMaps (mesh config, injector
//	    template and values) and MutatingWebhookConfiguration that Istio's
//	    installer renders for istiod from its own charts at the pinned
//	    version (istioctl manifest generate's code), the webhooks pointing
//	    at URL.
//	istio-world config-dump --xds ADDR --pod FILE [--eds]
//	    connects to istiod's plaintext xDS port as the pod's pilot-agent
//	    would (FILE: the pod as JSON), waits for a complete config (CDS,
//	    EDS, LDS, RDS) and prints it as Envoy's /config_dump would.
//	istio-world proxy --xds ADDR
//	    what the world's istio-proxy containers run when configured by
//	    istiod (see proxy.go).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/serverfirst/kubectl-serverfirst/e2e/tools/istio/proxy"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: istio-world render|config-dump|proxy [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "render":
		err = renderChart(os.Args[2:])
	case "config-dump":
		err = configDump(os.Args[2:])
	case "proxy":
		err = runProxy(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (want render, config-dump or proxy)", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "istio-world:", err)
		os.Exit(1)
	}
}

func configDump(args []string) error {
	fs := flag.NewFlagSet("config-dump", flag.ExitOnError)
	addr := fs.String("xds", "", "istiod's plaintext xDS address (HOST:PORT, its --grpcAddr)")
	podFile := fs.String("pod", "", "the pod, as JSON (kubectl get pod -o json)")
	eds := fs.Bool("eds", false, "include endpoints (Envoy's ?include_eds)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	_ = fs.Parse(args)
	if *addr == "" || *podFile == "" {
		return fmt.Errorf("config-dump needs --xds and --pod")
	}
	data, err := os.ReadFile(*podFile)
	if err != nil {
		return err
	}
	var pod corev1.Pod
	if err := json.Unmarshal(data, &pod); err != nil {
		return fmt.Errorf("%s: %w", *podFile, err)
	}
	id, err := proxy.IdentityFromPod(&pod)
	if err != nil {
		return err
	}
	node, err := id.Node()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	done := make(chan *proxy.Snapshot, 1)
	c := &proxy.Client{Addr: *addr, Node: node, OnUpdate: func(s *proxy.Snapshot) {
		if s.Complete() {
			select {
			case done <- s:
			default:
			}
		}
	}, Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	errc := make(chan error, 1)
	go func() { errc <- c.Run(ctx) }()
	select {
	case s := <-done:
		out, err := s.DumpJSON(proxy.DumpOptions{Endpoints: *eds})
		if err != nil {
			return err
		}
		_, err = os.Stdout.Write(append(out, '\n'))
		return err
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("no complete config from %s within %s", *addr, *timeout)
	}
}
