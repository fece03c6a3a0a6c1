package resolver_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// holdingSink holds the first record in Write until released, so that
// every later one waits in the Logger's buffer, then checks that each
// record's messages still are those of the query it was logged for.
type holdingSink struct {
	entered, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	checked          int
	bad              []string
}

func (s *holdingSink) Name() string { return "holding" }
func (s *holdingSink) Flush() error { return nil }
func (s *holdingSink) Close() error { return nil }

func (s *holdingSink) Write(r *querylog.Record) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked++
	if msg := leasedMismatch(r); msg != "" {
		s.bad = append(s.bad, msg)
	}
	return nil
}

// leasedMismatch describes how r's messages differ from its question
// ("" when they agree): the query's name and ID (the test sends query i
// as q<i>.example. with ID i), the reply's ID, question and answer owner.
func leasedMismatch(r *querylog.Record) string {
	name := r.Question.Name
	id, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(name, ".", 2)[0], "q"))
	switch {
	case err != nil:
		return "unexpected question " + name
	case r.Req == nil || len(r.Req.Question) != 1 || r.Req.Question[0].Name != name || int(r.Req.Id) != id:
		return fmt.Sprintf("%s: query now %v", name, r.Req)
	case r.Resp == nil || r.Resp.Id != r.Req.Id || len(r.Resp.Question) != 1 || r.Resp.Question[0].Name != name ||
		len(r.Resp.Answer) != 1 || r.Resp.Answer[0].Header().Name != name:
		return fmt.Sprintf("%s: reply now %v", name, r.Resp)
	}
	return ""
}

// TestLentMessagesOutliveTheQuery: the server lends a UDP query's message
// and its reply from a pool and takes them back once they are no longer
// used. A query-log sink reads them after the query is over: while it
// holds 600 records (300 names, each a miss then a hit), the server answers
// all of them, and every record still shows its own query and reply.
func TestLentMessagesOutliveTheQuery(t *testing.T) {
	t.Parallel()
	const names = 300
	up := startFaulty(t, healthyIP, faultNone)
	sink := &holdingSink{entered: make(chan struct{}), release: make(chan struct{})}
	ql := querylog.New([]querylog.Sink{sink}, 4*names, querylog.NewMetrics(prometheus.NewRegistry()), slog.New(slog.DiscardHandler))
	released := false
	t.Cleanup(func() {
		if !released {
			close(sink.release)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ql.Close(ctx)
	})
	h := newFaultHarness(t, faultConfig{
		upstreams: []string{"udp://" + up.addr},
		observer:  &resolver.QueryLog{Log: ql, Instance: "test"},
	})
	c, err := net.Dial("udp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &dns.Conn{Conn: c}
	for range 2 { // a miss, then a hit
		for i := 1; i <= names; i++ {
			q := new(dns.Msg)
			q.SetQuestion(fmt.Sprintf("q%d.example.", i), dns.TypeA)
			q.Id = uint16(i)
			q.SetEdns0(1232, false)
			if err := co.WriteMsg(q); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			r, err := co.ReadMsg()
			if err != nil {
				t.Fatalf("query %d: %v", i, err)
			}
			if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].Header().Name != q.Question[0].Name {
				t.Fatalf("query %d: reply %v", i, r)
			}
		}
	}
	<-sink.entered
	waitUntil(t, "every record queued", func() bool {
		st := ql.Stats()[0]
		return st.Queued+1 == 2*names
	})
	close(sink.release)
	released = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ql.Close(ctx); err != nil {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.checked != 2*names {
		t.Errorf("sink saw %d records, want %d", sink.checked, 2*names)
	}
	if len(sink.bad) > 0 {
		t.Errorf("%d of %d records show messages reused for another query, first: %s", len(sink.bad), sink.checked, sink.bad[0])
	}
}

// TestLateRepliesAfterUpstreamWait: 64 UDP queries wait on an upstream at
// once, each on the goroutine it was handed to; their replies leave
// together through the listener's late batch (lateReplies). Every client
// gets its own reply, none is lost, and Shutdown finds no packet still
// pending: the batch's flusher did the accounting of every reply it sent.
func TestLateRepliesAfterUpstreamWait(t *testing.T) {
	t.Parallel()
	const n = 64
	arrived := make(chan struct{}, n)
	release := make(chan struct{})
	h := newHarness(t, harnessConfig{handler: blocking(answer(t, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.7"}, nil), arrived, release)})
	c, err := net.Dial("udp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	co := &dns.Conn{Conn: c}
	for i := 1; i <= n; i++ {
		q := new(dns.Msg)
		q.SetQuestion(fmt.Sprintf("q%d.late.example.", i), dns.TypeA)
		q.Id = uint16(i)
		if err := co.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		<-arrived // every query is waiting on the upstream
	}
	close(release)
	got := make(map[uint16]bool)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for range n {
		r, err := co.ReadMsg()
		if err != nil {
			t.Fatalf("after %d replies: %v", len(got), err)
		}
		want := fmt.Sprintf("q%d.late.example.", r.Id)
		if got[r.Id] || r.Rcode != dns.RcodeSuccess || len(r.Question) != 1 || r.Question[0].Name != want ||
			len(r.Answer) != 1 || r.Answer[0].Header().Name != want {
			t.Fatalf("reply %v (duplicate: %v)", r, got[r.Id])
		}
		got[r.Id] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if n := testutil.ToFloat64(h.metrics.WriteErrors); n != 0 {
		t.Errorf("%v write errors", n)
	}
}
