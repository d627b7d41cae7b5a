package report

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster/proxyconfig"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// Config evidence: what the sidecars' own config (Envoy's /config_dump)
// says a client path does with a client that sends nothing first
// (SF10xx). With the direct probe's banner it proves a deadlock without
// any probe pod; alone it names the listener that waits.

// scenarioOf is the client path a config path stands for.
func scenarioOf(cp target.ConfigPath) Scenario {
	switch {
	case cp.Unmeshed:
		return ExternalToMesh
	case cp.ServerInMesh:
		return MeshToMesh
	}
	return MeshToExternal
}

// SF10xx: proxy config evidence.
var (
	ruleConfigDeadlock = rule(Rule{
		Code: "SF1001", Name: "ServerFirstConfigWaitsForever", Verdict: Deadlock,
		Template: "the server speaks first (%s in %s directly) and %s waits forever for the client's first bytes: listener %s runs %s with no listener_filters_timeout",
		Args:     []string{"banner", "firstByte", "proxy", "listener", "inspectors"},
		Explain: "Both halves of the proof, without a probe pod: the direct path got the server's banner,\n" +
			"and the sidecar's own config (Envoy's /config_dump, read by port-forward to its admin port)\n" +
			"has, for this destination, a listener whose inspectors wait for the client's first bytes\n" +
			"with listener_filters_timeout 0s: nothing ends that wait but the client giving up.",
		Source: "envoy config.listener.v3.Listener listener_filters_timeout (0 disables the timeout); pilot/pkg/networking/core/listener.go buildListenerFromEntry, listener_inbound.go buildInboundListener (timeout = protocolDetectionTimeout, 0s by default)",
	})
	ruleConfigWaitsForever = rule(Rule{
		Code: "SF1002", Name: "ConfigWaitsForever", Verdict: AtRisk,
		Template: "%s waits forever for the client's first bytes: listener %s runs %s with no listener_filters_timeout; no direct probe shows whether the server speaks first",
		Args:     []string{"proxy", "listener", "inspectors"},
		Explain: "The sidecar's own config has a listener for this destination whose inspectors wait for the\n" +
			"client's first bytes with no timeout. A server-first server hangs there; whether this one\n" +
			"speaks first needs the direct probe (a port-forward to the server), which did not run or got\n" +
			"no banner.",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry, listener_inbound.go buildInboundListener",
	})
	ruleConfigPasses = rule(Rule{
		Code: "SF1003", Name: "ConfigDoesNotWait", Verdict: OK,
		Template: "the proxies' config does not wait for the client's first bytes: %s",
		Args:     []string{"stages"},
		Explain: "Every sidecar on this path, as its own config says, runs no inspector that waits for the\n" +
			"client for this destination and ends in a tcp_proxy: the server's first bytes are relayed\n" +
			"at once, even where no probe pod could run.",
		Source: "pilot/pkg/networking/core/listener.go buildListenerFromEntry (no inspector on declared TCP ports: listener_filters_timeout 0s, no filters)",
	})
	ruleConfigDelayed = rule(Rule{
		Code: "SF1004", Name: "ServerFirstConfigWaitsThenContinues", Verdict: Delayed,
		Template: "the server speaks first (%s in %s directly) and %s waits %s for the client's first bytes (listener %s runs %s), then passes the connection on: the banner arrives that late",
		Args:     []string{"banner", "firstByte", "proxy", "timeout", "listener", "inspectors"},
		Explain: "The listener's inspectors wait for the client's first bytes, but listener_filters_timeout\n" +
			"ends the wait and continue_on_listener_filters_timeout sends the connection on with nothing\n" +
			"detected: a server-first client gets its banner after the timeout. A delay, not a hang\n" +
			"(clients with a shorter timeout of their own still fail).",
		Source: "envoy config.listener.v3.Listener continue_on_listener_filters_timeout; pilot/pkg/networking/core/listener.go buildListenerFromEntry (continue: true)",
	})
	ruleConfigWaitsThenCloses = rule(Rule{
		Code: "SF1005", Name: "ConfigWaitsThenCloses", Verdict: AtRisk,
		Template: "%s waits %s for the client's first bytes (listener %s runs %s), then closes the connection",
		Args:     []string{"proxy", "timeout", "listener", "inspectors"},
		Explain: "The listener's inspectors wait for the client's first bytes; when listener_filters_timeout\n" +
			"ends the wait, continue_on_listener_filters_timeout is false, so Envoy closes the socket: a\n" +
			"server-first client never gets its banner. Envoy's default of 15s applies where the listener\n" +
			"sets no timeout.",
		Source: "envoy config.listener.v3.Listener listener_filters_timeout (default 15s) and continue_on_listener_filters_timeout (default false)",
	})
	ruleConfigHTTP = rule(Rule{
		Code: "SF1006", Name: "ConfigHTTPConnectionManager", Verdict: AtRisk,
		Template: "%s's listener %s ends in filter chain %s, an HTTP connection manager: it opens no connection to the server before an HTTP request arrives",
		Args:     []string{"proxy", "listener", "chain"},
		Explain: "The chain the connection ends in is Envoy's HTTP connection manager (a port declared HTTP,\n" +
			"or a 0.0.0.0 HTTP listener): it waits for a request head and routes it, so a server-first\n" +
			"server is never even dialled.",
		Source: "pilot/pkg/networking/core/listener.go buildSidecarOutboundHTTPListenerOpts",
	})
	ruleConfigTLSOnly = rule(Rule{
		Code: "SF1007", Name: "ConfigInboundTLSOnly", Verdict: MTLSRejected,
		Template: "%s's listener %s has no plaintext filter chain for port %d: it accepts only mutual TLS",
		Args:     []string{"proxy", "listener", "port"},
		Explain: "The server's sidecar config has, for this port, only a chain that terminates TLS (or none\n" +
			"for plaintext): a client that does not speak Istio mTLS never reaches the server (STRICT).",
		Source: "pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts (STRICT builds only the TLS chain)",
	})
	ruleConfigTLSNotTerminated = rule(Rule{
		Code: "SF1009", Name: "ConfigMutualTLSNotTerminated", Verdict: MTLSRejected,
		Template: "the client's sidecar sends mutual TLS, but %s %s",
		Args:     []string{"server", "why"},
		Explain: "The client sidecar's cluster speaks TLS (a DestinationRule, or auto mTLS), but nothing on\n" +
			"the server's side terminates it: the pod's inbound capture skips the port, or the server's\n" +
			"virtualInbound has no TLS chain for it (PeerAuthentication DISABLE). The server-first\n" +
			"application's banner meets a TLS handshake and the connection fails.",
		Source: "pilot/pkg/networking/core/cluster_tls.go applyUpstreamTLSSettings; pilot/pkg/networking/core/listener_inbound.go inboundChainForOpts; tools/istio-iptables/pkg/capture/run.go",
	})
	ruleConfigDisagrees = rule(Rule{
		Code: "SF1008", Name: "ProbesAndConfigDisagree", Verdict: AtRisk,
		Template: "probes and proxy config disagree: %s, but %s; taking the weaker claim",
		Args:     []string{"probes", "config"},
		Explain: "A probe found the path silent while the sidecars' config, read in the same scan, relays the\n" +
			"connection at once (or the other way round). The config may have changed between the two\n" +
			"reads, or the probe pod's sidecar is configured unlike the proxy read. DEADLOCK needs\n" +
			"evidence that agrees, so the finding says AT-RISK and names both.",
	})
)

