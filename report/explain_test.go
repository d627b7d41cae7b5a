package report

import (
	"strings"
	"testing"
)

func TestExplainEveryVerdictAndScenario(t *testing.T) {
	var topics []string
	for _, v := range Verdicts {
		topics = append(topics, string(v))
	}
	for _, s := range Scenarios {
		topics = append(topics, string(s))
	}
	if got := Topics(); strings.Join(got, ",") != strings.Join(topics, ",") {
		t.Errorf("Topics() = %v, want %v", got, topics)
	}
	seen := map[string]string{}
	for _, topic := range topics {
		for _, spelling := range []string{topic, strings.ToLower(topic), " " + strings.ToUpper(topic) + "\n"} {
			text, err := Explain(spelling)
			if err != nil {
				t.Errorf("Explain(%q): %v", spelling, err)
				continue
			}
			if !strings.HasPrefix(text, topic+":") {
				t.Errorf("Explain(%q) does not start with %q: %q", spelling, topic+":", firstLine(text))
			}
			if !strings.HasSuffix(text, "\n") || strings.HasSuffix(text, "\n\n") {
				t.Errorf("Explain(%q) does not end with exactly one newline", spelling)
			}
		}
		text, _ := Explain(topic)
		if other, dup := seen[text]; dup {
			t.Errorf("%s and %s share one explanation", topic, other)
		}
		seen[text] = topic
	}
}

func TestExplainScenariosNameTheirFixes(t *testing.T) {
	for topic, words := range map[Scenario][]string{
		MeshToMesh:     {"appProtocol: tcp", "tcp-", "well-known port", "TLS"},
		MeshToExternal: {"ServiceEntry", "protocol TCP", "ISTIO_META_DNS_CAPTURE", "ISTIO_META_DNS_AUTO_ALLOCATE", "IST0134"},
		ExternalToMesh: {"PeerAuthentication", "portLevelMtls", "DISABLE", "--allow-plaintext"},
	} {
		text, err := Explain(string(topic))
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range words {
			if !strings.Contains(text, w) {
				t.Errorf("explain %s does not mention %q", topic, w)
			}
		}
	}
}

func TestExplainUnknownTopic(t *testing.T) {
	for _, topic := range []string{"", "deadlocks", "mesh", "FOO"} {
		text, err := Explain(topic)
		if err == nil {
			t.Errorf("Explain(%q) = %q, want an error", topic, firstLine(text))
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, `"`+topic+`"`) {
			t.Errorf("error for %q does not quote it: %s", topic, msg)
		}
		for _, known := range Topics() {
			if !strings.Contains(msg, known) {
				t.Errorf("error for %q does not name %s: %s", topic, known, msg)
			}
		}
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
