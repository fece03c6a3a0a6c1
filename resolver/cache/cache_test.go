package cache

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestResolve_hit_decrements_ttl(t *testing.T) {
	up := &fakeUpstream{}
	up.reply = answerWith(t, dns.RcodeSuccess, []string{
		"www.example.com. 300 IN A 192.0.2.1",
		"www.example.com. 300 IN A 192.0.2.2",
	}, nil)
	c := newTestCache(t, DefaultConfig(), up)

	resp, st := mustResolve(t, c.Cache, newQuery("www.example.com.", dns.TypeA, true, false))
	if st != "miss" || len(resp.Answer) != 2 {
		t.Fatalf("first: status %s, answer %v", st, resp.Answer)
	}
	c.clock.step(100*time.Second + 500*time.Millisecond)
	req := newQuery("WwW.ExAmple.COM.", dns.TypeA, true, false)
	req.Id = 777
	resp, st = mustResolve(t, c.Cache, req)
	if st != "hit" {
		t.Fatalf("second: status %s, want hit", st)
	}
	if resp.Id != 777 || resp.Question[0] != req.Question[0] {
		t.Errorf("id %d question %v, want 777 %v", resp.Id, resp.Question[0], req.Question[0])
	}
	if got := ttls(resp.Answer); !slices.Equal(got, []uint32{200, 200}) {
		t.Errorf("ttls %v, want [200 200]", got)
	}
	if resp.Answer[0].Header().Name != "WwW.ExAmple.COM." {
		t.Errorf("owner %q, want the client's spelling", resp.Answer[0].Header().Name)
	}
	if opt := resp.IsEdns0(); opt == nil || opt.Do() {
		t.Errorf("want OPT without DO, got %v", opt)
	}
	if n := up.n.Load(); n != 1 {
		t.Errorf("upstream called %d times, want 1", n)
	}
	// The reply is the caller's: changing it must not change the cache.
	resp.Answer[0].(*dns.A).A[3] = 99
	resp.Answer[0].Header().Ttl = 1
	resp, _ = mustResolve(t, c.Cache, newQuery("www.example.com.", dns.TypeA, false, false))
	if ip := resp.Answer[0].(*dns.A).A.String(); ip != "192.0.2.1" || resp.Answer[0].Header().Ttl != 200 {
		t.Errorf("cache corrupted by caller: %v", resp.Answer[0])
	}
	if resp.IsEdns0() != nil {
		t.Errorf("OPT added for a client without EDNS0")
	}
	c.clock.step(200 * time.Second) // expired: miss
	if _, st = mustResolve(t, c.Cache, newQuery("www.example.com.", dns.TypeA, false, false)); st != "miss" {
		t.Errorf("after expiry: status %s, want miss", st)
	}
	if got := testutil.ToFloat64(c.m.hits); got != 2 {
		t.Errorf("hits_total %v, want 2", got)
	}
	if got := testutil.ToFloat64(c.m.misses); got != 2 {
		t.Errorf("misses_total %v, want 2", got)
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		name      string
		a, b      *dns.Msg
		wantShare bool
	}{
		{"case_insensitive", newQuery("example.com.", dns.TypeA, false, false), newQuery("EXAMPLE.com.", dns.TypeA, false, false), true},
		{"edns_without_do_shares", newQuery("example.com.", dns.TypeA, false, false), newQuery("example.com.", dns.TypeA, true, false), true},
		{"qtype_differs", newQuery("example.com.", dns.TypeA, false, false), newQuery("example.com.", dns.TypeAAAA, false, false), false},
		{"do_differs", newQuery("example.com.", dns.TypeA, true, false), newQuery("example.com.", dns.TypeA, true, true), false},
		{"cd_differs", newQuery("example.com.", dns.TypeA, false, false), func() *dns.Msg {
			m := newQuery("example.com.", dns.TypeA, false, false)
			m.CheckingDisabled = true
			return m
		}(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{reply: func(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
				r := new(dns.Msg)
				r.SetReply(m)
				r.Answer = mustRRs(t, "example.com. 60 IN A 192.0.2.1")
				r.Answer[0].Header().Class = m.Question[0].Qclass
				r.Answer[0].Header().Rrtype = dns.TypeA
				return r, nil
			}}
			c := newTestCache(t, DefaultConfig(), up)
			mustResolve(t, c.Cache, tt.a)
			_, st := mustResolve(t, c.Cache, tt.b)
			if got := st == "hit"; got != tt.wantShare {
				t.Errorf("second status %s, want shared=%v", st, tt.wantShare)
			}
		})
	}
}

func TestLowerName(t *testing.T) {
	for _, s := range []string{"", ".", "example.com.", "ExAmPle.COM.", "xn--bcher-kva.ch.", "A"} {
		if got, want := lowerName(s), strings.ToLower(s); got != want {
			t.Errorf("lowerName(%q) = %q, want %q", s, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = lowerName("www.example.com.") }); n != 0 {
		t.Errorf("lowerName of a lowercase name allocates %v times", n)
	}
}

func TestTTL(t *testing.T) {
	tests := []struct {
		name     string
		cfg      func(*Config)
		answer   []string
		ns       []string
		wantLife time.Duration
		wantTTLs []uint32 // answer TTLs on the first (miss) reply
	}{
		{"min_over_answer", nil, []string{"a.example. 300 IN CNAME b.example.", "b.example. 60 IN A 192.0.2.1"}, nil, 60 * time.Second, []uint32{300, 60}},
		{"authority_counts", nil, []string{"a.example. 300 IN A 192.0.2.1"}, []string{"example. 100 IN NS ns.example."}, 100 * time.Second, []uint32{300}},
		{"clamped_to_max", func(c *Config) { c.MaxTTL = time.Minute }, []string{"a.example. 86400 IN A 192.0.2.1"}, nil, time.Minute, []uint32{60}},
		{"raised_to_min", func(c *Config) { c.MinTTL = time.Minute }, []string{"a.example. 5 IN A 192.0.2.1"}, nil, time.Minute, []uint32{60}},
		{"zero_ttl_not_cached", nil, []string{"a.example. 0 IN A 192.0.2.1"}, nil, 0, []uint32{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, tt.answer, tt.ns)}
			c := newTestCache(t, cfg, up)
			resp, _ := mustResolve(t, c.Cache, newQuery("a.example.", dns.TypeA, false, false))
			if got := ttls(resp.Answer); !slices.Equal(got, tt.wantTTLs) {
				t.Errorf("answer TTLs %v, want %v", got, tt.wantTTLs)
			}
			e, ok := c.lru.Peek(key{name: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET})
			if tt.wantLife == 0 {
				if ok {
					t.Fatalf("cached, want not cached")
				}
				return
			}
			if !ok || e.ttl != tt.wantLife {
				t.Fatalf("entry %v life %v, want %v", ok, e, tt.wantLife)
			}
		})
	}
}

