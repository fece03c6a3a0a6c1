package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/upstream"
)

func TestServerForwards(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{handler: byType(t, map[uint16][]string{
		dns.TypeA:    {"@ 300 IN A 192.0.2.10", "@ 300 IN A 192.0.2.11"},
		dns.TypeAAAA: {"@ 300 IN AAAA 2001:db8::10"},
		dns.TypeTXT:  {`@ 300 IN TXT "v=spf1 -all" "second string"`},
	})})
	cases := []struct {
		name    string
		network string
		qname   string
		qtype   uint16
		want    []string // rdata, in order
	}{
		{"a_udp", "udp", "www.example.com.", dns.TypeA, []string{"192.0.2.10", "192.0.2.11"}},
		{"a_tcp", "tcp", "tcp.example.com.", dns.TypeA, []string{"192.0.2.10", "192.0.2.11"}},
		{"aaaa_udp_mixed_case", "udp", "WwW.ExAmPlE.CoM.", dns.TypeAAAA, []string{"2001:db8::10"}},
		{"txt_tcp_mixed_case", "tcp", "Mail.Example.ORG.", dns.TypeTXT, []string{`"v=spf1 -all" "second string"`}},
		{"nodata_mx", "udp", "nomx.example.com.", dns.TypeMX, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := msg(c.qname, c.qtype, 0, false)
			m.Id = 0x1d2e
			r := h.exchange(t, c.network, m)
			wantRcode(t, r, dns.RcodeSuccess)
			if r.Id != m.Id {
				t.Errorf("ID = %#x, want %#x", r.Id, m.Id)
			}
			if len(r.Question) != 1 || r.Question[0].Name != c.qname || r.Question[0].Qtype != c.qtype {
				t.Errorf("question = %v, want %s exactly as asked", r.Question, c.qname)
			}
			if !r.RecursionAvailable || !r.RecursionDesired || !r.Response {
				t.Errorf("RA=%v RD=%v QR=%v, want all set", r.RecursionAvailable, r.RecursionDesired, r.Response)
			}
			if len(r.Answer) != len(c.want) {
				t.Fatalf("answer = %v, want %d records", r.Answer, len(c.want))
			}
			for i, rr := range r.Answer {
				if !strings.EqualFold(rr.Header().Name, c.qname) || rr.Header().Rrtype != c.qtype {
					t.Errorf("answer[%d] = %v, want owner %s type %s", i, rr, c.qname, dns.TypeToString[c.qtype])
				}
				if got := strings.TrimPrefix(rr.String(), rr.Header().String()); got != c.want[i] {
					t.Errorf("answer[%d] rdata = %q, want %q", i, got, c.want[i])
				}
			}
			if c.want == nil && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("NODATA authority = %v, want the SOA", r.Ns)
			}
		})
	}
}

func TestServerCacheTTL(t *testing.T) {
	t.Parallel()
	soa := "@ 3600 IN SOA ns.example. host.example. 1 7200 900 1209600 600"
	cases := []struct {
		name     string
		cfg      cache.Config
		rcode    int
		ans, ns  []string
		step     time.Duration
		wantTTL0 uint32 // TTL of the first answer (or of the SOA for negative answers)
		wantTTL1 uint32 // after step, from the cache
	}{
		{"decrement", cache.Config{}, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1"}, nil, 100 * time.Second, 300, 200},
		{"decrement_to_one", cache.Config{}, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1"}, nil, 299 * time.Second, 300, 1},
		{"min_ttl_clamp", cache.Config{MinTTL: time.Minute}, dns.RcodeSuccess, []string{"@ 5 IN A 192.0.2.1"}, nil, 10 * time.Second, 60, 50},
		{"max_ttl_clamp", cache.Config{MaxTTL: time.Hour}, dns.RcodeSuccess, []string{"@ 86400 IN A 192.0.2.1"}, nil, 1800 * time.Second, 3600, 1800},
		{"negative_nxdomain", cache.Config{}, dns.RcodeNameError, nil, []string{soa}, 100 * time.Second, 600, 500},
		{"negative_nodata", cache.Config{}, dns.RcodeSuccess, nil, []string{soa}, 60 * time.Second, 600, 540},
		{"negative_ttl_cap", cache.Config{NegativeTTL: 2 * time.Minute}, dns.RcodeNameError, nil, []string{soa}, 20 * time.Second, 120, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{cache: c.cfg, handler: answer(t, c.rcode, c.ans, c.ns)})
			ttl := func(r *dns.Msg) uint32 {
				t.Helper()
				wantRcode(t, r, c.rcode)
				if len(c.ans) > 0 {
					if len(r.Answer) != 1 {
						t.Fatalf("answer = %v, want 1 record", r.Answer)
					}
					return r.Answer[0].Header().Ttl
				}
				if len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA {
					t.Fatalf("authority = %v, want the SOA", r.Ns)
				}
				return r.Ns[0].Header().Ttl
			}
			if got := ttl(h.exchange(t, "udp", msg("ttl.example.", dns.TypeA, 0, false))); got != c.wantTTL0 {
				t.Errorf("first TTL = %d, want %d", got, c.wantTTL0)
			}
			h.clock.step(c.step)
			if got := ttl(h.exchange(t, "tcp", msg("TTL.example.", dns.TypeA, 0, false))); got != c.wantTTL1 {
				t.Errorf("TTL after %v = %d, want %d", c.step, got, c.wantTTL1)
			}
			if n := h.up.hits.Load(); n != 1 {
				t.Errorf("upstream asked %d times, want 1 (second answer from the cache)", n)
			}
			// Past expiry the next query goes upstream again.
			h.clock.step(time.Duration(c.wantTTL1) * time.Second)
			ttl(h.exchange(t, "udp", msg("ttl.example.", dns.TypeA, 0, false)))
			if n := h.up.hits.Load(); n != 2 {
				t.Errorf("after expiry upstream asked %d times, want 2", n)
			}
		})
	}
}

