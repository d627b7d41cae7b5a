// Package cluster reads what a scan needs, from a live cluster (Load) or
// from manifest files (ReadManifests): Services, EndpointSlices, Pods,
// Namespaces, ServiceEntries, PeerAuthentications, DestinationRules,
// Sidecars and the mesh config. It applies Istio's own rules to them:
// protocol selection, sidecar detection, effective mTLS mode, outbound
// listeners and their collisions, client TLS, interception annotations,
// Sidecar scoping. It also applies fix objects to the API server.
//
// It never dials a workload and knows nothing about rendering; of this
// module it imports only internal/target (the port parser).
package cluster

import "time"

// Protocol is a port protocol as Istio spells it. ProtocolAuto means Istio
// will sniff the port (protocol detection), the precondition for the
// server-first deadlock.
type Protocol string

const (
	ProtocolTCP     Protocol = "TCP"
	ProtocolUDP     Protocol = "UDP"
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolHTTPS   Protocol = "HTTPS"
	ProtocolTLS     Protocol = "TLS"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolGRPCWeb Protocol = "GRPC-Web"
	ProtocolMongo   Protocol = "Mongo"
	ProtocolMySQL   Protocol = "MySQL"
	ProtocolRedis   Protocol = "Redis"
	ProtocolAuto    Protocol = "auto"
)

// ProtocolSource says which part of the port decided its protocol.
type ProtocolSource string

const (
	SourceName          ProtocolSource = "name"            // port name prefix, e.g. "tcp-mysql"
	SourceAppProtocol   ProtocolSource = "appProtocol"     // spec.ports[].appProtocol
	SourceWellKnownPort ProtocolSource = "well-known-port" // 25, 53, 3306, 27017
	SourceProtocol      ProtocolSource = "protocol"        // the K8s L4 protocol (UDP)
	SourceNone          ProtocolSource = "none"            // nothing declared: sniffed
)

// MTLSMode is a PeerAuthentication mode after inheritance is resolved.
type MTLSMode string

const (
	MTLSStrict     MTLSMode = "STRICT"
	MTLSPermissive MTLSMode = "PERMISSIVE"
	MTLSDisable    MTLSMode = "DISABLE"
	MTLSUnset      MTLSMode = "UNSET" // only on a policy; never an effective mode
)

// Inventory is everything a scan knows about the cluster, read once.
type Inventory struct {
	Namespaces          []Namespace
	Services            []Service
	ServiceEntries      []ServiceEntry
	PeerAuthentications []PeerAuthentication
	// DestinationRules and Sidecars (networking.istio.io) decide what a
	// client sidecar sends and which outbound listeners it has.
	DestinationRules []DestinationRule
	Sidecars         []SidecarResource
	Pods             []Pod
	Mesh             MeshConfig
	// IstioInstalled is false when the networking.istio.io/security.istio.io
	// CRDs are absent: a scan then judges ports as if no mesh were present.
	IstioInstalled bool
	// UnmeshedElsewhere counts, per namespace outside the scanned ones
	// (a -n scan), the pods without a sidecar that are not finished, from
	// their metadata: clients of the external-to-mesh path that Pods
	// does not list. Nil for a scan of all namespaces (Pods holds them)
	// and when they could not be counted (UnmeshedElsewhereUnknown).
	UnmeshedElsewhere        map[string]int
	UnmeshedElsewhereUnknown bool
	// Warnings are problems that limit what the scan can say (a resource the
	// caller may not list, Istio missing, a managed control plane). They end
	// up in the report; they never abort the scan.
	Warnings []string
}

// Namespace carries the mesh membership intent of a namespace.
type Namespace struct {
	Name   string
	Labels map[string]string
	// InjectionEnabled is true for istio-injection=enabled or an istio.io/rev label
	// (unless istio-injection=disabled overrides it).
	InjectionEnabled bool
	Revision         string
	// Ambient is true for istio.io/dataplane-mode=ambient: ztunnel does not
	// sniff, a waypoint may; such namespaces are flagged, not judged.
	Ambient bool
}

// Pod is a workload instance with the facts protocol sniffing depends on.
type Pod struct {
	Namespace string
	Name      string
	Labels    map[string]string
	IPs       []string
	Phase     string
	// HasSidecar: an istio-proxy container (classic or native-sidecar init
	// container) or the sidecar.istio.io/status annotation.
	HasSidecar bool
	// InjectionIntended: what the namespace/pod labels and annotations ask for;
	// differs from HasSidecar for pods created before injection was enabled.
	InjectionIntended bool
	Images            []string
	// ContainerPorts maps named container ports to numbers, to resolve a
	// Service's named targetPort.
	ContainerPorts map[string]int32
	// PortImages maps each declared container port number to the image of
	// the container that declares it, so hints come from the right
	// container (not from a metrics exporter beside a database).
	PortImages map[int32]string
	// Ports lists every declared container port (not the proxy's).
	Ports          []ContainerPort
	ServiceAccount string
	// Interception is what the traffic.sidecar.istio.io annotations tell
	// istio-iptables to capture.
	Interception Interception
}

