package report

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// SARIFSchema is the schema the SARIF output declares (SARIF 2.1.0, as
// code-scanning services read it).
const SARIFSchema = "https://json.schemastore.org/sarif-2.1.0.json"

// The SARIF 2.1.0 objects the report uses (OASIS SARIF v2.1.0, §3): only
// the properties we fill, so the output stays small and valid.
type (
	sarifLog struct {
		Schema  string     `json:"$schema"`
		Version string     `json:"version"`
		Runs    []sarifRun `json:"runs"`
	}
	sarifRun struct {
		Tool    sarifTool     `json:"tool"`
		Results []sarifResult `json:"results"`
	}
	sarifTool struct {
		Driver sarifDriver `json:"driver"`
	}
	sarifDriver struct {
		Name           string      `json:"name"`
		InformationURI string      `json:"informationUri"`
		Rules          []sarifRule `json:"rules"`
	}
	sarifRule struct {
		ID                   string            `json:"id"`
		Name                 string            `json:"name"`
		ShortDescription     sarifText         `json:"shortDescription"`
		FullDescription      sarifText         `json:"fullDescription"`
		Help                 sarifText         `json:"help"`
		DefaultConfiguration sarifRuleDefaults `json:"defaultConfiguration"`
	}
	sarifRuleDefaults struct {
		Level string `json:"level"`
	}
	sarifText struct {
		Text     string `json:"text"`
		Markdown string `json:"markdown,omitempty"`
	}
	sarifResult struct {
		RuleID              string            `json:"ruleId"`
		RuleIndex           int               `json:"ruleIndex"`
		Level               string            `json:"level"`
		Message             sarifText         `json:"message"`
		Locations           []sarifLocation   `json:"locations"`
		PartialFingerprints map[string]string `json:"partialFingerprints"`
		Properties          map[string]any    `json:"properties"`
	}
	sarifLocation struct {
		PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
		LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
	}
	sarifPhysical struct {
		ArtifactLocation sarifArtifact `json:"artifactLocation"`
		Region           *sarifRegion  `json:"region,omitempty"`
	}
	sarifArtifact struct {
		URI string `json:"uri"`
	}
	sarifRegion struct {
		StartLine int `json:"startLine"`
	}
	sarifLogical struct {
		Name               string `json:"name"`
		FullyQualifiedName string `json:"fullyQualifiedName"`
		Kind               string `json:"kind"`
	}
)

func sarifLevel(v Verdict) string {
	switch v {
	case Deadlock, MTLSRejected:
		return "error"
	}
	return "warning"
}

