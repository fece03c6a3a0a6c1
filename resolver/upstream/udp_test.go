package upstream

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// portRecorder is a UDP upstream that records the source port of every
// query and answers it with the packets reply returns (nil: no answer).
type portRecorder struct {
	mu    sync.Mutex
	ports []int
	addr  string
}

func newPortRecorder(tb testing.TB, reply func(i int, q *dns.Msg) [][]byte) *portRecorder {
	tb.Helper()
	pr := &portRecorder{}
	pr.addr = rawUDPFrom(tb, func(q *dns.Msg, from *net.UDPAddr) [][]byte {
		pr.mu.Lock()
		i := len(pr.ports)
		pr.ports = append(pr.ports, from.Port)
		pr.mu.Unlock()
		return reply(i, q)
	})
	return pr
}

func (pr *portRecorder) seen() []int {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return append([]int(nil), pr.ports...)
}

// stepClock is a clock the test moves by hand.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *stepClock) step(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestUDPSocketReuse(t *testing.T) {
	answerAll := func(tb testing.TB) func(int, *dns.Msg) [][]byte {
		return func(_ int, q *dns.Msg) [][]byte { return [][]byte{pack(tb, reply(q, dns.RcodeSuccess, "192.0.2.1"))} }
	}
	tests := []struct {
		name     string
		lifetime time.Duration
		// reply answers query i (nil: never).
		reply func(tb testing.TB) func(int, *dns.Msg) [][]byte
		// between runs before query i (i >= 1).
		between func(clk *stepClock)
		// wantOK says which of the three queries succeed.
		wantOK [3]bool
		// samePort[i] says whether query i+1 leaves from query i's port.
		samePort [2]bool
	}{
		{
			name: "reused_within_lifetime", lifetime: 10 * time.Second, reply: answerAll,
			wantOK: [3]bool{true, true, true}, samePort: [2]bool{true, true},
		},
		{
			name: "fresh_socket_per_query_when_lifetime_is_zero", lifetime: 0, reply: answerAll,
			wantOK: [3]bool{true, true, true}, samePort: [2]bool{false, false},
		},
		{
			name: "replaced_once_lifetime_is_over", lifetime: 10 * time.Second, reply: answerAll,
			between: func(clk *stepClock) { clk.step(6 * time.Second) },
			// 0 s, 6 s (same socket, 6 s old), 12 s (too old: new socket).
			wantOK: [3]bool{true, true, true}, samePort: [2]bool{true, false},
		},
		{
			name: "closed_after_a_timeout", lifetime: 10 * time.Second,
			reply: func(tb testing.TB) func(int, *dns.Msg) [][]byte {
				return func(i int, q *dns.Msg) [][]byte {
					if i == 0 {
						return nil // the first query times out
					}
					return [][]byte{pack(tb, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
				}
			},
			wantOK: [3]bool{false, true, true}, samePort: [2]bool{false, true},
		},
		{
			name: "closed_after_only_invalid_replies", lifetime: 10 * time.Second,
			reply: func(tb testing.TB) func(int, *dns.Msg) [][]byte {
				return func(i int, q *dns.Msg) [][]byte {
					m := reply(q, dns.RcodeSuccess, "192.0.2.1")
					if i == 0 {
						m.Id++ // forged: the exchange ends in a timeout
					}
					return [][]byte{pack(tb, m)}
				}
			},
			wantOK: [3]bool{false, true, true}, samePort: [2]bool{false, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pr := newPortRecorder(t, tc.reply(t))
			clk := &stepClock{t: time.Unix(1_000_000, 0)}
			m := NewMetrics(nil)
			u := mustNew(t, "udp://"+pr.addr, Options{Timeout: 200 * time.Millisecond, SocketLifetime: tc.lifetime, Metrics: m}).(*udpUpstream)
			u.now = clk.now
			for i := range 3 {
				if i > 0 && tc.between != nil {
					tc.between(clk)
				}
				r, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
				if ok := err == nil; ok != tc.wantOK[i] {
					t.Fatalf("query %d: err = %v, want success %v", i, err, tc.wantOK[i])
				}
				if err == nil && len(r.Answer) != 1 {
					t.Fatalf("query %d: answer %v", i, r.Answer)
				}
			}
			ports := pr.seen()
			if len(ports) != 3 {
				t.Fatalf("upstream saw %d queries, want 3", len(ports))
			}
			opened := 1
			for i, want := range tc.samePort {
				if got := ports[i] == ports[i+1]; got != want {
					t.Errorf("query %d port %d, query %d port %d: same = %v, want %v", i, ports[i], i+1, ports[i+1], got, want)
				}
				if !want {
					opened++
				}
			}
			if got := testutil.ToFloat64(m.SocketsOpened.WithLabelValues(u.String())); got != float64(opened) {
				t.Errorf("udp_sockets_opened_total = %v, want %d", got, opened)
			}
		})
	}
}

// A duplicate of the previous exchange's reply, still queued on a reused
// socket, is skipped without being counted as an invalid (possibly
// spoofed) response, and the real answer is read after it.
func TestUDPSocketReuse_lateDuplicateIsNotInvalid(t *testing.T) {
	pr := newPortRecorder(t, func(i int, q *dns.Msg) [][]byte {
		b := pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))
		return [][]byte{b, b} // every reply sent twice
	})
	m := NewMetrics(nil)
	u := mustNew(t, "udp://"+pr.addr, Options{Timeout: time.Second, SocketLifetime: time.Minute, Metrics: m})
	for i := range 3 {
		if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	if p := pr.seen(); p[0] != p[1] || p[1] != p[2] {
		t.Errorf("ports %v: want one reused socket", p)
	}
	if got := testutil.ToFloat64(m.InvalidResponses.WithLabelValues(u.String())); got != 0 {
		t.Errorf("invalid_responses_total = %v, want 0 (duplicates are not forgeries)", got)
	}
}