func TestServerEDNS(t *testing.T) {
	t.Parallel()
	// The upstream adds options that must not reach clients: NSID, a
	// cookie and padding.
	h := newHarness(t, harnessConfig{handler: func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		ttl := "300"
		if strings.HasPrefix(r.Question[0].Name, "zero.") {
			ttl = "0" // uncacheable: passed through
		}
		rr, _ := dns.NewRR(r.Question[0].Name + " " + ttl + " IN A 192.0.2.7")
		m.Answer = []dns.RR{rr}
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(4096)
		if ro := r.IsEdns0(); ro != nil && ro.Do() {
			opt.SetDo()
		}
		opt.Option = []dns.EDNS0{
			&dns.EDNS0_NSID{Code: dns.EDNS0NSID, Nsid: "6e73312e7570"},
			&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708a1a2a3a4a5a6a7a8"},
			&dns.EDNS0_PADDING{Padding: make([]byte, 16)},
		}
		m.Extra = append(m.Extra, opt)
		_ = w.WriteMsg(m)
	}})
	cases := []struct {
		name    string
		qname   string
		network string
		bufsize uint16
		do      bool
	}{
		{"no_edns_udp", "plain.example.", "udp", 0, false},
		{"no_edns_tcp", "plain-tcp.example.", "tcp", 0, false},
		{"edns_4096", "big.example.", "udp", 4096, false},
		{"edns_do", "do.example.", "udp", 1232, true},
		{"edns_do_tcp", "do-tcp.example.", "tcp", 1232, true},
		{"edns_small_bufsize", "small.example.", "udp", 100, false},
		{"passthrough_no_edns", "zero.a.example.", "udp", 0, false},
		{"passthrough_edns_do", "zero.b.example.", "udp", 1232, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for round := range 2 { // miss, then hit (or a second passthrough)
				r := h.exchange(t, c.network, msg(c.qname, dns.TypeA, c.bufsize, c.do))
				wantRcode(t, r, dns.RcodeSuccess)
				opt := r.IsEdns0()
				if c.bufsize == 0 {
					if opt != nil {
						t.Fatalf("round %d: client without EDNS0 got OPT %v", round, opt)
					}
					continue
				}
				if opt == nil {
					t.Fatalf("round %d: EDNS0 client got no OPT\n%v", round, r)
				}
				if opt.UDPSize() != resolver.AdvertisedUDPSize || opt.Do() != c.do || opt.Version() != 0 {
					t.Errorf("round %d: OPT size %d DO %v version %d, want %d, %v, 0", round, opt.UDPSize(), opt.Do(), opt.Version(), resolver.AdvertisedUDPSize, c.do)
				}
				if len(opt.Option) != 0 {
					t.Errorf("round %d: upstream options passed on: %v", round, opt.Option)
				}
				n := 0
				for _, rr := range r.Extra {
					if rr.Header().Rrtype == dns.TypeOPT {
						n++
					}
				}
				if n != 1 {
					t.Errorf("round %d: %d OPT records, want 1", round, n)
				}
			}
		})
	}
}

func TestServerTruncation(t *testing.T) {
	t.Parallel()
	const n = 100 // about 1.6 KB: bigger than 1232
	h := newHarness(t, harnessConfig{handler: answer(t, dns.RcodeSuccess, manyA(n), nil)})
	// Prime the cache over TCP: the resolver's upstream got the full
	// answer by retrying the truncated UDP reply over TCP.
	if r := h.exchange(t, "tcp", msg("big.example.", dns.TypeA, 0, false)); len(r.Answer) != n {
		t.Fatalf("TCP answer has %d records, want %d", len(r.Answer), n)
	}
	cases := []struct {
		name    string
		bufsize uint16 // 0: no EDNS0
		limit   int
	}{
		{"no_edns_512", 0, 512},
		{"edns_512", 512, 512},
		{"edns_below_512_means_512", 200, 512},
		{"edns_1232", 1232, 1232},
		{"edns_1400", 1400, 1400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			q := msg("Big.Example.", dns.TypeA, c.bufsize, false)
			wire, err := q.Pack()
			if err != nil {
				t.Fatal(err)
			}
			raw := rawUDP(t, h.addr, wire, 10*time.Second)
			if raw == nil {
				t.Fatal("no reply")
			}
			if len(raw) > c.limit {
				t.Errorf("reply is %d bytes, client can take %d", len(raw), c.limit)
			}
			r := new(dns.Msg)
			if err := r.Unpack(raw); err != nil {
				t.Fatalf("unpack reply: %v", err)
			}
			if !r.Truncated {
				t.Errorf("TC not set on a partial answer (%d of %d records)", len(r.Answer), n)
			}
			if len(r.Answer) >= n {
				t.Errorf("%d records in a %d-byte reply", len(r.Answer), len(raw))
			}
			if r.Id != q.Id || r.Question[0].Name != "Big.Example." {
				t.Errorf("id %#x question %v, want the client's", r.Id, r.Question)
			}
			if (r.IsEdns0() != nil) != (c.bufsize != 0) {
				t.Errorf("OPT present = %v, client sent EDNS0 = %v", r.IsEdns0() != nil, c.bufsize != 0)
			}
		})
	}
	t.Run("tcp_whole_answer", func(t *testing.T) {
		t.Parallel()
		r := h.exchange(t, "tcp", msg("big.example.", dns.TypeA, 1232, false))
		if r.Truncated || len(r.Answer) != n {
			t.Errorf("TCP: TC=%v with %d records, want the whole %d", r.Truncated, len(r.Answer), n)
		}
	})
	t.Run("udp_small_answer_not_truncated", func(t *testing.T) {
		t.Parallel()
		h2 := newHarness(t, harnessConfig{handler: answer(t, dns.RcodeSuccess, manyA(20), nil)})
		r := h2.exchange(t, "udp", msg("twenty.example.", dns.TypeA, 0, false))
		if r.Truncated || len(r.Answer) != 20 {
			t.Errorf("TC=%v with %d records, want all 20 untruncated", r.Truncated, len(r.Answer))
		}
	})
}

