// Command sidecar-model stands in for istio-init and istio-proxy in the e2e
// world: the injected istio-proxy container runs it inside the pod's network
// namespace. It installs Istio's capture rules (when root), becomes uid 1337
// and proxies like Envoy would, as far as protocol sniffing is concerned.
// See package e2e/sidecar for the rules and e2e/README.md for the limits.
//
// It is test tooling: never part of kubectl-serverfirst.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/e2e/sidecar"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := flag.NewFlagSet("sidecar-model", flag.ContinueOnError)
	var (
		inventory   = fs.String("inventory", "", "serve this JSON cluster.Inventory (reloaded on every refresh and on SIGHUP) instead of reading the API server")
		kubeconfig  = fs.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig for the API server (default $KUBECONFIG, else in-cluster config)")
		podNS       = fs.String("pod-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the pod this sidecar serves (default $POD_NAMESPACE)")
		podName     = fs.String("pod-name", os.Getenv("POD_NAME"), "name of the pod (default $POD_NAME)")
		podIP       = fs.String("pod-ip", os.Getenv("INSTANCE_IP"), "IP of the pod (default $INSTANCE_IP)")
		capture     = fs.String("capture", "auto", "install istio-iptables' capture rules first: true, false, or auto (only when running as root)")
		captureOnly = fs.Bool("capture-only", false, "install the capture rules and exit, like istio-init")
		uid         = fs.Int("uid", sidecar.ProxyUID, "uid to run as after capture; the capture rules exempt it")
		gid         = fs.Int("gid", sidecar.ProxyGID, "gid to run as after capture")
		refresh     = fs.Duration("refresh", 2*time.Second, "how often to reload the config; SIGHUP reloads at once")
		statusAddr  = fs.String("status-addr", fmt.Sprintf(":%d", sidecar.StatusPort), `status server (/healthz/ready, /model/status); "-" disables it`)
		agentAddr   = fs.String("agent-addr", fmt.Sprintf(":%d", sidecar.AgentPort), `pilot-agent's port (POST /quitquitquit from localhost exits 0); "-" disables it`)
		dnsAuto     = fs.Bool("dns-auto-allocate", envTrue("ISTIO_META_DNS_CAPTURE") && envTrue("ISTIO_META_DNS_AUTO_ALLOCATE"),
			"match address-less ServiceEntries by their hosts' resolved IPs (default: ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE are true)")
	)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	logger := log.New(os.Stderr, "sidecar-model: ", log.LstdFlags|log.Lmicroseconds)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	var capt *sidecar.Capture
	switch *capture {
	case "true":
		c := sidecar.DefaultCapture()
		capt = &c
	case "auto":
		if os.Geteuid() == 0 {
			c := sidecar.DefaultCapture()
			capt = &c
		} else {
			logger.Printf("not root: assuming an init container installed the capture rules")
		}
	case "false":
	default:
		fmt.Fprintf(os.Stderr, "sidecar-model: --capture must be true, false or auto, not %q\n", *capture)
		return 2
	}
	if *captureOnly {
		if capt == nil {
			c := sidecar.DefaultCapture()
			capt = &c
		}
		if err := capt.Apply(ctx, ""); err != nil {
			logger.Print(err)
			return 1
		}
		logger.Printf("capture rules installed")
		return 0
	}

	src, err := source(*inventory, *kubeconfig)
	if err != nil {
		logger.Print(err)
		return 2
	}
	err = sidecar.RunProcess(ctx, sidecar.ProcessOptions{
		Capture: capt, UID: *uid, GID: *gid,
		Model: sidecar.Options{
			Source:          src,
			Pod:             sidecar.Identity{Namespace: *podNS, Name: *podName, IP: *podIP},
			StatusAddr:      *statusAddr,
			AgentAddr:       *agentAddr,
			Refresh:         *refresh,
			DNSAutoAllocate: *dnsAuto,
			Log:             logger,
		},
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Print(err)
		return 1
	}
	return 0
}

func envTrue(name string) bool { return os.Getenv(name) == "true" }

func source(inventory, kubeconfig string) (sidecar.ConfigSource, error) {
	if inventory != "" {
		return sidecar.FileSource{Path: inventory}, nil
	}
	return liveSource(kubeconfig)
}
