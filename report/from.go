package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// SchemaVersion is the version of the report's JSON that this build
// writes: 1 is the first whose fixes carry their change (fix --from reads
// a report of this version or older, never a newer one).
const SchemaVersion = 1

// ReadReport decodes a saved report (scan -o json, or -o yaml) for fix
// --from. It refuses, in one line each, a document that is not a report,
// a report of a newer schema, and one too old to say what its fixes
// change.
func ReadReport(data []byte) (Report, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return Report{}, fmt.Errorf("not a kubectl-serverfirst report (scan -o json): %v", err)
	}
	var head struct {
		Findings      *json.RawMessage `json:"findings"`
		Summary       *json.RawMessage `json:"summary"`
		SchemaVersion int              `json:"schemaVersion"`
	}
	if err := json.Unmarshal(js, &head); err != nil || head.Findings == nil || head.Summary == nil {
		return Report{}, fmt.Errorf("not a kubectl-serverfirst report (scan -o json): no findings and summary")
	}
	switch {
	case head.SchemaVersion > SchemaVersion:
		return Report{}, fmt.Errorf("report schema %d is newer than this kubectl-serverfirst reads (%d): use the version that wrote it, or scan again", head.SchemaVersion, SchemaVersion)
	case head.SchemaVersion < 1:
		return Report{}, fmt.Errorf("report has no schemaVersion: a kubectl-serverfirst before fixes said what they change wrote it; scan again")
	}
	var r Report
	if err := json.Unmarshal(js, &r); err != nil {
		return Report{}, fmt.Errorf("not a kubectl-serverfirst report (scan -o json): %v", err)
	}
	return r, nil
}

// Drift compares the object as it is now (current, as the API server
// returns it; nil when absent) with what the report saw where the
// planned object's changes act: each change's fields must still hold the
// value the report saw (or already the one the fix sets), and the rest of
// the manifest (the other ports, the selector) must still be what the
// object holds, since applying it takes those fields over. It returns, by
// change, why a change must be skipped; nil when none.
func (o PlannedObject) Drift(current map[string]any) map[*Change]string {
	out := map[*Change]string{}
	skipAll := func(why string) map[*Change]string {
		for _, c := range o.Changes {
			out[c] = why
		}
		return out
	}
	if current == nil {
		if o.Create {
			return nil
		}
		return skipAll("it was deleted since the report")
	}
	if o.Create {
		return skipAll("it exists now: it was created since the report")
	}
	cur, err := plainJSON(current)
	if err != nil {
		return skipAll(err.Error())
	}
	seen, err := plainJSON(o.Object)
	if err != nil {
		return skipAll(err.Error())
	}
	for _, c := range o.Changes {
		now, ok := changedEntry(cur, c)
		if !ok {
			out[c] = fmt.Sprintf("port %s is gone since the report", c.Port)
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(c.Set)) {
			if v, _ := now[k].(string); v != c.Was[k] && v != c.Set[k] {
				out[c] = fmt.Sprintf("port %s %s is %q now, the report saw %q", c.Port, k, v, c.Was[k])
			}
		}
		if addrs := stringsOf(dig(cur, "spec", "addresses")); len(c.Addresses) > 0 && len(addrs) > 0 && !slices.Equal(addrs, c.Addresses) {
			out[c] = fmt.Sprintf("it has addresses %v now, the report saw none", addrs)
		}
		// What the report saw of the rest: the manifest without the
		// fields the changes set.
		if e, ok := changedEntry(seen, c); ok {
			for k := range c.Set {
				delete(e, k)
			}
		}
		if len(c.Addresses) > 0 {
			if spec, ok := seen["spec"].(map[string]any); ok {
				delete(spec, "addresses")
			}
		}
	}
	if why := contained("spec", seen["spec"], cur["spec"]); why != "" {
		return skipAll(why)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// plainJSON is v as encoding/json reads it back: numbers float64.
func plainJSON(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func dig(m map[string]any, path ...string) any {
	var v any = m
	for _, k := range path {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	return v
}

func stringsOf(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, e := range list {
		s, _ := e.(string)
		out = append(out, s)
	}
	return out
}

// changedEntry finds the entry a change acts on in an object's JSON: a
// port of a Service or ServiceEntry, a PeerAuthentication's portLevelMtls
// entry (an empty one when the policy has none for the port yet).
func changedEntry(obj map[string]any, c *Change) (map[string]any, bool) {
	spec, _ := obj["spec"].(map[string]any)
	switch c.Kind {
	case "Service", "ServiceEntry":
		ports, _ := spec["ports"].([]any)
		for _, p := range ports {
			m, _ := p.(map[string]any)
			if portID(m) == c.Port {
				return m, true
			}
		}
		return nil, false
	case "PeerAuthentication":
		pl, _ := spec["portLevelMtls"].(map[string]any)
		if e, ok := pl[c.Port].(map[string]any); ok {
			return e, true
		}
		return map[string]any{}, true
	}
	return nil, false
}

// portID names a port entry as Change.Port does: "3307/TCP" for a
// Service's (TCP when the protocol is not written), the number for a
// ServiceEntry's.
func portID(m map[string]any) string {
	if n, ok := m["number"].(float64); ok {
		return fmt.Sprint(int64(n))
	}
	n, _ := m["port"].(float64)
	l4, _ := m["protocol"].(string)
	return fmt.Sprintf("%d/%s", int64(n), cmp.Or(l4, "TCP"))
}

// contained says where want (the manifest as the report saw the object)
// is not part of have (the object now); "" when it is. Ports are matched
// by their number, so a port added since is no drift.
func contained(path string, want, have any) string {
	switch w := want.(type) {
	case map[string]any:
		h, _ := have.(map[string]any)
		for _, k := range slices.Sorted(maps.Keys(w)) {
			if why := contained(path+"."+k, w[k], h[k]); why != "" {
				return why
			}
		}
		return ""
	case []any:
		h, _ := have.([]any)
		for i, e := range w {
			m, isPort := e.(map[string]any)
			var match any
			if isPort && (m["port"] != nil || m["number"] != nil) {
				for _, x := range h {
					if xm, ok := x.(map[string]any); ok && portID(xm) == portID(m) {
						match = x
					}
				}
				if match == nil {
					return fmt.Sprintf("%s: port %s is gone since the report", path, portID(m))
				}
			} else if len(h) == len(w) {
				match = h[i]
			} else {
				return fmt.Sprintf("%s is %s now, the report saw %s", path, short(have), short(want))
			}
			if why := contained(fmt.Sprintf("%s[%d]", path, i), e, match); why != "" {
				return why
			}
		}
		return ""
	}
	if !reflect.DeepEqual(want, have) {
		return fmt.Sprintf("%s is %s now, the report saw %s", path, short(have), short(want))
	}
	return ""
}

func short(v any) string {
	if v == nil {
		return "unset"
	}
	b, _ := json.Marshal(v)
	return strings.TrimSpace(string(b))
}
