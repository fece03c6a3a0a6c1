package querylog

import (
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// baseTime is the fixed time of the test records.
var baseTime = time.Date(2025, 3, 14, 15, 9, 26, 535_897_932, time.UTC)

func mustRR(tb testing.TB, s string) dns.RR {
	tb.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		tb.Fatalf("NewRR(%q): %v", s, err)
	}
	return rr
}

// exchange builds a query for name/qtype and a reply with rcode and the
// given answer records.
func exchange(tb testing.TB, name string, qtype uint16, rcode int, answers ...string) (*dns.Msg, *dns.Msg) {
	tb.Helper()
	req := new(dns.Msg)
	req.SetQuestion(name, qtype)
	req.Id = 4242
	resp := new(dns.Msg)
	resp.SetRcode(req, rcode)
	resp.RecursionAvailable = true
	for _, a := range answers {
		resp.Answer = append(resp.Answer, mustRR(tb, a))
	}
	return req, resp
}

// testRecord returns a realistic record for case name; the cases are the
// golden files of TestEntryGolden.
func testRecord(tb testing.TB, name string) Record {
	tb.Helper()
	client := query.Client{
		Addr: netip.MustParseAddr("10.0.8.5"), Port: 53211,
		Name: "payments-db-1", Group: "payments", Policy: "sensitive",
	}
	r := Record{Time: baseTime, Client: client, Proto: query.UDP, Latency: 85*time.Microsecond + 400*time.Nanosecond, Instance: "dnsvalve-0"}
	switch name {
	case "cache_hit_a":
		r.Req, r.Resp = exchange(tb, "www.example.com.", dns.TypeA, dns.RcodeSuccess,
			"www.example.com. 300 IN CNAME edge.example.net.",
			"edge.example.net. 60 IN A 93.184.216.34",
			"edge.example.net. 60 IN A 93.184.216.35")
		r.Req.SetEdns0(1232, true)
		ecs := &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.ParseIP("10.0.8.0").To4()}
		opt := r.Req.IsEdns0()
		opt.Option = append(opt.Option, ecs)
		r.Info = query.Info{Cache: query.CacheHit}
	case "via_forwarder":
		// The client came from a trusted forwarder's full-length ECS option.
		r.Client.Via = netip.MustParseAddr("10.0.0.2")
		r.Req, r.Resp = exchange(tb, "api.example.com.", dns.TypeA, dns.RcodeSuccess, "api.example.com. 60 IN A 192.0.2.10")
		r.Req.SetEdns0(1232, false)
		opt := r.Req.IsEdns0()
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 32, Address: net.ParseIP("10.0.8.5").To4()})
		r.Info = query.Info{Cache: query.CacheMiss, Upstream: "udp://10.0.0.53:53"}
	case "blocked_nxdomain":
		r.Client = query.Client{Addr: netip.MustParseAddr("fd00::17"), Port: 40001, Group: "default", Policy: "default"}
		r.Proto = query.TCP
		r.Req, r.Resp = exchange(tb, "c2.evil.example.", dns.TypeAAAA, dns.RcodeNameError)
		r.Resp.Ns = append(r.Resp.Ns, mustRR(tb, "evil.example. 3600 IN SOA blocked.dnsvalve. hostmaster.dnsvalve. 1 3600 600 86400 3600"))
		r.Info = query.Info{Action: query.ActionBlock, List: "malware", Category: "malware", Rule: "*.evil.example",
			Source: "testdata/lists/malware.txt", Line: 12, Reason: "blocked"}
	case "refused":
		r.Client = query.Client{Addr: netip.MustParseAddr("192.0.2.77"), Port: 5353}
		r.Req, r.Resp = exchange(tb, "example.org.", dns.TypeMX, dns.RcodeRefused)
		r.Info = query.Info{Reason: "not_allowed"}
		r.Latency = 3 * time.Microsecond
	case "servfail_upstream_failed":
		r.Req, r.Resp = exchange(tb, "slow.example.com.", dns.TypeHTTPS, dns.RcodeServerFailure)
		r.Info = query.Info{Cache: query.CacheMiss, Upstream: "udp://127.0.0.1:53", Reason: "upstream_failed"}
		r.Latency = 2*time.Second + 17*time.Millisecond
	case "txt_answer":
		r.Proto = query.DoH
		r.Req, r.Resp = exchange(tb, "aGVsbG8.t.example.com.", dns.TypeTXT, dns.RcodeSuccess,
			`aGVsbG8.t.example.com. 0 IN TXT "v=spf1 include:_spf.example.com ~all" "say \"hi\" \\ caf\195\169 \009tab"`)
		r.Info = query.Info{Action: query.ActionAlert, List: "file-sharing", Category: "file-sharing", Rule: "t.example.com",
			Cache: query.CacheMiss, Upstream: "https://127.0.0.1:8443/dns-query",
			Score: 0.7312, Signals: []string{"entropy", "unique_subdomains"}, Alert: true, NewlySeen: true}
	case "mx_dot_stale":
		r.Proto = query.DoT
		r.Client.Name = ""
		r.Req, r.Resp = exchange(tb, "Example.COM.", dns.TypeMX, dns.RcodeSuccess,
			"Example.COM. 30 IN MX 10 mx1.example.com.",
			"Example.COM. 30 IN MX 20 mx2.example.com.")
		r.Info = query.Info{Cache: query.CacheStale, Action: query.ActionAllow, List: "corp-allow", Rule: "example.com", Score: 1e-7}
	case "dropped_rate_limited":
		r.Req, _ = exchange(tb, "flood.example.", dns.TypeANY, dns.RcodeSuccess)
		r.Info = query.Info{Reason: "rate_limited"}
		r.Latency = 0
	default:
		tb.Fatalf("no test record %q", name)
	}
	r.Question = r.Req.Question[0]
	return r
}

