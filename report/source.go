package report

// SourceLookup says where the object behind a target came from: "FILE#DOC"
// and the line of the port's entry; ok is false for objects not read from
// files.
type SourceLookup func(kind, namespace, name string, port int32) (source string, line int, ok bool)

// AttachSources fills each finding's Source and SourceLine (scan -f).
func AttachSources(r *Report, lookup SourceLookup) {
	for i := range r.Findings {
		f := &r.Findings[i]
		if src, line, ok := lookup(f.Kind, f.Namespace, f.Name, f.Port); ok {
			f.Source, f.SourceLine = src, line
		}
	}
}

// fromFiles: some finding was read from a manifest (scan -f), where `fix`,
// which reads the cluster, is not the next step.
func fromFiles(r Report) bool {
	for i := range r.Findings {
		if r.Findings[i].Source != "" {
			return true
		}
	}
	return false
}