func TestServerMalformed(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{})
	pack := func(m *dns.Msg) []byte {
		t.Helper()
		b, err := m.Pack()
		if err != nil {
			t.Fatalf("pack: %v", err)
		}
		return b
	}
	withOpcode := func(op int) []byte {
		m := msg("example.", dns.TypeSOA, 0, false)
		m.Opcode = op
		return pack(m)
	}
	zeroQ := msg("example.", dns.TypeA, 0, false)
	zeroQ.Question = nil
	zeroQEDNS := msg("example.", dns.TypeA, 1232, false)
	zeroQEDNS.Question = nil
	twoQ := msg("a.example.", dns.TypeA, 0, false)
	twoQ.Question = append(twoQ.Question, dns.Question{Name: "b.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	badVers := msg("example.", dns.TypeA, 1232, true)
	badVers.IsEdns0().SetVersion(1)
	resp := msg("example.", dns.TypeA, 0, false)
	resp.Response = true
	hugeCounts := pack(msg("example.", dns.TypeA, 0, false))
	hugeCounts[7] = 200 // ANCOUNT 200 with no answers following

	cases := []struct {
		name      string
		wire      []byte
		wantRcode int // -1: no reply; -2: no reply or any reply (garbage)
		wantQ     int // questions in the reply
	}{
		{"zero_questions", pack(zeroQ), dns.RcodeFormatError, 0},
		{"zero_questions_edns", pack(zeroQEDNS), dns.RcodeFormatError, 0},
		{"two_questions", pack(twoQ), dns.RcodeFormatError, 0},
		{"opcode_update", withOpcode(dns.OpcodeUpdate), dns.RcodeNotImplemented, 1},
		{"opcode_notify", withOpcode(dns.OpcodeNotify), dns.RcodeNotImplemented, 1},
		{"opcode_status", withOpcode(dns.OpcodeStatus), dns.RcodeNotImplemented, 1},
		{"opcode_iquery", withOpcode(dns.OpcodeIQuery), dns.RcodeNotImplemented, 1},
		{"edns_version_1", pack(badVers), dns.RcodeBadVers, 1},
		{"response_ignored", pack(resp), -1, 0},
		{"absurd_counts", hugeCounts, dns.RcodeFormatError, 0},
		{"short_header", []byte{0xbe, 0xef, 0x01}, -1, 0},
		{"garbage_ascii", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), -2, 0},
		{"garbage_truncated_question", append(pack(msg("example.", dns.TypeA, 0, false))[:14], 0xff, 0xff), -2, 0},
		{"garbage_zeros", make([]byte, 64), -2, 0},
		{"garbage_ones", []byte(strings.Repeat("\xff", 40)), -2, 0},
		{"compression_loop", []byte{0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01}, -2, 0},
	}
	t.Run("malformed", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				checkMalformed(t, h.addr, c.wire, c.wantRcode, c.wantQ)
			})
		}
	})
	// After the parallel cases above: the server still answers, and none of
	// them reached the upstream.
	wantRcode(t, h.exchange(t, "udp", msg("after.example.", dns.TypeA, 0, false)), dns.RcodeSuccess)
	if n := h.up.hits.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want only the final good query", n)
	}
	for _, m := range []struct {
		reason string
		min    float64
	}{{"response", 1}, {"counts", 1}, {"unpack", 2}} {
		// counts: absurd_counts. garbage_ascii's header reads as opcode
		// 10, which is answered NOTIMP whatever its counts.
		if got := testutil.ToFloat64(h.metrics.Malformed.WithLabelValues(m.reason)); got < m.min {
			t.Errorf("malformed_total{reason=%q} = %v, want at least %v", m.reason, got, m.min)
		}
	}
}

// TestServerOpcodeNotImplemented: every opcode but QUERY is answered
// NOTIMP, over UDP and TCP, whatever its sections hold. A DNS UPDATE
// (RFC 2136) carries its updates in the authority section: with more
// than one it used to be answered FORMERR, the limit on section counts
// being applied before the opcode was looked at. A QUERY with such
// counts is still FORMERR.
func TestServerOpcodeNotImplemented(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{})
	rrs := func(ss ...string) []dns.RR {
		var out []dns.RR
		for _, s := range ss {
			rr, err := dns.NewRR(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, rr)
		}
		return out
	}
	// As nsupdate's "update delete host.example.com A" then "update add
	// host.example.com 300 A 192.0.2.5", with prereqs "yxdomain" names.
	update := func(prereqs []string, updates int) *dns.Msg {
		m := new(dns.Msg)
		m.SetUpdate("example.com.")
		m.Id = 0xbeef
		var used []dns.RR
		for _, n := range prereqs {
			used = append(used, &dns.ANY{Hdr: dns.RR_Header{Name: n}})
		}
		if used != nil {
			m.NameUsed(used)
		}
		add := rrs("host.example.com. 300 IN A 192.0.2.5")
		if updates > 1 {
			m.RemoveRRset(add)
		}
		m.Insert(add)
		return m
	}
	queryTwoNs := msg("example.com.", dns.TypeA, 0, false)
	queryTwoNs.Ns = rrs("example.com. 300 IN NS a.example.", "example.com. 300 IN NS b.example.")
	notify := msg("example.com.", dns.TypeSOA, 0, false)
	notify.Opcode = dns.OpcodeNotify
	notify.Answer = rrs("example.com. 300 IN SOA ns.example.com. h.example.com. 1 7200 900 1209600 300")
	cases := []struct {
		name      string
		m         *dns.Msg
		wantRcode int
	}{
		{"update_one_rr", update(nil, 1), dns.RcodeNotImplemented},
		{"update_two_rrs", update(nil, 2), dns.RcodeNotImplemented},
		{"update_prereqs_and_rrs", update([]string{"a.example.com.", "b.example.com."}, 2), dns.RcodeNotImplemented},
		{"notify_with_soa", notify, dns.RcodeNotImplemented},
		{"query_two_ns_rrs", queryTwoNs, dns.RcodeFormatError},
	}
	for _, c := range cases {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(c.name+"_"+network, func(t *testing.T) {
				t.Parallel()
				r, err := tryExchangeTimeout(network, h.addr, c.m, 5*time.Second)
				if err != nil {
					t.Fatalf("no reply: %v", err)
				}
				wantRcode(t, r, c.wantRcode)
				if r.Id != c.m.Id || r.Opcode != c.m.Opcode {
					t.Errorf("reply id %#x opcode %d, want %#x %d", r.Id, r.Opcode, c.m.Id, c.m.Opcode)
				}
				if len(r.Answer)+len(r.Ns) != 0 {
					t.Errorf("records in the reply: %v", r)
				}
			})
		}
	}
	if n := h.up.hits.Load(); n != 0 {
		t.Errorf("upstream asked %d times, want 0", n)
	}
}

