package resolver

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestUDPReaderPool: while every reader is stuck on a slow query, new
// readers are started so other queries are still read and answered; once
// the pool has not been short for shrinkAfter, the extra readers leave.
func TestUDPReaderPool(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 64)
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	h := HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
		if req.Msg.Question[0].Name == "slow.test." {
			arrived <- struct{}{}
			<-release
		}
		return rcodeReply(req.Msg, dns.RcodeSuccess), nil
	})
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}}, h, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unblock(); _ = s.Shutdown(context.Background()) })
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
	if got := loop.readers.Load(); got <= slow {
		t.Errorf("readers = %d with %d slow queries in flight, want more", got, slow)
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
