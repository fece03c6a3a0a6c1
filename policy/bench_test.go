package policy

import (
	"bytes"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
)

const benchEntries = 2_000_000

// benchList is built once per test binary: 2M entries take a few seconds.
var benchList = sync.OnceValues(func() (*lists.List, error) {
	var buf bytes.Buffer
	buf.Grow(benchEntries * 24)
	for i := range benchEntries {
		fmt.Fprintf(&buf, "d%07d.bench.example\n", i)
	}
	b := lists.NewBuilder()
	if _, err := lists.Parse(&buf, "bench.txt", lists.FormatDomains, b); err != nil {
		return nil, err
	}
	return b.Build("big", "malware"), nil
})

func BenchmarkDecide(b *testing.B) {
	big, err := benchList()
	if err != nil {
		b.Fatal(err)
	}
	if big.Len() != benchEntries {
		b.Fatalf("bench list has %d entries, want %d", big.Len(), benchEntries)
	}
	ls := testLists(b)
	ls["big"] = big
	s := mustCompile(b, Config{Policies: map[string]PolicyConfig{
		"default": {Allow: []string{"corp-allow"}, Block: []string{"big", "ads"}, Alert: []string{"file-sharing"}},
		"strict":  {Mode: "allowlist", Allow: []string{"aws-endpoints", "corp-allow"}},
	}}, ls)
	cases := []struct{ name, policy, qname string }{
		{"block_hit_subdomain", "default", "www.cdn.d1234567.bench.example."},
		{"miss_4_labels", "default", "api.eu.example-shop.com."},
		{"allow_hit", "default", "app.corp.example."},
		{"alert_hit", "default", "files.share.example."},
		{"allowlist_miss", "strict", "tracker.example.net."},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Decide(c.policy, c.qname, dns.TypeA)
			}
		})
	}
	b.Run("identify_and_decide_parallel", func(b *testing.B) {
		client := netip.MustParseAddr("192.0.2.10")
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, p, _ := s.Identify(client)
				s.Decide(p, "www.cdn.d1234567.bench.example.", dns.TypeA)
			}
		})
	})
}
