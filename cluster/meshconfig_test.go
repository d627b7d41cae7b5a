package cluster

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestParseMeshConfig(t *testing.T) {
	def := MeshConfig{Found: true, OutboundTrafficPolicy: "ALLOW_ANY", EnableAutoMTLS: true}
	with := func(f func(*MeshConfig)) MeshConfig { m := def; f(&m); return m }
	tests := []struct {
		name    string
		text    string
		want    MeshConfig
		wantErr string
	}{
		{"empty", "", def, ""},
		{"comment only", "# nothing\n", def, ""},
		{"unknown fields ignored", "accessLogFile: /dev/stdout\nenableTracing: true\nextensionProviders:\n- name: x\n", def, ""},
		{"timeout 0s", "protocolDetectionTimeout: 0s", def, ""},
		{"timeout 100ms", "protocolDetectionTimeout: 100ms", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = 100 * time.Millisecond }), ""},
		{"timeout 5s quoted", `protocolDetectionTimeout: "5s"`, with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = 5 * time.Second }), ""},
		{"timeout 1m30s", "protocolDetectionTimeout: 1m30s", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = 90 * time.Second }), ""},
		{"timeout 1.5s", "protocolDetectionTimeout: 1.5s", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = 1500 * time.Millisecond }), ""},
		{"timeout 1h", "protocolDetectionTimeout: 1h", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = time.Hour }), ""},
		{"timeout without unit", `protocolDetectionTimeout: "5"`, MeshConfig{}, "protocolDetectionTimeout: bad Duration"},
		{"timeout as a number", "protocolDetectionTimeout: 5", MeshConfig{}, "parsing mesh config"},
		{"timeout negative", "protocolDetectionTimeout: -1s", MeshConfig{}, "negative"},
		{"timeout garbage", "protocolDetectionTimeout: soon", MeshConfig{}, "protocolDetectionTimeout: bad Duration"},
		{"timeout finer than ms", "protocolDetectionTimeout: 1500us", MeshConfig{}, "millisecond"},
		{"timeout 1ms", "protocolDetectionTimeout: 1ms", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = time.Millisecond }), ""},
		{"root namespace", "rootNamespace: mesh-root", with(func(m *MeshConfig) { m.RootNamespace = "mesh-root" }), ""},
		{"registry only", "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY", with(func(m *MeshConfig) { m.OutboundTrafficPolicy = "REGISTRY_ONLY" }), ""},
		{"dns capture and auto allocate", "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n    ISTIO_META_DNS_AUTO_ALLOCATE: \"true\"\n",
			with(func(m *MeshConfig) { m.DNSCapture, m.DNSAutoAllocate = true, true }), ""},
		{"dns capture as ParseBool reads it", "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"1\"\n    ISTIO_META_DNS_AUTO_ALLOCATE: \"True\"\n",
			with(func(m *MeshConfig) { m.DNSCapture, m.DNSAutoAllocate = true, true }), ""},
		{"dns capture off", "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"false\"\n    ISTIO_META_DNS_AUTO_ALLOCATE: \"yes\"\n", def, ""},
		{"proxyMetadata value must be a string", "defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: true\n", MeshConfig{}, "parsing mesh config"},
		{"the whole thing", `
accessLogFile: /dev/stdout
defaultConfig:
  discoveryAddress: istiod.istio-system.svc:15012
  proxyMetadata:
    ISTIO_META_DNS_CAPTURE: "true"
  tracing: {}
enablePrometheusMerge: true
protocolDetectionTimeout: 250ms
rootNamespace: istio-system
trustDomain: cluster.local
outboundTrafficPolicy:
  mode: ALLOW_ANY
`, MeshConfig{Found: true, RootNamespace: "istio-system", ProtocolDetectionTimeout: 250 * time.Millisecond, DNSCapture: true, OutboundTrafficPolicy: "ALLOW_ANY", EnableAutoMTLS: true}, ""},
		{"auto mTLS off", "enableAutoMtls: false", with(func(m *MeshConfig) { m.EnableAutoMTLS = false }), ""},
		{"auto mTLS off, proto name", "enable_auto_mtls: false", with(func(m *MeshConfig) { m.EnableAutoMTLS = false }), ""},
		{"auto mTLS null keeps the default", "enableAutoMtls: null", def, ""},
		{"auto mTLS must be a boolean", `enableAutoMtls: "no"`, MeshConfig{}, "enableAutoMtls"},
		{"timeout null keeps the default", "protocolDetectionTimeout: null", def, ""},
		{"timeout empty string", `protocolDetectionTimeout: ""`, MeshConfig{}, "protocolDetectionTimeout: bad Duration"},
		{"proto field name", "protocol_detection_timeout: 2s", with(func(m *MeshConfig) { m.ProtocolDetectionTimeout = 2 * time.Second }), ""},
		{"rootNamespace must be a string", "rootNamespace: 3", MeshConfig{}, "rootNamespace"},
		{"outboundTrafficPolicy without mode is REGISTRY_ONLY", "outboundTrafficPolicy: {}", with(func(m *MeshConfig) { m.OutboundTrafficPolicy = "REGISTRY_ONLY" }), ""},
		{"outboundTrafficPolicy null keeps ALLOW_ANY", "outboundTrafficPolicy: null", def, ""},
		{"outboundTrafficPolicy mode as enum number", "outboundTrafficPolicy: {mode: 0}", with(func(m *MeshConfig) { m.OutboundTrafficPolicy = "REGISTRY_ONLY" }), ""},
		{"outboundTrafficPolicy ALLOW_ANY as enum number", "outboundTrafficPolicy: {mode: 1}", def, ""},
		{"allow any dynamic dns (Istio 1.31)", "outboundTrafficPolicy: {mode: ALLOW_ANY_DYNAMIC_DNS}\nprotocolDetectionTimeout: 5s",
			with(func(m *MeshConfig) {
				m.OutboundTrafficPolicy, m.ProtocolDetectionTimeout = "ALLOW_ANY_DYNAMIC_DNS", 5*time.Second
			}), ""},
		{"allow any dynamic dns as enum number", "outboundTrafficPolicy: {mode: 3}", with(func(m *MeshConfig) { m.OutboundTrafficPolicy = "ALLOW_ANY_DYNAMIC_DNS" }), ""},
		{"defaultConfig null", "defaultConfig: null", def, ""},
		{"export defaults (initDefaultExportMaps)", "defaultServiceExportTo: [\".\", web]\ndefaultDestinationRuleExportTo: [\".\"]\ndefaultVirtualServiceExportTo: [\"*\"]",
			with(func(m *MeshConfig) { m.DefaultServiceExportTo, m.DefaultDestinationRuleExportTo = ".,web", "." }), ""},
		{"not YAML", "protocolDetectionTimeout: [", MeshConfig{}, "parsing mesh config"},
		{"a list, not a map", "- a\n- b\n", MeshConfig{}, "parsing mesh config"},
		{"a scalar", "just text", MeshConfig{}, "parsing mesh config"},
		{"wrong type for defaultConfig", "defaultConfig: 3", MeshConfig{}, "parsing mesh config"},
		{"tab indentation", "defaultConfig:\n\tproxyMetadata: {}", MeshConfig{}, "parsing mesh config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := ParseMeshConfig(tt.text)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseMeshConfig error = %v, want one containing %q", err, tt.wantErr)
				}
				if got != (MeshConfig{}) {
					t.Errorf("on error ParseMeshConfig returned %+v, want the zero value", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseMeshConfig: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseMeshConfig =\n %+v\nwant\n %+v", got, tt.want)
			}
		})
	}
}

