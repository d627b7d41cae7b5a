package report

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// codesAsserted records every code a test asserted, so TestMain can check
// that each registered rule is proven by some test.
var codesAsserted sync.Map

// assertCode checks the finding's code (and that its paths carry one) and
// records it.
func assertCode(t *testing.T, f Finding, want Code) {
	t.Helper()
	if want == "" {
		t.Errorf("test case gives no code; the finding has %s (%s)", f.Code, f.Reason)
		return
	}
	if f.Code != want {
		t.Errorf("code %s, want %s (reason: %s)", f.Code, want, f.Reason)
	}
	codesAsserted.Store(want, true)
	for _, p := range f.Paths {
		if r, ok := LookupRule(string(p.Code)); !ok || r.Verdict != p.Verdict {
			t.Errorf("path %s has code %q, not a rule giving %s", p.Scenario, p.Code, p.Verdict)
		}
	}
}

// assertPathCodes checks the codes of a finding's paths, in order, and
// records them.
func assertPathCodes(t *testing.T, f Finding, want ...Code) {
	t.Helper()
	var got []Code
	for _, p := range f.Paths {
		got = append(got, p.Code)
	}
	if !slices.Equal(got, want) {
		t.Errorf("path codes %v, want %v (paths %+v)", got, want, f.Paths)
	}
	for _, c := range want {
		codesAsserted.Store(c, true)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	// Only a full run can tell whether every rule is proven by a test.
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		var missing []string
		for _, r := range Rules() {
			if _, ok := codesAsserted.Load(r.Code); !ok && !r.Retired {
				missing = append(missing, string(r.Code))
			}
		}
		if len(missing) > 0 {
			fmt.Fprintf(os.Stderr, "FAIL: no test asserts the rules %s (assertCode / assertPathCodes)\n", strings.Join(missing, ", "))
			code = 1
		}
	}
	os.Exit(code)
}

var verbPattern = regexp.MustCompile(`%[-+# 0]*[0-9]*(\.[0-9]+)?[a-zA-Z%]`)

func TestRulesRegistry(t *testing.T) {
	codes, names := map[Code]bool{}, map[string]bool{}
	camel := regexp.MustCompile(`^[A-Z][A-Za-z0-9]+$`)
	for _, r := range Rules() {
		if !codePattern.MatchString(string(r.Code)) || strings.HasPrefix(string(r.Code), "SF00") {
			t.Errorf("code %q is not SF + four digits outside the reserved SF00xx", r.Code)
		}
		if codes[r.Code] {
			t.Errorf("code %s registered twice", r.Code)
		}
		codes[r.Code] = true
		if !camel.MatchString(r.Name) || names[r.Name] {
			t.Errorf("%s: name %q is not a unique CamelCase name", r.Code, r.Name)
		}
		names[r.Name] = true
		if r.Explain == "" {
			t.Errorf("%s: no explain text", r.Code)
		}
		if r.Retired {
			continue
		}
		if r.Verdict.Severity() == len(Verdicts) {
			t.Errorf("%s: verdict %q is not a verdict", r.Code, r.Verdict)
		}
		if r.Template == "" || strings.Contains(r.Template, "\n") {
			t.Errorf("%s: template %q is not one line", r.Code, r.Template)
		}
		if n := len(verbPattern.FindAllString(r.Template, -1)); n != len(r.Args) {
			t.Errorf("%s: template has %d verbs, Args names %d", r.Code, n, len(r.Args))
		}
		if m := r.Message(); strings.Contains(m, "%!") {
			t.Errorf("%s: message %q", r.Code, m)
		}
	}
}

