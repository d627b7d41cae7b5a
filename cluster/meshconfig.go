package cluster

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	//lint:ignore SA1019 istiod decodes mesh config with it (pkg/util/protomarshal ApplyJSON); protojson would reject Go durations such as "100ms" that istiod accepts
	"github.com/golang/protobuf/jsonpb"
	"google.golang.org/protobuf/reflect/protoreflect"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// ParseMeshConfig reads the mesh config YAML ("mesh" key of the istio
// ConfigMap) into Istio's own type, istio.io/api mesh/v1alpha1 MeshConfig,
// with the decoder istiod uses (pkg/config/mesh ApplyMeshConfig ->
// pkg/util/protomarshal ApplyYAML: YAML turned into JSON, then
// github.com/golang/protobuf/jsonpb). So field names are exact (the JSON
// name or the proto name), a value of the wrong JSON type fails the whole
// config (as it fails istiod), null keeps the default, a nested message
// replaces the default (an "outboundTrafficPolicy" object without a mode
// means REGISTRY_ONLY, the enum's zero value) and durations are Go
// durations (jsonpb uses time.ParseDuration), non-negative, in whole
// milliseconds (istiod's validation).
//
// Unknown fields are dropped with a warning naming each one, as istiod
// drops them. An enum value this API version does not know (a newer
// Istio's mode) is dropped with a warning too, so the rest of the config
// still counts; istiod itself would reject the whole config there.
func ParseMeshConfig(text string) (MeshConfig, []string, error) {
	out, warnings, err := parseMeshConfig(text)
	if err != nil {
		return MeshConfig{}, nil, fmt.Errorf("parsing mesh config: %w", err)
	}
	return out, warnings, nil
}

func parseMeshConfig(text string) (MeshConfig, []string, error) {
	js, err := yaml.YAMLToJSON([]byte(text))
	if err != nil {
		return MeshConfig{}, nil, err
	}
	var top map[string]any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&top); err != nil {
		return MeshConfig{}, nil, fmt.Errorf("not a YAML map: %w", err)
	}
	mc := &meshv1alpha1.MeshConfig{}
	var warnings []string
	dropUnknown(top, mc.ProtoReflect().Descriptor(), "", &warnings)
	if err := decodeJSONPB(top, mc); err != nil {
		// Name the top-level field that fails: jsonpb's errors do not.
		for _, k := range slices.Sorted(maps.Keys(top)) {
			if err := decodeJSONPB(map[string]any{k: top[k]}, &meshv1alpha1.MeshConfig{}); err != nil {
				return MeshConfig{}, nil, fmt.Errorf("%s: %w", k, err)
			}
		}
		return MeshConfig{}, nil, err
	}
	out := MeshConfig{Found: true, OutboundTrafficPolicy: OutboundAllowAny, RootNamespace: mc.GetRootNamespace()}
	if d := mc.GetProtocolDetectionTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return MeshConfig{}, nil, fmt.Errorf("protocolDetectionTimeout: %w", err)
		}
		t := d.AsDuration()
		switch {
		case t < 0:
			return MeshConfig{}, nil, fmt.Errorf("protocolDetectionTimeout %s is negative", t)
		case t%time.Millisecond != 0:
			return MeshConfig{}, nil, fmt.Errorf("protocolDetectionTimeout %s: istiod only accepts millisecond precision", t)
		}
		out.ProtocolDetectionTimeout = t
	}
	// Istio's default mesh config has ALLOW_ANY; a policy object given
	// replaces it whole, so its zero mode (REGISTRY_ONLY) applies.
	if otp := mc.GetOutboundTrafficPolicy(); otp != nil {
		out.OutboundTrafficPolicy = otp.GetMode().String()
		if _, known := meshv1alpha1.MeshConfig_OutboundTrafficPolicy_Mode_name[int32(otp.GetMode())]; !known {
			// istiod keeps the number and, neither ALLOW_ANY nor
			// ALLOW_ANY_DYNAMIC_DNS, sends unknown destinations to
			// BlackHoleCluster (listener_builder.go
			// buildOutboundCatchAllNetworkFiltersOnly).
			warnings = append(warnings, fmt.Sprintf("mesh config outboundTrafficPolicy.mode %d is not a mode this Istio API knows: judged as REGISTRY_ONLY, which is how istiod builds it", otp.GetMode()))
			out.OutboundTrafficPolicy = OutboundRegistryOnly
		}
	}
	// enableAutoMtls is a BoolValue: unset means Istio's default, true.
	out.EnableAutoMTLS = mc.GetEnableAutoMtls() == nil || mc.GetEnableAutoMtls().GetValue()
	// Unset lists are Istio's "*" (PushContext.initDefaultExportMaps).
	out.DefaultServiceExportTo = exportToList(mc.GetDefaultServiceExportTo())
	out.DefaultDestinationRuleExportTo = exportToList(mc.GetDefaultDestinationRuleExportTo())
	if mc.GetServiceEntryVisibility().GetApplyToSidecars() {
		// PushContext.serviceExportTo caps a ServiceEntry's exportTo by its
		// namespace's resolved visibility then; only ever narrower.
		warnings = append(warnings, "mesh config serviceEntryVisibility.applyToSidecars is not modelled: ServiceEntries may be visible to fewer namespaces than the report assumes")
	}
	md := mc.GetDefaultConfig().GetProxyMetadata()
	out.DNSCapture = proxyBool(md["ISTIO_META_DNS_CAPTURE"])
	out.DNSAutoAllocate = proxyBool(md["ISTIO_META_DNS_AUTO_ALLOCATE"])
	return out, warnings, nil
}