// A cancelled exchange closes its socket (its deadline hook ran), and
// Close closes the idle ones: the next query opens a new socket.
func TestUDPSocketReuse_cancelAndClose(t *testing.T) {
	release, arrived := make(chan struct{}), make(chan struct{})
	pr := newPortRecorder(t, func(i int, q *dns.Msg) [][]byte {
		if i == 0 {
			close(arrived)
			<-release
			return nil
		}
		return [][]byte{pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
	})
	u := mustNew(t, "udp://"+pr.addr, Options{Timeout: 5 * time.Second, SocketLifetime: time.Minute}).(*udpUpstream)

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		_, err := u.Exchange(ctx, newQuery("example.org.", dns.TypeA))
		errc <- err
	}()
	<-arrived
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled exchange: err = %v, want context.Canceled", err)
	}
	close(release)
	if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	idle := len(u.idle)
	u.mu.Unlock()
	if idle != 1 {
		t.Errorf("idle sockets = %d, want 1", idle)
	}
	if err := u.Close(); err != nil {
		t.Fatal(err)
	}
	u.mu.Lock()
	idle = len(u.idle)
	u.mu.Unlock()
	if idle != 0 {
		t.Errorf("idle sockets after Close = %d, want 0", idle)
	}
	p := pr.seen()
	if p[0] == p[1] {
		t.Errorf("query after a cancelled one reused its socket (port %d)", p[0])
	}
}

// TestUDPReusedSocketDrainsQueuedReplies: a pooled socket (the default
// udp_socket_lifetime) receives whatever is sent to its port while it sits
// idle. A forger who guessed the next ID could queue replies there in
// advance, to be read before the real one: they must be dropped before the
// query goes out, counted as invalid, and the socket not pooled again.
func TestUDPReusedSocketDrainsQueuedReplies(t *testing.T) {
	srv, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	server := srv.LocalAddr().(*net.UDPAddr).AddrPort()
	m := NewMetrics(nil)
	u := newUDP("udp://"+server.String(), server, Options{Timeout: 5 * time.Second, SocketLifetime: time.Hour, Metrics: m})
	defer u.Close()
	var seed [32]byte
	seed[0] = 42
	u.rnd = &randSource{r: rand.NewChaCha8(seed)}
	pred := rand.NewChaCha8(seed)
	answerOne := func(ip net.IP) {
		buf := make([]byte, 1500)
		n, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Errorf("upstream read: %v", err)
			return
		}
		q := new(dns.Msg)
		if err := q.Unpack(buf[:n]); err != nil {
			t.Errorf("upstream unpack: %v", err)
			return
		}
		r := new(dns.Msg)
		r.SetReply(q)
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip}}
		b, _ := r.Pack()
		_, _ = srv.WriteToUDPAddrPort(b, from)
	}
	ask := func(name string) *dns.Msg {
		done := make(chan struct{})
		go func() { defer close(done); answerOne(net.IPv4(192, 0, 2, 1)) }()
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		r, err := u.Exchange(context.Background(), q)
		<-done
		if err != nil {
			t.Fatalf("exchange %s: %v", name, err)
		}
		return r
	}
	ask("first.example.")
	pred.Uint64() // the first query's ID
	nextID := uint16(pred.Uint64())
	u.mu.Lock()
	if len(u.idle) != 1 {
		u.mu.Unlock()
		t.Fatalf("%d idle sockets, want 1", len(u.idle))
	}
	port := u.idle[0].c.LocalAddr().(*net.UDPAddr).AddrPort()
	u.mu.Unlock()
	forge := func(id uint16) []byte {
		r := new(dns.Msg)
		r.SetQuestion("bank.example.", dns.TypeA)
		r.Id, r.Response = id, true
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "bank.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400}, A: net.IPv4(203, 0, 113, 66)}}
		b, _ := r.Pack()
		return b
	}
	// Loopback delivers each datagram into the socket's queue before the
	// write returns: all of them wait there when the next query is sent.
	for i := range 20 {
		if _, err := srv.WriteToUDPAddrPort(forge(nextID+uint16(i)+1), port); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := srv.WriteToUDPAddrPort(forge(nextID), port); err != nil {
		t.Fatal(err)
	}
	r := ask("bank.example.")
	if a := r.Answer[0].(*dns.A); !a.A.Equal(net.IPv4(192, 0, 2, 1)) {
		t.Fatalf("answer %v: a reply queued before the query was accepted", r.Answer[0])
	}
	if got := testutil.ToFloat64(m.InvalidResponses.WithLabelValues(u.String())); got != 21 {
		t.Errorf("invalid_responses_total = %v, want 21 (the queued datagrams)", got)
	}
	u.mu.Lock()
	idle := len(u.idle)
	u.mu.Unlock()
	if idle != 0 {
		t.Errorf("%d idle sockets: a socket that met unexpected datagrams went back to the pool", idle)
	}
}