// Unknown fields and enum values cost a warning naming them, never the
// rest of the config: a newer Istio's mode, a typo, a field of another
// version all leave protocolDetectionTimeout standing.
func TestParseMeshConfigToleratesTheUnknown(t *testing.T) {
	for _, tt := range []struct {
		name, text string
		want       MeshConfig
		warnings   []string // each must appear in one warning, in order
	}{
		{"unknown top-level field", "protocolDetectionTimeout: 5s\nsomeFutureField: {a: 1}\n",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "ALLOW_ANY", ProtocolDetectionTimeout: 5 * time.Second},
			[]string{"someFutureField"}},
		{"unknown nested fields, all named", "defaultConfig:\n  proxyMetadata: {ISTIO_META_DNS_CAPTURE: \"true\"}\n  futureKnob: 1\noutboundTrafficPolicy: {mode: ALLOW_ANY, egressProxyy: {}}\nprotocolDetectionTimeout: 1s\n",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "ALLOW_ANY", ProtocolDetectionTimeout: time.Second, DNSCapture: true},
			[]string{"defaultConfig.futureKnob", "outboundTrafficPolicy.egressProxyy"}},
		{"field names are case-sensitive", "ProtocolDetectionTimeout: 2s\nrootNamespace: x",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "ALLOW_ANY", RootNamespace: "x"},
			[]string{"ProtocolDetectionTimeout"}},
		{"unknown mode: the rest still counts", "outboundTrafficPolicy: {mode: ALLOW_SOME}\nprotocolDetectionTimeout: 5s\n",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "REGISTRY_ONLY", ProtocolDetectionTimeout: 5 * time.Second},
			[]string{`outboundTrafficPolicy.mode: "ALLOW_SOME"`}},
		{"enum names are case-sensitive", "outboundTrafficPolicy: {mode: registry_only}",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "REGISTRY_ONLY"}, []string{`"registry_only"`}},
		{"unknown enum number", "outboundTrafficPolicy: {mode: 7}",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "REGISTRY_ONLY"}, []string{"outboundTrafficPolicy.mode 7"}},
		{"unknown enum in a list", "protocolDetectionTimeout: 2s\ndefaultConfig: {tracing: {}}\nextensionProviders: [{name: a, envoyOtelAls: {service: x, port: 1}}]\nh2UpgradePolicy: NOPE\n",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "ALLOW_ANY", ProtocolDetectionTimeout: 2 * time.Second}, []string{"h2UpgradePolicy"}},
		{"serviceEntryVisibility for sidecars: said, not modelled", "serviceEntryVisibility: {applyToSidecars: true}\n",
			MeshConfig{Found: true, EnableAutoMTLS: true, OutboundTrafficPolicy: "ALLOW_ANY"}, []string{"serviceEntryVisibility.applyToSidecars is not modelled"}},
		{"known fields: no warning", "accessLogFile: /dev/stdout\nenableAutoMtls: false\n",
			MeshConfig{Found: true, EnableAutoMTLS: false, OutboundTrafficPolicy: "ALLOW_ANY"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, warnings, err := ParseMeshConfig(tt.text)
			if err != nil {
				t.Fatalf("ParseMeshConfig: %v", err)
			}
			if got != tt.want {
				t.Errorf("ParseMeshConfig =\n %+v\nwant\n %+v", got, tt.want)
			}
			if len(warnings) != len(tt.warnings) {
				t.Fatalf("warnings %q, want %d", warnings, len(tt.warnings))
			}
			for i, w := range tt.warnings {
				if !strings.Contains(warnings[i], w) {
					t.Errorf("warning %q does not name %q", warnings[i], w)
				}
			}
		})
	}
	// Through meshConfigFrom the warnings name the ConfigMap.
	_, w := meshConfigFrom([]corev1.ConfigMap{cm("istio", "outboundTrafficPolicy: {mode: ALLOW_SOME}")}, "istio-system", nil)
	if len(w) != 1 || !strings.HasPrefix(w[0], "ConfigMap istio-system/istio: mesh config outboundTrafficPolicy.mode") {
		t.Errorf("warnings = %q", w)
	}
}