func TestCacheability(t *testing.T) {
	soa := "example. 3600 IN SOA ns.example. admin.example. 1 7200 900 1209600 300"
	tests := []struct {
		name     string
		cfg      func(*Config)
		reply    func(context.Context, *dns.Msg) (*dns.Msg, error)
		wantErr  error
		wantLife time.Duration // 0: not cached
	}{
		{"nxdomain_uses_soa_minimum", nil, answerWith(t, dns.RcodeNameError, nil, []string{soa}), nil, 300 * time.Second},
		{"nodata_uses_soa_ttl_when_smaller", nil, answerWith(t, dns.RcodeSuccess, nil, []string{"example. 120 IN SOA ns.example. admin.example. 1 7200 900 1209600 300"}), nil, 120 * time.Second},
		{"negative_capped", func(c *Config) { c.NegativeTTL = time.Minute }, answerWith(t, dns.RcodeNameError, nil, []string{soa}), nil, time.Minute},
		// RFC 2308 section 2.2: a CNAME chain ending without the asked
		// type is NODATA for the last name; the CNAME's TTL does not count.
		{"cname_then_nodata_uses_soa_minimum", nil, answerWith(t, dns.RcodeSuccess, []string{"a.example. 3600 IN CNAME b.example."}, []string{soa}), nil, 300 * time.Second},
		{"cname_then_nodata_capped", func(c *Config) { c.NegativeTTL = 20 * time.Second }, answerWith(t, dns.RcodeSuccess, []string{"a.example. 3600 IN CNAME b.example."}, []string{soa}), nil, 20 * time.Second},
		{"nxdomain_without_soa", nil, answerWith(t, dns.RcodeNameError, nil, nil), nil, 0},
		{"nxdomain_foreign_soa", nil, answerWith(t, dns.RcodeNameError, nil, []string{"evil. 3600 IN SOA ns.evil. admin.evil. 1 7200 900 1209600 300"}), nil, 0},
		{"servfail", nil, answerWith(t, dns.RcodeServerFailure, nil, nil), nil, 0},
		{"refused", nil, answerWith(t, dns.RcodeRefused, nil, nil), nil, 0},
		{"truncated", nil, func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
			r, _ := answerWith(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)(ctx, m)
			r.Truncated = true
			return r, nil
		}, nil, 0},
		{"question_mismatch", nil, func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
			r, _ := answerWith(t, dns.RcodeSuccess, []string{"b.example. 300 IN A 192.0.2.1"}, nil)(ctx, m)
			r.Question[0].Name = "b.example."
			return r, nil
		}, ErrMismatch, 0},
		{"no_question_noerror", nil, func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
			r, _ := answerWith(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)(ctx, m)
			r.Question = nil
			return r, nil
		}, ErrMismatch, 0},
		{"nil_reply", nil, func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, nil }, ErrNoResponse, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			c := newTestCache(t, cfg, &fakeUpstream{reply: tt.reply})
			req := newQuery("a.example.", dns.TypeA, true, false)
			resp, st, up, err := c.Resolve(context.Background(), req)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			if err == nil && (resp.Id != req.Id || resp.Question[0] != req.Question[0] || st.String() != "miss" || up != "fake") {
				t.Errorf("reply id %d question %v status %s upstream %q", resp.Id, resp.Question, st, up)
			}
			e, ok := c.lru.Peek(key{name: "a.example.", qtype: dns.TypeA, qclass: dns.ClassINET})
			if tt.wantLife == 0 {
				if ok {
					t.Fatalf("cached for %v, want not cached", e.ttl)
				}
				return
			}
			if !ok || e.ttl != tt.wantLife {
				t.Fatalf("cached %v, want life %v", ok, tt.wantLife)
			}
			// RFC 2308 section 3: the SOA carries the negative TTL.
			c.clock.step(10 * time.Second)
			resp, st2 := mustResolve(t, c.Cache, req)
			want := uint32(tt.wantLife/time.Second) - 10
			if st2 != "hit" || len(resp.Ns) != 1 || resp.Ns[0].Header().Ttl != want {
				t.Errorf("hit status %s ns %v, want SOA with TTL %d", st2, resp.Ns, want)
			}
			if resp.Authoritative {
				t.Errorf("cached answer has AA set")
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		name       string
		qname      string
		answer     []string
		ns         []string
		extra      []string
		wantAnswer []string // owner/type of kept answer records; nil: not cached
		wantNs     int
		wantExtra  int
	}{
		{"drops_unrelated_record", "a.example.", []string{"a.example. 300 IN A 192.0.2.1", "bank.example. 300 IN A 203.0.113.66"}, nil, nil, []string{"a.example./A"}, 0, 0},
		{"follows_cname_chain_out_of_order", "a.example.", []string{"c.other. 300 IN A 192.0.2.1", "a.example. 300 IN CNAME b.example.", "b.example. 300 IN CNAME c.other.", "evil.other. 300 IN A 203.0.113.66"}, nil, nil, []string{"c.other./A", "a.example./CNAME", "b.example./CNAME"}, 0, 0},
		{"follows_dname", "www.a.example.", []string{"a.example. 300 IN DNAME b.example.", "www.a.example. 300 IN CNAME www.b.example.", "www.b.example. 300 IN A 192.0.2.1", "x.example. 300 IN A 203.0.113.66"}, nil, nil, []string{"a.example./DNAME", "www.a.example./CNAME", "www.b.example./A"}, 0, 0},
		{"keeps_rrsig_of_chain", "a.example.", []string{"a.example. 300 IN A 192.0.2.1", "a.example. 300 IN RRSIG A 8 2 300 20300101000000 20200101000000 12345 example. AAAA", "b.example. 300 IN RRSIG A 8 2 300 20300101000000 20200101000000 12345 example. AAAA"}, nil, nil, []string{"a.example./A", "a.example./RRSIG"}, 0, 0},
		{"all_outside_not_cached", "a.example.", []string{"bank.example. 300 IN A 203.0.113.66"}, nil, nil, nil, 0, 0},
		{"drops_other_types_of_owner", "a.example.", []string{"a.example. 300 IN A 192.0.2.1", "a.example. 300 IN TXT \"injected\"", "a.example. 300 CH A 192.0.2.9"}, nil, nil, []string{"a.example./A"}, 0, 0},
		{"only_wrong_type_not_cached", "a.example.", []string{"a.example. 300 IN TXT \"injected\""}, nil, nil, nil, 0, 0},
		{"chain_too_long_not_cached", "c0.example.", longChain(maxChain + 1), nil, nil, nil, 0, 0},
		{"chain_at_limit_cached", "c0.example.", longChain(maxChain - 1), nil, nil, chainOwners(maxChain - 1), 0, 0},
		{"conflicting_cnames_not_cached", "a.example.", []string{"a.example. 300 IN CNAME b.example.", "a.example. 300 IN CNAME c.example.", "b.example. 300 IN A 192.0.2.1"}, nil, nil, nil, 0, 0},
		{"dname_question_keeps_owned_dname", "a.example.", []string{"a.example. 300 IN DNAME b.example."}, nil, nil, []string{"a.example./DNAME"}, 0, 0},
		{"dname_question_through_cname", "x.example.", []string{"x.example. 300 IN CNAME a.example.", "a.example. 300 IN DNAME b.example.", "c.example. 300 IN DNAME d.example."}, nil, nil, []string{"x.example./CNAME", "a.example./DNAME"}, 0, 0},
		{"any_question_keeps_owned_dname", "a.example.", []string{"a.example. 300 IN DNAME b.example.", "a.example. 300 IN TXT \"t\""}, nil, nil, []string{"a.example./DNAME", "a.example./TXT"}, 0, 0},
		{"owned_dname_dropped_for_a", "a.example.", []string{"a.example. 300 IN DNAME b.example.", "a.example. 300 IN A 192.0.2.1"}, nil, nil, []string{"a.example./A"}, 0, 0},
		{"authority_and_glue_filtered", "example.", []string{"example. 300 IN MX 10 mail.example."}, []string{"example. 300 IN NS ns.example.", "bank. 300 IN NS ns.evil."}, []string{"mail.example. 300 IN A 192.0.2.25", "ns.example. 300 IN A 192.0.2.53", "www.bank. 300 IN A 203.0.113.66"}, []string{"example./MX"}, 1, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an, ns, ex := mustRRs(t, tt.answer...), mustRRs(t, tt.ns...), mustRRs(t, tt.extra...)
			qtype := dns.TypeA
			switch {
			case strings.Contains(tt.name, "glue"):
				qtype = dns.TypeMX
			case strings.HasPrefix(tt.name, "dname_question"):
				qtype = dns.TypeDNAME
			case strings.HasPrefix(tt.name, "any_question"):
				qtype = dns.TypeANY
			}
			resp := new(dns.Msg)
			resp.SetQuestion(tt.qname, qtype)
			resp.Response = true
			resp.Answer, resp.Ns, resp.Extra = an, ns, ex
			before := resp.String()
			c, err := New(DefaultConfig(), &fakeUpstream{}, nil, nil, newClock().now)
			if err != nil {
				t.Fatal(err)
			}
			e, reason := c.newEntry(key{name: tt.qname, qtype: qtype, qclass: dns.ClassINET}, resp, time.Time{})
			if resp.String() != before {
				t.Errorf("newEntry modified the upstream reply")
			}
			if tt.wantAnswer == nil {
				if e != nil {
					t.Fatalf("cached %v, want not cached", e.msg.Answer)
				}
				return
			}
			if e == nil {
				t.Fatalf("not cached (%s)", reason)
			}
			var got []string
			for _, rr := range e.msg.Answer {
				got = append(got, rr.Header().Name+"/"+dns.TypeToString[rr.Header().Rrtype])
			}
			if !slices.Equal(got, tt.wantAnswer) || len(e.msg.Ns) != tt.wantNs || len(e.msg.Extra) != tt.wantExtra {
				t.Errorf("kept %v ns %d extra %d, want %v %d %d", got, len(e.msg.Ns), len(e.msg.Extra), tt.wantAnswer, tt.wantNs, tt.wantExtra)
			}
		})
	}
}

