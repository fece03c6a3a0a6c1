package resolver_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver"
)

func TestServerAccess(t *testing.T) {
	t.Parallel()
	tenOnly := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	loop := loopbackAllowed().Allow
	const dropped = -1
	type step struct {
		advance time.Duration // clock step before the query
		network string
		rcode   int    // dropped: no reply expected
		ede     uint16 // checked when rcode is REFUSED and edeSet
		edeSet  bool
	}
	ok := step{network: "udp", rcode: dns.RcodeSuccess}
	refused := step{network: "udp", rcode: dns.RcodeRefused}
	limited := step{network: "udp", rcode: dns.RcodeRefused, ede: dns.ExtendedErrorCodeProhibited, edeSet: true}
	cases := []struct {
		name        string
		access      resolver.AccessConfig
		steps       []step
		notAllowed  float64 // refused_total{reason="not_allowed"}
		rateLimited float64 // refused_total{reason="rate_limited"}
		drops       float64 // dropped_total
		upstream    int64
	}{
		{
			name:       "outside_allow_clients_refused",
			access:     resolver.AccessConfig{Allow: tenOnly},
			steps:      []step{refused, {network: "tcp", rcode: dns.RcodeRefused}},
			notAllowed: 2,
		},
		{
			name:       "empty_allow_refuses_everyone",
			access:     resolver.AccessConfig{},
			steps:      []step{refused},
			notAllowed: 1,
		},
		{
			name:       "outside_allow_clients_dropped",
			access:     resolver.AccessConfig{Allow: tenOnly, Drop: true},
			steps:      []step{{network: "udp", rcode: dropped}, {network: "udp", rcode: dropped}},
			notAllowed: 2,
			drops:      2,
		},
		{
			name:     "inside_allow_clients",
			access:   resolver.AccessConfig{Allow: loop},
			steps:    []step{ok, {network: "tcp", rcode: dns.RcodeSuccess}},
			upstream: 1,
		},
		{
			name:   "rate_limit_burst_then_refused",
			access: resolver.AccessConfig{Allow: loop, RateQPS: 1, RateBurst: 2},
			steps: []step{ok, ok, limited, limited,
				{advance: time.Second, network: "udp", rcode: dns.RcodeSuccess}, limited,
				{advance: 5 * time.Second, network: "tcp", rcode: dns.RcodeSuccess}, ok, limited},
			rateLimited: 4,
			upstream:    1,
		},
		{
			name:        "rate_limit_drop",
			access:      resolver.AccessConfig{Allow: loop, RateQPS: 1, RateBurst: 2, RateDrop: true},
			steps:       []step{ok, ok, {network: "udp", rcode: dropped}},
			rateLimited: 1,
			drops:       1,
			upstream:    1,
		},
		{
			name: "rate_limit_exempt",
			access: resolver.AccessConfig{Allow: loop, RateQPS: 1, RateBurst: 2,
				Exempt: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
			steps:    []step{ok, ok, ok, ok, ok, ok},
			upstream: 1,
		},
		{
			name: "rate_limit_exempt_other_prefix",
			access: resolver.AccessConfig{Allow: loop, RateQPS: 1, RateBurst: 2,
				Exempt: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}},
			steps:       []step{ok, ok, limited},
			rateLimited: 1,
			upstream:    1,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{access: &c.access})
			for i, s := range c.steps {
				h.clock.step(s.advance)
				m := msg("access.example.", dns.TypeA, 1232, false)
				what := fmt.Sprintf("query %d (%s)", i+1, s.network)
				if s.rcode == dropped {
					wire, err := m.Pack()
					if err != nil {
						t.Fatal(err)
					}
					if raw := rawUDP(t, h.addr, wire, noReplyWait); raw != nil {
						t.Fatalf("%s: got a %d-byte reply, want none (drop)", what, len(raw))
					}
				} else {
					r := h.exchange(t, s.network, m)
					if r.Rcode != s.rcode {
						t.Fatalf("%s: rcode %s, want %s", what, dns.RcodeToString[r.Rcode], dns.RcodeToString[s.rcode])
					}
					if s.edeSet {
						if e := wantEDE(t, r, s.ede); e.ExtraText == "" {
							t.Errorf("%s: EDE without text", what)
						}
					}
					if r.Rcode == dns.RcodeRefused && len(r.Answer) != 0 {
						t.Errorf("%s: REFUSED with answers %v", what, r.Answer)
					}
				}
				o := h.obs.next(t)
				switch {
				case s.rcode == dropped && o.Rcode != -1:
					t.Errorf("%s: observed rcode %d, want a dropped query (-1)", what, o.Rcode)
				case s.rcode == dns.RcodeRefused && o.Info.Reason != "not_allowed" && o.Info.Reason != "rate_limited":
					t.Errorf("%s: observed reason %q for a refusal", what, o.Info.Reason)
				}
			}
			for _, m := range []struct {
				name      string
				got, want float64
			}{
				{"refused_total{not_allowed}", testutil.ToFloat64(h.metrics.Refused.WithLabelValues("not_allowed")), c.notAllowed},
				{"refused_total{rate_limited}", testutil.ToFloat64(h.metrics.Refused.WithLabelValues("rate_limited")), c.rateLimited},
				{"dropped_total", testutil.ToFloat64(h.metrics.Dropped), c.drops},
				{"queries_total{A,DROPPED,UDP}", testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "DROPPED", "UDP")), c.drops},
			} {
				if m.got != m.want {
					t.Errorf("%s = %v, want %v", m.name, m.got, m.want)
				}
			}
			if n := h.up.hits.Load(); n != c.upstream {
				t.Errorf("upstream asked %d times, want %d", n, c.upstream)
			}
		})
	}
}