// stageWord names a stage in a reason: "the client sidecar of shop/web".
func stageWord(s target.ConfigStage) string {
	if s.Proxy == "self" {
		return "this pod's sidecar"
	}
	return "the " + s.Side + " sidecar of " + s.Proxy
}

func inspectorsWord(d proxyconfig.Decision) string {
	return strings.Join(d.Inspectors, " then ")
}

func timeoutWord(d proxyconfig.Decision) string {
	if d.TimeoutDefault {
		return d.Timeout.String() + " (Envoy's default)"
	}
	return d.Timeout.String()
}

// configOutcome is where a config path ends, for a client that sends
// nothing first.
type configOutcome struct {
	kind string // forever, delayed, closes, http, tls-only, no-chain, passes, undecided
	// at is the stage that decides (the first that waits or stops).
	at    target.ConfigStage
	delay time.Duration
	why   string // for undecided
}

// outcome walks the stages in order.
func outcomeOf(cp target.ConfigPath) configOutcome {
	var delayAt *target.ConfigStage
	var delay time.Duration
	for i, st := range cp.Stages {
		d := st.Decision
		if st.Uncaptured != "" {
			// The port escapes the server's sidecar: plaintext reaches the
			// application, which answers; TLS reaches it too.
			if st.ClientTLS {
				return configOutcome{kind: "tls-uncaptured", at: st}
			}
			continue
		}
		switch {
		case st.Side == "server" && st.ClientTLS && d.NoChain:
			return configOutcome{kind: "tls-no-chain", at: st}
		case d.Undecided != "":
			return configOutcome{kind: "undecided", at: st, why: d.Undecided}
		case len(d.Unknown) > 0:
			return configOutcome{kind: "undecided", at: st, why: "listener " + d.Listener + " runs listener filters this tool does not know: " + strings.Join(d.Unknown, ", ")}
		}
		if st.Side == "server" && !st.ClientTLS && (d.NoChain || d.ChainTLS) {
			// Whether or not an inspector waits first, a plaintext client
			// ends where only mutual TLS gets through (STRICT).
			return configOutcome{kind: "tls-only", at: st}
		}
		if d.Waits && !st.ClientTLS {
			switch {
			case d.Timeout == 0:
				return configOutcome{kind: "forever", at: st}
			case d.OnTimeout != "continue":
				return configOutcome{kind: "closes", at: st, delay: d.Timeout}
			}
			if delayAt == nil {
				delayAt = &cp.Stages[i]
			}
			delay += d.Timeout
		}
		switch {
		case d.NoChain:
			return configOutcome{kind: "no-chain", at: st}
		case d.WaitsForRequest:
			return configOutcome{kind: "http", at: st}
		case d.Filter != "tcp_proxy":
			return configOutcome{kind: "undecided", at: st, why: "listener " + d.Listener + " ends in " + d.Filter + ", which this tool does not model"}
		case d.Cluster == "BlackHoleCluster":
			return configOutcome{kind: "no-chain", at: st}
		}
	}
	if delayAt != nil {
		return configOutcome{kind: "delayed", at: *delayAt, delay: delay}
	}
	return configOutcome{kind: "passes"}
}

