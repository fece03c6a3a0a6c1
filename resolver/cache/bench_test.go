package cache

import (
	"context"
	"testing"

	"github.com/miekg/dns"
)

func benchCache(b *testing.B) (*Cache, *dns.Msg) {
	b.Helper()
	up := &fakeUpstream{reply: answerWith(b, dns.RcodeSuccess, []string{
		"www.example.com. 300 IN A 192.0.2.1",
		"www.example.com. 300 IN A 192.0.2.2",
	}, nil)}
	clk := newClock()
	cfg := DefaultConfig()
	cfg.Prefetch = false
	c, err := New(cfg, up, NewMetrics(nil), nil, clk.now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	req := newQuery("www.example.com.", dns.TypeA, true, false)
	if _, st, _, err := c.Resolve(context.Background(), req); err != nil || st.String() != "miss" {
		b.Fatalf("warm up: %s %v", st, err)
	}
	return c, req
}

// BenchmarkCacheHit measures a hit for an A question with two records and
// EDNS0: key, lookup, reply built with decremented TTLs.
func BenchmarkCacheHit(b *testing.B) {
	c, req := benchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, st, _, err := c.Resolve(ctx, req)
		if err != nil || len(resp.Answer) != 2 || st != 1 {
			b.Fatalf("%v %v", st, err)
		}
	}
}

func BenchmarkCacheHitParallel(b *testing.B) {
	c, req := benchCache(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, _, _, err := c.Resolve(ctx, req)
			if err != nil || len(resp.Answer) != 2 {
				b.Errorf("%v", err)
				return
			}
		}
	})
}

// BenchmarkCacheHitCopy is the naive alternative, for comparison: Copy() the
// stored message and patch it.
func BenchmarkCacheHitCopy(b *testing.B) {
	c, req := benchCache(b)
	e, _ := c.lru.Peek(makeKey(req))
	b.ReportAllocs()
	for b.Loop() {
		m := e.msg.Copy()
		m.Id = req.Id
		m.Question = []dns.Question{req.Question[0]}
		for _, rr := range m.Answer {
			rr.Header().Ttl -= 1
		}
		m.SetEdns0(udpSize, false)
	}
}

func BenchmarkMakeKey(b *testing.B) {
	req := newQuery("www.example.com.", dns.TypeA, true, false)
	b.ReportAllocs()
	for b.Loop() {
		_ = makeKey(req)
	}
}

// BenchmarkReply is the reply construction alone, to compare with
// BenchmarkCacheHitCopy.
func BenchmarkReply(b *testing.B) {
	c, req := benchCache(b)
	e, _ := c.lru.Peek(makeKey(req))
	b.ReportAllocs()
	for b.Loop() {
		_ = reply(req, e, 1e9, false, nil)
	}
}
