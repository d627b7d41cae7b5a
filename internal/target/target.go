// Package target is the vocabulary the scan's stages share: what a target
// is (a Service port, a ServiceEntry port or a HOST:PORT the user named),
// where a probe runs from (the vantages), what one probe of one target
// from one vantage found (Observation), and the one parser of a port
// written as text.
//
// It holds no logic beyond naming and parsing. It imports only the
// prober's own value types (probe.Target, probe.Result), so the packages
// that plan probes (cluster/vantage), judge them (report) and store them
// (report/publish) can share one Observation without importing each
// other.
package target

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// Target kinds.
const (
	KindService      = "Service"
	KindServiceEntry = "ServiceEntry"
	KindExternal     = "External" // a HOST:PORT given by the user
	// KindPod is a container port no Service declares: a finding, never
	// probed, so ParseTargetKey does not read it.
	KindPod = "Pod"
)

// TargetKey identifies a target: a Service port, a ServiceEntry port or an
// external HOST:PORT (Kind External, Name = HOST). As text (JSON, agent
// output, shard files) it is its String form.
type TargetKey struct {
	Kind      string
	Namespace string
	Name      string
	Port      int32
}

// ParseTargetKey reads "Kind/namespace/name:port" (Service, ServiceEntry)
// or "External/host:port", the form agents and shards use to label results.
func ParseTargetKey(s string) (TargetKey, bool) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return TargetKey{}, false
	}
	port, ok := ParsePort(s[i+1:])
	if !ok {
		return TargetKey{}, false
	}
	parts := strings.Split(s[:i], "/")
	switch {
	case len(parts) == 3 && (parts[0] == KindService || parts[0] == KindServiceEntry):
		return TargetKey{Kind: parts[0], Namespace: parts[1], Name: parts[2], Port: port}, true
	case len(parts) == 2 && parts[0] == KindExternal:
		return TargetKey{Kind: KindExternal, Name: parts[1], Port: port}, true
	}
	return TargetKey{}, false
}

// String is the form ParseTargetKey reads.
func (k TargetKey) String() string {
	if k.Kind == KindExternal {
		return KindExternal + "/" + k.Name + ":" + strconv.Itoa(int(k.Port))
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name + ":" + strconv.Itoa(int(k.Port))
}

// MarshalText is String, so a key is a JSON string (and a JSON map key).
func (k TargetKey) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (k *TargetKey) UnmarshalText(b []byte) error {
	got, ok := ParseTargetKey(string(b))
	if !ok {
		return fmt.Errorf("target %q: want Kind/namespace/name:port or External/host:port", b)
	}
	*k = got
	return nil
}

// ExternalTarget is a destination outside the cluster that mesh clients
// use, given by the user (scan --external HOST:PORT).
type ExternalTarget struct {
	Host string
	Port int32
}

// ParsePort reads a port written as text (a Service's targetPort, a key's
// port): it is a port only when the whole string is a number 1-65535, so
// "80abc" and "+80" are not ports (and a targetPort that is not a number is
// a container port's name).
func ParsePort(s string) (int32, bool) {
	n, err := probe.ParsePort(s)
	if err != nil {
		return 0, false
	}
	return int32(n), true
}