func stagesWord(stages []target.ConfigStage) string {
	var parts []string
	for _, st := range stages {
		d := st.Decision
		s := stageWord(st) + " (listener " + d.Listener
		if st.ClientTLS {
			s += ", mutual TLS from the client's sidecar"
		}
		if d.Cluster != "" {
			s += ", tcp_proxy to " + d.Cluster
		}
		parts = append(parts, s+")")
	}
	return strings.Join(parts, ", then ")
}

// configJudgement judges one config path; ok is false where the config
// alone gives no verdict (a finite wait and no direct banner, a path the
// tool does not model).
func (j *judge) configJudgement(f *Finding, cp target.ConfigPath, d *probe.Result) (judgement, configOutcome, bool) {
	out := outcomeOf(cp)
	banner := d != nil && d.Outcome == probe.OutcomeBanner
	st, dec := out.at, out.at.Decision
	switch out.kind {
	case "forever":
		if banner {
			return ruleConfigDeadlock.with(bannerWord(d), ms(d.FirstByteMs), stageWord(st), dec.Listener, inspectorsWord(dec)), out, true
		}
		return ruleConfigWaitsForever.with(stageWord(st), dec.Listener, inspectorsWord(dec)), out, true
	case "delayed":
		if banner {
			return ruleConfigDelayed.with(bannerWord(d), ms(d.FirstByteMs), stageWord(st), out.delay, dec.Listener, inspectorsWord(dec)), out, true
		}
	case "closes":
		return ruleConfigWaitsThenCloses.with(stageWord(st), timeoutWord(dec), dec.Listener, inspectorsWord(dec)), out, true
	case "http":
		if banner || len(f.Hints) > 0 {
			return ruleConfigHTTP.with(stageWord(st), dec.Listener, dec.Chain), out, true
		}
	case "tls-only":
		return ruleConfigTLSOnly.with(stageWord(st), dec.Listener, st.Port), out, true
	case "tls-uncaptured":
		return ruleConfigTLSNotTerminated.with(stageWord(st), fmt.Sprintf("does not get port %d (%s): the application receives the TLS handshake", st.Port, st.Uncaptured)), out, true
	case "tls-no-chain":
		return ruleConfigTLSNotTerminated.with(stageWord(st), fmt.Sprintf("has no TLS filter chain for port %d on %s (PeerAuthentication DISABLE)", st.Port, dec.Listener)), out, true
	case "passes":
		return ruleConfigPasses.with(stagesWord(cp.Stages)), out, true
	}
	return judgement{}, out, false
}

// configEvidence is one stage as the report shows it.
func configEvidence(cp target.ConfigPath, st target.ConfigStage) Evidence {
	d := st.Decision
	e := Evidence{
		Vantage: target.VantageProxyConfig, Address: d.ListenerAddress, Proxy: st.Proxy, Side: st.Side,
		Listener: d.Listener, Inspectors: d.Inspectors, Chain: d.Chain, Cluster: d.Cluster, OnTimeout: d.OnTimeout,
		Scenario: scenarioOf(cp),
	}
	switch {
	case st.Uncaptured != "":
		e.Outcome, e.Error = "not-captured", st.Uncaptured
	case d.Undecided != "":
		e.Outcome, e.Error = "undecided", d.Undecided
	case d.Waits && !st.ClientTLS:
		e.Outcome = "waits"
		if d.Timeout == 0 {
			e.Outcome = "waits-forever"
		}
		t := d.Timeout.Milliseconds()
		e.TimeoutMs = &t
	case d.NoChain:
		e.Outcome = "no-chain"
	case d.WaitsForRequest:
		e.Outcome = "http-request"
	default:
		e.Outcome = "passes"
	}
	if st.ClientTLS {
		e.Inspectors = nil
	}
	return e
}

