package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/upstream"
)

// clock is a manually stepped clock shared by the cache, the access stage
// and the server.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)} }

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

// fakeUpstream is an in-process DNS server (UDP and TCP on one loopback
// port) whose answers the test controls. Every query it receives is
// counted. Over UDP, replies are truncated to the query's EDNS0 size (512
// without EDNS0) like a real server, so big answers make the resolver
// retry over TCP.
type fakeUpstream struct {
	addr    string // 127.0.0.1:port
	hits    atomic.Int64
	handler atomic.Pointer[dns.HandlerFunc]
	servers []*dns.Server
	stopped atomic.Bool
}

// startUpstream starts a fake upstream answering with h.
func startUpstream(tb testing.TB, h dns.HandlerFunc) *fakeUpstream {
	tb.Helper()
	pc, l := listenPair(tb)
	u := &fakeUpstream{addr: pc.LocalAddr().String()}
	u.setHandler(h)
	mux := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		u.hits.Add(1)
		(*u.handler.Load())(&truncatingWriter{ResponseWriter: w, req: r}, r)
	})
	started := make(chan struct{}, 2)
	for _, s := range []*dns.Server{
		{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { started <- struct{}{} }},
		{Listener: l, Handler: mux, NotifyStartedFunc: func() { started <- struct{}{} }},
	} {
		u.servers = append(u.servers, s)
		go func() { _ = s.ActivateAndServe() }()
	}
	<-started
	<-started
	tb.Cleanup(u.stop)
	return u
}

// listenPair binds UDP and TCP on one loopback port, retrying when the
// TCP side of a free UDP port is taken.
func listenPair(tb testing.TB) (net.PacketConn, net.Listener) {
	tb.Helper()
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("listen udp: %v", err)
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l
		}
		pc.Close()
		lastErr = err
	}
	tb.Fatalf("listen tcp: %v", lastErr)
	return nil, nil
}

func (u *fakeUpstream) setHandler(h dns.HandlerFunc) { u.handler.Store(&h) }

// url is the upstream's address as configured in upstream.servers.
func (u *fakeUpstream) url() string { return "udp://" + u.addr }

// stop closes both listeners (idempotent).
func (u *fakeUpstream) stop() {
	if !u.stopped.CompareAndSwap(false, true) {
		return
	}
	for _, s := range u.servers {
		_ = s.Shutdown()
	}
}

type truncatingWriter struct {
	dns.ResponseWriter
	req *dns.Msg
}

func (w *truncatingWriter) WriteMsg(m *dns.Msg) error {
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		size := dns.MinMsgSize
		if opt := w.req.IsEdns0(); opt != nil {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	return w.ResponseWriter.WriteMsg(m)
}

// answer returns a handler answering every query with rcode and the given
// records; "@" in a record stands for the query name.
func answer(tb testing.TB, rcode int, ans, ns []string) dns.HandlerFunc {
	tb.Helper()
	for _, s := range append(append([]string(nil), ans...), ns...) {
		if _, err := dns.NewRR(strings.ReplaceAll(s, "@", "example.")); err != nil {
			tb.Fatalf("bad record %q: %v", s, err)
		}
	}
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		m.RecursionAvailable = true
		qn := r.Question[0].Name
		for _, s := range ans {
			rr, _ := dns.NewRR(strings.ReplaceAll(s, "@", qn))
			m.Answer = append(m.Answer, rr)
		}
		for _, s := range ns {
			rr, _ := dns.NewRR(strings.ReplaceAll(s, "@", qn))
			m.Ns = append(m.Ns, rr)
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		_ = w.WriteMsg(m)
	}
}

// byType answers from a table keyed by qtype; other types get NODATA with a
// SOA.
func byType(tb testing.TB, recs map[uint16][]string) dns.HandlerFunc {
	tb.Helper()
	hs := map[uint16]dns.HandlerFunc{}
	for t, rrs := range recs {
		hs[t] = answer(tb, dns.RcodeSuccess, rrs, nil)
	}
	nodata := answer(tb, dns.RcodeSuccess, nil, []string{"@ 300 IN SOA ns.example. host.example. 1 2 3 4 300"})
	return func(w dns.ResponseWriter, r *dns.Msg) {
		if h, ok := hs[r.Question[0].Qtype]; ok {
			h(w, r)
			return
		}
		nodata(w, r)
	}
}

// blockingUpstream answers with h once release is closed, announcing each
// query on arrived (buffered; extra announcements are dropped).
func blocking(h dns.HandlerFunc, arrived chan<- struct{}, release <-chan struct{}) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		h(w, r)
	}
}