// checkMalformed sends wire over UDP and checks the reply: wantRcode -1
// means no reply, -2 no reply or a harmless one (garbage).
func checkMalformed(t *testing.T, addr string, wire []byte, rcode, questions int) {
	t.Helper()
	wait := 10 * time.Second
	if rcode < 0 {
		wait = noReplyWait
	}
	raw := rawUDP(t, addr, wire, wait)
	if len(raw) > len(wire) {
		t.Errorf("reply of %d bytes to a %d-byte malformed query (amplification)", len(raw), len(wire))
	}
	switch {
	case rcode == -1:
		if raw != nil {
			t.Fatalf("got a %d-byte reply, want none", len(raw))
		}
		return
	case rcode == -2:
		if raw != nil {
			r := new(dns.Msg)
			if err := r.Unpack(raw); err == nil && r.Rcode == dns.RcodeSuccess && len(r.Answer) > 0 {
				t.Errorf("garbage got an answer: %v", r)
			}
		}
		return
	}
	if raw == nil {
		t.Fatal("no reply")
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	wantRcode(t, r, rcode)
	if !r.Response || r.Id != 0xbeef {
		t.Errorf("QR=%v id=%#x, want a reply to 0xbeef", r.Response, r.Id)
	}
	if len(r.Question) != questions || len(r.Answer) != 0 || len(r.Ns) != 0 {
		t.Errorf("reply sections: %d questions (want %d), %d answers, %d authority", len(r.Question), questions, len(r.Answer), len(r.Ns))
	}
	if rcode == dns.RcodeBadVers {
		if opt := r.IsEdns0(); opt == nil || opt.Version() != 0 {
			t.Errorf("BADVERS reply OPT = %v, want one with version 0", opt)
		}
	}
}

// panicOn is a Middleware that panics for one name.
func panicOn(name string) resolver.Middleware {
	return func(next resolver.Handler) resolver.Handler {
		return resolver.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			if strings.EqualFold(req.Question().Name, name) {
				panic("boom for " + name)
			}
			return next.ServeDNS(ctx, req)
		})
	}
}

func TestServerPanicRecovery(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{inner: []resolver.Middleware{panicOn("boom.example.")}})
	cases := []struct {
		name    string
		network string
		bufsize uint16
	}{
		{"udp_edns", "udp", 1232},
		{"tcp_edns", "tcp", 1232},
		{"udp_no_edns", "udp", 0},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.exchange(t, c.network, msg("boom.example.", dns.TypeA, c.bufsize, false))
			wantRcode(t, r, dns.RcodeServerFailure)
			if c.bufsize > 0 {
				wantEDE(t, r, dns.ExtendedErrorCodeOther)
			} else if r.IsEdns0() != nil {
				t.Errorf("client without EDNS0 got an OPT: %v", r.IsEdns0())
			}
			if got := testutil.ToFloat64(h.metrics.Panics); got != float64(i+1) {
				t.Errorf("panics_total = %v, want %d", got, i+1)
			}
			o := h.obs.next(t)
			if o.Info.Reason != "panic" || o.Rcode != dns.RcodeServerFailure {
				t.Errorf("observed reason %q rcode %d, want panic SERVFAIL", o.Info.Reason, o.Rcode)
			}
			// The server keeps answering.
			wantRcode(t, h.exchange(t, c.network, msg("fine.example.", dns.TypeA, c.bufsize, false)), dns.RcodeSuccess)
			h.obs.next(t)
		})
	}
}

// nilReply is a stage that breaks the Handler contract by returning
// neither a message nor an error.
func nilReply(name string) resolver.Middleware {
	return func(next resolver.Handler) resolver.Handler {
		return resolver.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			if strings.EqualFold(req.Question().Name, name) {
				return nil, nil
			}
			return next.ServeDNS(ctx, req)
		})
	}
}

func TestServerNilReplyIsServfail(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{inner: []resolver.Middleware{nilReply("nil.example.")}})
	r := h.exchange(t, "udp", msg("nil.example.", dns.TypeA, 1232, false))
	wantRcode(t, r, dns.RcodeServerFailure)
	wantEDE(t, r, dns.ExtendedErrorCodeOther)
	wantRcode(t, h.exchange(t, "udp", msg("fine.example.", dns.TypeA, 0, false)), dns.RcodeSuccess)
}

// badRR is a stage that answers name with an A record of three bytes,
// which miekg/dns cannot pack.
func badRR(name string) resolver.Middleware {
	return func(next resolver.Handler) resolver.Handler {
		return resolver.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			if !strings.EqualFold(req.Question().Name, name) {
				return next.ServeDNS(ctx, req)
			}
			r := new(dns.Msg)
			r.SetReply(req.Msg)
			r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IP{192, 0, 2}}}
			return r, nil
		})
	}
}

