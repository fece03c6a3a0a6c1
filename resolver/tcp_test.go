package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// tcpTestDeadline bounds every read and write of these tests: generous,
// as nothing waits for it but a failure.
const tcpTestDeadline = 20 * time.Second

// gate is a handler for the TCP tests. Queries for names starting with
// "slow" announce themselves on entered and wait for a token on release
// (or for release to be closed), after query.BeforeWait as a stage
// waiting on an upstream; the others are answered at once. Every
// answer is a TXT record of the client the server saw (as whoami).
type gate struct {
	entered  chan string
	release  chan struct{}
	inflight atomic.Int32
	peak     atomic.Int32 // the most queries in the handler at once
}

func newGate() *gate {
	return &gate{entered: make(chan string, 64), release: make(chan struct{}, 64)}
}

func (g *gate) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	n := g.inflight.Add(1)
	defer g.inflight.Add(-1)
	for p := g.peak.Load(); n > p && !g.peak.CompareAndSwap(p, n); p = g.peak.Load() {
	}
	name := req.Msg.Question[0].Name
	if strings.HasPrefix(name, "slow") {
		query.BeforeWait(ctx)
		g.entered <- name
		<-g.release
	}
	return whoami.ServeDNS(ctx, req)
}

// startTCPTest starts a Server on 127.0.0.1:0 with h; tweak (may be nil)
// adjusts it before Start. The server is shut down at the end of the test.
func startTCPTest(t *testing.T, cfg ServerConfig, h Handler, tweak func(*Server)) (*Server, string) {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	s := NewServer(cfg, h, nil, nil, nil, nil)
	if tweak != nil {
		tweak(s)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), tcpTestDeadline)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return s, s.Addrs()[0].String()
}

// dialConn connects to addr over TCP, closing the connection when the
// test ends.
func dialConn(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatalf("dial: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// dialTest connects to addr with tcpTestDeadline on every operation.
func dialTest(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c := dialConn(t, addr)
	_ = c.SetDeadline(time.Now().Add(tcpTestDeadline))
	return c.(*net.TCPConn)
}

// frames packs queries for names, with IDs 1, 2, ..., as one stream of
// length-prefixed messages.
func frames(t *testing.T, names ...string) []byte {
	t.Helper()
	var out []byte
	for i, name := range names {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeTXT)
		m.Id = uint16(i + 1)
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(wire)))
		out = append(out, wire...)
	}
	return out
}

func write(t *testing.T, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// wantClosed reads from c and fails unless the server closed it (EOF or
// reset) before the test deadline.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	n, err := c.Read(make([]byte, 512))
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("read %d bytes, want the connection closed", n)
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("connection still open: %v", err)
	}
}

// TestTCPPipelinedOutOfOrder: of two queries pipelined on one connection,
// the fast second one is answered while the slow first one is still in
// the handler (it is released only once that reply was read), then the
// first; also behind a PROXY v2 header, with the announced client seen
// by both.
func TestTCPPipelinedOutOfOrder(t *testing.T) {
	t.Parallel()
	src := netip.MustParseAddrPort("10.0.8.7:40000")
	for _, tc := range []struct {
		name   string
		cfg    ServerConfig
		prefix []byte
		client string
	}{
		{"plain", ServerConfig{}, nil, "127.0.0.1 -"},
		{"proxy_v2", ServerConfig{TrustedForwarders: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, ProxyProtocol: true},
			proxyHeader(src, netip.MustParseAddrPort("10.0.0.2:53"), 1, false), "10.0.8.7 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGate()
			_, addr := startTCPTest(t, tc.cfg, g, nil)
			c := dialTest(t, addr)
			write(t, c, append(tc.prefix, frames(t, "slow.example.", "fast.example.")...))
			<-g.entered
			r := readTCPReply(t, c)
			if r.Id != 2 {
				t.Fatalf("first reply has ID %d, want 2 (the fast query)", r.Id)
			}
			if got := identity(t, r); got != tc.client {
				t.Errorf("fast query: server saw %q, want %q", got, tc.client)
			}
			g.release <- struct{}{}
			r = readTCPReply(t, c)
			if r.Id != 1 {
				t.Fatalf("second reply has ID %d, want 1 (the slow query)", r.Id)
			}
			if got := identity(t, r); got != tc.client {
				t.Errorf("slow query: server saw %q, want %q", got, tc.client)
			}
		})
	}
}