// longChain returns n CNAMEs c0 -> c1 -> ... -> cn.
func longChain(n int) []string {
	var out []string
	for i := n - 1; i >= 0; i-- { // reversed: the worst order
		out = append(out, "c"+strconv.Itoa(i)+".example. 300 IN CNAME c"+strconv.Itoa(i+1)+".example.")
	}
	return out
}

// chainOwners is what TestSanitize reports for longChain(n).
func chainOwners(n int) []string {
	var out []string
	for i := n - 1; i >= 0; i-- {
		out = append(out, "c"+strconv.Itoa(i)+".example./CNAME")
	}
	return out
}

// A miss whose flight ends between its cache lookup and its join uses
// the entry that flight stored instead of asking the upstream again.
func TestMissAfterFlightEndedUsesStoredEntry(t *testing.T) {
	up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)}
	c := newTestCache(t, DefaultConfig(), up)
	first := true
	c.missed = func() {
		if !first {
			return
		}
		first = false
		// This caller missed; before it joins, another resolves the name.
		if _, status, _, err := c.Resolve(context.Background(), newQuery("a.example.", dns.TypeA, false, false)); err != nil || status != query.CacheMiss {
			t.Fatalf("inner resolve: status %v err %v", status, err)
		}
	}
	resp, status, _, err := c.Resolve(context.Background(), newQuery("a.example.", dns.TypeA, false, false))
	if err != nil || len(resp.Answer) != 1 {
		t.Fatalf("resolve: %v %v", resp, err)
	}
	if status != query.CacheMiss {
		t.Errorf("status %v, want miss", status)
	}
	if n := up.n.Load(); n != 1 {
		t.Errorf("upstream called %d times, want 1", n)
	}
}

func TestCoalescing(t *testing.T) {
	const n = 100
	release := make(chan struct{})
	up := &fakeUpstream{reply: func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		<-release
		if err := ctx.Err(); err != nil {
			return nil, err // the first caller's cancellation must not reach us
		}
		// TTL 0: not cached, so only coalescing can explain a single call.
		return answerWith(t, dns.RcodeSuccess, []string{"a.example. 0 IN A 192.0.2.1"}, nil)(ctx, m)
	}}
	c := newTestCache(t, DefaultConfig(), up)
	joined := make(chan struct{}, n)
	c.joined = func() { joined <- struct{}{} }

	firstCtx, cancelFirst := context.WithCancel(context.Background())
	defer cancelFirst()
	type result struct {
		resp *dns.Msg
		err  error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := range n {
		ctx := context.Background()
		if i == 0 {
			ctx = firstCtx
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := newQuery("A.example.", dns.TypeA, false, false)
			req.Id = uint16(i)
			resp, _, _, err := c.Resolve(ctx, req)
			results <- result{resp, err}
		}()
		if i == 0 {
			<-joined // the first caller started the flight
			cancelFirst()
		}
	}
	for range n - 1 {
		<-joined
	}
	close(release)
	wg.Wait()
	close(results)

	var ok, canceled int
	for r := range results {
		switch {
		case r.err == nil && len(r.resp.Answer) == 1:
			ok++
		case errors.Is(r.err, context.Canceled):
			canceled++
		default:
			t.Errorf("unexpected result %v %v", r.resp, r.err)
		}
	}
	if got := up.n.Load(); got != 1 {
		t.Errorf("upstream called %d times, want 1", got)
	}
	if ok != n-1 || canceled != 1 {
		t.Errorf("%d answered, %d canceled; want %d and 1", ok, canceled, n-1)
	}
}

