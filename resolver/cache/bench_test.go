package cache

import (
	"context"
	"net"
	"runtime"
	"strconv"
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

// BenchmarkCacheStore measures a miss that stores a new entry (a unique
// name answered with two A records, unpacked from the wire as an upstream
// reply is) and reports what the cache keeps per entry: live heap bytes
// and objects besides the name, which is what the collector marks on
// every cycle.
func BenchmarkCacheStore(b *testing.B) {
	up := &fakeUpstream{reply: func(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetReply(m)
		name := m.Question[0].Name
		r.Answer = []dns.RR{
			&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1).To4()},
			&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 2).To4()},
		}
		wire, err := r.Pack()
		if err != nil {
			return nil, err
		}
		out := new(dns.Msg)
		return out, out.Unpack(wire)
	}}
	cfg := DefaultConfig()
	cfg.Prefetch = false
	cfg.Size = max(cfg.Size, b.N)
	c, err := New(cfg, up, NewMetrics(nil), nil, newClock().now)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	// The names exist before and after: the heap figures leave them out.
	names := make([]string, b.N)
	for i := range names {
		names[i] = "q" + strconv.Itoa(i) + ".bench.example."
	}
	ctx := context.Background()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for _, name := range names {
		if _, st, _, err := c.Resolve(ctx, newQuery(name, dns.TypeA, true, false)); err != nil || st.String() != "miss" {
			b.Fatalf("%s %v", st, err)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(names)
	if c.Len() != b.N {
		b.Fatalf("%d entries, want %d", c.Len(), b.N)
	}
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heapB/entry")
	b.ReportMetric(float64(int64(after.HeapObjects)-int64(before.HeapObjects))/float64(b.N), "objects/entry")
}
