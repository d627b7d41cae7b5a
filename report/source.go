package report

import "slices"

// Sources says where the objects behind targets came from (scan -f).
type Sources interface {
	// Source is "FILE#DOC" and the line of the port's entry; ok is false
	// for objects not read from files.
	Source(kind, namespace, name string, port int32) (source string, line int, ok bool)
	// Template is the chart template the object was rendered from, or "".
	Template(kind, namespace, name string) string
}

// AttachSources fills each finding's Source, SourceLine and
// SourceTemplate.
func AttachSources(r *Report, sources Sources) {
	for i := range r.Findings {
		f := &r.Findings[i]
		if src, line, ok := sources.Source(f.Kind, f.Namespace, f.Name, f.Port); ok {
			f.Source, f.SourceLine = src, line
			f.SourceTemplate = sources.Template(f.Kind, f.Namespace, f.Name)
		}
	}
}

// fromFiles: some finding was read from a manifest (scan -f), where `fix`,
// which reads the cluster, is not the next step.
func fromFiles(r Report) bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Source != "" })
}
