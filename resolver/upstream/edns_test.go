package upstream

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ednsServer answers like a server from before EDNS0 (mode "intolerant":
// FORMERR without OPT to a query with one, an A record otherwise;
// "intolerant_notimp": NOTIMP instead; "intolerant_no_question": the
// FORMERR without the question), one that rejects everything ("reject":
// FORMERR), one that knows EDNS0 and rejects the query anyway ("aware":
// FORMERR with an OPT record), or one that does not answer ("drop"). It
// counts the queries it got with and without an OPT record.
type ednsServer struct {
	mode          atomic.Value // string
	withOPT, bare atomic.Int64
	addr          string
}

func startEDNSServer(tb testing.TB, mode string) *ednsServer {
	tb.Helper()
	s := &ednsServer{}
	s.mode.Store(mode)
	s.addr = startDNS(tb, func(w dns.ResponseWriter, r *dns.Msg) {
		opt := r.IsEdns0()
		if opt != nil {
			s.withOPT.Add(1)
		} else {
			s.bare.Add(1)
		}
		var m *dns.Msg
		switch mode := s.mode.Load().(string); mode {
		case "drop":
			return
		case "intolerant", "intolerant_notimp", "intolerant_no_question":
			switch {
			case opt == nil:
				m = reply(r, dns.RcodeSuccess, "192.0.2.53")
			case mode == "intolerant_notimp":
				m = reply(r, dns.RcodeNotImplemented, "")
			default:
				m = reply(r, dns.RcodeFormatError, "")
				if mode == "intolerant_no_question" {
					m.Question = nil
				}
			}
		case "reject":
			m = reply(r, dns.RcodeFormatError, "")
		case "aware":
			m = reply(r, dns.RcodeFormatError, "")
			if opt != nil {
				m.SetEdns0(1232, false)
			}
		}
		_ = w.WriteMsg(m)
	}).Addr
	return s
}

func (s *ednsServer) counts() (withOPT, bare int64) { return s.withOPT.Load(), s.bare.Load() }

func TestGroup_ednsFallback(t *testing.T) {
	type step struct {
		wait          time.Duration // clock step before the query
		wantOK        bool
		withOPT, bare int64 // queries the server got for it
	}
	for _, tc := range []struct {
		name      string
		mode      string
		scheme    string
		clientOPT bool
		steps     []step
		retries   float64 // edns_fallbacks_total at the end
	}{
		{
			// Retried without EDNS0, then queried without it for
			// ednsOffFor, then EDNS0 is tried again.
			name: "intolerant_udp", mode: "intolerant", scheme: "udp",
			steps: []step{
				{0, true, 1, 1},
				{time.Minute, true, 0, 1},
				{ednsOffFor, true, 1, 1},
				{0, true, 0, 1},
			},
			retries: 2,
		},
		{
			name: "intolerant_client_opt_tcp", mode: "intolerant", scheme: "tcp", clientOPT: true,
			steps:   []step{{0, true, 1, 1}, {0, true, 0, 1}},
			retries: 1,
		},
		{
			// Rejected without EDNS0 too: the verdict is not kept, and
			// the query fails over (here: fails).
			name: "rejects_everything", mode: "reject", scheme: "udp",
			steps:   []step{{0, false, 1, 1}, {0, false, 1, 1}},
			retries: 2,
		},
		{
			// A rejection that carries an OPT record comes from a server
			// that knows EDNS0: no retry.
			name: "rejection_with_opt", mode: "aware", scheme: "udp", clientOPT: true,
			steps: []step{{0, false, 1, 0}},
		},
		{
			name: "rejection_with_opt_udp_own", mode: "aware", scheme: "udp",
			steps: []step{{0, false, 1, 0}},
		},
		{
			// Nothing sent with EDNS0, nothing to fall back from.
			name: "tcp_without_opt", mode: "reject", scheme: "tcp",
			steps: []step{{0, false, 0, 1}},
		},
		{
			name: "notimp", mode: "intolerant_notimp", scheme: "udp",
			steps:   []step{{0, true, 1, 1}, {0, true, 0, 1}},
			retries: 1,
		},
		{
			// A rejection without its question is taken on its ID alone:
			// over UDP it earns the retry but no verdict (a forger would
			// not need the name's 0x20 case), so each query retries.
			name: "no_question_udp", mode: "intolerant_no_question", scheme: "udp",
			steps:   []step{{0, true, 1, 1}, {0, true, 1, 1}},
			retries: 2,
		},
		{
			// Over TCP nobody forges it: the verdict holds.
			name: "no_question_tcp", mode: "intolerant_no_question", scheme: "tcp", clientOPT: true,
			steps:   []step{{0, true, 1, 1}, {0, true, 0, 1}},
			retries: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := startEDNSServer(t, tc.mode)
			m := NewMetrics(nil)
			clock := newClock()
			up := mustNew(t, tc.scheme+"://"+srv.addr, Options{})
			g := newTestGroup(t, []Upstream{up}, GroupConfig{}, m, clock)
			ctx := t.Context()
			for i, st := range tc.steps {
				clock.Step(st.wait)
				q := newQuery("example.org.", dns.TypeA)
				if tc.clientOPT {
					q.SetEdns0(1232, true)
				}
				w0, b0 := srv.counts()
				r, _, err := g.Exchange(ctx, q)
				w1, b1 := srv.counts()
				if w1-w0 != st.withOPT || b1-b0 != st.bare {
					t.Errorf("query %d: server got %d with OPT and %d without, want %d and %d", i, w1-w0, b1-b0, st.withOPT, st.bare)
				}
				if (q.IsEdns0() != nil) != tc.clientOPT {
					t.Errorf("query %d: the caller's message changed its OPT record", i)
				}
				switch {
				case st.wantOK:
					if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
						t.Fatalf("query %d: %v, %v; want an answer", i, r, err)
					}
					// Every answer here came from a query without EDNS0.
					if r.IsEdns0() != nil {
						t.Errorf("query %d: the upstream's answer without EDNS0 has an OPT record", i)
					}
				default:
					wantErrIs(t, err, ErrAllFailed)
				}
			}
			if got := testutil.ToFloat64(m.EDNSFallbacks.WithLabelValues(up.String())); got != tc.retries {
				t.Errorf("edns_fallbacks_total = %v, want %v", got, tc.retries)
			}
			// Status shows the verdict while it holds: after the last
			// step, exactly when that step went without EDNS0 alone
			// after a fallback.
			last := tc.steps[len(tc.steps)-1]
			off := g.Status()[0].EDNSOffUntil
			if want := last.bare == 1 && last.withOPT == 0 && tc.retries > 0; !off.IsZero() != want {
				t.Errorf("Status EDNSOffUntil %v, want set %v", off, want)
			} else if want && !off.After(clock.Now()) {
				t.Errorf("Status EDNSOffUntil %v, not after now %v", off, clock.Now())
			}
		})
	}
}