func TestPrefetch(t *testing.T) {
	calls := make(chan *dns.Msg, 10)
	release := make(chan struct{}, 10)
	ttl := 100
	up := &fakeUpstream{calls: calls}
	up.reply = func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		if up.n.Load() > 1 {
			<-release
			ttl = 200
		}
		return answerWith(t, dns.RcodeSuccess, []string{"a.example. " + strconv.Itoa(ttl) + " IN A 192.0.2.1"}, nil)(ctx, m)
	}
	c := newTestCache(t, DefaultConfig(), up)
	req := newQuery("a.example.", dns.TypeA, false, false)
	mustResolve(t, c.Cache, req)
	<-calls

	// Two hits, then the entry's last 10%: not popular enough yet.
	mustResolve(t, c.Cache, req)
	mustResolve(t, c.Cache, req)
	c.clock.step(91 * time.Second)
	assertNoCall := func(when string) {
		t.Helper()
		select {
		case m := <-calls:
			t.Fatalf("%s: unexpected upstream call %v", when, m.Question)
		default:
		}
	}
	assertNoCall("before popular")
	// Third hit: popular and close to expiry: prefetch in the background,
	// cached answer right away.
	resp, st := mustResolve(t, c.Cache, req)
	if st != "hit" || resp.Answer[0].Header().Ttl != 9 {
		t.Fatalf("status %s ttl %d, want hit 9", st, resp.Answer[0].Header().Ttl)
	}
	if m := <-calls; m.Question[0].Name != "a.example." {
		t.Fatalf("prefetch asked %v", m.Question)
	}
	// More hits while the prefetch is in flight: no duplicate.
	for range 3 {
		if _, st := mustResolve(t, c.Cache, req); st != "hit" {
			t.Fatalf("status %s during prefetch, want hit", st)
		}
	}
	assertNoCall("during prefetch")
	release <- struct{}{}
	c.Close() // waits for the prefetch to finish
	resp, st = mustResolve(t, c.Cache, req)
	if st != "hit" || resp.Answer[0].Header().Ttl != 200 {
		t.Fatalf("after prefetch: status %s ttl %d, want hit 200", st, resp.Answer[0].Header().Ttl)
	}
	if got := testutil.ToFloat64(c.m.prefetches); got != 1 {
		t.Errorf("prefetches_total %v, want 1", got)
	}
	if got := up.n.Load(); got != 2 {
		t.Errorf("upstream called %d times, want 2", got)
	}
}

func TestPrefetch_disabled(t *testing.T) {
	up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"a.example. 100 IN A 192.0.2.1"}, nil)}
	cfg := DefaultConfig()
	cfg.Prefetch = false
	c := newTestCache(t, cfg, up)
	req := newQuery("a.example.", dns.TypeA, false, false)
	for range 5 {
		mustResolve(t, c.Cache, req)
	}
	c.clock.step(95 * time.Second)
	mustResolve(t, c.Cache, req)
	c.Close()
	if got := up.n.Load(); got != 1 {
		t.Errorf("upstream called %d times, want 1", got)
	}
}

func TestClose_cancels_prefetch(t *testing.T) {
	calls := make(chan *dns.Msg, 2)
	up := &fakeUpstream{calls: calls}
	up.reply = func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		if up.n.Load() == 1 {
			return answerWith(t, dns.RcodeSuccess, []string{"a.example. 100 IN A 192.0.2.1"}, nil)(ctx, m)
		}
		<-ctx.Done() // an upstream that never answers
		return nil, ctx.Err()
	}
	cfg := DefaultConfig()
	cfg.PrefetchHits = 1
	c := newTestCache(t, cfg, up)
	req := newQuery("a.example.", dns.TypeA, false, false)
	mustResolve(t, c.Cache, req)
	<-calls
	c.clock.step(95 * time.Second)
	mustResolve(t, c.Cache, req)
	<-calls
	c.Close() // returns only once the prefetch saw the cancellation
	if _, _, _, err := c.Resolve(context.Background(), newQuery("b.example.", dns.TypeA, false, false)); !errors.Is(err, ErrClosed) {
		t.Errorf("miss after Close: %v, want ErrClosed", err)
	}
}

func TestServeStale(t *testing.T) {
	fail := func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, errUpstream }
	tests := []struct {
		name       string
		serveStale time.Duration
		edns       bool
		after      time.Duration // time after the entry's expiry
		failure    func(context.Context, *dns.Msg) (*dns.Msg, error)
		wantStale  bool
	}{
		{"error_within_window_edns", time.Hour, true, 10 * time.Minute, fail, true},
		{"error_within_window_no_edns", time.Hour, false, 10 * time.Minute, fail, true},
		{"servfail_within_window", time.Hour, true, time.Second, answerWith(t, dns.RcodeServerFailure, nil, nil), true},
		{"beyond_window", time.Hour, true, time.Hour + time.Second, fail, false},
		{"disabled", 0, true, time.Second, fail, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"a.example. 60 IN CNAME b.example.", "b.example. 300 IN A 192.0.2.1"}, nil)}
			cfg := DefaultConfig()
			cfg.ServeStale = tt.serveStale
			c := newTestCache(t, cfg, up)
			req := newQuery("a.example.", dns.TypeA, tt.edns, false)
			mustResolve(t, c.Cache, req)
			up.reply = tt.failure
			c.clock.step(60*time.Second + tt.after)

			resp, st, _, err := c.Resolve(context.Background(), req)
			if !tt.wantStale {
				if st.String() != "miss" || (err == nil && resp.Rcode != dns.RcodeServerFailure) {
					t.Fatalf("status %s err %v resp %v, want a miss failing", st, err, resp)
				}
				if err != nil && !errors.Is(err, errUpstream) {
					t.Errorf("err %v does not wrap the upstream error", err)
				}
				return
			}
			if err != nil || st.String() != "stale" {
				t.Fatalf("status %s err %v, want stale", st, err)
			}
			if got := ttls(resp.Answer); !slices.Equal(got, []uint32{30, 30}) || resp.Rcode != dns.RcodeSuccess {
				t.Errorf("ttls %v rcode %d, want [30 30] NOERROR", got, resp.Rcode)
			}
			opt := resp.IsEdns0()
			if !tt.edns {
				if opt != nil {
					t.Errorf("OPT added for a client without EDNS0")
				}
				return
			}
			if opt == nil || len(opt.Option) != 1 {
				t.Fatalf("want an OPT with one EDE option, got %v", opt)
			}
			if ede, ok := opt.Option[0].(*dns.EDNS0_EDE); !ok || ede.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
				t.Errorf("option %v, want EDE Stale Answer", opt.Option[0])
			}
			if got := testutil.ToFloat64(c.m.stale); got != 1 {
				t.Errorf("stale_total %v, want 1", got)
			}
		})
	}
}

func TestEvictionsAndMetrics(t *testing.T) {
	up := &fakeUpstream{reply: func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetReply(m)
		r.Answer = mustRRs(t, m.Question[0].Name+" 60 IN A 192.0.2.1")
		return r, nil
	}}
	cfg := DefaultConfig()
	cfg.Size = 2
	c := newTestCache(t, cfg, up)
	for _, name := range []string{"a.example.", "b.example.", "c.example."} {
		mustResolve(t, c.Cache, newQuery(name, dns.TypeA, false, false))
	}
	if c.Len() != 2 {
		t.Errorf("Len %d, want 2", c.Len())
	}
	if got := testutil.ToFloat64(c.m.evictions); got != 1 {
		t.Errorf("evictions_total %v, want 1", got)
	}
	if got := testutil.ToFloat64(c.m.entries); got != 2 {
		t.Errorf("entries %v, want 2", got)
	}
	// The oldest (a) went; b is a hit.
	if _, st := mustResolve(t, c.Cache, newQuery("b.example.", dns.TypeA, false, false)); st != "hit" {
		t.Errorf("b: %s, want hit", st)
	}
	c.Purge()
	if c.Len() != 0 || testutil.ToFloat64(c.m.entries) != 0 {
		t.Errorf("after Purge: Len %d", c.Len())
	}
	mfs, err := c.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	want := []string{"dnsvalve_cache_entries", "dnsvalve_cache_evictions_total", "dnsvalve_cache_failure_hits_total", "dnsvalve_cache_hits_total", "dnsvalve_cache_misses_total", "dnsvalve_cache_prefetches_total", "dnsvalve_cache_stale_total"}
	if !slices.Equal(names, want) {
		t.Errorf("metrics %v, want %v", names, want)
	}
}

