package vantage

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// DirectProbe is the direct path to one pod: the ports to probe there and
// the target each one stands for.
type DirectProbe struct {
	Namespace, Pod string
	Ports          map[int32][]report.TargetKey
}

// RunDirect port-forwards to the pod, as kubectl port-forward does, and
// probes each forwarded port on 127.0.0.1. The forward enters the pod over
// its loopback, which Istio's capture leaves alone: what arrives is what
// the server itself sends first.
func RunDirect(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, d DirectProbe, o probe.Options) ([]report.Observation, error) {
	req := kube.CoreV1().RESTClient().Post().Resource("pods").Namespace(d.Namespace).Name(d.Pod).SubResource("portforward")
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, req.URL())
	if ws, err := portforward.NewSPDYOverWebsocketDialer(req.URL(), cfg); err == nil {
		dialer = portforward.NewFallbackDialer(ws, dialer, func(err error) bool {
			return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
		})
	}
	var ports []string
	var remote []int32
	for p := range d.Ports {
		ports = append(ports, "0:"+strconv.Itoa(int(p)))
		remote = append(remote, p)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddressesWithContext(fctx, dialer, []string{"127.0.0.1"}, ports, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		return nil, fmt.Errorf("port-forward to %s/%s: %w", d.Namespace, d.Pod, err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	forwarded, err := fw.GetPorts()
	if err != nil {
		return nil, err
	}
	var targets []probe.Target
	var keys [][]report.TargetKey
	for _, f := range forwarded {
		targets = append(targets, probe.Target{Host: "127.0.0.1", Port: int(f.Local)})
		keys = append(keys, d.Ports[int32(f.Remote)])
	}
	results := probe.ProbeAll(ctx, targets, o)
	var out []report.Observation
	for i, r := range results {
		// The local address means nothing to the reader: name the pod.
		r.Target = d.Namespace + "/" + d.Pod + ":" + strconv.Itoa(int(forwarded[i].Remote))
		r.Address = "port-forward " + r.Target
		for _, k := range keys[i] {
			out = append(out, report.Observation{Target: k, Vantage: report.VantageDirect, Result: r})
		}
	}
	cancel()
	_ = remote
	return out, nil
}