// TestTCPHalfClose: a client that sends its queries and closes its side
// gets every reply before the server closes the connection.
func TestTCPHalfClose(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		names []string
	}{
		{"fast", []string{"a.example.", "b.example.", "c.example."}},
		{"slow_first", []string{"slow1.example.", "b.example.", "c.example."}},
		{"all_slow", []string{"slow1.example.", "slow2.example.", "slow3.example."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := newGate()
			_, addr := startTCPTest(t, ServerConfig{}, g, nil)
			c := dialTest(t, addr)
			write(t, c, frames(t, tc.names...))
			if err := c.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			slow := 0
			for _, n := range tc.names {
				if strings.HasPrefix(n, "slow") {
					slow++
				}
			}
			// The fast ones are answered while the slow ones wait.
			seen := map[uint16]bool{}
			for range len(tc.names) - slow {
				seen[readTCPReply(t, c).Id] = true
			}
			for range slow {
				<-g.entered
			}
			close(g.release)
			for range slow {
				seen[readTCPReply(t, c).Id] = true
			}
			if len(seen) != len(tc.names) {
				t.Errorf("replies to IDs %v, want one to each of %d queries", seen, len(tc.names))
			}
			wantClosed(t, c)
		})
	}
}

// TestTCPPipelineBound: with the bound at n, n slow queries in flight
// stop the reading of the connection: the reader pauses (the hook) with
// only those n in the handler, and the fast query behind them is read and
// answered once one of them finished.
func TestTCPPipelineBound(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, 4} {
		t.Run(string(rune('0'+n)), func(t *testing.T) {
			t.Parallel()
			g := newGate()
			full := make(chan struct{}, 1)
			_, addr := startTCPTest(t, ServerConfig{}, g, func(s *Server) {
				s.tcpPipeline = n
				s.tcpFullHook = func() {
					select {
					case full <- struct{}{}:
					default:
					}
				}
			})
			c := dialTest(t, addr)
			var names []string
			for i := range n {
				names = append(names, "slow"+string(rune('a'+i))+".example.")
			}
			write(t, c, frames(t, append(names, "fast.example.")...))
			for range n {
				<-g.entered
			}
			<-full
			// The reader waits for a slot: the fast query was not read.
			if got := g.inflight.Load(); got != int32(n) {
				t.Fatalf("%d queries in the handler, want %d", got, n)
			}
			g.release <- struct{}{}
			ids := map[uint16]bool{}
			for range 2 { // the released one and the fast one, in either order
				ids[readTCPReply(t, c).Id] = true
			}
			if !ids[uint16(n+1)] {
				t.Fatalf("replies %v after one slow query was released, want the fast one (ID %d) among them", ids, n+1)
			}
			close(g.release)
			for range n - 1 {
				ids[readTCPReply(t, c).Id] = true
			}
			if len(ids) != n+1 {
				t.Errorf("replies to IDs %v, want %d", ids, n+1)
			}
			if p := g.peak.Load(); p > int32(n) {
				t.Errorf("%d queries in the handler at once, bound %d", p, n)
			}
		})
	}
}

