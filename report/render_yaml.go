package report

import (
	"encoding/json"
	"io"

	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
)

// renderYAML writes the report as YAML, through its JSON (so the field
// names and the never-null arrays are those of -o json).
func renderYAML(w io.Writer, r Report) error {
	js, err := json.Marshal(withEmptyArrays(r))
	if err != nil {
		return err
	}
	// Text from the cluster or the wire may hold characters the YAML
	// emitter writes raw although a reader takes them for line breaks
	// (U+2028) or refuses them (DEL): then the report is written as
	// JSON with those escaped, which reads back as the same YAML.
	out, err := yaml.JSONToYAML([]byte(safetext.JSONForYAML(string(js))))
	if err != nil || !safetext.YAMLSafe(string(out)) {
		_, err = io.WriteString(w, yamlSafeJSON(js))
		return err
	}
	_, err = w.Write(out)
	return err
}
