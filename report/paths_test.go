package report

import (
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
)

// A silent outside client under STRICT is a rejection, not a deadlock:
// the sidecar never lets plaintext through, whatever the server says.
func TestStrictSilentOutsideIsRejected(t *testing.T) {
	p := pod("mail", "imap-0", "imap", true, "dovecot:2")
	inv := meshInv([]cluster.Pod{p}, svc("mail", "imap", "imap", []cluster.Pod{p}, tport("tcp-imap", 143, "143", "")))
	inv.PeerAuthentications = []cluster.PeerAuthentication{{Namespace: "mail", Name: "strict", Mode: cluster.MTLSStrict}}
	k := svcKey("mail", "imap", 143)
	r := Build(Input{Inventory: inv, Observations: []target.Observation{
		obs(k, target.VantageDirect, banner(1, "* OK IMAP ready\r\n", "imap")),
		obs(k, target.VantageOutsideClient, silent()),
	}})
	f := onlyFinding(t, r, k)
	if f.Verdict != MTLSRejected || f.Scenario != ExternalToMesh {
		t.Fatalf("verdict %s scenario %s, want MTLS-REJECTED external-to-mesh", f.Verdict, f.Scenario)
	}
	assertCode(t, f, ruleStrictSilent.Code)
}

// Both paths hang: both are reported, and the plan carries one fix per path.
func TestEveryAffectedPathGetsItsFix(t *testing.T) {
	p := pod("shop", "db-0", "db", true, "mariadb:11")
	inv := meshInv([]cluster.Pod{p}, svc("shop", "db", "db", []cluster.Pod{p}, tport("db", 3307, "3306", "")))
	k := svcKey("shop", "db", 3307)
	r := Build(Input{Inventory: inv, Observations: []target.Observation{
		obs(k, target.VantageDirect, banner(2, "x", "mysql")),
		obs(k, target.VantageMeshClient, silent()),
		obs(k, target.VantageOutsideClient, silent()),
	}})
	f := onlyFinding(t, r, k)
	if len(f.Paths) != 2 || f.Paths[0].Verdict != Deadlock || f.Paths[1].Verdict != Deadlock {
		t.Fatalf("paths = %+v", f.Paths)
	}
	assertPathCodes(t, f, ruleDeadlock.Code, ruleDeadlock.Code)
	plan := Plan(r)
	kinds := map[string]bool{}
	for _, o := range plan.Objects {
		kinds[o.Kind] = true
	}
	if !kinds["Service"] || !kinds["PeerAuthentication"] || len(plan.Objects) != 2 {
		t.Errorf("plan objects = %+v", plan.Objects)
	}
	for _, fix := range f.Fixes {
		if fix.Scenario == "" {
			t.Errorf("fix %q has no scenario", fix.Title)
		}
	}
}

func TestUnmeshedWhoNamesAFew(t *testing.T) {
	for _, tt := range []struct {
		pods int
		ns   []string
		want string
	}{
		{1, []string{"legacy"}, "1 pod(s) without a sidecar in 1 namespace(s): legacy"},
		{9, []string{"a", "b", "c", "d", "e"}, "9 pod(s) without a sidecar in 5 namespace(s): a, b, c, d, e"},
		{9, []string{"a", "b", "c", "d", "e", "f", "g"}, "9 pod(s) without a sidecar in 7 namespace(s): a, b, c, d, e and 2 more"},
	} {
		if got := unmeshedWho(tt.pods, tt.ns); got != tt.want {
			t.Errorf("unmeshedWho(%d, %v) = %q, want %q", tt.pods, tt.ns, got, tt.want)
		}
	}
}
