package cache

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// clock is a manually stepped clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) step(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeUpstream is an Exchanger answering with reply(m); every call is
// counted and, if calls is non-nil, announced on it.
type fakeUpstream struct {
	n     atomic.Int32
	calls chan *dns.Msg
	reply func(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
}

var _ Exchanger = (*fakeUpstream)(nil)

func (f *fakeUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	f.n.Add(1)
	if f.calls != nil {
		f.calls <- m
	}
	resp, err := f.reply(ctx, m)
	return resp, "fake", err
}

var errUpstream = errors.New("upstream down")

// answerWith returns a reply function answering every query with rrs
// (owner names rewritten to the query name when written as "@").
func answerWith(tb testing.TB, rcode int, answer []string, ns []string) func(context.Context, *dns.Msg) (*dns.Msg, error) {
	tb.Helper()
	an, au := mustRRs(tb, answer...), mustRRs(tb, ns...)
	return func(_ context.Context, m *dns.Msg) (*dns.Msg, error) {
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		r.RecursionAvailable = true
		r.Authoritative = true // as an authoritative upstream would
		r.Answer = copyRRs(an)
		r.Ns = copyRRs(au)
		return r, nil
	}
}

func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

func mustRRs(tb testing.TB, ss ...string) []dns.RR {
	tb.Helper()
	var out []dns.RR
	for _, s := range ss {
		rr, err := dns.NewRR(s)
		if err != nil {
			tb.Fatalf("parse %q: %v", s, err)
		}
		out = append(out, rr)
	}
	return out
}

// newQuery builds a client query; edns adds an OPT with the DO bit do.
func newQuery(name string, qtype uint16, edns, do bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	if edns {
		m.SetEdns0(4096, do)
	}
	return m
}

type testCache struct {
	*Cache
	clock *clock
	reg   *prometheus.Registry
	up    *fakeUpstream
}

func newTestCache(tb testing.TB, cfg Config, up *fakeUpstream) *testCache {
	tb.Helper()
	clk := newClock()
	reg := prometheus.NewRegistry()
	c, err := New(cfg, up, NewMetrics(reg), nil, clk.now)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(c.Close)
	return &testCache{Cache: c, clock: clk, reg: reg, up: up}
}

func mustResolve(tb testing.TB, c *Cache, req *dns.Msg) (*dns.Msg, string) {
	tb.Helper()
	resp, st, _, err := c.Resolve(context.Background(), req)
	if err != nil {
		tb.Fatalf("Resolve %s: %v", req.Question[0].Name, err)
	}
	return resp, st.String()
}

func ttls(rrs []dns.RR) []uint32 {
	var out []uint32
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			out = append(out, rr.Header().Ttl)
		}
	}
	return out
}

// startServer serves handler over UDP on 127.0.0.1:0 and returns its address.
func startServer(tb testing.TB, handler dns.HandlerFunc) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: handler, NotifyStartedFunc: func() { close(started) }}
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		tb.Fatalf("serve: %v", err)
	}
	tb.Cleanup(func() {
		if err := srv.Shutdown(); err != nil {
			tb.Errorf("shutdown: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

// clientExchanger adapts a miekg/dns client talking to addr to Exchanger.
type clientExchanger struct {
	client *dns.Client
	addr   string
}

func (e clientExchanger) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	resp, _, err := e.client.ExchangeContext(ctx, m, e.addr)
	return resp, e.addr, err
}
