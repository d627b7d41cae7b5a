package report

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingac "istio.io/client-go/pkg/applyconfiguration/networking/v1"
	securityac "istio.io/client-go/pkg/applyconfiguration/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// Change is a fix in machine-readable form, part of the report's JSON:
// the object its manifest applies, the entry of that object it changes
// and what the entry held at the scan. Plan merges the fixes to one
// object from it, and fix --from checks with it that the object did not
// change since the report.
type Change struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	// Create: the object did not exist at the scan; the manifest is the
	// whole object, which the fix creates.
	Create bool `json:"create,omitempty"`
	// Port is the entry the fix changes: a Service port ("3307/TCP"), a
	// ServiceEntry port number, a PeerAuthentication portLevelMtls port.
	Port string `json:"port,omitempty"`
	// Set are the fields the fix sets on that entry (Service: name,
	// appProtocol; ServiceEntry: name, protocol; PeerAuthentication:
	// mode), Was their values at the scan (a field not in Was was unset).
	Set map[string]string `json:"set,omitempty"`
	Was map[string]string `json:"was,omitempty"`
	// Addresses are the spec.addresses a ServiceEntry fix gives an entry
	// that had none.
	Addresses []string `json:"addresses,omitempty"`
}

// Ref is "Kind namespace/name".
func (c *Change) Ref() string { return c.Kind + " " + c.Namespace + "/" + c.Name }

func (c *Change) key() string { return c.APIVersion + "|" + c.Kind + "|" + c.Namespace + "|" + c.Name }

// The kinds fixes apply, and the fields a Change may set on each.
var changeFields = map[string][]string{
	"v1/Service":                              {"appProtocol", "name"},
	"networking.istio.io/v1/ServiceEntry":     {"name", "protocol"},
	"security.istio.io/v1/PeerAuthentication": {"mode"},
}

// validate checks a change read from a file: a kind fixes apply, fields
// it may set, and for a PeerAuthentication a mode Istio knows.
func (c *Change) validate() error {
	fields, ok := changeFields[c.APIVersion+"/"+c.Kind]
	if !ok {
		return fmt.Errorf("a fix changes %s %s, which fix does not apply", c.APIVersion, c.Kind)
	}
	if c.Name == "" || c.Namespace == "" {
		return fmt.Errorf("a %s fix names no object", c.Kind)
	}
	for k, v := range c.Set {
		if !slices.Contains(fields, k) {
			return fmt.Errorf("a fix to %s sets %q, not a field fix changes on a %s", c.Ref(), k, c.Kind)
		}
		if k == "mode" {
			if _, ok := securityapi.PeerAuthentication_MutualTLS_Mode_value[v]; !ok {
				return fmt.Errorf("a fix to %s sets mode %q, not an mTLS mode", c.Ref(), v)
			}
		}
	}
	if !c.Create && c.Port == "" {
		return fmt.Errorf("a fix to %s names no port", c.Ref())
	}
	return nil
}

// serviceObject is a Service as the scan saw it: its ports, every one of
// them. With client-side apply a partial ports list would let a later
// apply delete the ports it leaves out, and with server-side apply it
// would drop the fields an earlier fix set.
func serviceObject(svc cluster.Service) *corev1ac.ServiceApplyConfiguration {
	spec := corev1ac.ServiceSpec()
	for _, q := range svc.Ports {
		p := corev1ac.ServicePort().WithPort(q.Port).WithProtocol(corev1.Protocol(q.Protocol))
		if q.Name != "" {
			p.WithName(q.Name)
		}
		if q.TargetPort != "" {
			p.WithTargetPort(intstr.Parse(q.TargetPort))
		}
		if q.AppProtocol != "" {
			p.WithAppProtocol(q.AppProtocol)
		}
		spec.WithPorts(p)
	}
	return corev1ac.Service(svc.Name, svc.Namespace).WithSpec(spec)
}

// serviceEntryObject is a ServiceEntry as the scan saw it: the ports
// list is replaced as a whole, so it repeats every port.
func serviceEntryObject(se cluster.ServiceEntry) *networkingac.ServiceEntryApplyConfiguration {
	obj := networkingac.ServiceEntry(se.Name, se.Namespace)
	obj.Spec = &networkingapi.ServiceEntry{Hosts: se.Hosts, Addresses: se.Addresses}
	for _, q := range se.Ports {
		obj.Spec.Ports = append(obj.Spec.Ports, &networkingapi.ServicePort{Number: q.Number, Name: q.Name, Protocol: q.Protocol, TargetPort: q.TargetPort})
	}
	return obj
}

// peerAuthenticationObject is a workload policy: an existing one as the
// scan saw it, or a new one for selector.
func peerAuthenticationObject(name, namespace string, selector map[string]string, mode cluster.MTLSMode, portModes map[uint32]cluster.MTLSMode) *securityac.PeerAuthenticationApplyConfiguration {
	obj := securityac.PeerAuthentication(name, namespace)
	obj.Spec = &securityapi.PeerAuthentication{Selector: &typeapi.WorkloadSelector{MatchLabels: selector}}
	if mode != cluster.MTLSUnset && mode != "" {
		obj.Spec.Mtls = &securityapi.PeerAuthentication_MutualTLS{Mode: mtlsMode(string(mode))}
	}
	for port, m := range portModes {
		if obj.Spec.PortLevelMtls == nil {
			obj.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{}
		}
		obj.Spec.PortLevelMtls[port] = &securityapi.PeerAuthentication_MutualTLS{Mode: mtlsMode(string(m))}
	}
	return obj
}

