package target

import (
	"encoding/json"
	"testing"
)

func TestParsePort(t *testing.T) {
	for in, want := range map[string]int32{"80": 80, "65535": 65535, "080": 80, "80abc": 0, "+80": 0, "0": 0, "65536": 0, "-1": 0, "": 0, " 80": 0, "mysql": 0} {
		got, ok := ParsePort(in)
		if got != want || ok != (want != 0) {
			t.Errorf("ParsePort(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
}

func TestTargetKeyText(t *testing.T) {
	for _, tc := range []struct {
		text string
		key  TargetKey
		ok   bool
	}{
		{"Service/shop/orders-db:3307", TargetKey{Kind: KindService, Namespace: "shop", Name: "orders-db", Port: 3307}, true},
		{"ServiceEntry/shop/smtp:25", TargetKey{Kind: KindServiceEntry, Namespace: "shop", Name: "smtp", Port: 25}, true},
		{"External/db.example.com:10000", TargetKey{Kind: KindExternal, Name: "db.example.com", Port: 10000}, true},
		{"External/2001:db8::1:5432", TargetKey{Kind: KindExternal, Name: "2001:db8::1", Port: 5432}, true},
		{"Service/shop/orders-db:80abc", TargetKey{}, false},
		{"Service/shop:3307", TargetKey{}, false},
		{"Pod/shop/db-0:4444", TargetKey{}, false},
		{"External/a/b:1", TargetKey{}, false},
		{"no-port", TargetKey{}, false},
	} {
		got, ok := ParseTargetKey(tc.text)
		if got != tc.key || ok != tc.ok {
			t.Errorf("ParseTargetKey(%q) = %+v, %v; want %+v, %v", tc.text, got, ok, tc.key, tc.ok)
		}
		var back TargetKey
		err := back.UnmarshalText([]byte(tc.text))
		if (err == nil) != tc.ok || back != tc.key {
			t.Errorf("UnmarshalText(%q) = %+v, %v", tc.text, back, err)
		}
		if !tc.ok {
			continue
		}
		if s := tc.key.String(); s != tc.text {
			t.Errorf("%+v.String() = %q, want %q", tc.key, s, tc.text)
		}
		b, err := json.Marshal(Observation{Target: tc.key})
		var o Observation
		if err != nil || json.Unmarshal(b, &o) != nil || o.Target != tc.key {
			t.Errorf("JSON round trip of %q: %s, %v, %+v", tc.text, b, err, o.Target)
		}
	}
}

func TestThroughMesh(t *testing.T) {
	for _, tc := range []struct {
		o    Observation
		want bool
	}{
		{Observation{Vantage: VantageMeshClient}, true},
		{Observation{Vantage: VantageSelf, InMesh: true}, true},
		{Observation{Vantage: VantageSelf}, false},
		{Observation{Vantage: VantageOutsideClient}, false},
		{Observation{Vantage: VantageDirect, InMesh: true}, false},
	} {
		if got := tc.o.ThroughMesh(); got != tc.want {
			t.Errorf("%+v.ThroughMesh() = %v, want %v", tc.o, got, tc.want)
		}
	}
}
