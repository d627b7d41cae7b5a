// Package sidecar is a model of an Istio sidecar (istio-init + Envoy) for the
// e2e world, where Envoy cannot run. It never ships in kubectl-serverfirst.
//
// It reproduces the part of Istio that decides whether a server-first
// protocol deadlocks: which connections are captured, which listener and
// filter chain handle them, and where a listener filter waits for the
// client's first bytes. Everything else (real TLS, HTTP routing, retries,
// telemetry, authorization) is left out. The rules below were read from
// istio/istio (tools/istio-iptables/pkg/capture, pilot/pkg/networking/core
// listener.go, listener_inbound.go, filterchain_options.go) and are cited
// where they are applied.
//
// Capture (capture.go) installs istio-iptables' nat rules in REDIRECT mode
// with the injector's defaults (-p 15001 -z 15006 -u 1337 -g 1337 -i '*'
// -b '*' -d 15090,15021,15020): inbound TCP to any port goes to 15006,
// outbound TCP to 15001, except traffic of uid/gid 1337, traffic leaving
// through lo (other than the proxy's own hairpin to its pod IP), traffic to
// 127.0.0.1 and traffic from 127.0.0.6 (the inbound passthrough source).
//
// Outbound (15001), per original destination:
//   - a Service ClusterIP:port with a TCP-family or auto protocol has its own
//     listener; auto sniffs (HTTP inspector), TCP relays at once;
//   - HTTP-family Service ports, and ServiceEntry ports without addresses,
//     share a 0.0.0.0:PORT listener, which sniffs as soon as one HTTP or auto
//     contributor exists: the port-collision trap for unknown destinations;
//   - ServiceEntry addresses get their own listener with the entry's protocol;
//   - anything else is PassthroughCluster: plaintext relay, no sniffing.
//
// A sniffing listener waits for the client's first bytes; with
// meshConfig.protocolDetectionTimeout > 0 it gives up after that long and
// continues as TCP (a delay), with 0 it waits forever (the deadlock).
//
// Inbound (15006), per original destination port of this pod: the protocol of
// the Service port targeting it (auto for ports no Service names) and the
// effective PeerAuthentication mode for that port. STRICT and PERMISSIVE put a
// TLS inspector in front, which waits for the client's first bytes whatever
// the protocol; DISABLE has none. An auto port also has an HTTP inspector for
// plaintext clients. The same detection timeout bounds both.
//
// mTLS is stood in for by a preamble: when the upstream pod has a sidecar
// (and its port is not DISABLE, as auto mTLS does), the outbound side writes
// the preamble as soon as it connects, exactly as Envoy writes its
// ClientHello. The inbound TLS inspector therefore never waits on a mesh
// client, and a plaintext client that sends nothing is indistinguishable from
// one Envoy's TLS inspector is still waiting on: that is the hang being
// modelled, not an artefact of detecting the preamble.
//
// Where this model is not exact, README.md beside this file says so.
package sidecar