func TestNew_config(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"zero_uses_defaults", Config{}, false},
		{"defaults", DefaultConfig(), false},
		{"negative_size", Config{Size: -1}, true},
		{"negative_ttl", Config{MinTTL: -time.Second}, true},
		{"min_above_max", Config{MinTTL: 2 * time.Hour, MaxTTL: time.Hour}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.cfg, &fakeUpstream{}, nil, nil, nil)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrConfig) {
					t.Errorf("err %v is not ErrConfig", err)
				}
				return
			}
			c.Close()
			if c.cfg.Size != DefaultSize || c.cfg.MaxTTL != DefaultMaxTTL || c.cfg.NegativeTTL != DefaultNegativeTTL {
				t.Errorf("defaults not applied: %+v", c.cfg)
			}
		})
	}
	if _, err := New(Config{}, nil, nil, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("nil Exchanger: %v", err)
	}
}

func TestResolve_bad_request(t *testing.T) {
	c := newTestCache(t, DefaultConfig(), &fakeUpstream{})
	if _, _, _, err := c.Resolve(context.Background(), new(dns.Msg)); !errors.Is(err, ErrBadRequest) {
		t.Errorf("err %v, want ErrBadRequest", err)
	}
}

// TestStaleClientTimeout checks RFC 8767's client response timer: a miss
// with an entry it may serve stale gets that entry once the timer fires,
// while the exchange goes on and refreshes the entry; an upstream faster
// than the timer, a disabled timer or an entry beyond the stale window
// leave the miss to the upstream.
func TestStaleClientTimeout(t *testing.T) {
	fresh := []string{"a.example. 60 IN CNAME b.example.", "b.example. 300 IN A 192.0.2.9"}
	tests := []struct {
		name      string
		timeout   time.Duration
		after     time.Duration // time after the entry's expiry
		fire      bool          // the timer fires before the upstream answers
		wantTimer bool
		wantState string
	}{
		{"upstream_slower_than_timer", 1800 * time.Millisecond, time.Minute, true, true, "stale"},
		{"upstream_faster_than_timer", 1800 * time.Millisecond, time.Minute, false, true, "miss"},
		{"timer_disabled", 0, time.Minute, false, false, "miss"},
		{"beyond_stale_window", 1800 * time.Millisecond, 2 * time.Hour, false, false, "miss"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"a.example. 60 IN CNAME b.example.", "b.example. 300 IN A 192.0.2.1"}, nil)}
			cfg := DefaultConfig()
			cfg.StaleClientTimeout = tt.timeout
			c := newTestCache(t, cfg, up)
			fired := make(chan time.Time, 1)
			var timers []time.Duration
			c.after = func(d time.Duration) <-chan time.Time {
				timers = append(timers, d)
				if tt.fire {
					fired <- time.Time{}
				}
				return fired
			}
			req := newQuery("a.example.", dns.TypeA, true, false)
			mustResolve(t, c.Cache, req)
			c.clock.step(60*time.Second + tt.after)

			// The refresh blocks until released, so that a fired timer
			// is sure to win.
			release, returned := make(chan struct{}), make(chan struct{})
			answer := answerWith(t, dns.RcodeSuccess, fresh, nil)
			up.reply = func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
				defer close(returned)
				if tt.fire {
					<-release
				}
				return answer(ctx, m)
			}
			resp, st, _, err := c.Resolve(context.Background(), req)
			if err != nil || st.String() != tt.wantState {
				t.Fatalf("status %s err %v, want %s", st, err, tt.wantState)
			}
			if got := len(timers) > 0; got != tt.wantTimer || (got && timers[0] != tt.timeout) {
				t.Errorf("timers started %v, want one of %v: %v", timers, tt.timeout, tt.wantTimer)
			}
			if tt.wantState == "miss" {
				if a, ok := resp.Answer[1].(*dns.A); !ok || a.A.String() != "192.0.2.9" {
					t.Errorf("answer %v, want the upstream's fresh one", resp.Answer)
				}
				return
			}
			if got := ttls(resp.Answer); !slices.Equal(got, []uint32{30, 30}) {
				t.Errorf("stale ttls %v, want [30 30]", got)
			}
			if a, ok := resp.Answer[1].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
				t.Errorf("stale answer %v, want the expired entry's", resp.Answer)
			}
			if got := testutil.ToFloat64(c.m.stale); got != 1 {
				t.Errorf("stale_total %v, want 1", got)
			}
			// The exchange goes on after the stale answer and stores the
			// fresh reply: the next query is a hit on it.
			cl := inFlight(t, c.Cache, req, "the exchange ended with the stale answer; want it to go on")
			close(release)
			<-returned
			<-cl.done
			resp, st2 := mustResolve(t, c.Cache, req)
			if a, ok := resp.Answer[1].(*dns.A); st2 != "hit" || !ok || a.A.String() != "192.0.2.9" {
				t.Errorf("after the refresh: %s %v, want a hit on the fresh answer", st2, resp.Answer)
			}
			if n := up.n.Load(); n != 2 {
				t.Errorf("upstream asked %d times, want 2", n)
			}
		})
	}
}

// TestExchangePanic: an exchange that panics must fail its flight, not
// leave it open: later queries for the name used to wait on it for good.
// Inline (the server's never-cancelled context) the panic goes on up to
// the server, which answers SERVFAIL; on a goroutine of its own it is an
// error, and the process survives.
func TestExchangePanic(t *testing.T) {
	for _, tc := range []struct {
		name   string
		inline bool
	}{{"inline", true}, {"detached", false}} {
		t.Run(tc.name, func(t *testing.T) {
			answer := answerWith(t, dns.RcodeSuccess, []string{"a.example. 300 IN A 192.0.2.1"}, nil)
			var calls atomic.Int32
			up := &fakeUpstream{reply: func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
				if calls.Add(1) == 1 {
					panic("exchanger bug")
				}
				return answer(ctx, m)
			}}
			c := newTestCache(t, DefaultConfig(), up)
			ctx := context.Background()
			if !tc.inline {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			req := newQuery("a.example.", dns.TypeA, false, false)
			func() {
				defer func() {
					if p := recover(); (p != nil) != tc.inline {
						t.Errorf("panic %v reached the caller; want it to only when inline", p)
					}
				}()
				_, _, _, err := c.Resolve(ctx, req)
				if !tc.inline && !errors.Is(err, ErrPanic) {
					t.Errorf("err %v, want ErrPanic", err)
				}
			}()
			resp, st, _, err := c.Resolve(ctx, req)
			if err != nil || st.String() != "miss" || len(resp.Answer) != 1 {
				t.Fatalf("after the panic: status %s err %v resp %v, want a miss answered", st, err, resp)
			}
			if n := calls.Load(); n != 2 {
				t.Errorf("upstream asked %d times, want 2", n)
			}
		})
	}
}

