// Package scan runs one scan of a live cluster: it reads the inventory,
// probes the targets from the vantages the Config names (cluster/vantage
// does the dialing) and judges the evidence (report.Build). It knows
// nothing about flags or cobra: cmd turns flags into a Config, checks
// them, and renders and publishes what Run returns.
package scan

import (
	"context"
	"io"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/cluster/vantage"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// From is where a scan's probes run from.
type From string

const (
	// FromPods: short-lived probe pods with and without a sidecar, plus a
	// port-forward to each server for the direct path.
	FromPods From = "pods"
	// FromSelf: dial the targets from where this process runs.
	FromSelf From = "self"
	// FromNone: probe nothing; verdicts rest on the objects alone.
	FromNone From = "none"
)

// PodRef names a pod.
type PodRef struct{ Namespace, Name string }

// Clients reach the API server: the typed clients, and the REST config
// that port-forwards need.
type Clients struct {
	cluster.Clients
	REST *rest.Config
}

// RunDirectFunc runs the port-forwards of a plan: vantage.Run, or a
// test's stand-in where no kubelet forwards.
type RunDirectFunc func(ctx context.Context, cfg *rest.Config, kube kubernetes.Interface, plan vantage.Plan, o vantage.RunOptions) ([]target.Observation, []string)

// Config is one scan's settings, resolved and checked (cmd's scan and fix
// commands build it from their flags).
type Config struct {
	// Namespaces to read; nil means all.
	Namespaces     []string
	IstioNamespace string
	// From is where probes run; FromPods also port-forwards unless
	// NoDirect, FromSelf only with Direct.
	From From
	// SelfInMesh is whether this process has a sidecar (FromSelf); nil
	// means look it up: the inventory's pod named Self.
	SelfInMesh *bool
	// Self is the pod this process runs in, when it runs in one (its
	// name, or the host name; its namespace when known).
	Self PodRef
	// External are HOST:PORT targets outside the cluster.
	External []target.ExternalTarget
	// Probe are the prober's settings: timeouts and limits.
	// Probe.BannerTimeout is the user's when BannerTimeoutSet, else the
	// least wait: Run lengthens it past the mesh's own timeouts (so
	// silence proves a hang).
	Probe            probe.Options
	BannerTimeoutSet bool
	// ProbeImage runs the agent in probe pods and ephemeral containers.
	ProbeImage string
	// NoOutside skips the probe pod without a sidecar, NoDirect the
	// port-forwards of FromPods; Direct adds them to FromSelf.
	NoOutside, NoDirect, Direct bool
	// FromPods are existing client pods to probe from as well (an
	// ephemeral container in each).
	FromPods []PodRef
	// InCluster: the credentials are a pod's ServiceAccount (warnings
	// name it so).
	InCluster bool
	// ShardIndex of ShardCount: with ShardCount > 1, the self probes dial
	// only the targets this shard owns (publish.ShardOf).
	ShardIndex, ShardCount int
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// RunDirect replaces vantage.Run for the port-forwards of Direct
	// (nil: vantage.Run).
	RunDirect RunDirectFunc
}

// Static reports whether the scan probes nothing.
func (c Config) Static() bool { return c.From == FromNone && len(c.FromPods) == 0 }

func (c Config) progress() io.Writer {
	if c.Progress == nil {
		return io.Discard
	}
	return c.Progress
}

func (c Config) runDirect() RunDirectFunc {
	if c.RunDirect == nil {
		return vantage.Run
	}
	return c.RunDirect
}
