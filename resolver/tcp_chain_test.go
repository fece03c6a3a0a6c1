package resolver_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/upstream"
)

// TestTCPCacheHitNotBehindMiss: through the production chain, a cached
// answer pipelined behind a cache miss on one TCP connection is answered
// while the miss still waits for the upstream, which is released only
// once that reply was read. Both are counted as TCP queries.
func TestTCPCacheHitNotBehindMiss(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	fast := answer(t, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.7"}, nil)
	slow := blocking(fast, arrived, release)
	h := newHarness(t, harnessConfig{
		handler: func(w dns.ResponseWriter, r *dns.Msg) {
			if strings.HasPrefix(r.Question[0].Name, "slow.") {
				slow(w, r)
				return
			}
			fast(w, r)
		},
		upOpts: upstream.Options{Timeout: 30 * time.Second},
		group:  upstream.GroupConfig{Timeout: 30 * time.Second},
	})
	unblock := sync.OnceFunc(func() { close(release) })
	t.Cleanup(unblock)
	if r := h.exchange(t, "udp", msg("cached.example.", dns.TypeA, 0, false)); len(r.Answer) != 1 {
		t.Fatalf("priming query got %v", r)
	}
	h.obs.next(t)

	c, err := dns.Dial("tcp", h.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	miss, hit := msg("slow.example.", dns.TypeA, 0, false), msg("cached.example.", dns.TypeA, 0, false)
	miss.Id, hit.Id = 1, 2
	for _, m := range []*dns.Msg{miss, hit} {
		if err := c.WriteMsg(m); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	<-arrived
	r, err := c.ReadMsg()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if r.Id != 2 || len(r.Answer) != 1 {
		t.Fatalf("first reply %v, want the cache hit (ID 2)", r)
	}
	unblock()
	if r, err = c.ReadMsg(); err != nil || r.Id != 1 || len(r.Answer) != 1 {
		t.Fatalf("second reply %v (%v), want the miss (ID 1) answered", r, err)
	}
	for range 2 {
		h.obs.next(t)
	}
	if got := testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "NOERROR", "TCP")); got != 2 {
		t.Errorf("queries_total{A,NOERROR,TCP} = %v, want 2", got)
	}
}
