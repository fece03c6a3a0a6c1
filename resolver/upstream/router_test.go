package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRouter sends queries through a router over real sockets: a default
// group, one for corp.test (and 10.in-addr.arpa), and one for the nested
// zone lab.corp.test; each name must reach its group's server.
func TestRouter(t *testing.T) {
	var nDef, nCorp, nLab atomic.Int64
	group := func(ip string, n *atomic.Int64) *Group {
		u, err := New(countingServer(t, dns.RcodeSuccess, ip, n), Options{})
		if err != nil {
			t.Fatal(err)
		}
		return newTestGroup(t, []Upstream{u}, GroupConfig{}, nil, nil)
	}
	def, corp, lab := group("192.0.2.1", &nDef), group("192.0.2.2", &nCorp), group("192.0.2.3", &nLab)
	r, err := NewRouter(def, []Conditional{
		{Zones: []string{"corp.test.", "10.in-addr.arpa."}, Group: corp},
		{Zones: []string{"Lab.Corp.Test"}, Group: lab}, // case and trailing dot do not matter
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		qtype uint16
		want  string
	}{
		{"corp.test.", dns.TypeA, "192.0.2.2"},              // the zone's apex
		{"db.eu.corp.test.", dns.TypeA, "192.0.2.2"},        // under it
		{"DB.Corp.TEST.", dns.TypeA, "192.0.2.2"},           // any case
		{"lab.corp.test.", dns.TypeA, "192.0.2.3"},          // the longest zone wins
		{"host.lab.corp.test.", dns.TypeA, "192.0.2.3"},     //
		{"notcorp.test.", dns.TypeA, "192.0.2.1"},           // a sibling is not under the zone
		{"test.", dns.TypeA, "192.0.2.1"},                   // nor its parent
		{"corp.test.example.", dns.TypeA, "192.0.2.1"},      // nor a name that only contains it
		{`x\.corp.test.`, dns.TypeA, "192.0.2.1"},           // one label "x.corp" under test.
		{"5.0.0.10.in-addr.arpa.", dns.TypeA, "192.0.2.2"},  // a reverse zone
		{"5.0.0.192.in-addr.arpa.", dns.TypeA, "192.0.2.1"}, //
		{"example.com.", dns.TypeA, "192.0.2.1"},            //
		{".", dns.TypeA, "192.0.2.1"},                       // the root
		{"corp.test.", dns.TypeDS, "192.0.2.1"},             // DS: the parent's side of the cut
		{"lab.corp.test.", dns.TypeDS, "192.0.2.2"},         //
		{"db.lab.corp.test.", dns.TypeDS, "192.0.2.3"},      //
	}
	for _, tc := range tests {
		t.Run(strings.Trim(tc.name, ".")+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			resp, _, err := r.Exchange(context.Background(), newQuery(tc.name, tc.qtype))
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Answer) != 1 || !strings.Contains(resp.Answer[0].String(), tc.want) {
				t.Errorf("%s %s answered %v, want %s", tc.name, dns.TypeToString[tc.qtype], resp.Answer, tc.want)
			}
		})
	}
	if nDef.Load() != 8 || nCorp.Load() != 5 || nLab.Load() != 3 {
		t.Errorf("queries default/corp/lab = %d/%d/%d, want 8/5/3", nDef.Load(), nCorp.Load(), nLab.Load())
	}
	st := r.Status()
	if len(st) != 3 || st[0].Zones != nil || strings.Join(st[1].Zones, ",") != "corp.test.,10.in-addr.arpa." || !r.Healthy() {
		t.Errorf("Status() = %+v, Healthy %v", st, r.Healthy())
	}
}

func TestNewRouter_invalid(t *testing.T) {
	// Loopback addresses never asked: nothing here sends a query.
	g := newTestGroup(t, []Upstream{mustNew(t, "udp://127.0.0.1:1", Options{})}, GroupConfig{}, nil, nil)
	h := newTestGroup(t, []Upstream{mustNew(t, "udp://127.0.0.1:2", Options{})}, GroupConfig{}, nil, nil)
	for _, tc := range []struct {
		name  string
		conds []Conditional
		want  string
	}{
		{"root", []Conditional{{Zones: []string{"."}, Group: h}}, "root"},
		{"twice", []Conditional{{Zones: []string{"a.test"}, Group: h}, {Zones: []string{"A.test."}, Group: g}}, "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewRouter(g, tc.conds); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("NewRouter error = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// BenchmarkRouterRoute measures the routing a cache miss pays with a few
// conditional zones (a name in none of them: every suffix is looked up).
func BenchmarkRouterRoute(b *testing.B) {
	g := newTestGroup(b, []Upstream{mustNew(b, "udp://127.0.0.1:1", Options{})}, GroupConfig{}, nil, nil)
	r, err := NewRouter(g, []Conditional{{Zones: []string{"corp.internal", "10.in-addr.arpa", "eu-west-1.compute.internal"}, Group: g}})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if r.route("www.images.example.com.") != g {
			b.Fatal("wrong group")
		}
	}
}

// TestGroup_probeZone: a down upstream that answers only for its own zone
// (a corporate server without recursion refuses the root) comes back
// through a probe of its zone's SOA, and stays down with the root's NS.
func TestGroup_probeZone(t *testing.T) {
	for _, tc := range []struct {
		name, probeZone string
		wantUp          bool
	}{
		{"zone_soa", "corp.test", true},
		{"root_ns", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var answering atomic.Bool
			srv := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
				switch q := r.Question[0]; {
				case !answering.Load():
					return // down: no answer
				case q.Name == "corp.test." && q.Qtype == dns.TypeSOA, strings.HasSuffix(q.Name, ".corp.test."):
					_ = w.WriteMsg(reply(r, dns.RcodeSuccess, "192.0.2.2"))
				default:
					_ = w.WriteMsg(reply(r, dns.RcodeRefused, ""))
				}
			})
			up := mustNew(t, "udp://"+srv.Addr, Options{Timeout: 300 * time.Millisecond})
			var ups atomic.Int32
			g := newTestGroup(t, []Upstream{up}, GroupConfig{MaxFails: 1, ProbeZone: tc.probeZone, OnUp: func() { ups.Add(1) }}, nil, nil)
			if _, _, err := g.Exchange(t.Context(), newQuery("db.corp.test.", dns.TypeA)); err == nil || g.Healthy() {
				t.Fatalf("unanswered query: err %v, healthy %v; want down", err, g.Healthy())
			}
			answering.Store(true)
			g.ProbeNow(t.Context())
			if g.Healthy() != tc.wantUp {
				t.Errorf("after a probe: healthy %v, want %v", g.Healthy(), tc.wantUp)
			}
			if got, want := ups.Load(), map[bool]int32{true: 1, false: 0}[tc.wantUp]; got != want {
				t.Errorf("OnUp called %d times, want %d", got, want)
			}
		})
	}
}

// TestErrOverloadedIsTransient: the cache does not remember a failure of
// a query the group never sent (it checks for a Transient method).
func TestErrOverloadedIsTransient(t *testing.T) {
	var tr interface{ Transient() bool }
	err := fmt.Errorf("upstream: 8 queries in flight: %w", ErrOverloaded)
	if !errors.As(err, &tr) || !tr.Transient() || !errors.Is(err, ErrOverloaded) {
		t.Errorf("%v is not Transient, or not ErrOverloaded", err)
	}
	if errors.As(fmt.Errorf("x: %w", ErrAllFailed), &tr) {
		t.Error("ErrAllFailed is Transient: a failure of every upstream must be remembered")
	}
}
