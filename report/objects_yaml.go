package report

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// The Service and PeerAuthentication fix manifests are written here as
// toYAML writes them, without its marshalling round trip (JSON, YAML, and
// both read back): a big cluster has a fix of each kind per Service port,
// and the round trip was most of report.Build's time there. Anything
// outside what these writers know is spelled the same by YAML's emitter
// (a string that is not a plain scalar, an mTLS mode that protobuf JSON
// leaves out, map keys YAML sorts otherwise than Go) returns ok false, for
// toYAML to write. TestDirectManifestsMatchToYAML holds them to toYAML.

// plainYAMLScalar: YAML's emitter writes s unquoted and reads it back as
// the same string: it starts with a letter, holds only letters, digits
// and "-._/", and is none of the YAML 1.1 words for booleans and null in
// any case.
func plainYAMLScalar(s string) bool {
	if s == "" || !asciiLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !asciiLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_' && c != '/' {
			return false
		}
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null":
		return false
	}
	return true
}

func asciiLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// goSortsLikeYAML: YAML's emitter sorts these map keys as Go sorts
// strings. It compares runs of digits as numbers and puts every other
// non-letter before the letters, so a key with a digit or "_" may sort
// otherwise.
func goSortsLikeYAML(keys []string) bool {
	if len(keys) < 2 {
		return true
	}
	for _, k := range keys {
		if strings.ContainsAny(k, "0123456789_") {
			return false
		}
	}
	return true
}

// serviceManifest is serviceFix's manifest: the Service as the scan saw
// it (serviceObject) with c applied (applyChange).
func serviceManifest(svc cluster.Service, c *Change) (string, bool) {
	if !plainYAMLScalar(svc.Name) || !plainYAMLScalar(svc.Namespace) {
		return "", false
	}
	for _, v := range c.Set {
		if !plainYAMLScalar(v) {
			return "", false
		}
	}
	var b strings.Builder
	b.Grow(128 + 96*len(svc.Ports))
	writeManifestHead(&b, "v1", "Service", svc.Namespace, svc.Name, false)
	b.WriteString("  ports:\n")
	for _, q := range svc.Ports {
		name, appProtocol := q.Name, q.AppProtocol
		if servicePortKey(q.Port, q.Protocol) == c.Port {
			if v, ok := c.Set["name"]; ok {
				name = v
			}
			if v, ok := c.Set["appProtocol"]; ok {
				appProtocol = v
			}
		}
		if !plainYAMLScalar(q.Protocol) || name != "" && !plainYAMLScalar(name) || appProtocol != "" && !plainYAMLScalar(appProtocol) {
			return "", false
		}
		// The keys in YAML's order: appProtocol, name, port, protocol,
		// targetPort; the first one starts the list item.
		lead := "  - "
		item := func(key, value string) {
			b.WriteString(lead)
			b.WriteString(key)
			b.WriteString(": ")
			b.WriteString(value)
			b.WriteByte('\n')
			lead = "    "
		}
		if appProtocol != "" {
			item("appProtocol", appProtocol)
		}
		if name != "" {
			item("name", name)
		}
		item("port", strconv.Itoa(int(q.Port)))
		item("protocol", q.Protocol)
		if q.TargetPort != "" {
			tp := intstr.Parse(q.TargetPort)
			if tp.Type == intstr.Int {
				item("targetPort", strconv.Itoa(int(tp.IntVal)))
			} else if plainYAMLScalar(tp.StrVal) {
				item("targetPort", tp.StrVal)
			} else {
				return "", false
			}
		}
	}
	return b.String(), true
}

// peerAuthenticationManifest is peerAuthenticationFix's manifest: the
// workload policy (peerAuthenticationObject, labelled as ours when
// managed) with c's port mode applied (applyChange).
func peerAuthenticationManifest(name, namespace string, managed bool, selector map[string]string, mode cluster.MTLSMode, portModes map[uint32]cluster.MTLSMode, c *Change) (string, bool) {
	if !plainYAMLScalar(name) || !plainYAMLScalar(namespace) || len(selector) == 0 {
		return "", false
	}
	// A mode protobuf JSON writes: known and not UNSET (the zero value,
	// which it leaves out).
	known := func(m string) bool { return mtlsMode(m) != 0 }
	ports := map[uint32]string{}
	for port, m := range portModes {
		ports[port] = string(m)
	}
	if m, ok := c.Set["mode"]; ok {
		port, err := strconv.ParseUint(c.Port, 10, 32)
		if err != nil {
			return "", false
		}
		ports[uint32(port)] = m
	}
	keys := slices.Sorted(maps.Keys(selector))
	if !goSortsLikeYAML(keys) {
		return "", false
	}
	var b strings.Builder
	writeManifestHead(&b, "security.istio.io/v1", "PeerAuthentication", namespace, name, managed)
	if mode != cluster.MTLSUnset && mode != "" {
		if !known(string(mode)) {
			return "", false
		}
		b.WriteString("  mtls:\n    mode: " + string(mode) + "\n")
	}
	if len(ports) > 0 {
		// Quoted numbers: YAML sorts them as numbers.
		b.WriteString("  portLevelMtls:\n")
		for _, port := range slices.Sorted(maps.Keys(ports)) {
			if !known(ports[port]) {
				return "", false
			}
			b.WriteString("    \"" + strconv.FormatUint(uint64(port), 10) + "\":\n      mode: " + ports[port] + "\n")
		}
	}
	b.WriteString("  selector:\n    matchLabels:\n")
	for _, k := range keys {
		if !plainYAMLScalar(k) || !plainYAMLScalar(selector[k]) {
			return "", false
		}
		b.WriteString("      " + k + ": " + selector[k] + "\n")
	}
	return b.String(), true
}

// writeManifestHead writes what every directly written manifest starts
// with, as toYAML orders it, up to "spec:": managed adds the label fix
// --apply marks its own objects with.
func writeManifestHead(b *strings.Builder, apiVersion, kind, namespace, name string, managed bool) {
	b.WriteString("apiVersion: " + apiVersion + "\nkind: " + kind + "\nmetadata:\n")
	if managed {
		b.WriteString("  labels:\n    " + ManagedByLabel + ": " + ManagerName + "\n")
	}
	b.WriteString("  name: " + name + "\n  namespace: " + namespace + "\nspec:\n")
}
