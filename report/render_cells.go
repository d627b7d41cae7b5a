package report

import (
	"cmp"
	"strconv"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// shown returns the findings a table lists.
func shown(r Report, all bool) (list []Finding, hidden int) {
	for _, f := range r.Findings {
		if all || f.Verdict.Affected() || f.Verdict == Unreachable {
			list = append(list, f)
		} else {
			hidden++
		}
	}
	return list, hidden
}

// TargetName is the short kubectl-style name of a finding's target.
func TargetName(f Finding) string {
	switch f.Kind {
	case target.KindService:
		return "svc/" + f.Name + ":" + strconv.Itoa(int(f.Port))
	case target.KindServiceEntry:
		return "se/" + f.Name + ":" + strconv.Itoa(int(f.Port))
	}
	return f.Name + ":" + strconv.Itoa(int(f.Port))
}

func protocolCell(f Finding) string {
	if f.Protocol == "auto" {
		if f.AppProtocolTrap {
			return "auto (appProtocol trap)"
		}
		return "auto (sniffed)"
	}
	return f.Protocol + " (" + f.ProtocolSource + ")"
}

func serverCell(f Finding) string {
	switch {
	case f.Kind != target.KindService:
		return "external"
	case f.ServerInMesh:
		return "sidecar"
	}
	return "no sidecar"
}

func fixCell(f Finding) string {
	if len(f.Fixes) == 0 {
		return "-"
	}
	return f.Fixes[0].Type
}

func dash(s string) string { return cmp.Or(s, "-") }

// proofCell summarises the evidence in a few words: "direct 2ms, mesh -".
func proofCell(f Finding) string {
	if len(f.Evidence) == 0 {
		return "static"
	}
	var parts []string
	for _, e := range f.Evidence {
		v := string(e.Vantage)
		if e.Vantage == target.VantageSelf && e.throughMesh() {
			v = "self(mesh)"
		}
		if e.Vantage == target.VantageProxyConfig {
			v = "config"
		}
		outcome := e.Outcome
		if outcome == "banner" {
			outcome = ms(e.FirstByteMs)
		}
		parts = append(parts, v+" "+outcome)
	}
	return strings.Join(parts, ", ")
}