// ContainerPort is one declared container port.
type ContainerPort struct {
	Name     string
	Number   int32
	Protocol string // TCP, UDP, SCTP
	Image    string // the image of the container that declares it
}

// Service is a Kubernetes Service with its ports and backing pods.
type Service struct {
	Namespace string
	Name      string
	Type      string
	ClusterIP string
	Selector  map[string]string
	Ports     []ServicePort
	// ExportTo is the networking.istio.io/exportTo annotation, split and
	// trimmed; nil when absent (the mesh's defaultServiceExportTo applies).
	ExportTo []string
	// Backends are the pods behind the Service, from EndpointSlices, or from
	// the selector when there are none. Indexes into Inventory.Pods would be
	// cheaper but values keep consumers simple.
	Backends []PodRef
}

// PodRef names a pod in Inventory.Pods.
type PodRef struct {
	Namespace string
	Name      string
}

// ServicePort is one Service port with its Istio protocol decision.
type ServicePort struct {
	Name        string
	Port        int32
	TargetPort  string // as written: a number or a container port name
	Protocol    string // Kubernetes L4 protocol: TCP, UDP, SCTP
	AppProtocol string // empty when unset
	Resolved    ResolvedProtocol
}

// ResolvedProtocol is Istio's protocol for a port and why.
type ResolvedProtocol struct {
	Protocol Protocol
	Source   ProtocolSource
	// AppProtocolTrap is set when an unrecognised appProtocol replaced a
	// port name that alone would have declared the port (e.g. name
	// "tcp-nats" with appProtocol "nats.io/client"): the port is sniffed.
	AppProtocolTrap bool
}

// Sniffed reports whether Istio auto-detects the port's protocol.
func (r ResolvedProtocol) Sniffed() bool { return r.Protocol == ProtocolAuto }

// ServiceEntry is an Istio ServiceEntry reduced to what the scan needs.
type ServiceEntry struct {
	Namespace  string
	Name       string
	Hosts      []string
	Addresses  []string
	Ports      []ServiceEntryPort
	Location   string // MESH_EXTERNAL or MESH_INTERNAL
	Resolution string // NONE, STATIC, DNS, DNS_ROUND_ROBIN
	Endpoints  []string
	ExportTo   []string
}

// ServiceEntryPort is one port of a ServiceEntry.
type ServiceEntryPort struct {
	Number     uint32
	Name       string
	Protocol   string // as written; empty when unset
	TargetPort uint32
	Resolved   ResolvedProtocol
}

// PeerAuthentication is a policy as written (before inheritance).
type PeerAuthentication struct {
	Namespace string
	Name      string
	// Selector is nil for a namespace-wide (or, in the root namespace,
	// mesh-wide) policy.
	Selector  map[string]string
	Mode      MTLSMode
	PortModes map[uint32]MTLSMode
	CreatedAt time.Time
}

// MeshConfig is the part of Istio's mesh config that decides sniffing.
type MeshConfig struct {
	// Found is false when no istio/istio-<rev> ConfigMap was readable (a
	// managed control plane such as ASM keeps it out of the data-plane
	// cluster); the values below are then Istio's defaults.
	Found bool
	// Source names where the values came from, e.g. "istio-system/istio" or
	// "Istio defaults (no mesh config in cluster)".
	Source        string
	RootNamespace string
	// ProtocolDetectionTimeout 0 means wait for the client forever (the
	// default since Istio 1.8): a server-first port hangs instead of slowing.
	ProtocolDetectionTimeout time.Duration
	// DNSCapture and DNSAutoAllocate are the mesh-wide proxyMetadata
	// switches a host-name ServiceEntry for a TCP port depends on.
	DNSCapture      bool
	DNSAutoAllocate bool
	// OutboundTrafficPolicy is ALLOW_ANY (default) or REGISTRY_ONLY.
	OutboundTrafficPolicy string
	// EnableAutoMTLS is meshConfig enableAutoMtls (default true): clients
	// without a DestinationRule tls setting send mTLS to sidecar endpoints.
	EnableAutoMTLS bool
	// DefaultServiceExportTo and DefaultDestinationRuleExportTo are the
	// mesh config's defaults for objects without exportTo; "" is unset
	// ("*"). (defaultVirtualServiceExportTo is not read: VirtualServices
	// are not modelled.)
	DefaultServiceExportTo         ExportToList
	DefaultDestinationRuleExportTo ExportToList
}
