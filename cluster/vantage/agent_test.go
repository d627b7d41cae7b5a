package vantage

import (
	"bytes"
	"strings"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

func TestAgentOutputRoundTrip(t *testing.T) {
	targets := []AgentTarget{
		{Key: "Service/shop/orders-db:3307", Address: "10.96.0.10:3307"},
		{Key: "External/db.example.com:10000", Address: "db.example.com:10000"},
	}
	fb := 2.5
	results := []probe.Result{
		{Target: "10.96.0.10:3307", Outcome: probe.OutcomeSilent},
		{Target: "db.example.com:10000", Outcome: probe.OutcomeBanner, FirstByteMs: &fb, Banner: "220 hi\r\n", Protocol: "smtp"},
	}
	var buf bytes.Buffer
	if err := WriteAgentOutput(&buf, targets, results); err != nil {
		t.Fatal(err)
	}
	// A runtime may interleave its own lines; they are skipped.
	log := "starting agent\n" + buf.String() + "\n"
	obs, err := ParseAgentOutput([]byte(log), target.VantageMeshClient, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(obs) != 2 {
		t.Fatalf("got %d observations, want 2", len(obs))
	}
	if obs[0].Target != (target.TargetKey{Kind: target.KindService, Namespace: "shop", Name: "orders-db", Port: 3307}) || obs[0].Result.Outcome != probe.OutcomeSilent {
		t.Errorf("first observation = %+v", obs[0])
	}
	if obs[1].Target != (target.TargetKey{Kind: target.KindExternal, Name: "db.example.com", Port: 10000}) || *obs[1].Result.FirstByteMs != 2.5 || !obs[1].InMesh || obs[1].Vantage != target.VantageMeshClient {
		t.Errorf("second observation = %+v", obs[1])
	}
}

func TestParseAgentOutputRejectsCutLogs(t *testing.T) {
	var buf bytes.Buffer
	_ = WriteAgentOutput(&buf, []AgentTarget{{Key: "Service/a/b:1", Address: "1.2.3.4:1"}}, []probe.Result{{Outcome: probe.OutcomeSilent}})
	full := buf.String()
	cut := full[:strings.LastIndex(full, "{")]
	if _, err := ParseAgentOutput([]byte(cut), target.VantageOutsideClient, false); err == nil {
		t.Error("a log without the end marker was accepted")
	}
	lying := strings.Replace(full, `"count":1`, `"count":2`, 1)
	if _, err := ParseAgentOutput([]byte(lying), target.VantageOutsideClient, false); err == nil {
		t.Error("a log whose count does not match was accepted")
	}
}

func TestDecodeTargets(t *testing.T) {
	got, err := DecodeTargets("Service/shop/db:3307=10.0.0.1:3307\n\n127.0.0.1:22\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[1].Key != "127.0.0.1:22" || got[0].Address != "10.0.0.1:3307" {
		t.Errorf("DecodeTargets = %+v", got)
	}
	for _, bad := range []string{"k=", "k=host", "k=http://x:1", "k=a b:1"} {
		if _, err := DecodeTargets(bad); err == nil {
			t.Errorf("DecodeTargets(%q) accepted", bad)
		}
	}
}

func FuzzParseAgentOutput(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteAgentOutput(&buf, []AgentTarget{{Key: "Service/a/b:1", Address: "1.2.3.4:1"}}, []probe.Result{{Outcome: probe.OutcomeBanner, Banner: "\x1b[31m<x>"}})
	f.Add(buf.Bytes())
	f.Add([]byte(`{"done":true}`))
	f.Add([]byte(`{"key":"Service/a/b:99999","result":{}}`))
	f.Fuzz(func(t *testing.T, log []byte) {
		obs, err := ParseAgentOutput(log, target.VantageDirect, false)
		if err == nil {
			for _, o := range obs {
				if o.Target.Port <= 0 || o.Target.Port > 65535 {
					t.Fatalf("accepted port %d", o.Target.Port)
				}
			}
		}
	})
}
