package resolver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver"
)

// benchWriter is the minimal dns.ResponseWriter: it keeps the last reply
// and, with pack set, packs it into a reused buffer like a real write.
type benchWriter struct {
	remote net.Addr
	pack   bool
	buf    []byte
	last   *dns.Msg
}

var _ dns.ResponseWriter = (*benchWriter)(nil)

// benchLocal is the listener address every benchWriter reports: one
// value, as a real connection keeps its own.
var benchLocal net.Addr = &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53}

func (w *benchWriter) LocalAddr() net.Addr  { return benchLocal }
func (w *benchWriter) RemoteAddr() net.Addr { return w.remote }
func (w *benchWriter) WriteMsg(m *dns.Msg) error {
	w.last = m
	if w.pack {
		b, err := m.PackBuffer(w.buf)
		if err != nil {
			return err
		}
		w.buf = b
	}
	return nil
}
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) Close() error                { return nil }
func (w *benchWriter) TsigStatus() error           { return nil }
func (w *benchWriter) TsigTimersOnly(bool)         {}
func (w *benchWriter) Hijack()                     {}

// benchServer builds the production chain (access, policy, cache over a
// real upstream group) behind a Server that is never started: queries go
// straight to Server.ServeDNS. The cache is warmed with one query.
func benchServer(tb testing.TB, pcfg policy.Config, ls map[string]policy.Matcher, q *dns.Msg) (*resolver.Server, *benchWriter) {
	tb.Helper()
	clk := newClock()
	reg := prometheus.NewRegistry()
	up := startUpstream(tb, answer(tb, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1", "@ 300 IN A 192.0.2.2"}, nil))
	sm := resolver.NewMetrics(reg)
	chain, _, store := buildChain(tb, harnessConfig{policy: pcfg, lists: ls}, clk, reg, sm, up.url())
	srv := resolver.NewServer(resolver.ServerConfig{}, chain, nil, sm, nil, clk.now)
	srv.SetIdentifier(storeIdentifier{store})
	w := &benchWriter{remote: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}
	srv.ServeDNS(w, q) // miss: fills the cache
	if w.last == nil || w.last.Rcode != dns.RcodeSuccess || len(w.last.Answer) != 2 {
		tb.Fatalf("warm-up reply %v", w.last)
	}
	if up.hits.Load() != 1 {
		tb.Fatalf("warm-up asked the upstream %d times", up.hits.Load())
	}
	tb.Cleanup(func() {
		if n := up.hits.Load(); n != 1 {
			tb.Errorf("upstream asked %d times: not all cache hits", n)
		}
	})
	return srv, w
}

// big2M builds a 2,000,000-entry block list (a few seconds).
func big2M(b *testing.B) *lists.List {
	b.Helper()
	var buf bytes.Buffer
	buf.Grow(2_000_000 * 24)
	for i := range 2_000_000 {
		fmt.Fprintf(&buf, "d%07d.bench.example\n", i)
	}
	lb := lists.NewBuilder()
	st, err := lists.Parse(&buf, "bench.txt", lists.FormatDomains, lb)
	if err != nil || st.Entries != 2_000_000 {
		b.Fatalf("parse: %v %+v", err, st)
	}
	return lb.Build("big", "malware")
}

// BenchmarkServeCacheHit measures one cache hit through the whole chain:
// Server.ServeDNS (request pooling, client identity, EDNS0 and question
// checks, write path, metrics), access (allow list + rate limit), policy
// (Decide + InspectResponse) and the cache.
func BenchmarkServeCacheHit(b *testing.B) {
	q := msg("www.example.com.", dns.TypeA, 1232, false)
	open := policy.Config{}
	run := func(b *testing.B, srv *resolver.Server, w *benchWriter) {
		b.ReportAllocs()
		for b.Loop() {
			srv.ServeDNS(w, q)
		}
		if w.last.Rcode != dns.RcodeSuccess || len(w.last.Answer) != 2 {
			b.Fatalf("reply %v", w.last)
		}
	}
	b.Run("open_policy", func(b *testing.B) {
		srv, w := benchServer(b, open, nil, q)
		run(b, srv, w)
	})
	b.Run("open_policy_packed", func(b *testing.B) {
		srv, w := benchServer(b, open, nil, q)
		w.pack = true
		run(b, srv, w)
	})
	b.Run("policy_2M_list", func(b *testing.B) {
		if testing.Short() {
			b.Skip("2M-entry list skipped in -short mode")
		}
		ls := map[string]policy.Matcher{"big": big2M(b)}
		pcfg := policy.Config{Policies: map[string]policy.PolicyConfig{"default": {Block: []string{"big"}}}}
		srv, w := benchServer(b, pcfg, ls, q)
		run(b, srv, w)
	})
}

// TestServeCacheHitAllocs: a cache hit through the whole chain allocates
// one object, the reply the cache fills in (its OPT record included), with
// EDNS0 or without; BenchmarkServeCacheHit measures it.
func TestServeCacheHitAllocs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bufsize uint16
		do      bool
	}{{"edns", 1232, false}, {"edns_do", 1232, true}, {"no_edns", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			q := msg("www.example.com.", dns.TypeA, tc.bufsize, tc.do)
			srv, w := benchServer(t, policy.Config{}, nil, q)
			if n := testing.AllocsPerRun(200, func() { srv.ServeDNS(w, q) }); n > 1 {
				t.Errorf("a cache hit allocates %v objects, want 1", n)
			}
			if (w.last.IsEdns0() != nil) != (tc.bufsize > 0) || len(w.last.Answer) != 2 {
				t.Errorf("reply %v", w.last)
			}
		})
	}
}

// BenchmarkServeTCP measures cache hits over one real TCP connection on
// loopback, through the started Server: window queries are written at
// once, then their replies read (1: a client that waits for each reply;
// more: a pipelining one).
func BenchmarkServeTCP(b *testing.B) {
	clk := newClock()
	reg := prometheus.NewRegistry()
	up := startUpstream(b, answer(b, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1", "@ 300 IN A 192.0.2.2"}, nil))
	sm := resolver.NewMetrics(reg)
	chain, _, store := buildChain(b, harnessConfig{}, clk, reg, sm, up.url())
	srv := resolver.NewServer(resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}}, chain, nil, sm, nil, clk.now)
	srv.SetIdentifier(storeIdentifier{store})
	if err := srv.Start(context.Background()); err != nil {
		b.Fatalf("Start: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	addr := srv.Addrs()[0].String()
	q := msg("www.example.com.", dns.TypeA, 1232, false)
	if r, err := tryExchange("tcp", addr, q); err != nil || len(r.Answer) != 2 {
		b.Fatalf("warm-up: %v %v", r, err)
	}
	wire := pack(b, q)
	for _, window := range []int{1, 16} {
		b.Run(fmt.Sprintf("window_%d", window), func(b *testing.B) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var out []byte
			for range window {
				out = binary.BigEndian.AppendUint16(out, uint16(len(wire)))
				out = append(out, wire...)
			}
			rd := bufio.NewReader(c)
			buf := make([]byte, 4096)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Write(out); err != nil {
					b.Fatal(err)
				}
				for range window {
					if _, err := io.ReadFull(rd, buf[:2]); err != nil {
						b.Fatal(err)
					}
					if _, err := io.ReadFull(rd, buf[:binary.BigEndian.Uint16(buf)]); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*window), "ns/query")
		})
	}
}