// TestResolveRejectsUnserved: what the server answers itself (other
// opcodes, and the questions query.Unservable names) never reaches the
// upstream through the cache.
func TestResolveRejectsUnserved(t *testing.T) {
	for _, tc := range []struct {
		name   string
		qtype  uint16
		qclass uint16
		opcode int
	}{
		{"axfr", dns.TypeAXFR, dns.ClassINET, dns.OpcodeQuery},
		{"tsig", dns.TypeTSIG, dns.ClassINET, dns.OpcodeQuery},
		{"chaos", dns.TypeTXT, dns.ClassCHAOS, dns.OpcodeQuery},
		{"notify", dns.TypeSOA, dns.ClassINET, dns.OpcodeNotify},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			up := &fakeUpstream{reply: func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
				calls.Add(1)
				r := new(dns.Msg)
				r.SetReply(m)
				return r, nil
			}}
			c := newTestCache(t, DefaultConfig(), up)
			q := newQuery("example.", tc.qtype, false, false)
			q.Question[0].Qclass, q.Opcode = tc.qclass, tc.opcode
			if _, _, _, err := c.Resolve(context.Background(), q); !errors.Is(err, ErrBadRequest) || calls.Load() != 0 {
				t.Errorf("err %v after %d upstream calls, want ErrBadRequest and none", err, calls.Load())
			}
		})
	}
}

// withEDE wraps reply so the upstream's answer carries an OPT with ede.
func withEDE(reply func(context.Context, *dns.Msg) (*dns.Msg, error), ede ...dns.EDNS0_EDE) func(context.Context, *dns.Msg) (*dns.Msg, error) {
	return func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		r, err := reply(ctx, m)
		if err != nil {
			return nil, err
		}
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(1232)
		opt.Option = append(opt.Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		for _, e := range ede {
			opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: e.InfoCode, ExtraText: e.ExtraText})
		}
		r.Extra = append(r.Extra, opt)
		return r, nil
	}
}

// edeOf returns resp's Extended DNS Errors as "code:text", in order.
func edeOf(t *testing.T, resp *dns.Msg) []string {
	t.Helper()
	opt := resp.IsEdns0()
	if opt == nil {
		return nil
	}
	var out []string
	for _, o := range opt.Option {
		e, ok := o.(*dns.EDNS0_EDE)
		if !ok {
			t.Fatalf("option %v in a reply from the cache: only EDEs are kept", o)
		}
		out = append(out, strconv.Itoa(int(e.InfoCode))+":"+e.ExtraText)
	}
	return out
}

// TestUpstreamEDEKept checks that an upstream's Extended DNS Errors go with
// every answer from its cache entry (miss, hit, stale), bounded in number
// and length, and only to clients with EDNS0.
func TestUpstreamEDEKept(t *testing.T) {
	x := strings.Repeat
	nx := answerWith(t, dns.RcodeNameError, nil, []string{"example. 300 IN SOA ns.example. h.example. 1 2 3 4 60"})
	tests := []struct {
		name string
		ede  []dns.EDNS0_EDE
		want []string
	}{
		{"none", nil, nil},
		{"blocked", []dns.EDNS0_EDE{{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: "malware: bad.example"}}, []string{"15:malware: bad.example"}},
		{"three_kept", []dns.EDNS0_EDE{{InfoCode: 15}, {InfoCode: 16}, {InfoCode: 17}, {InfoCode: 18}, {InfoCode: 0}},
			[]string{"15:", "16:", "17:"}},
		// 150 bytes of text in all: the second text is cut inside "é".
		{"text_budget", []dns.EDNS0_EDE{{InfoCode: 15, ExtraText: x("a", 100)}, {InfoCode: 17, ExtraText: x("b", 49) + "é" + x("c", 300)}},
			[]string{"15:" + x("a", 100), "17:" + x("b", 49)}},
		{"invalid_utf8", []dns.EDNS0_EDE{{InfoCode: 15, ExtraText: "bad\xffname"}}, []string{"15:badname"}},
		// How the upstream got the answer is not replayed on hits.
		{"upstream_state_dropped", []dns.EDNS0_EDE{{InfoCode: dns.ExtendedErrorCodeStaleAnswer}, {InfoCode: dns.ExtendedErrorCodeNetworkError},
			{InfoCode: dns.ExtendedErrorCodeNoReachableAuthority}, {InfoCode: dns.ExtendedErrorCodeStaleNXDOMAINAnswer}, {InfoCode: 16, ExtraText: "censored"}},
			[]string{"16:censored"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{reply: withEDE(nx, tt.ede...)}
			c := newTestCache(t, DefaultConfig(), up)
			resp, st := mustResolve(t, c.Cache, newQuery("bad.example.", dns.TypeA, true, false))
			if got := edeOf(t, resp); st != "miss" || !slices.Equal(got, tt.want) {
				t.Fatalf("miss: status %s EDE %q, want miss %q", st, got, tt.want)
			}
			// The reply's options are the caller's.
			if opt := resp.IsEdns0(); opt != nil && len(opt.Option) > 0 {
				opt.Option[0].(*dns.EDNS0_EDE).ExtraText = "changed"
			}
			c.clock.step(10 * time.Second)
			resp, st = mustResolve(t, c.Cache, newQuery("bad.example.", dns.TypeA, true, false))
			if got := edeOf(t, resp); st != "hit" || !slices.Equal(got, tt.want) {
				t.Errorf("hit: status %s EDE %q, want hit %q", st, got, tt.want)
			}
			if resp, _ := mustResolve(t, c.Cache, newQuery("bad.example.", dns.TypeA, false, false)); resp.IsEdns0() != nil {
				t.Errorf("OPT in a reply to a client without EDNS0: %v", resp.IsEdns0())
			}
			up.reply = func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, errUpstream }
			c.clock.step(2 * time.Minute)
			resp, st = mustResolve(t, c.Cache, newQuery("bad.example.", dns.TypeA, true, false))
			want := append([]string{"3:"}, tt.want...)
			if got := edeOf(t, resp); st != "stale" || !slices.Equal(got, want) {
				t.Errorf("stale: status %s EDE %q, want stale %q", st, got, want)
			}
		})
	}
}

