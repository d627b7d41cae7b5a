package cluster

import (
	"fmt"
	"slices"
	"strings"

	"istio.io/api/annotation"
)

// Visibility values of exportTo (pkg/config/visibility): "*" every
// namespace, "." the object's own, "~" none; anything else names a
// namespace.
const (
	exportPublic  = "*"
	exportPrivate = "."
	exportNone    = "~"
)

// AnnotationExportTo is the Service annotation Istio reads as the
// Service's exportTo (pilot/pkg/serviceregistry/kube/conversion.go
// ConvertService: split on ",", each entry trimmed).
var AnnotationExportTo = annotation.NetworkingExportTo.Name

// parseExportToAnnotation reads the annotation as ConvertService does; an
// empty or absent annotation is no exportTo (the mesh default applies).
func parseExportToAnnotation(annotations map[string]string) []string {
	v := annotations[AnnotationExportTo]
	if v == "" {
		return nil
	}
	var out []string
	for _, ns := range strings.Split(v, ",") {
		out = append(out, strings.TrimSpace(ns))
	}
	return out
}

// ExportToList is a mesh config exportTo default as written, joined with
// ",": a string so that MeshConfig stays comparable. "" is unset, which
// Istio reads as "*" (PushContext.initDefaultExportMaps).
type ExportToList string

// Values are the entries; nil when unset.
func (l ExportToList) Values() []string {
	if l == "" {
		return nil
	}
	return strings.Split(string(l), ",")
}

func exportToList(v []string) ExportToList { return ExportToList(strings.Join(v, ",")) }

// effectiveExportTo is PushContext.serviceExportTo for a sidecar client:
// the object's exportTo, or the mesh's defaultServiceExportTo when it has
// none, or "*" when neither is set (initDefaultExportMaps). The
// serviceEntryVisibility cap (applyToSidecars, off unless the mesh config
// opts in) is not modelled.
func effectiveExportTo(exportTo []string, meshDefault ExportToList) []string {
	if len(exportTo) > 0 {
		return exportTo
	}
	if d := meshDefault.Values(); len(d) > 0 {
		return d
	}
	return []string{exportPublic}
}

// ServiceVisible says whether a Service or ServiceEntry of namespace
// serviceNamespace, with exportTo as written, is in the registry a sidecar
// of clientNamespace sees. It follows PushContext.initServiceRegistry,
// which builds the index servicesExportedToNamespace reads (what the
// default SidecarScope and every Sidecar egress listener with a wildcard
// host select from): "*" anywhere makes it public; otherwise "~" anywhere
// hides it from every namespace; "." or its own namespace's name exports
// it to its own namespace; other names to those namespaces.
// (IsServiceVisible, used only when every egress host of a Sidecar is an
// exact name, would let "~,web" through to web; istioctl's validation
// rejects "~" beside other values on Istio's own resources.)
func ServiceVisible(exportTo []string, meshDefault ExportToList, serviceNamespace, clientNamespace string) bool {
	set := effectiveExportTo(exportTo, meshDefault)
	if slices.Contains(set, exportPublic) {
		return true
	}
	if slices.Contains(set, exportNone) {
		return false
	}
	for _, e := range set {
		if e == exportPrivate || e == serviceNamespace {
			if clientNamespace == serviceNamespace {
				return true
			}
			continue
		}
		if e == clientNamespace {
			return true
		}
	}
	return false
}

// ExportRestricted: the exportTo (or the mesh default) keeps the object
// from some namespace.
func ExportRestricted(exportTo []string, meshDefault ExportToList) bool {
	return !slices.Contains(effectiveExportTo(exportTo, meshDefault), exportPublic)
}

// DescribeExportTo says where an object's exportTo comes from, for
// reasons: the annotation or field as written, or the mesh default.
func DescribeExportTo(exportTo []string, meshDefault ExportToList, field string) string {
	if len(exportTo) > 0 {
		return fmt.Sprintf("%s %q", field, strings.Join(exportTo, ","))
	}
	return fmt.Sprintf("the mesh config's defaultServiceExportTo %q", string(meshDefault))
}
