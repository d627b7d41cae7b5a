package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// sarifSchemaFile is where hack/test-deps.sh puts the SARIF 2.1.0 schema
// it takes from the npm registry (@microsoft/jest-sarif ships it).
var sarifSchemaFile = filepath.Join("..", ".cache", "sarif", "sarif-2.1.0-rtm.5.json")

func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(sarifSchemaFile)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("SARIF schema: %v (hack/test-deps.sh fetches it)", err)
		}
		t.Skipf("SARIF schema: %v: run hack/test-deps.sh", err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("sarif-2.1.0.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("sarif-2.1.0.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

func validateSARIF(t *testing.T, sch *jsonschema.Schema, out []byte) error {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	return sch.Validate(inst)
}

// TestSARIFValidatesAgainstSchema: -o sarif is valid SARIF 2.1.0 for a
// live report (logical locations only), for one read from files (file,
// line) and for an empty one; the schema check itself rejects a broken
// document, so it can fail.
func TestSARIFValidatesAgainstSchema(t *testing.T) {
	sch := sarifSchema(t)
	live := Build(representativeInput())
	fromFiles := Build(representativeInput())
	for i := range fromFiles.Findings {
		fromFiles.Findings[i].Source = "charts/my db/templates/svc.yaml#" + string(rune('1'+i%9))
		fromFiles.Findings[i].SourceLine = 10 + i
	}
	piped := Build(representativeInput())
	for i := range piped.Findings {
		piped.Findings[i].Source, piped.Findings[i].SourceLine = "stdin#3", 12
		piped.Findings[i].SourceTemplate = "my chart/templates/svc.yaml"
	}
	for name, r := range map[string]Report{"live": live, "files": fromFiles, "helm template piped": piped, "empty": {}} {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Render(&b, "sarif", r, RenderOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := validateSARIF(t, sch, b.Bytes()); err != nil {
				t.Fatalf("invalid SARIF: %v\n%s", err, b.String())
			}
		})
	}

	var b bytes.Buffer
	if err := Render(&b, "sarif", fromFiles, RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(b.String(), `"level": "warning"`, `"level": "severe"`, 1)
	if broken == b.String() {
		t.Fatal("no warning-level result to break")
	}
	if err := validateSARIF(t, sch, []byte(broken)); err == nil {
		t.Error("the schema accepted level \"severe\": the check cannot fail")
	}
}

// TestSARIFResults: only findings that need action become results, at
// error (DEADLOCK, MTLS-REJECTED) or warning level, each on the file and
// line it came from and fingerprinted by its target.
func TestSARIFResults(t *testing.T) {
	r := Build(representativeInput())
	want := 0
	for i := range r.Findings {
		r.Findings[i].Source = "./deploy/app.yaml#2"
		r.Findings[i].SourceLine = 7
		if r.Findings[i].Verdict.Affected() {
			want++
		}
	}
	var b bytes.Buffer
	if err := Render(&b, "sarif", r, RenderOptions{Command: "kubectl serverfirst"}); err != nil {
		t.Fatal(err)
	}
	var doc sarifLog
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	results := doc.Runs[0].Results
	if want == 0 || len(results) != want {
		t.Fatalf("%d results, want %d (the affected findings)", len(results), want)
	}
	rules := doc.Runs[0].Tool.Driver.Rules
	for _, res := range results {
		if rules[res.RuleIndex].ID != res.RuleID {
			t.Errorf("result %s points at rule %s", res.RuleID, rules[res.RuleIndex].ID)
		}
		rule, ok := LookupRule(res.RuleID)
		if !ok {
			t.Errorf("result rule %s is not a registered code", res.RuleID)
		}
		v := rule.Verdict
		if wantLevel := map[bool]string{true: "error", false: "warning"}[v == Deadlock || v == MTLSRejected]; res.Level != wantLevel {
			t.Errorf("%s: level %s, want %s", res.RuleID, res.Level, wantLevel)
		}
		loc := res.Locations[0].PhysicalLocation
		if loc == nil || loc.ArtifactLocation.URI != "deploy/app.yaml" || loc.Region == nil || loc.Region.StartLine != 7 {
			t.Errorf("%s: location %+v, want deploy/app.yaml line 7", res.RuleID, loc)
		}
		if res.PartialFingerprints["serverfirstTarget/v1"] == "" || !strings.Contains(res.Message.Text, res.Properties["name"].(string)) {
			t.Errorf("%s: fingerprint %v, message %q", res.RuleID, res.PartialFingerprints, res.Message.Text)
		}
	}
}

// TestSARIFHelmTemplate: piped helm template output has no file of its
// own: the result points at the chart template instead (no line: the
// rendered lines are not the template's).
func TestSARIFHelmTemplate(t *testing.T) {
	f := Finding{Kind: target.KindService, Namespace: "shop", Name: "db", Port: 3307, Verdict: AtRisk, Source: "stdin#1", SourceLine: 14, SourceTemplate: "db/templates/svc.yaml"}
	res := sarifResultFor(f, "SF0102", 0, RenderOptions{Command: "kubectl serverfirst"})
	loc := res.Locations[0].PhysicalLocation
	if loc == nil || loc.ArtifactLocation.URI != "db/templates/svc.yaml" || loc.Region != nil {
		t.Errorf("piped: location %+v, want the template without a line", loc)
	}
	f.Source = "rendered/all.yaml#1"
	res = sarifResultFor(f, "SF0102", 0, RenderOptions{Command: "kubectl serverfirst"})
	if loc := res.Locations[0].PhysicalLocation; loc == nil || loc.ArtifactLocation.URI != "rendered/all.yaml" || loc.Region == nil || loc.Region.StartLine != 14 {
		t.Errorf("rendered to a file: location %+v, want that file and line", loc)
	}
}