// TestFailureCache checks that a failed resolution is remembered for
// FailureTTL (RFC 9520): the same question gets the same failure without
// asking the upstream again (another question does ask), an expired entry
// is served stale at once without the client response timer (RFC 8767's
// failure recheck), and after FailureTTL the upstream is asked again.
func TestFailureCache(t *testing.T) {
	fail := func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, errUpstream }
	good := []string{"a.example. 60 IN A 192.0.2.1"}
	tests := []struct {
		name       string
		failureTTL time.Duration
		cached     bool // an entry was cached before the failure (expired since)
		failure    func(context.Context, *dns.Msg) (*dns.Msg, error)
		wantState  string // of the second query, 1s after the first failed
		wantCalls  int32  // upstream calls after the second query
	}{
		{"error", 5 * time.Second, false, fail, "failure", 1},
		{"servfail", 5 * time.Second, false, answerWith(t, dns.RcodeServerFailure, nil, nil), "failure", 1},
		{"stale_at_once", 5 * time.Second, true, fail, "stale", 2},
		{"disabled", 0, false, fail, "miss", 2},
		// Not the name's failures: a local limit, an exchange cancelled
		// by Close.
		{"transient", 5 * time.Second, false, func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, errLocalLimit }, "miss", 2},
		{"cancelled", 5 * time.Second, false, func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, context.Canceled }, "miss", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, good, nil)}
			cfg := DefaultConfig()
			cfg.FailureTTL = tt.failureTTL
			c := newTestCache(t, cfg, up)
			var timers int
			c.after = func(d time.Duration) <-chan time.Time { timers++; return nil }
			req := newQuery("a.example.", dns.TypeA, true, false)
			if tt.cached {
				mustResolve(t, c.Cache, req)
				c.clock.step(61 * time.Second)
			}
			up.reply = tt.failure
			c.Resolve(context.Background(), req)
			calls, timersBefore := up.n.Load(), timers

			c.clock.step(time.Second)
			resp, st, _, err := c.Resolve(context.Background(), req)
			if st.String() != tt.wantState {
				t.Fatalf("second query: status %q (err %v), want %q", st, err, tt.wantState)
			}
			if got := up.n.Load(); got != tt.wantCalls {
				t.Errorf("upstream calls %d (%d before the second query), want %d", got, calls, tt.wantCalls)
			}
			switch tt.name {
			case "error":
				var cached *CachedError
				if !errors.Is(err, errUpstream) || !errors.As(err, &cached) || cached.Age != time.Second || resp != nil {
					t.Errorf("remembered failure: resp %v err %v, want a CachedError of the upstream error, 1s old", resp, err)
				}
			case "servfail":
				if err != nil || resp.Rcode != dns.RcodeServerFailure || resp.Id != req.Id {
					t.Errorf("remembered SERVFAIL: resp %v err %v", resp, err)
				}
			case "stale_at_once":
				if err != nil || timers != timersBefore || len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != 30 {
					t.Errorf("stale: resp %v err %v, timers started %d; want a stale answer without a timer", resp, err, timers-timersBefore)
				}
			}
			if tt.wantState == "miss" {
				return
			}
			if got := testutil.ToFloat64(c.m.failureHits); got != map[bool]float64{true: 0, false: 1}[tt.cached] {
				t.Errorf("failure_hits_total %v", got)
			}
			// Another question is asked for.
			n := up.n.Load()
			c.Resolve(context.Background(), newQuery("a.example.", dns.TypeAAAA, true, false))
			if up.n.Load() != n+1 {
				t.Error("AAAA of the name not asked for while its A failure is remembered")
			}
			// Past FailureTTL the upstream is asked again, and a success
			// forgets the failure.
			up.reply = answerWith(t, dns.RcodeSuccess, good, nil)
			c.clock.step(tt.failureTTL)
			if _, st := mustResolve(t, c.Cache, req); st != "miss" || up.n.Load() != n+2 {
				t.Errorf("after failure_ttl: status %s, upstream calls %d, want a miss asking again", st, up.n.Load()-n-1)
			}
			if _, ok := c.failures.Peek(makeKey(req)); ok {
				t.Error("failure still remembered after a success")
			}
		})
	}
}

// errLocalLimit is a Transient error, as upstream.ErrOverloaded is.
var errLocalLimit error = localLimit{}

type localLimit struct{}

func (localLimit) Error() string   { return "too many concurrent upstream queries" }
func (localLimit) Transient() bool { return true }

// TestFailuresForgotten checks that Purge and ForgetFailures drop the
// remembered failures (a reload that changes the upstreams).
func TestFailuresForgotten(t *testing.T) {
	for _, tc := range []struct {
		name   string
		forget func(*Cache)
	}{{"purge", (*Cache).Purge}, {"forget_failures", (*Cache).ForgetFailures}} {
		t.Run(tc.name, func(t *testing.T) {
			up := &fakeUpstream{reply: func(context.Context, *dns.Msg) (*dns.Msg, error) { return nil, errUpstream }}
			c := newTestCache(t, DefaultConfig(), up)
			req := newQuery("a.example.", dns.TypeA, false, false)
			c.Resolve(context.Background(), req)
			if _, st, _, _ := c.Resolve(context.Background(), req); st != query.CacheFailure || up.n.Load() != 1 {
				t.Fatalf("second query: status %s, upstream calls %d; want a remembered failure", st, up.n.Load())
			}
			tc.forget(c.Cache)
			if _, st, _, _ := c.Resolve(context.Background(), req); st != query.CacheMiss || up.n.Load() != 2 {
				t.Errorf("after %s: status %s, upstream calls %d; want the upstream asked again", tc.name, st, up.n.Load())
			}
		})
	}
}

// TestForgetDuringFlight: an exchange in flight when the cache is purged
// (or its failures forgotten, a reload) answers its waiters but keeps
// nothing, and a query after the purge starts its own exchange instead of
// joining the old one.
func TestForgetDuringFlight(t *testing.T) {
	for _, tc := range []struct {
		name      string
		forget    func(*Cache)
		fail      bool   // the old exchange fails
		wantFirst string // what the query from before the purge gets
	}{
		// Its own exchange's answer, which the cache does not keep.
		{"purge_answer", (*Cache).Purge, false, "miss: 192.0.2.1"},
		// Its exchange failed; the answer stored meanwhile by the new one.
		{"forget_failure", (*Cache).ForgetFailures, true, "hit: 192.0.2.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each exchange takes the next plan the test hands out, and
			// answers when its gate opens.
			type plan struct {
				gate chan struct{}
				ip   string // "": fail
			}
			plans := make(chan plan) // unbuffered: a plan goes to the one exchange waiting for it
			up := &fakeUpstream{calls: make(chan *dns.Msg, 3)}
			up.reply = func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
				var p plan
				select { // Close (the test's cleanup) cancels ctx
				case p = <-plans:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				select {
				case <-p.gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
				if p.ip == "" {
					return nil, errUpstream
				}
				return answerWith(t, dns.RcodeSuccess, []string{"a.example. 60 IN A " + p.ip}, nil)(ctx, m)
			}
			c := newTestCache(t, DefaultConfig(), up)
			req := newQuery("a.example.", dns.TypeA, false, false)
			first, second := make(chan string, 1), make(chan string, 1)
			resolve := func(out chan<- string) {
				resp, st, _, err := c.Resolve(context.Background(), req)
				if err != nil {
					out <- st.String() + ": " + err.Error()
					return
				}
				out <- st.String() + ": " + resp.Answer[0].(*dns.A).A.String()
			}
			old, fresh := plan{make(chan struct{}), "192.0.2.1"}, plan{make(chan struct{}), "192.0.2.2"}
			if tc.fail {
				old.ip = ""
			}
			// entered waits for the next exchange to reach the upstream.
			entered := func(what string) {
				t.Helper()
				select {
				case <-up.calls:
				case <-time.After(10 * time.Second): // a guard, not a synchronisation
					t.Fatalf("%s: no exchange reached the upstream", what)
				}
			}
			go resolve(first)
			entered("first query")
			plans <- old
			tc.forget(c.Cache)
			go resolve(second)
			entered("query after the purge (joined the old exchange?)")
			plans <- fresh
			close(fresh.gate)
			if got := <-second; got != "miss: 192.0.2.2" {
				t.Errorf("query after the purge: %q, want the new exchange's answer", got)
			}
			close(old.gate)
			if got := <-first; got != tc.wantFirst {
				t.Errorf("query before the purge: %q, want %q", got, tc.wantFirst)
			}
			resp, st := mustResolve(t, c.Cache, req)
			if st != "hit" || up.n.Load() != 2 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
				t.Errorf("then: %s %v after %d upstream calls, want a hit on the new exchange's answer", st, resp.Answer, up.n.Load())
			}
			if _, ok := c.failures.Peek(makeKey(req)); ok {
				t.Error("the old exchange's failure was remembered")
			}
		})
	}
}