// renderSARIF writes the affected findings as SARIF 2.1.0, so code review
// tools show them on the manifest line they come from (scan -f). The
// registered rules the results cite are the SARIF rules, their codes the
// rule ids (only those: the output stays small, and a new rule elsewhere
// changes nothing here). A finding read from a live cluster has no file:
// it carries only a logical location naming the object.
func renderSARIF(w io.Writer, r Report, o RenderOptions) error {
	driver := sarifDriver{Name: "kubectl-serverfirst", InformationURI: "https://github.com/serverfirst/kubectl-serverfirst", Rules: []sarifRule{}}
	ruleIndex := map[string]int{}
	addRule := func(id, name string, v Verdict, short, full string) {
		ruleIndex[id] = len(driver.Rules)
		driver.Rules = append(driver.Rules, sarifRule{
			ID: id, Name: name,
			ShortDescription:     sarifText{Text: short},
			FullDescription:      sarifText{Text: full},
			Help:                 sarifText{Text: full},
			DefaultConfiguration: sarifRuleDefaults{Level: sarifLevel(v)},
		})
	}
	results := []sarifResult{}
	for _, f := range r.Findings {
		if !f.Verdict.Affected() {
			continue
		}
		id := string(f.Code)
		if rule, ok := LookupRule(id); ok && !rule.Retired {
			if _, ok := ruleIndex[id]; !ok {
				addRule(id, rule.Name, rule.Verdict, string(rule.Verdict)+": "+rule.Message(), strings.TrimSpace(explainRule(rule)))
			}
		} else {
			// A report without codes (older JSON read back): one rule
			// per verdict.
			id = strings.ToLower(string(f.Verdict))
			if _, ok := ruleIndex[id]; !ok {
				help, _ := Explain(string(f.Verdict))
				short, _, _ := strings.Cut(help, "\n")
				addRule(id, string(f.Verdict), f.Verdict, short, strings.TrimSpace(help))
			}
		}
		results = append(results, sarifResultFor(f, id, ruleIndex[id], o))
	}
	doc := sarifLog{Schema: SARIFSchema, Version: "2.1.0", Runs: []sarifRun{{Tool: sarifTool{Driver: driver}, Results: results}}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func sarifResultFor(f Finding, ruleID string, ruleIndex int, o RenderOptions) sarifResult {
	target := fmt.Sprintf("%s %s/%s port %d", f.Kind, f.Namespace, f.Name, f.Port)
	text := fmt.Sprintf("%s: %s (%s): %s.", target, f.Verdict, f.Scenario, f.Reason)
	md := fmt.Sprintf("**%s** `%s` (%s): %s.", f.Verdict, TargetName(f), f.Scenario, f.Reason)
	explain := cmp.Or(string(f.Code), string(f.Verdict))
	if len(f.Fixes) > 0 {
		fix := f.Fixes[0]
		text += " Fix: " + fix.Title + "."
		md += "\n\nFix: " + fix.Title + "."
		if fix.Manifest != "" {
			md += "\n\n```yaml\n" + fix.Manifest + "```"
		}
		md += fmt.Sprintf("\n\n`%s fix` prints every fix; `%s explain %s` tells why.", o.Command, o.Command, explain)
	}
	loc := sarifLocation{LogicalLocations: []sarifLogical{{
		Name:               fmt.Sprintf("%s:%d", f.Name, f.Port),
		FullyQualifiedName: fmt.Sprintf("%s/%s/%s:%d", f.Namespace, f.Kind, f.Name, f.Port),
		Kind:               "resource",
	}}}
	if file, ok := sourceFile(f.Source); ok {
		loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: file}}
		if f.SourceLine > 0 {
			loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.SourceLine}
		}
		if file == "stdin" && f.SourceTemplate != "" {
			// Rendered on the fly (helm template | scan -f -): the chart's
			// template is the only file there is; its lines are not the
			// rendered ones.
			loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: uriReference(f.SourceTemplate)}}
		}
	}
	props := map[string]any{
		"verdict": f.Verdict, "code": f.Code, "kind": f.Kind, "namespace": f.Namespace, "name": f.Name, "port": f.Port,
		"protocol": f.Protocol, "serverInMesh": f.ServerInMesh,
	}
	if f.Scenario != "" {
		props["scenario"] = f.Scenario
	}
	if f.Source != "" {
		props["source"] = f.Source
	}
	if f.SourceTemplate != "" {
		props["sourceTemplate"] = f.SourceTemplate
	}
	return sarifResult{
		RuleID:    ruleID,
		RuleIndex: ruleIndex,
		Level:     sarifLevel(f.Verdict),
		Message:   sarifText{Text: text, Markdown: md},
		Locations: []sarifLocation{loc},
		// The target, not the text: the same port stays the same alert
		// from one run to the next, whatever the reason says.
		PartialFingerprints: map[string]string{"serverfirstTarget/v1": fmt.Sprintf("%s/%s/%s/%d", f.Kind, f.Namespace, f.Name, f.Port)},
		Properties:          props,
	}
}

// sourceFile is the file part of "FILE#DOC"; a URI reference relative to
// where the scan ran, which is how code-scanning services find the file.
func sourceFile(source string) (string, bool) {
	i := strings.LastIndexByte(source, '#')
	if i <= 0 {
		return "", false
	}
	return uriReference(source[:i]), true
}

// uriReference writes a relative path as a URI reference: "%" and spaces
// are not allowed raw.
func uriReference(path string) string {
	path = strings.TrimPrefix(path, "./")
	return strings.ReplaceAll(strings.ReplaceAll(path, "%", "%25"), " ", "%20")
}