// TestTCPShutdownPipelined: Shutdown answers the query in flight on a
// pipelined connection before closing it, closes an idle connection at
// once, and returns once the connection is closed.
func TestTCPShutdownPipelined(t *testing.T) {
	t.Parallel()
	g := newGate()
	cfg := ServerConfig{Listen: []string{"127.0.0.1:0"}, TCPIdleTimeout: time.Minute}
	s := NewServer(cfg, g, nil, nil, nil, nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(g.release) }) })
	idle := dialTest(t, addr)
	c := dialTest(t, addr)
	write(t, c, frames(t, "slow.example.", "fast.example."))
	<-g.entered
	if r := readTCPReply(t, c); r.Id != 2 {
		t.Fatalf("reply to ID %d, want 2", r.Id)
	}
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), tcpTestDeadline)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	// The idle connection is closed while the slow query is still held.
	wantClosed(t, idle)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a query in flight", err)
	default:
	}
	once.Do(func() { close(g.release) })
	if r := readTCPReply(t, c); r.Id != 1 || identity(t, r) != "127.0.0.1 -" {
		t.Fatalf("in-flight query got %v, want its answer", r)
	}
	wantClosed(t, c)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestTCPMaxQueries: a connection is closed once tcp_max_queries queries
// were answered, whether the client waits for each reply or pipelines more
// than the limit.
func TestTCPMaxQueries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		max       int
		pipelined bool
	}{
		{"one_sequential", 1, false},
		{"three_sequential", 3, false},
		{"one_pipelined", 1, true},
		{"three_pipelined", 3, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, addr := startTCPTest(t, ServerConfig{TCPMaxQueries: tc.max, TCPIdleTimeout: time.Minute}, whoami, nil)
			c := dialTest(t, addr)
			names := make([]string, tc.max+1)
			for i := range names {
				names[i] = "q.example."
			}
			if tc.pipelined {
				write(t, c, frames(t, names...))
			}
			ids := map[uint16]bool{}
			for i := range tc.max {
				if !tc.pipelined {
					b := frames(t, names[:i+1]...)
					write(t, c, b[len(frames(t, names[:i]...)):])
				}
				ids[readTCPReply(t, c).Id] = true // pipelined: in any order
			}
			for i := range tc.max {
				if !ids[uint16(i+1)] {
					t.Errorf("replies to IDs %v, want 1 to %d", ids, tc.max)
				}
			}
			wantClosed(t, c)
		})
	}
}

// TestTCPIdleTimeout: a connection is closed after tcp_idle_timeout
// without a query, counted from its last reply; a query in the handler
// for longer than that keeps it open.
func TestTCPIdleTimeout(t *testing.T) {
	t.Parallel()
	const idle = 300 * time.Millisecond
	for _, tc := range []struct {
		name    string
		queries []string // sent one after the other, each after the previous reply
	}{
		{"no_query", nil},
		{"one_query", []string{"a.example."}},
		{"query_slower_than_idle", []string{"slowtimer.example.", "a.example."}},
		{"query_slower_than_idle_inline", []string{"slowinline.example.", "a.example."}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
				if name := req.Msg.Question[0].Name; strings.HasPrefix(name, "slow") {
					// The handler's own delay, not the test's
					// synchronisation: three idle timeouts pass while
					// the query is in flight, the connection read by
					// another goroutine (after BeforeWait) or not
					// (a stage blocking without it).
					if strings.HasPrefix(name, "slowtimer") {
						query.BeforeWait(ctx)
					}
					<-time.After(3 * idle)
				}
				return whoami.ServeDNS(ctx, req)
			})
			_, addr := startTCPTest(t, ServerConfig{TCPIdleTimeout: idle}, h, nil)
			c := dialTest(t, addr)
			for _, name := range tc.queries {
				write(t, c, frames(t, name))
				if r := readTCPReply(t, c); r.Rcode != dns.RcodeSuccess {
					t.Fatalf("%s: %v", name, r)
				}
			}
			start := time.Now()
			wantClosed(t, c)
			if el := time.Since(start); el > idle+5*time.Second {
				t.Errorf("closed %v after the last reply, idle timeout %v", el, idle)
			}
		})
	}
}