// TestServerUnpackableReply: a reply the server cannot send as it is
// still gets an answer. An upstream's extended RCODE (BADCOOKIE, 23) to a
// client without EDNS0 needs an OPT record the client must not get: it
// becomes SERVFAIL (it used to fail to pack and the client got nothing).
// A client with EDNS0 gets the extended RCODE. Any other reply that
// cannot be packed becomes a SERVFAIL without records.
func TestServerUnpackableReply(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{
		handler: func(w dns.ResponseWriter, r *dns.Msg) {
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeBadCookie)
			m.SetEdns0(1232, false)
			_ = w.WriteMsg(m)
		},
		inner: []resolver.Middleware{badRR("bad-rr.example.")},
	})
	cases := []struct {
		name      string
		qname     string
		network   string
		bufsize   uint16
		wantRcode int
	}{
		{"ext_rcode_no_edns_udp", "cookie1.example.", "udp", 0, dns.RcodeServerFailure},
		{"ext_rcode_no_edns_tcp", "cookie2.example.", "tcp", 0, dns.RcodeServerFailure},
		{"ext_rcode_edns_udp", "cookie3.example.", "udp", 1232, dns.RcodeBadCookie},
		{"ext_rcode_edns_tcp", "cookie4.example.", "tcp", 1232, dns.RcodeBadCookie},
		{"bad_rr_no_edns_udp", "bad-rr.example.", "udp", 0, dns.RcodeServerFailure},
		{"bad_rr_no_edns_tcp", "bad-rr.example.", "tcp", 0, dns.RcodeServerFailure},
		{"bad_rr_edns_udp", "bad-rr.example.", "udp", 1232, dns.RcodeServerFailure},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := testutil.ToFloat64(h.metrics.WriteErrors)
			r, err := tryExchangeTimeout(c.network, h.addr, msg(c.qname, dns.TypeA, c.bufsize, false), 5*time.Second)
			if err != nil {
				t.Fatalf("no reply: %v", err)
			}
			wantRcode(t, r, c.wantRcode)
			if len(r.Answer)+len(r.Ns) != 0 {
				t.Errorf("records in the reply: %v", r)
			}
			if (r.IsEdns0() != nil) != (c.bufsize != 0) {
				t.Errorf("OPT present = %v, client sent EDNS0 = %v", r.IsEdns0() != nil, c.bufsize != 0)
			}
			if o := h.obs.next(t); o.Rcode != c.wantRcode {
				t.Errorf("observed rcode %s, want %s", dns.RcodeToString[o.Rcode], dns.RcodeToString[c.wantRcode])
			}
			wantWriteErrors := before
			if strings.HasPrefix(c.qname, "bad-rr.") {
				wantWriteErrors++ // the reply that could not be packed
			}
			if got := testutil.ToFloat64(h.metrics.WriteErrors); got != wantWriteErrors {
				t.Errorf("write_errors_total = %v, want %v", got, wantWriteErrors)
			}
		})
	}
}

// blackhole is a UDP socket that reads and drops every query.
func blackhole(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	tb.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// closedPort returns a loopback UDP port nobody listens on.
func closedPort(tb testing.TB) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestServerAllUpstreamsFail(t *testing.T) {
	t.Parallel()
	const groupTimeout = 400 * time.Millisecond
	cases := []struct {
		name      string
		upstreams func(t *testing.T) []string
		strategy  string
	}{
		{"blackhole_then_closed", func(t *testing.T) []string {
			return []string{"udp://" + blackhole(t), "udp://" + closedPort(t)}
		}, upstream.StrategyFailover},
		{"closed_then_blackhole", func(t *testing.T) []string {
			return []string{"udp://" + closedPort(t), "udp://" + blackhole(t)}
		}, upstream.StrategyFailover},
		{"parallel", func(t *testing.T) []string {
			return []string{"udp://" + blackhole(t), "tcp://" + closedPort(t)}
		}, upstream.StrategyParallel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{
				upstreams: c.upstreams(t),
				upOpts:    upstream.Options{Timeout: 150 * time.Millisecond},
				group:     upstream.GroupConfig{Strategy: c.strategy, Timeout: groupTimeout},
			})
			for _, network := range []string{"udp", "tcp"} {
				start := time.Now()
				r := h.exchange(t, network, msg("fail-"+network+".example.", dns.TypeA, 1232, false))
				elapsed := time.Since(start)
				wantRcode(t, r, dns.RcodeServerFailure)
				e := ede(r)
				if len(e) != 1 || (e[0].InfoCode != dns.ExtendedErrorCodeNoReachableAuthority && e[0].InfoCode != dns.ExtendedErrorCodeNetworkError) {
					t.Errorf("%s: EDE = %v, want No Reachable Authority or Network Error", network, e)
				}
				if elapsed > groupTimeout+2*time.Second {
					t.Errorf("%s: SERVFAIL after %v, group timeout is %v", network, elapsed, groupTimeout)
				}
				o := h.obs.next(t)
				if o.Info.Reason != "upstream_failed" || o.Info.Cache != query.CacheMiss {
					t.Errorf("%s: observed reason %q cache %v, want upstream_failed miss", network, o.Info.Reason, o.Info.Cache)
				}
			}
		})
	}
}

func TestServerServeStale(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		bufsize uint16
		network string
	}{
		{"udp_edns", 1232, "udp"},
		{"tcp_edns_do", 1232, "tcp"},
		{"udp_no_edns", 0, "udp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{
				cache:  cache.Config{ServeStale: time.Hour},
				upOpts: upstream.Options{Timeout: 300 * time.Millisecond},
				group:  upstream.GroupConfig{Timeout: 500 * time.Millisecond},
			})
			r := h.exchange(t, c.network, msg("stale.example.", dns.TypeA, c.bufsize, false))
			wantRcode(t, r, dns.RcodeSuccess)
			if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 300 {
				t.Fatalf("fresh answer = %v, want one A with TTL 300", r.Answer)
			}
			h.obs.next(t)
			h.up.stop()
			h.clock.step(10 * time.Minute)
			r = h.exchange(t, c.network, msg("Stale.Example.", dns.TypeA, c.bufsize, false))
			wantRcode(t, r, dns.RcodeSuccess)
			if len(r.Answer) != 1 || r.Answer[0].Header().Ttl != 30 {
				t.Fatalf("stale answer = %v, want one A with TTL 30", r.Answer)
			}
			if a, ok := r.Answer[0].(*dns.A); !ok || a.A.String() != "192.0.2.1" {
				t.Errorf("stale answer = %v, want 192.0.2.1", r.Answer[0])
			}
			if r.Question[0].Name != "Stale.Example." {
				t.Errorf("question %v, want the client's spelling", r.Question)
			}
			if c.bufsize > 0 {
				wantEDE(t, r, dns.ExtendedErrorCodeStaleAnswer)
			} else if r.IsEdns0() != nil {
				t.Errorf("client without EDNS0 got an OPT")
			}
			if o := h.obs.next(t); o.Info.Cache != query.CacheStale {
				t.Errorf("observed cache status %v, want stale", o.Info.Cache)
			}
		})
	}
}

