package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer runs serve on 127.0.0.1:0 and returns the bound address. The
// server is stopped at cleanup; the stats output is returned through the
// buffer after the server stopped.
func startServer(tb testing.TB, cfg config) (addr string, stop func() string) {
	tb.Helper()
	cfg.listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- serve(ctx, cfg, &out, func(udp, _ net.Addr) { readyc <- udp.String() })
	}()
	select {
	case addr = <-readyc:
	case err := <-done:
		tb.Fatalf("serve: %v", err)
	}
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve returned %v", err)
			}
		})
		return out.String()
	}
	tb.Cleanup(func() { stop() })
	return addr, stop
}

func exchange(tb testing.TB, proto, addr, name string, qtype uint16) *dns.Msg {
	tb.Helper()
	c := &dns.Client{Net: proto, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		tb.Fatalf("exchange %s %s over %s: %v", name, dns.TypeToString[qtype], proto, err)
	}
	return resp
}

func TestServeAnswers(t *testing.T) {
	addr, _ := startServer(t, config{ttl: 120})
	tests := []struct {
		name      string
		qname     string
		qtype     uint16
		rcode     int
		answerLen []int // allowed answer counts
		wantSOA   bool
	}{
		{name: "a_record", qname: "www.example.test.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, answerLen: []int{1, 2}},
		{name: "aaaa_record", qname: "www.example.test.", qtype: dns.TypeAAAA, rcode: dns.RcodeSuccess, answerLen: []int{1}},
		{name: "txt_record", qname: "txt.example.test.", qtype: dns.TypeTXT, rcode: dns.RcodeSuccess, answerLen: []int{1}},
		{name: "mx_nodata", qname: "www.example.test.", qtype: dns.TypeMX, rcode: dns.RcodeSuccess, answerLen: []int{0}, wantSOA: true},
		{name: "under_nx", qname: "foo.bar.nx.", qtype: dns.TypeA, rcode: dns.RcodeNameError, answerLen: []int{0}, wantSOA: true},
		{name: "nx_itself", qname: "nx.", qtype: dns.TypeA, rcode: dns.RcodeNameError, answerLen: []int{0}, wantSOA: true},
		{name: "nxdomain_label", qname: "a.NXDOMAIN.example.test.", qtype: dns.TypeAAAA, rcode: dns.RcodeNameError, answerLen: []int{0}, wantSOA: true},
		{name: "nx_suffix_not_label", qname: "onx.example.test.", qtype: dns.TypeA, rcode: dns.RcodeSuccess, answerLen: []int{1, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, proto := range []string{"udp", "tcp"} {
				resp := exchange(t, proto, addr, tt.qname, tt.qtype)
				if resp.Rcode != tt.rcode {
					t.Errorf("%s: rcode = %s, want %s", proto, dns.RcodeToString[resp.Rcode], dns.RcodeToString[tt.rcode])
				}
				if !resp.Authoritative {
					t.Errorf("%s: AA bit not set", proto)
				}
				ok := false
				for _, n := range tt.answerLen {
					ok = ok || len(resp.Answer) == n
				}
				if !ok {
					t.Errorf("%s: %d answers, want one of %v", proto, len(resp.Answer), tt.answerLen)
				}
				gotSOA := len(resp.Ns) == 1 && resp.Ns[0].Header().Rrtype == dns.TypeSOA
				if gotSOA != tt.wantSOA {
					t.Errorf("%s: SOA in authority = %v, want %v", proto, gotSOA, tt.wantSOA)
				}
				for _, rr := range append(resp.Answer, resp.Ns...) {
					if rr.Header().Ttl != 120 {
						t.Errorf("%s: TTL of %s = %d, want 120", proto, rr, rr.Header().Ttl)
					}
				}
				checkRanges(t, resp)
			}
		})
	}
}

// checkRanges asserts every address is inside the documentation ranges.
func checkRanges(tb testing.TB, resp *dns.Msg) {
	tb.Helper()
	v4 := netip.MustParsePrefix("192.0.2.0/24")
	v6 := netip.MustParsePrefix("2001:db8::/32")
	seen := map[netip.Addr]bool{}
	for _, rr := range resp.Answer {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A.To4())
			if !v4.Contains(a) || a == v4.Addr() || a.As4()[3] == 255 {
				tb.Errorf("A %s outside 192.0.2.1-254", a)
			}
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA)
			if !v6.Contains(a) {
				tb.Errorf("AAAA %s outside 2001:db8::/32", a)
			}
		case *dns.TXT:
			if len(rr.Txt) != 1 || !strings.HasPrefix(rr.Txt[0], "fake h=") {
				tb.Errorf("TXT = %q, want one string starting fake h=", rr.Txt)
			}
			continue
		default:
			tb.Errorf("unexpected answer %s", rr)
			continue
		}
		if seen[a] {
			tb.Errorf("duplicate address %s", a)
		}
		seen[a] = true
	}
}

func TestServeDeterministic(t *testing.T) {
	addr, _ := startServer(t, config{ttl: 300})
	sawTwo := false
	for i := range 64 {
		name := dns.Fqdn(strings.Repeat("x", i%5+1) + "." + string(rune('a'+i%26)) + ".det.test")
		first := exchange(t, "udp", addr, name, dns.TypeA)
		// Case must not change the derived answer, only the owner name.
		second := exchange(t, "udp", addr, strings.ToUpper(name), dns.TypeA)
		if len(first.Answer) != len(second.Answer) {
			t.Fatalf("%s: %d vs %d answers", name, len(first.Answer), len(second.Answer))
		}
		for j := range first.Answer {
			a, b := first.Answer[j].(*dns.A), second.Answer[j].(*dns.A)
			if !a.A.Equal(b.A) {
				t.Errorf("%s: answer %d differs: %s vs %s", name, j, a.A, b.A)
			}
		}
		sawTwo = sawTwo || len(first.Answer) == 2
	}
	if !sawTwo {
		t.Error("no name of 64 got two A records; the 1-2 address spread is broken")
	}
}

func TestServeStatsCountsAnswers(t *testing.T) {
	addr, stop := startServer(t, config{ttl: 300, stats: true})
	for range 3 {
		exchange(t, "udp", addr, "count.test.", dns.TypeA)
	}
	exchange(t, "tcp", addr, "count.test.", dns.TypeA)
	if got, want := stop(), "fakeupstream: answered 4 queries\n"; got != want {
		t.Errorf("stats output = %q, want %q", got, want)
	}
}

func TestServeFormErrOnNoQuestion(t *testing.T) {
	addr, _ := startServer(t, config{ttl: 300})
	m := new(dns.Msg)
	m.Id = dns.Id()
	c := &dns.Client{Timeout: 2 * time.Second}
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if resp.Rcode != dns.RcodeFormatError {
		t.Errorf("rcode = %s, want FORMERR", dns.RcodeToString[resp.Rcode])
	}
}

func TestServeDelay(t *testing.T) {
	addr, _ := startServer(t, config{ttl: 300, delay: 50 * time.Millisecond})
	start := time.Now()
	exchange(t, "udp", addr, "slow.test.", dns.TypeA)
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("answer took %v, want at least the 50ms delay", took)
	}
}

func BenchmarkAnswer(b *testing.B) {
	h := newHandler(300, 0)
	req := new(dns.Msg)
	req.SetQuestion("www.bench.test.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		_ = h.answer(req)
	}
}
