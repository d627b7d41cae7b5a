package cluster

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ParseMeshConfig reads the mesh config YAML ("mesh" key of the istio
// ConfigMap) as istiod does for the fields we use: YAML turned into JSON,
// then protobuf JSON rules (pkg/config/mesh ApplyMeshConfig, jsonpb with
// unknown fields allowed). So field names are exact (the JSON name or the
// proto name), a value of the wrong JSON type fails the whole config, null
// keeps the default, and an "outboundTrafficPolicy" object without a mode
// means REGISTRY_ONLY (the enum's zero value). Durations are Go durations
// (jsonpb uses time.ParseDuration), non-negative, in whole milliseconds
// (istiod's validation).
func ParseMeshConfig(text string) (MeshConfig, error) {
	out, err := parseMeshConfig(text)
	if err != nil {
		return MeshConfig{}, fmt.Errorf("parsing mesh config: %w", err)
	}
	return out, nil
}

func parseMeshConfig(text string) (MeshConfig, error) {
	out := MeshConfig{Found: true, OutboundTrafficPolicy: "ALLOW_ANY", EnableAutoMTLS: true}
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return out, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return out, fmt.Errorf("not a YAML map: %w", err)
	}
	if raw, ok := protoField(top, "rootNamespace", "root_namespace"); ok {
		if err := json.Unmarshal(raw, &out.RootNamespace); err != nil {
			return out, fmt.Errorf("rootNamespace: %w", err)
		}
	}
	if raw, ok := protoField(top, "protocolDetectionTimeout", "protocol_detection_timeout"); ok {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return out, fmt.Errorf("protocolDetectionTimeout: %w", err)
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return out, fmt.Errorf("protocolDetectionTimeout %q is not a duration", s)
		}
		if d%time.Millisecond != 0 {
			return out, fmt.Errorf("protocolDetectionTimeout %q: istiod only accepts millisecond precision", s)
		}
		out.ProtocolDetectionTimeout = d
	}
	if raw, ok := protoField(top, "outboundTrafficPolicy", "outbound_traffic_policy"); ok {
		var otp map[string]json.RawMessage
		if err := json.Unmarshal(raw, &otp); err != nil {
			return out, fmt.Errorf("outboundTrafficPolicy: %w", err)
		}
		out.OutboundTrafficPolicy = "REGISTRY_ONLY"
		if mode, ok := protoField(otp, "mode", "mode"); ok {
			switch string(mode) {
			case `"REGISTRY_ONLY"`, "0":
			case `"ALLOW_ANY"`, "1":
				out.OutboundTrafficPolicy = "ALLOW_ANY"
			default:
				return out, fmt.Errorf("outboundTrafficPolicy.mode %s is not REGISTRY_ONLY or ALLOW_ANY", mode)
			}
		}
	}
	if raw, ok := protoField(top, "enableAutoMtls", "enable_auto_mtls"); ok {
		// A BoolValue: protobuf JSON writes it as a bare boolean.
		if err := json.Unmarshal(raw, &out.EnableAutoMTLS); err != nil {
			return out, fmt.Errorf("enableAutoMtls: %w", err)
		}
	}
	if raw, ok := protoField(top, "defaultConfig", "default_config"); ok {
		var dc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &dc); err != nil {
			return out, fmt.Errorf("defaultConfig: %w", err)
		}
		if raw, ok := protoField(dc, "proxyMetadata", "proxy_metadata"); ok {
			var md map[string]string
			if err := json.Unmarshal(raw, &md); err != nil {
				return out, fmt.Errorf("defaultConfig.proxyMetadata: %w", err)
			}
			out.DNSCapture = proxyBool(md["ISTIO_META_DNS_CAPTURE"])
			out.DNSAutoAllocate = proxyBool(md["ISTIO_META_DNS_AUTO_ALLOCATE"])
		}
	}
	return out, nil
}

// protoField finds a field by its protobuf JSON name or its proto name, as
// jsonpb does (exact case); a JSON null counts as absent.
func protoField(m map[string]json.RawMessage, jsonName, protoName string) (json.RawMessage, bool) {
	raw, ok := m[jsonName]
	if !ok {
		raw, ok = m[protoName]
	}
	if !ok || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// proxyBool reads a proxyMetadata switch as the proxy does: pilot-agent's
// env vars and istiod's node metadata (StringBool) both use
// strconv.ParseBool, so "1" and "True" count; anything unparsable is off.
func proxyBool(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

// DefaultMeshConfig is what a mesh without a readable config runs with.
func DefaultMeshConfig(istioNamespace string) MeshConfig {
	return MeshConfig{
		Source:                "Istio defaults (no mesh config found in " + istioNamespace + ")",
		RootNamespace:         istioNamespace,
		OutboundTrafficPolicy: "ALLOW_ANY",
		EnableAutoMTLS:        true,
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
