package proxyconfig

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParseConfigDump: whatever bytes a pod's admin port returns, Parse
// and the decisions on what it accepts never panic.
func FuzzParseConfigDump(f *testing.F) {
	f.Add([]byte(small))
	f.Add([]byte(`{"configs":[]}`))
	f.Add([]byte(`{"configs":[{"@type":"` + typeListenersDump + `","dynamic_listeners":[{"active_state":{"listener":{"address":{"socket_address":{"address":"0.0.0.0","port_value":15001}},"use_original_dst":true,"filter_chains":[{"filter_chain_match":{"prefix_ranges":[{"address_prefix":"::","prefix_len":200}]}}]}}}]}]}`))
	goldens, _ := filepath.Glob(filepath.Join("testdata", "*.json"))
	for _, g := range goldens {
		if b, err := os.ReadFile(g); err == nil {
			f.Add(b)
		}
	}
	dsts := []netip.AddrPort{
		netip.MustParseAddrPort("10.96.0.7:3307"),
		netip.MustParseAddrPort("203.0.113.9:8080"),
		netip.MustParseAddrPort("[2001:db8::1]:3306"),
		{},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data)
		if err != nil {
			return
		}
		for _, dst := range dsts {
			_ = d.Outbound(dst, netip.AddrPort{})
			_ = d.Inbound(dst, dst, false)
			_ = d.Inbound(dst, dst, true)
		}
	})
}
