package cluster

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// meshConfigYAML is the subset of Istio's MeshConfig we read from the
// "mesh" key of the istio ConfigMap.
type meshConfigYAML struct {
	RootNamespace            string `json:"rootNamespace"`
	ProtocolDetectionTimeout string `json:"protocolDetectionTimeout"`
	DefaultConfig            struct {
		ProxyMetadata map[string]string `json:"proxyMetadata"`
	} `json:"defaultConfig"`
	OutboundTrafficPolicy struct {
		Mode string `json:"mode"`
	} `json:"outboundTrafficPolicy"`
}

// ParseMeshConfig reads the mesh config YAML as istiod would for the
// fields we use. Unknown fields are ignored, as istiod does.
func ParseMeshConfig(text string) (MeshConfig, error) {
	var raw meshConfigYAML
	if err := yaml.Unmarshal([]byte(text), &raw); err != nil {
		return MeshConfig{}, fmt.Errorf("parsing mesh config: %w", err)
	}
	out := MeshConfig{
		Found:                 true,
		RootNamespace:         raw.RootNamespace,
		DNSCapture:            raw.DefaultConfig.ProxyMetadata["ISTIO_META_DNS_CAPTURE"] == "true",
		DNSAutoAllocate:       raw.DefaultConfig.ProxyMetadata["ISTIO_META_DNS_AUTO_ALLOCATE"] == "true",
		OutboundTrafficPolicy: raw.OutboundTrafficPolicy.Mode,
	}
	if out.OutboundTrafficPolicy == "" {
		out.OutboundTrafficPolicy = "ALLOW_ANY"
	}
	if raw.ProtocolDetectionTimeout != "" {
		d, err := time.ParseDuration(raw.ProtocolDetectionTimeout)
		if err != nil || d < 0 {
			return MeshConfig{}, fmt.Errorf("parsing mesh config: protocolDetectionTimeout %q is not a duration", raw.ProtocolDetectionTimeout)
		}
		out.ProtocolDetectionTimeout = d
	}
	return out, nil
}

// DefaultMeshConfig is what a mesh without a readable config runs with.
func DefaultMeshConfig(istioNamespace string) MeshConfig {
	return MeshConfig{
		Source:                "Istio defaults (no mesh config found in " + istioNamespace + ")",
		RootNamespace:         istioNamespace,
		OutboundTrafficPolicy: "ALLOW_ANY",
	}
}

// meshConfigFrom picks the mesh config: the default revision's "istio"
// ConfigMap, else the first revisioned one. A managed control plane (ASM,
// an external istiod) keeps it out of the cluster: that is a note, not an
// error.
func meshConfigFrom(maps []corev1.ConfigMap, istioNamespace string, warnings []string) (MeshConfig, []string) {
	sort.Slice(maps, func(i, j int) bool {
		if (maps[i].Name == "istio") != (maps[j].Name == "istio") {
			return maps[i].Name == "istio"
		}
		return maps[i].Name < maps[j].Name
	})
	for _, cm := range maps {
		mc, err := ParseMeshConfig(cm.Data["mesh"])
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("ConfigMap %s/%s: %v; trying the next one", cm.Namespace, cm.Name, err))
			continue
		}
		mc.Source = cm.Namespace + "/" + cm.Name
		if mc.RootNamespace == "" {
			mc.RootNamespace = istioNamespace
		}
		if len(maps) > 1 {
			warnings = append(warnings, fmt.Sprintf("several mesh configs in %s; using %s for every workload", istioNamespace, mc.Source))
		}
		return mc, warnings
	}
	mc := DefaultMeshConfig(istioNamespace)
	warnings = append(warnings, fmt.Sprintf("no mesh config (ConfigMap istio or istio-<rev> in %s): assuming Istio's defaults, protocolDetectionTimeout 0s (wait forever) and mesh-wide PERMISSIVE mTLS; normal for a managed control plane such as Alibaba Cloud ASM", istioNamespace))
	return mc, warnings
}