// observation is what the test observer keeps of one Observe call.
type observation struct {
	Question   dns.Question
	NoQuestion bool
	Client     query.Client
	Server     netip.AddrPort
	Proto      query.Proto
	Info       query.Info
	Rcode      int // -1: no reply (dropped)
}

// recorder is an Observer sending each observation on a channel.
type recorder struct{ ch chan observation }

func newRecorder() *recorder { return &recorder{ch: make(chan observation, 256)} }

var _ resolver.Observer = (*recorder)(nil)

func (r *recorder) Observe(req *query.Request, resp *dns.Msg, _ time.Duration) {
	o := observation{Client: req.Client, Server: req.Server, Proto: req.Proto, Info: req.Info, Rcode: -1}
	o.Info.Signals = append([]string(nil), req.Info.Signals...)
	if len(req.Msg.Question) > 0 {
		o.Question = req.Msg.Question[0]
	} else {
		o.NoQuestion = true
	}
	if resp != nil {
		o.Rcode = resp.Rcode
	}
	r.ch <- o
}

// next waits for the next observation.
func (r *recorder) next(tb testing.TB) observation {
	tb.Helper()
	select {
	case o := <-r.ch:
		return o
	case <-time.After(10 * time.Second):
		tb.Fatal("no Observe call within 10s")
	}
	return observation{}
}

// none checks that no observation is pending beyond those consumed.
func (r *recorder) none(tb testing.TB) {
	tb.Helper()
	select {
	case o := <-r.ch:
		tb.Fatalf("unexpected extra observation: %+v", o)
	default:
	}
}

// harnessConfig describes one server under test. Zero values mean: the
// default cache config with prefetch off, every loopback client allowed,
// an open default policy without lists, one fake upstream.
type harnessConfig struct {
	cache     cache.Config
	access    *resolver.AccessConfig
	policy    policy.Config
	lists     map[string]policy.Matcher
	handler   dns.HandlerFunc // fake upstream's handler
	upstreams []string        // replace the fake upstream in the group
	upOpts    upstream.Options
	group     upstream.GroupConfig
	// inner middlewares run between the policy stage and the cache.
	inner []resolver.Middleware
	// tcpMaxConns and tcpMaxConnsPerClient are the server's TCP limits.
	tcpMaxConns, tcpMaxConnsPerClient int
}

// harness is a running Server with the production chain over a real
// cache and upstream group.
type harness struct {
	srv     *resolver.Server
	addr    string
	up      *fakeUpstream
	clock   *clock
	reg     *prometheus.Registry
	metrics *resolver.Metrics
	cache   *cache.Cache
	store   *policy.Store
	obs     *recorder
}

type storeIdentifier struct{ s *policy.Store }

func (i storeIdentifier) Identify(a netip.Addr) (string, string, string) {
	return i.s.Load().Identify(a)
}