func mtlsMode(s string) securityapi.PeerAuthentication_MutualTLS_Mode {
	return securityapi.PeerAuthentication_MutualTLS_Mode(securityapi.PeerAuthentication_MutualTLS_Mode_value[s])
}

// applyChange sets a change's fields on its object.
func applyChange(obj any, c *Change) {
	switch o := obj.(type) {
	case *corev1ac.ServiceApplyConfiguration:
		for i := range o.Spec.Ports {
			p := &o.Spec.Ports[i]
			if servicePortKey(ptr.Deref(p.Port, 0), string(ptr.Deref(p.Protocol, ""))) != c.Port {
				continue
			}
			for k, v := range c.Set {
				switch k {
				case "name":
					p.Name = &v
				case "appProtocol":
					p.AppProtocol = &v
				}
			}
		}
	case *networkingac.ServiceEntryApplyConfiguration:
		for _, p := range o.Spec.Ports {
			if strconv.Itoa(int(p.Number)) != c.Port {
				continue
			}
			for k, v := range c.Set {
				switch k {
				case "name":
					p.Name = v
				case "protocol":
					p.Protocol = v
				}
			}
		}
		if len(c.Addresses) > 0 {
			o.Spec.Addresses = slices.Clone(c.Addresses)
		}
	case *securityac.PeerAuthenticationApplyConfiguration:
		port, err := strconv.ParseUint(c.Port, 10, 32)
		if mode, ok := c.Set["mode"]; ok && err == nil {
			if o.Spec.PortLevelMtls == nil {
				o.Spec.PortLevelMtls = map[uint32]*securityapi.PeerAuthentication_MutualTLS{}
			}
			o.Spec.PortLevelMtls[uint32(port)] = &securityapi.PeerAuthentication_MutualTLS{Mode: mtlsMode(mode)}
		}
	}
}

// withChange is fix with its change applied to obj, and its manifest.
func withChange(fix Fix, obj any, c *Change) Fix {
	applyChange(obj, c)
	fix.Change = c
	fix.Manifest = manifestOf(obj, c.Create)
	return fix
}

// manifestOf renders an apply configuration as the YAML fix prints.
// Istio's types encode through protobuf JSON, which leaves out enum
// values that are zero: a ServiceEntry the fix creates says location
// MESH_EXTERNAL and resolution NONE anyway, so that the manifest reads
// as the whole decision (the API server stores the same meaning either
// way).
func manifestOf(obj any, create bool) string {
	se, ok := obj.(*networkingac.ServiceEntryApplyConfiguration)
	if !ok || !create || se.Spec == nil {
		return toYAML(obj)
	}
	b, err := json.Marshal(obj)
	if err != nil {
		panic(err) // an apply configuration always encodes
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	spec, _ := m["spec"].(map[string]any)
	spec["location"] = se.Spec.Location.String()
	spec["resolution"] = se.Spec.Resolution.String()
	return toYAML(m)
}

// ObjectOf is the typed apply configuration of a fix with a change: its
// manifest read back into the configuration of the change's kind, checked
// to be the object the change names.
func ObjectOf(fix Fix) (any, error) {
	c := fix.Change
	if c == nil {
		return nil, fmt.Errorf("fix %q changes no object", fix.Title)
	}
	var obj any
	switch c.APIVersion + "/" + c.Kind {
	case "v1/Service":
		obj = &corev1ac.ServiceApplyConfiguration{}
	case "networking.istio.io/v1/ServiceEntry":
		obj = &networkingac.ServiceEntryApplyConfiguration{}
	case "security.istio.io/v1/PeerAuthentication":
		obj = &securityac.PeerAuthenticationApplyConfiguration{}
	default:
		return nil, c.validate()
	}
	var head struct {
		APIVersion, Kind string
		Metadata         struct{ Namespace, Name string }
		Spec             map[string]any
	}
	if err := yaml.Unmarshal([]byte(fix.Manifest), &head); err != nil {
		return nil, fmt.Errorf("the manifest of the fix to %s does not read: %v", c.Ref(), err)
	}
	ref := Change{APIVersion: head.APIVersion, Kind: head.Kind, Namespace: head.Metadata.Namespace, Name: head.Metadata.Name}
	// Names go through JSON, which writes invalid UTF-8 as U+FFFD.
	if strings.ToValidUTF8(ref.key(), "\uFFFD") != strings.ToValidUTF8(c.key(), "\uFFFD") || head.Spec == nil {
		return nil, fmt.Errorf("the manifest of the fix to %s is not that object's (%s)", c.Ref(), ref.Ref())
	}
	if err := yaml.Unmarshal([]byte(fix.Manifest), obj); err != nil {
		return nil, fmt.Errorf("the manifest of the fix to %s does not read: %v", c.Ref(), err)
	}
	return obj, nil
}
