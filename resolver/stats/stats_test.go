package stats

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

func req(t time.Time, client, name string, info query.Info) *query.Request {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	return &query.Request{Msg: m, Start: t, Client: query.Client{Addr: netip.MustParseAddr(client), Name: "w-" + client}, Info: info}
}

func TestTop(t *testing.T) {
	base := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	now := base
	c := New(5, func() time.Time { return now })
	block := query.Info{Action: query.ActionBlock, Category: "malware"}
	scored := query.Info{Domain: "tunnel.example", Score: 0.8, Alert: true}
	for range 3 {
		c.Record(req(base, "10.0.0.1", "a.example.", query.Info{}), nil)
	}
	c.Record(req(base, "10.0.0.2", "bad.example.", block), nil)
	c.Record(req(base, "10.0.0.2", "bad.example.", block), nil)
	c.Record(req(base.Add(time.Minute), "10.0.0.3", "x1.tunnel.example.", scored), nil)
	c.Record(req(base.Add(time.Minute), "10.0.0.3", "x2.tunnel.example.", query.Info{Domain: "tunnel.example", Score: 0.95}), nil)
	c.Record(req(base.Add(time.Minute), "10.0.0.4", "cdn.example.", query.Info{Domain: "cdn.example", Score: 0.1}), nil)

	for _, tc := range []struct {
		name               string
		now                time.Time
		minutes            int
		queries            uint64
		firstClient        string
		blocked, scoredLen int
	}{
		{"both_minutes", base.Add(time.Minute), 5, 8, "10.0.0.1", 1, 1},
		{"last_minute_only", base.Add(time.Minute), 1, 3, "10.0.0.3", 0, 1},
		{"all_expired", base.Add(10 * time.Minute), 5, 0, "", 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = tc.now
			top := c.Top(tc.minutes, 10)
			if top.Queries != tc.queries {
				t.Errorf("queries = %d, want %d", top.Queries, tc.queries)
			}
			if tc.firstClient != "" && (len(top.Clients) == 0 || top.Clients[0].Addr != tc.firstClient) {
				t.Errorf("top client = %+v, want %s first", top.Clients, tc.firstClient)
			}
			if len(top.Blocked) != tc.blocked || len(top.Scored) != tc.scoredLen {
				t.Fatalf("blocked %+v scored %+v", top.Blocked, top.Scored)
			}
			if tc.blocked > 0 && (top.Blocked[0].Count != 2 || top.Blocked[0].Category != "malware") {
				t.Errorf("blocked row = %+v", top.Blocked[0])
			}
			if tc.scoredLen > 0 {
				s := top.Scored[0]
				if s.Domain != "tunnel.example" || s.MaxScore != 0.95 || s.Queries != 2 || !s.Alert || s.Workload != "w-10.0.0.3" {
					t.Errorf("scored row = %+v", s)
				}
			}
		})
	}
}

func TestBounded(t *testing.T) {
	now := time.Unix(0, 0)
	c := New(1, func() time.Time { return now })
	for i := range maxKeys + 50 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		c.Record(req(now, a.String(), "a.example.", query.Info{}), nil)
	}
	b := &c.buckets[0]
	if len(b.clients) != maxKeys || b.other != 50 || b.total != maxKeys+50 {
		t.Fatalf("clients %d other %d total %d", len(b.clients), b.other, b.total)
	}
}

func BenchmarkRecord(b *testing.B) {
	c := New(0, nil)
	r := req(time.Now(), "10.0.0.1", "a.example.", query.Info{})
	b.ReportAllocs()
	for b.Loop() {
		c.Record(r, nil)
	}
}