func TestServerCoalescesMisses(t *testing.T) {
	t.Parallel()
	const clients = 100
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(clients)
	// count marks each query reaching the cache stage.
	count := func(next resolver.Handler) resolver.Handler {
		return resolver.HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			entered.Done()
			return next.ServeDNS(ctx, req)
		})
	}
	h := newHarness(t, harnessConfig{
		handler: blocking(answer(t, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.99"}, nil), arrived, release),
		inner:   []resolver.Middleware{count},
		cache:   cache.Config{UpstreamTimeout: 30 * time.Second},
		upOpts:  upstream.Options{Timeout: 30 * time.Second},
		group:   upstream.GroupConfig{Timeout: 30 * time.Second},
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	type result struct {
		r   *dns.Msg
		err error
	}
	results := make(chan result, clients)
	for i := range clients {
		network := "udp"
		if i%4 == 0 {
			network = "tcp"
		}
		go func() {
			m := msg("coalesce.example.", dns.TypeA, 0, false)
			m.Id = uint16(i)
			r, err := tryExchange(network, h.addr, m)
			if err == nil && r.Id != uint16(i) {
				err = errors.New("reply has another query's ID")
			}
			results <- result{r, err}
		}()
	}
	<-arrived      // the one upstream query is in flight
	entered.Wait() // every client's query reached the cache
	unblock()
	for range clients {
		res := <-results
		if res.err != nil {
			t.Fatal(res.err)
		}
		if res.r.Rcode != dns.RcodeSuccess || len(res.r.Answer) != 1 {
			t.Fatalf("reply %v", res.r)
		}
	}
	if n := h.up.hits.Load(); n != 1 {
		t.Errorf("upstream asked %d times for one name, want 1", n)
	}
	var miss int
	for range clients {
		if h.obs.next(t).Info.Cache == query.CacheMiss {
			miss++
		}
	}
	t.Logf("%d of %d clients shared the in-flight exchange, the rest were cache hits", miss, clients)
	if miss == 0 {
		t.Error("no client was answered by the upstream exchange")
	}
}

func TestServerGracefulShutdown(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			arrived := make(chan struct{}, 1)
			release := make(chan struct{})
			h := newHarness(t, harnessConfig{
				handler: blocking(answer(t, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.5"}, nil), arrived, release),
				upOpts:  upstream.Options{Timeout: 30 * time.Second},
				group:   upstream.GroupConfig{Timeout: 30 * time.Second},
			})
			unblock := sync.OnceFunc(func() { close(release) })
			t.Cleanup(unblock) // before the harness shuts down, should the test fail
			inflight := make(chan *dns.Msg, 1)
			go func() {
				r, err := tryExchange(network, h.addr, msg("slow.example.", dns.TypeA, 0, false))
				if err != nil {
					t.Errorf("in-flight query: %v", err)
				}
				inflight <- r
			}()
			<-arrived
			shut := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				shut <- h.srv.Shutdown(ctx)
			}()
			waitUntil(t, "Ready() false", func() bool { return !h.srv.Ready() })
			// New connections are refused while the slow query drains.
			waitUntil(t, "TCP listener closed", func() bool {
				c, err := net.DialTimeout("tcp", h.addr, time.Second)
				if err != nil {
					return true
				}
				c.Close()
				return false
			})
			select {
			case err := <-shut:
				t.Fatalf("Shutdown returned (%v) with a query in flight", err)
			default:
			}
			unblock()
			if r := <-inflight; r == nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
				t.Fatalf("in-flight query got %v, want its answer", r)
			}
			if err := <-shut; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}
			if _, err := tryExchangeTimeout("tcp", h.addr, msg("after.example.", dns.TypeA, 0, false), noReplyWait); err == nil {
				t.Error("TCP query answered after Shutdown")
			}
			if _, err := tryExchangeTimeout("udp", h.addr, msg("after.example.", dns.TypeA, 0, false), noReplyWait); err == nil {
				t.Error("UDP query answered after Shutdown")
			}
		})
	}
}

func tryExchangeTimeout(network, addr string, m *dns.Msg, timeout time.Duration) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// TestServerShutdownRightAfterStart stops a server whose listeners may not
// have begun serving yet: Shutdown must still succeed and free the port.
func TestServerShutdownRightAfterStart(t *testing.T) {
	t.Parallel()
	for i := range 20 {
		srv := resolver.NewServer(resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}},
			resolver.HandlerFunc(func(context.Context, *query.Request) (*dns.Msg, error) { return new(dns.Msg), nil }),
			nil, nil, nil, nil)
		if err := srv.Start(context.Background()); err != nil {
			if strings.Contains(err.Error(), "address already in use") {
				continue // the TCP side of the UDP port was taken
			}
			t.Fatalf("round %d: Start: %v", i, err)
		}
		addr := srv.Addrs()[0].String()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := srv.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Shutdown: %v", i, err)
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Fatalf("round %d: TCP port still accepting after Shutdown", i)
		}
	}
}

