package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecordsRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "kubectl-serverfirst", "fix-records.json")
	if recs, err := ReadRecords(path); err != nil || recs != nil {
		t.Fatalf("missing file: %v %v", recs, err)
	}
	prev := json.RawMessage(`{"apiVersion":"v1","kind":"Service","spec":{"ports":[{"port":3307}]}}`)
	recs := []FixRecord{{AppliedAt: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC), Server: "https://127.0.0.1:6443", FieldManager: ManagerName,
		Objects: []RecordedObject{
			{APIVersion: "v1", Kind: "Service", Namespace: "shop", Name: "db", Previous: prev, Applied: prev, UID: "u1"},
			{APIVersion: "security.istio.io/v1", Kind: "PeerAuthentication", Namespace: "shop", Name: "x", Created: true, Applying: true},
		}}}
	if err := WriteRecords(path, recs); err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	// The file is indented for reading; the objects in it are the same JSON.
	for i := range got {
		for j := range got[i].Objects {
			for _, raw := range []*json.RawMessage{&got[i].Objects[j].Previous, &got[i].Objects[j].Applied} {
				if len(*raw) > 0 {
					var b bytes.Buffer
					if err := json.Compact(&b, *raw); err != nil {
						t.Fatal(err)
					}
					*raw = b.Bytes()
				}
			}
		}
	}
	if !reflect.DeepEqual(got, recs) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, recs)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v %v", fi, err)
	}
	for _, c := range []struct{ body, want string }{
		{"{", "not a record file"},
		{`{"kind":"something-else","records":[]}`, `kind "something-else"`},
	} {
		bad := filepath.Join(t.TempDir(), "bad.json")
		if err := os.WriteFile(bad, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadRecords(bad); err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v, want one line with %q", c.body, err, c.want)
		}
	}
}

func TestDefaultRecordPath(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/state")
	if p, err := DefaultRecordPath(); err != nil || p != "/state/kubectl-serverfirst/fix-records.json" {
		t.Errorf("%s %v", p, err)
	}
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "/home/u")
	if p, err := DefaultRecordPath(); err != nil || p != "/home/u/.local/state/kubectl-serverfirst/fix-records.json" {
		t.Errorf("%s %v", p, err)
	}
}
