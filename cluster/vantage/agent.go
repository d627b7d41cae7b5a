package vantage

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// AgentTarget is one dial an agent makes: a target key and the address.
type AgentTarget struct {
	Key     string `json:"key"`
	Address string `json:"address"`
}

// AgentLine is one line of the agent's output (JSON lines on stdout). The
// last line has Done set: a log without it was cut short.
type AgentLine struct {
	Key    string        `json:"key,omitempty"`
	Result *probe.Result `json:"result,omitempty"`
	Done   bool          `json:"done,omitempty"`
	Count  int           `json:"count,omitempty"`
}

// TargetsEnv is the environment variable that carries an agent's targets
// ("KEY=HOST:PORT" lines): env values have no practical size limit in a
// pod spec, unlike the patience of anyone reading `ps`.
const TargetsEnv = "SERVERFIRST_TARGETS"

// EncodeTargets writes targets as "KEY=HOST:PORT" lines.
func EncodeTargets(ts []AgentTarget) string {
	var b strings.Builder
	for _, t := range ts {
		b.WriteString(t.Key + "=" + t.Address + "\n")
	}
	return b.String()
}

// DecodeTargets reads "KEY=HOST:PORT" lines (blank lines ignored). A bare
// HOST:PORT is its own key.
func DecodeTargets(s string) ([]AgentTarget, error) {
	var out []AgentTarget
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, addr, ok := strings.Cut(line, "=")
		if !ok {
			key, addr = line, line
		}
		if _, err := probe.ParseTarget(addr); err != nil {
			return nil, fmt.Errorf("target line %d: %w", i+1, err)
		}
		out = append(out, AgentTarget{Key: key, Address: addr})
	}
	return out, nil
}

// WriteAgentOutput writes results as JSON lines and the final Done line.
func WriteAgentOutput(w io.Writer, targets []AgentTarget, results []probe.Result) error {
	enc := json.NewEncoder(w)
	for i := range results {
		if err := enc.Encode(AgentLine{Key: targets[i].Key, Result: &results[i]}); err != nil {
			return err
		}
	}
	return enc.Encode(AgentLine{Done: true, Count: len(results)})
}

// ParseAgentOutput reads an agent's log into observations for the given
// vantage. Lines that are not agent JSON (a runtime's own messages) are
// skipped; a missing Done line is an error, so a cut log never passes as a
// complete one.
func ParseAgentOutput(log []byte, vantage target.Vantage, inMesh bool) ([]target.Observation, error) {
	var out []target.Observation
	done := false
	sc := bufio.NewScanner(bytes.NewReader(log))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var l AgentLine
		if err := json.Unmarshal(line, &l); err != nil {
			continue
		}
		if l.Done {
			done = true
			if l.Count != len(out) {
				return out, fmt.Errorf("agent reported %d results, log holds %d", l.Count, len(out))
			}
			continue
		}
		key, ok := target.ParseTargetKey(l.Key)
		if !ok || l.Result == nil {
			continue
		}
		out = append(out, target.Observation{Target: key, Vantage: vantage, InMesh: inMesh, Result: *l.Result})
	}
	if err := sc.Err(); err != nil {
		return out, err
	}
	if !done {
		return out, fmt.Errorf("agent output is incomplete (%d results, no end marker)", len(out))
	}
	return out, nil
}