// proxyConfigVerdict adds the config paths of the finding's target: a
// path no probe took gets its verdict from config; a probed path keeps
// the probe's verdict where config agrees, and where they disagree the
// weaker claim. Then the finding takes its worst path, as activeVerdict
// does.
func (j *judge) proxyConfigVerdict(f *Finding) {
	cps := j.cfg[f.Key()]
	if len(cps) == 0 {
		return
	}
	var direct []probe.Result
	for _, o := range j.obs[f.Key()] {
		// As activeVerdict: a client without a sidecar reaching a server
		// without one is the direct path too.
		if o.Vantage == target.VantageDirect || !f.ServerInMesh && o.Vantage != target.VantageMeshClient && !evidenceOf(o).throughMesh() {
			direct = append(direct, o.Result)
		}
	}
	d, _ := summarize(direct)
	changed := false
	for _, cp := range cps {
		for _, st := range cp.Stages {
			f.Evidence = append(f.Evidence, configEvidence(cp, st))
		}
		jd, out, ok := j.configJudgement(f, cp, d)
		if out.kind == "undecided" {
			f.Notes = append(f.Notes, "proxy config: "+out.why)
		}
		if !ok {
			continue
		}
		i := slices.IndexFunc(f.Paths, func(p PathVerdict) bool { return p.Scenario == scenarioOf(cp) })
		if i < 0 {
			if len(f.Paths) == 0 && f.Code != "" && f.Scenario != scenarioOf(cp) {
				// Keep the finding's own judgement as its path, so the
				// config path joins it instead of replacing it.
				f.Paths = append(f.Paths, PathVerdict{Scenario: f.Scenario, Verdict: f.Verdict, Code: f.Code, Reason: f.Reason})
			}
			f.Paths = append(f.Paths, PathVerdict{Scenario: scenarioOf(cp), Verdict: jd.rule.Verdict, Code: jd.rule.Code, Reason: jd.reason, Clients: cp.Clients})
			changed = true
			continue
		}
		probed := f.Paths[i]
		switch {
		case probed.Verdict == Deadlock && out.kind == "passes":
			dj := ruleConfigDisagrees.with(lowerFirst(probed.Reason), lowerFirst(jd.reason))
			f.Paths[i] = PathVerdict{Scenario: scenarioOf(cp), Verdict: dj.rule.Verdict, Code: dj.rule.Code, Reason: dj.reason, Clients: probed.Clients}
			changed = true
		case probed.Verdict == OK && (out.kind == "forever" || out.kind == "closes"):
			// The probe saw the banner arrive: that is the weaker claim.
			f.Notes = append(f.Notes, fmt.Sprintf("probes and proxy config disagree on the %s path: %s, but %s; taking the probe's, the weaker claim", scenarioOf(cp), lowerFirst(probed.Reason), lowerFirst(jd.reason)))
		}
	}
	if !changed {
		return
	}
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })
	worst := f.Paths[0]
	f.Verdict, f.Code, f.Reason, f.Scenario = worst.Verdict, worst.Code, worst.Reason, worst.Scenario
}

// ConfigText describes proxy-config evidence in a line: "client sidecar
// shop/web, listener 10.96.0.7_3307: http_inspector waits forever, then
// tcp_proxy to outbound|3307||db.shop.svc.cluster.local".
func (e Evidence) ConfigText() string {
	if e.Vantage != target.VantageProxyConfig {
		return ""
	}
	s := e.Side + " sidecar " + e.Proxy + ", listener " + e.Listener
	if len(e.Inspectors) > 0 && e.TimeoutMs != nil {
		wait := "forever"
		if *e.TimeoutMs > 0 {
			wait = (time.Duration(*e.TimeoutMs) * time.Millisecond).String()
			if e.OnTimeout != "" {
				wait += " then " + e.OnTimeout
			}
		}
		s += ": " + strings.Join(e.Inspectors, " then ") + " waits " + wait
	}
	if e.Cluster != "" {
		s += ", then tcp_proxy to " + e.Cluster
	} else if e.Chain != "" {
		s += ", chain " + e.Chain
	}
	return s
}