// Outbound traffic policy modes, as meshConfig.outboundTrafficPolicy.mode
// spells them.
const (
	OutboundRegistryOnly       = "REGISTRY_ONLY"
	OutboundAllowAny           = "ALLOW_ANY"
	OutboundAllowAnyDynamicDNS = "ALLOW_ANY_DYNAMIC_DNS"
)

func decodeJSONPB(v map[string]any, m *meshv1alpha1.MeshConfig) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(b), m)
}

// dropUnknown removes, in place, what the message type does not know: keys
// that name no field (jsonpb matches the proto name or the JSON name,
// exactly) and enum names that are no value of their enum, saying which.
// Well-known types (Duration, Struct, wrappers) are left to jsonpb.
func dropUnknown(obj map[string]any, md protoreflect.MessageDescriptor, prefix string, warnings *[]string) {
	if strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		fd := md.Fields().ByName(protoreflect.Name(k))
		if fd == nil {
			fd = md.Fields().ByJSONName(k)
		}
		path := prefix + k
		if fd == nil {
			if !strings.HasPrefix(k, "[") {
				*warnings = append(*warnings, fmt.Sprintf("mesh config field %s is not a field this Istio API knows: ignored, as istiod ignores it", path))
				delete(obj, k)
			}
			continue
		}
		switch v := obj[k].(type) {
		case map[string]any:
			if fd.IsMap() {
				for mk, mv := range v {
					if !dropUnknownValue(mv, fd.MapValue(), path+"."+mk, warnings) {
						delete(v, mk)
					}
				}
			} else if !fd.IsList() && !dropUnknownValue(v, fd, path, warnings) {
				delete(obj, k)
			}
		case []any:
			if fd.IsList() {
				kept := v[:0]
				for i, e := range v {
					if dropUnknownValue(e, fd, fmt.Sprintf("%s[%d]", path, i), warnings) {
						kept = append(kept, e)
					}
				}
				obj[k] = kept
			}
		default:
			if !fd.IsList() && !fd.IsMap() && !dropUnknownValue(v, fd, path, warnings) {
				delete(obj, k)
			}
		}
	}
}

// dropUnknownValue cleans one value of field fd; false means drop it.
func dropUnknownValue(v any, fd protoreflect.FieldDescriptor, path string, warnings *[]string) bool {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if m, ok := v.(map[string]any); ok {
			dropUnknown(m, fd.Message(), path+".", warnings)
		}
	case protoreflect.EnumKind:
		if s, ok := v.(string); ok && fd.Enum().Values().ByName(protoreflect.Name(s)) == nil && fd.Enum().FullName() != "google.protobuf.NullValue" {
			zero := fd.Enum().Values().ByNumber(0)
			*warnings = append(*warnings, fmt.Sprintf("mesh config %s: %q is not a value this Istio API knows (a newer Istio's?): ignored, so it reads as %s; istiod of this API version would reject the whole config", path, s, zero.Name()))
			return false
		}
	}
	return true
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
		OutboundTrafficPolicy: OutboundAllowAny,
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
		mc, parseWarnings, err := ParseMeshConfig(cm.Data["mesh"])
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("ConfigMap %s/%s: %v; trying the next one", cm.Namespace, cm.Name, err))
			continue
		}
		for _, w := range parseWarnings {
			warnings = append(warnings, fmt.Sprintf("ConfigMap %s/%s: %s", cm.Namespace, cm.Name, w))
		}
		mc.Source = cm.Namespace + "/" + cm.Name
		mc.RootNamespace = cmp.Or(mc.RootNamespace, istioNamespace)
		if len(maps) > 1 {
			warnings = append(warnings, fmt.Sprintf("several mesh configs in %s; using %s for every workload", istioNamespace, mc.Source))
		}
		return mc, warnings
	}
	mc := DefaultMeshConfig(istioNamespace)
	warnings = append(warnings, fmt.Sprintf("no mesh config (ConfigMap istio or istio-<rev> in %s): assuming Istio's defaults, protocolDetectionTimeout 0s (wait forever) and mesh-wide PERMISSIVE mTLS; normal for a managed control plane such as Alibaba Cloud ASM", istioNamespace))
	return mc, warnings
}