// testdata/rule-codes.txt records every code ever registered. -update only
// appends to it, so a rule removed from the registry (instead of retired)
// fails this test, and its code is never given to another rule.
func TestRuleCodesStayReserved(t *testing.T) {
	file := filepath.Join("testdata", "rule-codes.txt")
	var recorded []Code
	if fh, err := os.Open(file); err == nil {
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
				recorded = append(recorded, Code(l))
			}
		}
		fh.Close()
	} else if !*update {
		t.Fatalf("%v (go test ./report/ -run %s -update creates it)", err, t.Name())
	}
	for _, c := range recorded {
		if _, ok := LookupRule(string(c)); !ok {
			t.Errorf("code %s was registered once and is gone: keep it as retired(...) so it is never reused", c)
		}
	}
	var added []string
	for _, r := range Rules() {
		if !slices.Contains(recorded, r.Code) {
			added = append(added, string(r.Code))
		}
	}
	if len(added) == 0 {
		return
	}
	if !*update {
		t.Fatalf("codes %s are not in %s (go test ./report/ -run %s -update appends them)", strings.Join(added, ", "), file, t.Name())
	}
	fh, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if len(recorded) == 0 {
		fmt.Fprintln(fh, "# every rule code ever registered; append only (go test ./report/ -run TestRuleCodesStayReserved -update)")
	}
	fmt.Fprintln(fh, strings.Join(added, "\n"))
}

const readmeRulesBegin, readmeRulesEnd = "<!-- rules:begin (go test ./report/ -run TestReadmeListsRules -update) -->\n", "<!-- rules:end -->"

func TestReadmeListsRules(t *testing.T) {
	file := filepath.Join("..", "README.md")
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	begin, end := strings.Index(s, readmeRulesBegin), strings.Index(s, readmeRulesEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md has no %q ... %q section", readmeRulesBegin, readmeRulesEnd)
	}
	got := s[begin+len(readmeRulesBegin) : end]
	want := RulesMarkdown()
	if got == want {
		return
	}
	if !*update {
		t.Fatalf("README.md's table of rules differs from the registry (go test ./report/ -run %s -update rewrites it)\n--- README\n%s\n--- registry\n%s", t.Name(), got, want)
	}
	if err := os.WriteFile(file, []byte(s[:begin+len(readmeRulesBegin)]+want+s[end:]), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestExplainRuleCodes(t *testing.T) {
	for _, r := range Rules() {
		for _, spelling := range []string{string(r.Code), strings.ToLower(string(r.Code)), " " + string(r.Code) + "\n"} {
			text, err := Explain(spelling)
			if err != nil {
				t.Errorf("Explain(%q): %v", spelling, err)
				continue
			}
			if !strings.HasPrefix(text, string(r.Code)+" ") || !strings.HasSuffix(text, "\n") || strings.HasSuffix(text, "\n\n") {
				t.Errorf("Explain(%q) = %q", spelling, text)
			}
			if !r.Retired && !strings.Contains(text, "explain "+string(r.Verdict)) {
				t.Errorf("Explain(%q) does not point to explain %s", spelling, r.Verdict)
			}
		}
	}
	old := Rule{Code: "SF0199", Name: "Gone", Retired: true, Explain: "what it was"}
	if text := explainRule(old); !strings.HasPrefix(text, "SF0199 (Gone): retired") || !strings.Contains(text, "what it was") {
		t.Errorf("explain of a retired rule: %q", text)
	}
	if md := RulesMarkdown(); !strings.Contains(md, "| `"+string(ruleDeadlock.Code)+"` | `DEADLOCK` |") {
		t.Errorf("RulesMarkdown lacks %s:\n%s", ruleDeadlock.Code, md)
	}
	if !slices.Contains(RuleCodes(), string(ruleDeadlock.Code)) {
		t.Errorf("RuleCodes() = %v", RuleCodes())
	}
	for _, code := range []string{"SF9999", "SF0000"} {
		_, err := Explain(code)
		if err == nil || !strings.Contains(err.Error(), `"`+code+`"`) || !strings.Contains(err.Error(), "no rule") {
			t.Errorf("Explain(%q): err = %v, want a no-rule error naming it", code, err)
		}
	}
}