func FuzzParseMeshConfig(f *testing.F) {
	for _, s := range []string{
		"", "protocolDetectionTimeout: 100ms", "protocolDetectionTimeout: -1s", "rootNamespace: x",
		"defaultConfig:\n  proxyMetadata:\n    ISTIO_META_DNS_CAPTURE: \"true\"\n",
		"outboundTrafficPolicy: {mode: REGISTRY_ONLY}", "outboundTrafficPolicy: {mode: NOPE}", "defaultConfig: {x: [1]}", "{", "- [", "protocolDetectionTimeout: 9223372036854775807ns",
		"protocolDetectionTimeout: 99999999999h", "&a [*a]", "a: &a [*a, *a, *a]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		mc, warnings, err := ParseMeshConfig(text)
		if err != nil {
			if mc != (MeshConfig{}) {
				t.Fatalf("error %v with a non-zero config %+v", err, mc)
			}
			return
		}
		if !mc.Found || mc.OutboundTrafficPolicy == "" {
			t.Fatalf("parsed config lacks defaults: %+v", mc)
		}
		if mc.ProtocolDetectionTimeout < 0 || mc.ProtocolDetectionTimeout%time.Millisecond != 0 {
			t.Fatalf("timeout %v accepted", mc.ProtocolDetectionTimeout)
		}
		for _, w := range warnings {
			if w == "" || strings.Contains(w, "\n") {
				t.Fatalf("warning %q is not one line", w)
			}
		}
	})
}