var recordCases = []string{"cache_hit_a", "via_forwarder", "blocked_nxdomain", "refused", "servfail_upstream_failed", "txt_answer", "mx_dot_stale", "dropped_rate_limited"}

func testAlert() Alert {
	return Alert{
		Type: "alert", Timestamp: "2025-03-14T15:09:26.535Z",
		SrcAddr: "10.0.8.5", SrcIDs: SrcIDs{Instance: "payments-db-1"}, Group: "payments", Policy: "sensitive",
		Domain: "t.example.com", Score: 0.93, Signals: []string{"entropy", "unique_subdomains", "volume"},
		Queries: 412, Unique: 398, Bytes: 20877,
		SampleNames: []string{"aGVsbG8.t.example.com.", "d29ybGQ.t.example.com."}, Action: "ALERT",
		Kind: "tunneling",
	}
}

// testCNAMEAlert is a policy alert for a CNAME target the policy refused.
func testCNAMEAlert() Alert {
	a := testPolicyAlert()
	a.QueryName, a.QueryType, a.Domain = "cdn.victim.example.", "A", "victim.example"
	a.Reason, a.Target = "cname", "x.evil.example."
	return a
}

// testPolicyAlert is a policy alert: a block on a malware list.
func testPolicyAlert() Alert {
	return Alert{
		Type: "alert", Timestamp: "2025-03-14T15:09:27.001Z",
		SrcAddr: "10.0.8.5", SrcIDs: SrcIDs{Instance: "payments-db-1"}, Group: "payments", Policy: "sensitive",
		Domain: "evil.example", Signals: []string{}, SampleNames: []string{}, Action: "BLOCK",
		Kind: "policy", QueryName: "c2.evil.example.", QueryType: "TXT", FirewallDomainListID: "urlhaus",
		Category: "malware", Rule: "||evil.example^", Source: "https://urlhaus.example/hostfile.txt:17", Reason: "list",
	}
}

// fakeClock is a clock tests step by hand; safe for concurrent use.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(baseTime.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
