package resolver

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestUDPReaderPool: while every reader is stuck on a slow query, new
// readers are started so other queries are still read and answered; once
// the pool has not been short for shrinkAfter, the extra readers leave.
func TestUDPReaderPool(t *testing.T) {
	arrived := make(chan struct{}, 64)
	s, unblock := startSlowServer(t, arrived)
	addr := s.Addrs()[0].String()
	loop := s.loops[0]
	min := loop.readers.Load()

	const slow = 30
	var wg sync.WaitGroup
	for range slow {
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion("slow.test.", dns.TypeA)
			_, _, _ = (&dns.Client{Timeout: 20 * time.Second}).Exchange(m, addr)
		})
	}
	for range slow { // every slow query holds a reader
		<-arrived
	}
	// A fast query is answered while 30 slow ones hold readers.
	c := &dns.Client{Timeout: 5 * time.Second}
	for i := range 5 {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("fast%d.test.", i), dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("fast query while readers are busy: %v", err)
		}
	}
	// Each slow query holds a reader or, when it was read in a batch with
	// others, a goroutine of its own; the readers held grow the pool.
	if got := loop.readers.Load(); got <= min {
		t.Errorf("readers = %d with %d slow queries in flight, want more than %d", got, slow, min)
	}
	unblock()
	wg.Wait()

	// Pretend the last shortage was long ago; traffic lets extras leave.
	loop.pressure.Store(time.Now().Add(-2 * shrinkAfter).UnixNano())
	for i := 0; loop.readers.Load() > min && i < 20000; i++ {
		m := new(dns.Msg)
		m.SetQuestion("fast.test.", dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatal(err)
		}
	}
	if got := loop.readers.Load(); got != min {
		t.Errorf("readers = %d after the shortage, want back to %d", got, min)
	}
}

// TestUDPBatchSlowQueryDoesNotDelayOthers: queries that arrive together
// are read in one batch; when the first of them waits on an "upstream"
// (calling query.BeforeWait, as the cache does), the others are answered
// while it still waits.
func TestUDPBatchSlowQueryDoesNotDelayOthers(t *testing.T) {
	s, unblock := startSlowServer(t, nil)
	conn, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const fast = 20
	for i := range fast + 1 {
		m := new(dns.Msg)
		m.Id = uint16(i)
		if i == 0 {
			m.SetQuestion("slow.test.", dns.TypeA)
		} else {
			m.SetQuestion(fmt.Sprintf("fast%d.test.", i), dns.TypeA)
		}
		m.Id = uint16(i)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	seen := map[uint16]bool{}
	for len(seen) < fast {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%d of %d fast answers while the slow query waits: %v", len(seen), fast, err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		if r.Id == 0 {
			t.Fatal("the slow query was answered before it was released")
		}
		seen[r.Id] = true
	}
	unblock()
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("slow answer after release: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil || r.Id != 0 {
		t.Fatalf("after release got id %d (%v), want the slow answer", r.Id, err)
	}
}

// startSlowServer starts a UDP+TCP server on loopback whose handler answers
// "slow.test." only once unblock is called: like a cache miss, it calls
// query.BeforeWait first, then signals arrived (when not nil). Everything
// else is answered at once. Cleanup unblocks before shutting down, which
// waits for the slow queries.
func startSlowServer(t *testing.T, arrived chan<- struct{}) (s *Server, unblock func()) {
	t.Helper()
	release := make(chan struct{})
	unblock = sync.OnceFunc(func() { close(release) })
	h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		if req.Msg.Question[0].Name == "slow.test." {
			query.BeforeWait(ctx) // as the cache does before an upstream exchange
			if arrived != nil {
				arrived <- struct{}{}
			}
			<-release
		}
		return rcodeReply(req.Msg, dns.RcodeSuccess), nil
	})
	s = NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}}, h, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblock(); _ = s.Shutdown(context.Background()) })
	return s, unblock
}

// TestMmsghdrLayout: mmsghdr must have the kernel's size (the stride of
// the recvmmsg/sendmmsg array): struct msghdr plus an unsigned int,
// padded to the struct's alignment.
func TestMmsghdrLayout(t *testing.T) {
	var m mmsghdr
	hdr, align := unsafe.Sizeof(m.hdr), unsafe.Alignof(m.hdr)
	want := (hdr + 4 + align - 1) / align * align
	if got := unsafe.Sizeof(m); got != want {
		t.Errorf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
	if off := unsafe.Offsetof(m.n); off != hdr {
		t.Errorf("offsetof(msg_len) = %d, want %d", off, hdr)
	}
}