// A probe of an upstream marked down falls back too, and its verdict holds
// for the queries after it.
func TestGroup_ednsFallbackProbe(t *testing.T) {
	srv := startEDNSServer(t, "drop")
	clock := newClock()
	up := mustNew(t, "udp://"+srv.addr, Options{Timeout: 300 * time.Millisecond})
	g := newTestGroup(t, []Upstream{up}, GroupConfig{MaxFails: 1}, nil, clock)
	q := newQuery("example.org.", dns.TypeA)
	if _, _, err := g.Exchange(t.Context(), q); err == nil || g.Healthy() {
		t.Fatalf("dropped query: err %v, healthy %v; want down", err, g.Healthy())
	}
	srv.mode.Store("intolerant")
	w0, b0 := srv.counts()
	g.ProbeNow(context.Background())
	if w1, b1 := srv.counts(); !g.Healthy() || w1-w0 != 1 || b1-b0 != 1 {
		t.Fatalf("probe: healthy %v, %d with OPT and %d without; want up after one of each", g.Healthy(), w1-w0, b1-b0)
	}
	w0, b0 = srv.counts()
	if r, _, err := g.Exchange(t.Context(), q); err != nil || len(r.Answer) != 1 {
		t.Fatalf("after probe: %v, %v", r, err)
	}
	if w1, b1 := srv.counts(); w1 != w0 || b1-b0 != 1 {
		t.Errorf("after probe: %d with OPT and %d without, want 0 and 1", w1-w0, b1-b0)
	}
}

// The retry without EDNS0 runs within the first attempt's per-upstream
// timeout, not a fresh one: a fallback never takes more of the group's
// budget than one try.
func TestExchangeEDNSSharesTheTryTimeout(t *testing.T) {
	up := mustNew(t, "udp://127.0.0.1:9", Options{Timeout: time.Hour})
	g := newTestGroup(t, []Upstream{up}, GroupConfig{}, nil, nil)
	var deadlines []time.Time
	var plain []bool
	send := func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		d, _ := ctx.Deadline()
		deadlines = append(deadlines, d)
		plain = append(plain, noEDNS(ctx) && m.IsEdns0() == nil)
		if len(deadlines) == 1 {
			return reply(m, dns.RcodeFormatError, ""), nil
		}
		return reply(m, dns.RcodeSuccess, "192.0.2.1"), nil
	}
	before := time.Now()
	r, err := g.exchangeEDNS(t.Context(), g.members[0], newQuery("example.org.", dns.TypeA), send)
	after := time.Now()
	if err != nil || r.Rcode != dns.RcodeSuccess || len(deadlines) != 2 {
		t.Fatalf("%v, %v after %d attempts; want an answer after 2", r, err, len(deadlines))
	}
	if !deadlines[0].IsZero() || plain[0] || !plain[1] {
		t.Errorf("first attempt: deadline %v, plain %v; retry plain %v; want none, false, true", deadlines[0], plain[0], plain[1])
	}
	if d := deadlines[1]; d.Before(before.Add(time.Hour)) || d.After(after.Add(time.Hour)) {
		t.Errorf("retry deadline %v, want the first attempt's start + 1h (%v..%v)", d, before.Add(time.Hour), after.Add(time.Hour))
	}
}