// TestResolveAt: a cache on time.Now (New's now nil) takes the caller's
// time for the lookup: a time 100 s on makes a hit aged 100 s, one past
// the entry's expiry a miss. A cache with its own clock, or a zero time,
// reads its clock.
func TestResolveAt(t *testing.T) {
	up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"example.com. 300 IN A 192.0.2.1"}, nil)}
	tests := []struct {
		name       string
		own        bool          // the cache has a clock of its own
		at         time.Duration // ResolveAt's time, from now; -1: zero time
		wantStatus query.CacheStatus
		wantTTL    uint32
	}{
		{"caller's time, fresh", false, 100 * time.Second, query.CacheHit, 200},
		{"caller's time, past expiry", false, 301 * time.Second, query.CacheMiss, 300},
		{"zero time reads the clock", false, -1, query.CacheHit, 300},
		{"own clock ignores the caller's time", true, 301 * time.Second, query.CacheHit, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var clk func() time.Time
			if tt.own {
				clk = time.Now
			}
			c, err := New(Config{Size: 16}, up, nil, nil, clk)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			mustResolve(t, c, newQuery("example.com.", dns.TypeA, false, false))
			at := time.Time{}
			if tt.at >= 0 {
				at = time.Now().Add(tt.at)
			}
			resp, st, _, err := c.ResolveAt(context.Background(), newQuery("example.com.", dns.TypeA, false, false), at)
			if err != nil {
				t.Fatal(err)
			}
			if st != tt.wantStatus {
				t.Errorf("status = %v, want %v", st, tt.wantStatus)
			}
			if got := ttls(resp.Answer); len(got) != 1 || got[0] != tt.wantTTL {
				t.Errorf("TTLs = %v, want [%d]", got, tt.wantTTL)
			}
		})
	}
}

// TestSetUpstreamTimeout: the exchange's context ends UpstreamTimeout after
// it starts, and SetUpstreamTimeout changes that for later exchanges (a
// value of 0 or less is ignored).
func TestSetUpstreamTimeout(t *testing.T) {
	var left time.Duration // the last exchange's time to its deadline
	up := ExchangerFunc(func(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			t.Fatal("exchange without a deadline")
		}
		left = time.Until(dl)
		r := new(dns.Msg)
		r.SetReply(m)
		return r, "fake", nil
	})
	c, err := New(Config{Size: 16, UpstreamTimeout: 7 * time.Second}, up, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	for i, tt := range []struct {
		set  time.Duration // 0: not called
		want time.Duration
	}{
		{0, 7 * time.Second},
		{20 * time.Second, 20 * time.Second},
		{-1, 20 * time.Second},
		{3 * time.Second, 3 * time.Second},
	} {
		if tt.set != 0 {
			c.SetUpstreamTimeout(tt.set)
		}
		mustResolve(t, c, newQuery(fmt.Sprintf("q%d.example.", i), dns.TypeA, false, false))
		// Within a second below: the exchange starts a moment after the
		// deadline was set.
		if left > tt.want || left < tt.want-time.Second {
			t.Errorf("step %d: exchange had %v left, want about %v", i, left, tt.want)
		}
	}
}

// TestCopyClamped: the stored copy of records equals the original but for
// the clamped TTL and the owner spelled as the key, shares no memory with
// the upstream's reply (mutating that afterwards changes nothing), and
// keeps A and AAAA records, however many, in slabs.
func TestCopyClamped(t *testing.T) {
	v4in16 := &dns.A{Hdr: dns.RR_Header{Name: "A.Example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 30}, A: net.IPv4(192, 0, 2, 9)} // 16-byte form
	tests := []struct {
		name  string
		rrs   []dns.RR
		qname string
		want  []string
	}{
		{"a_and_aaaa", append(mustRRs(t, "a.example. 300 IN A 192.0.2.1", "A.EXAMPLE. 5 IN AAAA 2001:db8::1", "a.example. 90000 IN A 192.0.2.2"), v4in16), "a.example.",
			[]string{"a.example.\t300\tIN\tA\t192.0.2.1", "a.example.\t10\tIN\tAAAA\t2001:db8::1", "a.example.\t3600\tIN\tA\t192.0.2.2", "a.example.\t30\tIN\tA\t192.0.2.9"}},
		{"other_types_and_other_owners", mustRRs(t, "a.example. 300 IN CNAME b.example.", "B.example. 300 IN A 192.0.2.3", "b.example. 300 IN TXT \"t\""), "a.example.",
			[]string{"a.example.\t300\tIN\tCNAME\tb.example.", "B.example.\t300\tIN\tA\t192.0.2.3", "b.example.\t300\tIN\tTXT\t\"t\""}},
		{"no_qname", mustRRs(t, "A.example. 300 IN A 192.0.2.4"), "",
			[]string{"A.example.\t300\tIN\tA\t192.0.2.4"}},
		{"empty", nil, "a.example.", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := copyClamped(tc.rrs, ttlRange{lo: 10, hi: 3600}, tc.qname)
			var s []string
			for _, rr := range got {
				s = append(s, rr.String())
			}
			if !slices.Equal(s, tc.want) {
				t.Fatalf("copy\n%q\nwant\n%q", s, tc.want)
			}
			for _, rr := range tc.rrs { // the upstream reply is reused or mutated
				switch v := rr.(type) {
				case *dns.A:
					v.A[len(v.A)-1] = 66
				case *dns.AAAA:
					v.AAAA[15] = 66
				}
				rr.Header().Ttl = 7
			}
			for i, rr := range got {
				if rr.String() != s[i] {
					t.Errorf("record %d changed with the upstream's: %s, was %s", i, rr, s[i])
				}
			}
			if tc.qname != "" {
				for _, rr := range got {
					if h := rr.Header(); strings.EqualFold(h.Name, tc.qname) && unsafe.StringData(h.Name) != unsafe.StringData(tc.qname) {
						t.Errorf("owner %q is a string of its own, want the key's", h.Name)
					}
				}
			}
		})
	}
}