// TestUpstreamEDEOnHits checks over real sockets that a filtering
// upstream's Extended DNS Error reaches the client on the miss and on
// every cache hit after it, over UDP and TCP, and that a client without
// EDNS0 gets no OPT record.
func TestUpstreamEDEOnHits(t *testing.T) {
	t.Parallel()
	nx := answer(t, dns.RcodeNameError, nil, []string{"example. 300 IN SOA ns.example. h.example. 1 2 3 4 60"})
	big := answer(t, dns.RcodeSuccess, manyA(60), nil)
	h := newHarness(t, harnessConfig{handler: func(w dns.ResponseWriter, r *dns.Msg) {
		if r.Question[0].Name == "big.example." {
			big(filterEDE{w, strings.Repeat("long reason ", 40)}, r)
			return
		}
		nx(filterEDE{w, "upstream policy"}, r)
	}})
	for i, network := range []string{"udp", "udp", "tcp"} {
		resp := h.exchange(t, network, msg("filtered.example.", dns.TypeA, 1232, false))
		wantRcode(t, resp, dns.RcodeNameError)
		if e := wantEDE(t, resp, dns.ExtendedErrorCodeFiltered); e.ExtraText != "upstream policy" {
			t.Errorf("query %d (%s): EDE text %q, want %q", i, network, e.ExtraText, "upstream policy")
		}
	}
	if resp := h.exchange(t, "udp", msg("filtered.example.", dns.TypeA, 0, false)); resp.IsEdns0() != nil {
		t.Errorf("OPT in a reply to a client without EDNS0: %v", resp.IsEdns0())
	}
	// A big answer with a long upstream EDE text, to a client with a
	// 512-byte buffer: the reply fits, and the (bounded) EDE leaves room
	// for answers.
	for i := range 2 { // miss, then hit
		q := msg("big.example.", dns.TypeA, 512, false)
		wire, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		raw := rawUDP(t, h.addr, wire, 10*time.Second)
		resp := new(dns.Msg)
		if err := resp.Unpack(raw); err != nil {
			t.Fatalf("query %d: unpack %d bytes: %v", i, len(raw), err)
		}
		if len(raw) > 512 || !resp.Truncated || len(resp.Answer) < 10 {
			t.Errorf("query %d: %d bytes, TC %v, %d answers; want at most 512 bytes, TC and 10 answers or more", i, len(raw), resp.Truncated, len(resp.Answer))
		}
		if e := wantEDE(t, resp, dns.ExtendedErrorCodeFiltered); len(e.ExtraText) > 150 {
			t.Errorf("query %d: EDE text of %d bytes, want at most 150", i, len(e.ExtraText))
		}
	}
	// One for filtered.example; two for big.example, whose answer with its
	// EDE outgrows 1232 bytes, so the UDP try is followed by TCP. The rest
	// are hits.
	if n := h.up.hits.Load(); n != 3 {
		t.Errorf("upstream saw %d queries, want 3", n)
	}
}

// filterEDE adds an EDE "Filtered" with text to the replies it writes, as
// a filtering upstream (Cloudflare's 1.1.1.2, AdGuard DNS) does.
type filterEDE struct {
	dns.ResponseWriter
	text string
}

func (w filterEDE) WriteMsg(m *dns.Msg) error {
	opt := m.IsEdns0()
	if opt == nil {
		m.SetEdns0(1232, false)
		opt = m.IsEdns0()
	}
	opt.Option = append(opt.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeFiltered, ExtraText: w.text})
	return w.ResponseWriter.WriteMsg(m)
}