// TestTCPMalformedPipelined: malformed messages between queries on one
// connection get what they get alone (nothing, or a header-only FORMERR)
// and do not end the connection.
func TestTCPMalformedPipelined(t *testing.T) {
	t.Parallel()
	_, addr := startTCPTest(t, ServerConfig{}, whoami, nil)
	c := dialTest(t, addr)
	short := []byte{0, 3, 1, 2, 3} // shorter than a header: no reply
	resp := new(dns.Msg)
	resp.SetQuestion("r.example.", dns.TypeA)
	resp.Id, resp.Response = 7, true
	rwire, _ := resp.Pack() // a response: ignored
	counts := make([]byte, 12)
	binary.BigEndian.PutUint16(counts[0:], 8)
	binary.BigEndian.PutUint16(counts[2:], 1<<8|1<<4|1<<5) // RD, CD and AD: RD and CD are echoed
	binary.BigEndian.PutUint16(counts[4:], 9)              // 9 questions: FORMERR
	var in []byte
	in = append(in, short...)
	in = binary.BigEndian.AppendUint16(in, uint16(len(rwire)))
	in = append(in, rwire...)
	in = binary.BigEndian.AppendUint16(in, 12)
	in = append(in, counts...)
	write(t, c, append(in, frames(t, "ok.example.")...))
	got := map[uint16]int{}
	for range 2 {
		r := readTCPReply(t, c)
		got[r.Id] = r.Rcode
		if r.Id == 8 && (len(r.Question) != 0 || r.Rcode != dns.RcodeFormatError || !r.RecursionDesired || !r.CheckingDisabled || r.AuthenticatedData) {
			t.Errorf("bad counts got %v, want a header-only FORMERR with RD and CD echoed, AD clear", r)
		}
	}
	if rc, ok := got[1]; !ok || rc != dns.RcodeSuccess {
		t.Errorf("replies %v: want the query (ID 1) answered", got)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	wantClosed(t, c)
}

// TestTCPWriteLarge: replies larger than the writer's initial buffer are
// framed whole, and the next reply still is.
func TestTCPWriteLarge(t *testing.T) {
	t.Parallel()
	h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		r := rcodeReply(req.Msg, dns.RcodeSuccess)
		if strings.HasPrefix(req.Msg.Question[0].Name, "big") {
			for i := range 200 {
				r.Answer = append(r.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: req.Msg.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET},
					Txt: []string{strings.Repeat("x", 100), string(rune('a' + i%26))}})
			}
		}
		return r, nil
	})
	_, addr := startTCPTest(t, ServerConfig{}, h, nil)
	c := dialTest(t, addr)
	write(t, c, frames(t, "big.example.", "small.example.", "big.example."))
	for range 3 {
		r := readTCPReply(t, c)
		want := 0
		if r.Id != 2 {
			want = 200
		}
		if len(r.Answer) != want {
			t.Errorf("reply %d has %d answers, want %d", r.Id, len(r.Answer), want)
		}
	}
}

// TestTCPNoGoroutineLeak: after Shutdown, no goroutine of the TCP side is
// left, whatever state its connections were in: idle, answered, half
// closed, a query in flight, a message cut short. Not parallel: it looks
// at every goroutine of the process.
func TestTCPNoGoroutineLeak(t *testing.T) {
	g := newGate()
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}, TCPIdleTimeout: time.Minute}, g, nil, nil, nil, nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	dialTest(t, addr) // idle
	answered := dialTest(t, addr)
	write(t, answered, frames(t, "a.example.", "b.example."))
	readTCPReply(t, answered)
	readTCPReply(t, answered)
	half := dialTest(t, addr)
	write(t, half, frames(t, "a.example."))
	if err := half.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	readTCPReply(t, half)
	cut := dialTest(t, addr)
	write(t, cut, frames(t, "a.example.")[:7])
	slow := dialTest(t, addr)
	write(t, slow, frames(t, "slow.example.", "a.example."))
	<-g.entered
	readTCPReply(t, slow)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), tcpTestDeadline)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	wantClosed(t, cut)
	close(g.release)
	readTCPReply(t, slow)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	deadline := time.Now().Add(tcpTestDeadline)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "resolver.(*tcpConn)") && !strings.Contains(stacks, "resolver.(*tcpServer)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TCP goroutines left after Shutdown:\n%s", stacks)
		}
		runtime.Gosched()
	}
}