func loopbackAllowed() resolver.AccessConfig {
	return resolver.AccessConfig{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
}

// buildChain wires the chain like cmd/dnsvalve: access, policy, then the
// cache (which forwards misses to the group).
func buildChain(tb testing.TB, hc harnessConfig, clk *clock, reg *prometheus.Registry, sm *resolver.Metrics, upURL string) (resolver.Handler, *cache.Cache, *policy.Store) {
	tb.Helper()
	urls := hc.upstreams
	if urls == nil {
		urls = []string{upURL}
	}
	upm := upstream.NewMetrics(reg)
	var ups []upstream.Upstream
	for _, s := range urls {
		opts := hc.upOpts
		opts.Metrics = upm
		u, err := upstream.New(s, opts)
		if err != nil {
			tb.Fatalf("upstream.New(%q): %v", s, err)
		}
		ups = append(ups, u)
	}
	g, err := upstream.NewGroup(ups, hc.group, upm, nil, nil)
	if err != nil {
		tb.Fatalf("NewGroup: %v", err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	c, err := cache.New(hc.cache, g, cache.NewMetrics(reg), nil, clk.now)
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	tb.Cleanup(c.Close)
	snap, err := policy.Compile(hc.policy, hc.lists)
	if err != nil {
		tb.Fatalf("policy.Compile: %v", err)
	}
	store := policy.NewStore(snap)
	ac := loopbackAllowed()
	if hc.access != nil {
		ac = *hc.access
	}
	mws := []resolver.Middleware{
		resolver.Access(ac, sm, clk.now),
		resolver.Policy(store, policy.NewMetrics(reg)),
	}
	mws = append(mws, hc.inner...)
	return resolver.Chain(resolver.Forward(c), mws...), c, store
}

// newHarness starts a server listening on 127.0.0.1:0.
func newHarness(tb testing.TB, hc harnessConfig) *harness {
	tb.Helper()
	h := &harness{clock: newClock(), reg: prometheus.NewRegistry(), obs: newRecorder()}
	if hc.handler == nil {
		hc.handler = answer(tb, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1"}, nil)
	}
	h.up = startUpstream(tb, hc.handler)
	h.metrics = resolver.NewMetrics(h.reg)
	var chain resolver.Handler
	chain, h.cache, h.store = buildChain(tb, hc, h.clock, h.reg, h.metrics, h.up.url())
	// Start binds TCP on the port UDP got; retry if that one is taken.
	var err error
	scfg := resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}}
	if hc.access != nil { // as cmd/dnsvalve wires it
		scfg.Allowed, scfg.DropOutsiders = hc.access.Allows, hc.access.Drop
	}
	scfg.TCPMaxConns, scfg.TCPMaxConnsPerClient = hc.tcpMaxConns, hc.tcpMaxConnsPerClient
	for range 10 {
		h.srv = resolver.NewServer(scfg, chain, h.obs, h.metrics, nil, h.clock.now)
		h.srv.SetIdentifier(storeIdentifier{h.store})
		if err = h.srv.Start(context.Background()); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	h.addr = h.srv.Addrs()[0].String()
	return h
}

// msg builds a client query with ID 0xbeef; bufsize 0 means no EDNS0.
func msg(name string, qtype uint16, bufsize uint16, do bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0xbeef
	if bufsize > 0 {
		m.SetEdns0(bufsize, do)
	}
	return m
}

// exchange sends m over network ("udp" or "tcp") and returns the reply.
func (h *harness) exchange(tb testing.TB, network string, m *dns.Msg) *dns.Msg {
	tb.Helper()
	r, err := tryExchange(network, h.addr, m)
	if err != nil {
		tb.Fatalf("%s query %s: %v", network, m.Question[0].Name, err)
	}
	return r
}

func tryExchange(network, addr string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: 10 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	return r, err
}

// rawUDP sends wire to addr and returns the reply bytes, or nil when
// nothing arrives within wait.
func rawUDP(tb testing.TB, addr string, wire []byte, wait time.Duration) []byte {
	tb.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write(wire); err != nil {
		tb.Fatalf("write: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 65535)
	n, err := conn.Read(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		tb.Fatalf("read: %v", err)
	}
	return buf[:n]
}

// noReplyWait is how long "expect no reply" tests wait.
const noReplyWait = 300 * time.Millisecond

// ede returns the Extended DNS Error options of m's OPT record.
func ede(m *dns.Msg) []*dns.EDNS0_EDE {
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	var out []*dns.EDNS0_EDE
	for _, o := range opt.Option {
		if e, ok := o.(*dns.EDNS0_EDE); ok {
			out = append(out, e)
		}
	}
	return out
}

// wantEDE checks that m carries exactly one EDE with code.
func wantEDE(tb testing.TB, m *dns.Msg, code uint16) *dns.EDNS0_EDE {
	tb.Helper()
	es := ede(m)
	if len(es) != 1 || es[0].InfoCode != code {
		tb.Fatalf("EDE = %v, want one with code %d (%s)\n%v", es, code, dns.ExtendedErrorCodeToString[code], m)
	}
	return es[0]
}

func wantRcode(tb testing.TB, m *dns.Msg, rcode int) {
	tb.Helper()
	if m.Rcode != rcode {
		tb.Fatalf("rcode = %s, want %s\n%v", dns.RcodeToString[m.Rcode], dns.RcodeToString[rcode], m)
	}
}

// waitUntil spins (yielding, no sleeping) until cond holds, failing after
// 10s.
func waitUntil(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		runtime.Gosched()
	}
}

// buildList compiles an inline domain list.
func buildList(tb testing.TB, name, category, text string) *lists.List {
	tb.Helper()
	b := lists.NewBuilder()
	if _, err := lists.Parse(strings.NewReader(text), name+".txt", lists.FormatAuto, b); err != nil {
		tb.Fatalf("parse list %s: %v", name, err)
	}
	return b.Build(name, category)
}

// manyA returns n A records for the query name.
func manyA(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("@ 300 IN A 198.51.%d.%d", 100+i/250, 1+i%250)
	}
	return out
}
