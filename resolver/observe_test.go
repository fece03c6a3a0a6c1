package resolver_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

func TestServerObserver(t *testing.T) {
	t.Parallel()
	ls := map[string]policy.Matcher{
		"ads":   buildList(t, "ads", "advertising", "ads.example\n"),
		"share": buildList(t, "share", "file-sharing", "files.share.example\n"),
	}
	pcfg := policy.Config{
		Groups:   []policy.GroupConfig{{Name: "lab", CIDRs: []string{"127.0.0.0/8"}, Policy: "strict"}},
		Names:    map[string]string{"127.0.0.1": "test-runner"},
		Policies: map[string]policy.PolicyConfig{"strict": {Block: []string{"ads"}, Alert: []string{"file-sharing"}}},
	}
	tenOnly := &resolver.AccessConfig{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	tenOnlyDrop := &resolver.AccessConfig{Allow: tenOnly.Allow, Drop: true}

	zeroQ := msg("x.example.", dns.TypeA, 0, false)
	zeroQ.Question = nil
	notify := msg("zone.example.", dns.TypeSOA, 0, false)
	notify.Opcode = dns.OpcodeNotify

	type want struct {
		rcode    int // -1: dropped
		cache    query.CacheStatus
		upstream bool // Info.Upstream names the fake upstream
		action   query.Action
		list     string
		category string
		rule     string
		reason   string
		noQ      bool
	}
	cases := []struct {
		name    string
		access  *resolver.AccessConfig
		queries []*dns.Msg // sent over UDP, in order; one observation each
		raw     bool       // send packed bytes, expect no reply
		network string
		want    []want
	}{
		{name: "miss_then_hit", network: "udp",
			queries: []*dns.Msg{msg("www.example.", dns.TypeA, 0, false), msg("WWW.example.", dns.TypeA, 0, false)},
			want:    []want{{rcode: dns.RcodeSuccess, cache: query.CacheMiss, upstream: true}, {rcode: dns.RcodeSuccess, cache: query.CacheHit}}},
		{name: "tcp_miss", network: "tcp",
			queries: []*dns.Msg{msg("tcp.example.", dns.TypeAAAA, 1232, true)},
			want:    []want{{rcode: dns.RcodeSuccess, cache: query.CacheMiss, upstream: true}}},
		{name: "blocked", network: "udp",
			queries: []*dns.Msg{msg("www.ads.example.", dns.TypeA, 1232, false)},
			want:    []want{{rcode: dns.RcodeNameError, action: query.ActionBlock, list: "ads", category: "advertising", rule: "ads.example"}}},
		{name: "alert", network: "udp",
			queries: []*dns.Msg{msg("files.share.example.", dns.TypeA, 0, false)},
			want: []want{{rcode: dns.RcodeSuccess, cache: query.CacheMiss, upstream: true, action: query.ActionAlert,
				list: "share", category: "file-sharing", rule: "files.share.example"}}},
		{name: "refused", network: "udp", access: tenOnly,
			queries: []*dns.Msg{msg("www.example.", dns.TypeA, 0, false)},
			want:    []want{{rcode: dns.RcodeRefused, reason: "not_allowed"}}},
		{name: "dropped", network: "udp", access: tenOnlyDrop, raw: true,
			queries: []*dns.Msg{msg("www.example.", dns.TypeA, 0, false)},
			want:    []want{{rcode: -1, reason: "not_allowed"}}},
		{name: "formerr", network: "udp",
			queries: []*dns.Msg{zeroQ},
			want:    []want{{rcode: dns.RcodeFormatError, reason: "formerr", noQ: true}}},
		{name: "notimp", network: "udp",
			queries: []*dns.Msg{notify},
			want:    []want{{rcode: dns.RcodeNotImplemented, reason: "notimp"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{policy: pcfg, lists: ls, access: c.access})
			for i, q := range c.queries {
				wire, err := q.Pack()
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case c.raw:
					if raw := rawUDP(t, h.addr, wire, noReplyWait); raw != nil {
						t.Fatalf("query %d: got a reply, want none", i)
					}
				case len(q.Question) != 1:
					if raw := rawUDP(t, h.addr, wire, 10*time.Second); raw == nil {
						t.Fatalf("query %d: no reply", i)
					}
				default:
					h.exchange(t, c.network, q)
				}
				o := h.obs.next(t)
				w := c.want[i]
				if o.Rcode != w.rcode {
					t.Errorf("query %d: observed rcode %d, want %d", i, o.Rcode, w.rcode)
				}
				if o.NoQuestion != w.noQ || (!w.noQ && o.Question != q.Question[0]) {
					t.Errorf("query %d: observed question %v (none: %v), want %v", i, o.Question, o.NoQuestion, q.Question)
				}
				wantProto := query.UDP
				if c.network == "tcp" {
					wantProto = query.TCP
				}
				if o.Proto != wantProto || o.Client.Addr != netip.MustParseAddr("127.0.0.1") || o.Client.Port == 0 {
					t.Errorf("query %d: observed %v client %v:%d, want %v from 127.0.0.1", i, o.Proto, o.Client.Addr, o.Client.Port, wantProto)
				}
				if o.Server.String() != h.addr {
					t.Errorf("query %d: observed server address %v, want the listener %s", i, o.Server, h.addr)
				}
				if o.Client.Group != "lab" || o.Client.Policy != "strict" || o.Client.Name != "test-runner" {
					t.Errorf("query %d: client identity %+v, want group lab, policy strict, name test-runner", i, o.Client)
				}
				if o.Info.Cache != w.cache {
					t.Errorf("query %d: cache %v, want %v", i, o.Info.Cache, w.cache)
				}
				if wantUp := map[bool]string{true: h.up.url()}[w.upstream]; o.Info.Upstream != wantUp {
					t.Errorf("query %d: upstream %q, want %q", i, o.Info.Upstream, wantUp)
				}
				if o.Info.Action != w.action || o.Info.List != w.list || o.Info.Category != w.category || o.Info.Rule != w.rule {
					t.Errorf("query %d: decision %v/%q/%q/%q, want %v/%q/%q/%q", i, o.Info.Action, o.Info.List, o.Info.Category, o.Info.Rule,
						w.action, w.list, w.category, w.rule)
				}
				if w.rule != "" && (o.Info.Source != "ads.txt" && o.Info.Source != "share.txt" || o.Info.Line == 0) {
					t.Errorf("query %d: rule source %q line %d, want the list file and line", i, o.Info.Source, o.Info.Line)
				}
				if o.Info.Reason != w.reason {
					t.Errorf("query %d: reason %q, want %q", i, o.Info.Reason, w.reason)
				}
			}
			h.obs.none(t)
		})
	}
}
