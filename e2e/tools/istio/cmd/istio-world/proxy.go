package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/e2e/tools/istio/proxy"
)

// runProxy is what a pod's istio-proxy container runs in the world: an ADS
// client of istiod identified from the container's environment as
// pilot-agent would, Envoy's connection semantics on 15001 and 15006 over
// what it receives, Envoy's admin on 127.0.0.1:15000 and pilot-agent's
// status ports 15020/15021. istio-init has installed the capture; this
// runs as uid 1337, which the capture rules exempt.
func runProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	xds := fs.String("xds", "", "istiod's plaintext xDS address (HOST:PORT)")
	_ = fs.Parse(args)
	if *xds == "" {
		return fmt.Errorf("proxy needs --xds")
	}
	logger := log.New(os.Stderr, "", log.LstdFlags|log.Lmicroseconds)
	id := proxy.Identity{Env: os.Environ()}
	node, err := id.Node()
	if err != nil {
		return err
	}
	logger.Printf("node %s, xDS %s", node.GetId(), *xds)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, quit := context.WithCancel(ctx)
	defer quit()
	client := &proxy.Client{Addr: *xds, Node: node, Logf: logger.Printf}
	go func() { _ = client.Run(ctx) }()

	envoy := &proxy.Envoy{XDS: client, OriginalDst: proxy.OriginalDst, Logf: logger.Printf,
		Peer: "spiffe://cluster.local/ns/" + os.Getenv("POD_NAMESPACE") + "/sa/" + os.Getenv("SERVICE_ACCOUNT")}
	errc := make(chan error, 8)
	for _, port := range []string{"15001", "15006"} {
		ln, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() { errc <- envoy.Serve(ln) }()
	}
	servers := map[string]http.Handler{
		"127.0.0.1:15000": proxy.AdminHandler(client),
		":15020":          proxy.AgentHandler(client, quit),
		":15021":          proxy.AgentHandler(client, quit),
	}
	for addr, h := range servers {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		defer srv.Close()
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
		logger.Printf("stopping: %v", context.Cause(ctx))
		return nil
	case err := <-errc:
		return err
	}
}