func cm(name, mesh string) corev1.ConfigMap {
	return corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: name}, Data: map[string]string{"mesh": mesh}}
}

func TestMeshConfigFrom(t *testing.T) {
	t.Run("none: Istio defaults and a note", func(t *testing.T) {
		mc, w := meshConfigFrom(nil, "istio-system", nil)
		if mc.Found || mc.RootNamespace != "istio-system" || mc.ProtocolDetectionTimeout != 0 || mc.OutboundTrafficPolicy != "ALLOW_ANY" {
			t.Errorf("defaults = %+v", mc)
		}
		if !strings.Contains(mc.Source, "Istio defaults") {
			t.Errorf("Source = %q", mc.Source)
		}
		if len(w) != 1 || !strings.Contains(w[0], "no mesh config") || !strings.Contains(w[0], "ASM") {
			t.Errorf("warnings = %q", w)
		}
	})
	t.Run("istio wins over revisions, root namespace defaults to the Istio namespace", func(t *testing.T) {
		mc, w := meshConfigFrom([]corev1.ConfigMap{cm("istio-canary", "protocolDetectionTimeout: 1s"), cm("istio", "protocolDetectionTimeout: 2s")}, "istio-system", []string{"earlier"})
		if !mc.Found || mc.Source != "istio-system/istio" || mc.ProtocolDetectionTimeout != 2*time.Second || mc.RootNamespace != "istio-system" {
			t.Errorf("mesh = %+v", mc)
		}
		if len(w) != 2 || w[0] != "earlier" || !strings.Contains(w[1], "several mesh configs") {
			t.Errorf("warnings = %q", w)
		}
	})
	t.Run("revisions only: first by name", func(t *testing.T) {
		mc, _ := meshConfigFrom([]corev1.ConfigMap{cm("istio-stable", "rootNamespace: b"), cm("istio-canary", "rootNamespace: a")}, "istio-system", nil)
		if mc.Source != "istio-system/istio-canary" || mc.RootNamespace != "a" {
			t.Errorf("mesh = %+v", mc)
		}
	})
	t.Run("a broken one is skipped with a warning", func(t *testing.T) {
		mc, w := meshConfigFrom([]corev1.ConfigMap{cm("istio", "protocolDetectionTimeout: soon"), cm("istio-1-24", "protocolDetectionTimeout: 3s")}, "istio-system", nil)
		if mc.Source != "istio-system/istio-1-24" || mc.ProtocolDetectionTimeout != 3*time.Second {
			t.Errorf("mesh = %+v", mc)
		}
		if len(w) != 2 || !strings.Contains(w[0], "istio-system/istio:") || !strings.Contains(w[0], "trying the next one") {
			t.Errorf("warnings = %q", w)
		}
	})
	t.Run("all broken: defaults", func(t *testing.T) {
		mc, w := meshConfigFrom([]corev1.ConfigMap{cm("istio", "{")}, "istio-system", nil)
		if mc.Found || len(w) != 2 {
			t.Errorf("mesh = %+v, warnings = %q", mc, w)
		}
	})
}