// An upstream from before EDNS0 (FORMERR without OPT to a query with one)
// still answers: dnsvalve asks it again without EDNS0, fetches an answer
// over 512 bytes over TCP, and gives EDNS0 clients its own OPT record.
func TestEDNSIntolerantUpstream(t *testing.T) {
	t.Parallel()
	var withOPT, bare atomic.Int64
	big := answer(t, dns.RcodeSuccess, manyA(40), nil)
	h := newHarness(t, harnessConfig{handler: func(w dns.ResponseWriter, r *dns.Msg) {
		if r.IsEdns0() != nil {
			withOPT.Add(1)
			m := new(dns.Msg)
			m.SetRcode(r, dns.RcodeFormatError)
			_ = w.WriteMsg(m)
			return
		}
		bare.Add(1)
		big(w, r) // the fake upstream truncates UDP answers to 512 bytes without EDNS0
	}})
	for i, tc := range []struct {
		network string
		bufsize uint16
	}{{"udp", 1232}, {"tcp", 0}, {"udp", 4096}} {
		q := msg(fmt.Sprintf("n%d.example.", i), dns.TypeA, tc.bufsize, true)
		resp := h.exchange(t, tc.network, q)
		wantRcode(t, resp, dns.RcodeSuccess)
		if len(resp.Answer) != 40 || (resp.IsEdns0() != nil) != (tc.bufsize > 0) {
			t.Errorf("query %d: %d answers, OPT %v; want 40, OPT %v", i, len(resp.Answer), resp.IsEdns0() != nil, tc.bufsize > 0)
		}
	}
	// The first query found out; the others went without EDNS0 at once.
	// Each plain query is asked over UDP (truncated) and again over TCP.
	if withOPT.Load() != 1 || bare.Load() != 6 {
		t.Errorf("upstream got %d queries with OPT and %d without, want 1 and 6", withOPT.Load(), bare.Load())
	}
	const want = `
# HELP dnsvalve_upstream_edns_fallbacks_total Queries sent once more without EDNS0 because the upstream rejected them with EDNS0 (FORMERR or NOTIMP without an OPT record, RFC 6891 section 7).
# TYPE dnsvalve_upstream_edns_fallbacks_total counter
dnsvalve_upstream_edns_fallbacks_total{upstream="%s"} 1
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(fmt.Sprintf(want, h.up.url())), "dnsvalve_upstream_edns_fallbacks_total"); err != nil {
		t.Error(err)
	}
}

// Queries dnsvalve does not forward (other classes than IN, zone
// transfers, meta types) are answered at once and never reach the
// upstream, whatever their type: Unserved runs before the minimal-ANY
// stage, as in cmd/dnsvalve's chain.
func TestUnserved(t *testing.T) {
	t.Parallel()
	sm := resolver.NewMetrics(prometheus.NewRegistry())
	h := newHarness(t, harnessConfig{inner: []resolver.Middleware{resolver.Unserved(sm), resolver.MinimalANY()}})
	counts := map[string]float64{}
	for _, tc := range []struct {
		name     string
		network  string
		qname    string
		qtype    uint16
		class    uint16
		rcode    int
		reason   string // "" for a forwarded query
		wantText string // the EDE's, for REFUSED
	}{
		{"chaos_version", "udp", "version.bind.", dns.TypeTXT, dns.ClassCHAOS, dns.RcodeRefused, "class", "class CH is not served"},
		{"chaos_id", "udp", "id.server.", dns.TypeTXT, dns.ClassCHAOS, dns.RcodeRefused, "class", "class CH is not served"},
		{"chaos_any_type", "udp", "version.bind.", dns.TypeANY, dns.ClassCHAOS, dns.RcodeRefused, "class", "class CH is not served"},
		{"hesiod", "udp", "user.passwd.example.", dns.TypeTXT, dns.ClassHESIOD, dns.RcodeRefused, "class", "class HS is not served"},
		{"class_any", "udp", "example.", dns.TypeA, dns.ClassANY, dns.RcodeRefused, "class", "class ANY is not served"},
		{"class_unassigned", "udp", "example.", dns.TypeA, 42, dns.RcodeRefused, "class", "class CLASS42 is not served"},
		{"axfr", "tcp", "example.", dns.TypeAXFR, dns.ClassINET, dns.RcodeRefused, "zone_transfer", "zone transfers are not served"},
		{"ixfr", "udp", "example.", dns.TypeIXFR, dns.ClassINET, dns.RcodeRefused, "zone_transfer", "zone transfers are not served"},
		{"type_opt", "udp", "example.", dns.TypeOPT, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_nxname", "udp", "example.", dns.TypeNXNAME, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_200", "udp", "example.", 200, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_248", "udp", "example.", 248, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_tkey", "udp", "example.", dns.TypeTKEY, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_tsig", "tcp", "example.", dns.TypeTSIG, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_mailb", "udp", "example.", dns.TypeMAILB, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_maila", "udp", "example.", dns.TypeMAILA, dns.ClassINET, dns.RcodeFormatError, "meta_type", ""},
		{"type_127_forwarded", "udp", "example.", 127, dns.ClassINET, dns.RcodeSuccess, "", ""},
		{"type_uri_forwarded", "udp", "example.", dns.TypeURI, dns.ClassINET, dns.RcodeSuccess, "", ""},
		{"type_ta_forwarded", "udp", "example.", dns.TypeTA, dns.ClassINET, dns.RcodeSuccess, "", ""},
		{"internet", "udp", "example.", dns.TypeA, dns.ClassINET, dns.RcodeSuccess, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := msg(tc.qname, tc.qtype, 1232, false)
			q.Question[0].Qclass = tc.class
			before := h.up.hits.Load()
			resp := h.exchange(t, tc.network, q)
			obs := h.obs.next(t)
			wantRcode(t, resp, tc.rcode)
			if obs.Info.Reason != tc.reason || obs.Rcode != tc.rcode {
				t.Errorf("observed reason %q rcode %d, want %q, %d", obs.Info.Reason, obs.Rcode, tc.reason, tc.rcode)
			}
			if tc.reason == "" {
				if h.up.hits.Load() != before+1 || len(ede(resp)) != 0 {
					t.Errorf("forwarded query: %d upstream queries, EDEs %v; want 1, none", h.up.hits.Load()-before, ede(resp))
				}
				return
			}
			if len(resp.Answer) != 0 || h.up.hits.Load() != before {
				t.Errorf("%d answers, %d upstream queries; want none", len(resp.Answer), h.up.hits.Load()-before)
			}
			counts[tc.reason]++
			if tc.rcode == dns.RcodeFormatError {
				// The question is echoed, nothing else, and the reply is
				// no larger than the query.
				rw, qw := packLen(t, resp), packLen(t, q)
				if len(resp.Question) != 1 || resp.Question[0] != q.Question[0] || len(ede(resp)) != 0 || rw > qw {
					t.Errorf("FORMERR echoes %v, EDEs %v, %d bytes for a %d-byte query; want the question, none, at most the query", resp.Question, ede(resp), rw, qw)
				}
				if got := testutil.ToFloat64(sm.Malformed.WithLabelValues(tc.reason)); got != counts[tc.reason] {
					t.Errorf("malformed_total{reason=%s} = %v, want %v", tc.reason, got, counts[tc.reason])
				}
				return
			}
			if e := wantEDE(t, resp, dns.ExtendedErrorCodeNotSupported); e.ExtraText != tc.wantText {
				t.Errorf("EDE text %q, want %q", e.ExtraText, tc.wantText)
			}
			if got := testutil.ToFloat64(sm.Refused.WithLabelValues(tc.reason)); got != counts[tc.reason] {
				t.Errorf("refused_total{reason=%s} = %v, want %v", tc.reason, got, counts[tc.reason])
			}
		})
	}
}

func packLen(tb testing.TB, m *dns.Msg) int {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatal(err)
	}
	return len(b)
}

// TestServerRcodeAndRejectAccounting: a BADVERS reply is counted and
// observed as BADVERS (miekg/dns names rcode 16 "BADSIG"), and a header
// the section limits reject is counted as malformed whatever its opcode
// (a NOTIFY with five questions got a NOTIMP and no trace at all).
func TestServerRcodeAndRejectAccounting(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{})
	badVers := msg("example.", dns.TypeA, 1232, true)
	badVers.IsEdns0().SetVersion(1)
	wantRcode(t, h.exchange(t, "udp", badVers), dns.RcodeBadVers)
	if obs := h.obs.next(t); obs.Rcode != dns.RcodeBadVers {
		t.Errorf("observed rcode %d, want BADVERS", obs.Rcode)
	}

	notify := msg("example.", dns.TypeSOA, 0, false)
	notify.Opcode = dns.OpcodeNotify
	for i := range 4 {
		notify.Question = append(notify.Question, dns.Question{Name: fmt.Sprintf("z%d.example.", i), Qtype: dns.TypeSOA, Qclass: dns.ClassINET})
	}
	wire, err := notify.Pack()
	if err != nil {
		t.Fatal(err)
	}
	checkMalformed(t, h.addr, wire, dns.RcodeNotImplemented, 0)
	if got := testutil.ToFloat64(h.metrics.Malformed.WithLabelValues("counts")); got != 1 {
		t.Errorf(`malformed_total{reason="counts"} = %v, want 1`, got)
	}
	// After that round trip (as TestServerMetricsLint does): the BADVERS
	// query's count, made just after it was observed.
	if got := testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "BADVERS", "UDP")); got != 1 {
		t.Errorf(`queries_total{rcode="BADVERS"} = %v, want 1`, got)
	}
	if got := testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "BADSIG", "UDP")); got != 0 {
		t.Errorf(`queries_total{rcode="BADSIG"} = %v, want 0`, got)
	}
}
