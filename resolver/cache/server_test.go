package cache

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestResolve_real_server runs the cache against a miekg/dns server on
// loopback: real packets, real parsing of the upstream reply.
func TestResolve_real_server(t *testing.T) {
	var served atomic.Int32
	var sawDO atomic.Bool
	addr := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		served.Add(1)
		if opt := r.IsEdns0(); opt != nil && opt.Do() {
			sawDO.Store(true)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.RecursionAvailable = true
		q := r.Question[0]
		switch q.Name {
		case "www.example.com.":
			m.Answer = append(m.Answer,
				&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(192, 0, 2, 1)},
				&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(192, 0, 2, 2)},
				// A poisoning attempt: never cached, never served.
				&dns.A{Hdr: dns.RR_Header{Name: "bank.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 120}, A: net.IPv4(203, 0, 113, 66)},
			)
		default:
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, &dns.SOA{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
				Ns: "ns.example.com.", Mbox: "admin.example.com.", Serial: 1, Refresh: 7200, Retry: 900, Expire: 1209600, Minttl: 60})
		}
		if opt := r.IsEdns0(); opt != nil {
			m.SetEdns0(opt.UDPSize(), opt.Do())
		}
		if err := w.WriteMsg(m); err != nil {
			t.Errorf("write: %v", err)
		}
	})
	c, clk := newServerCache(t, addr, 2*time.Second, DefaultConfig())

	tests := []struct {
		name      string
		req       *dns.Msg
		step      time.Duration
		wantSt    string
		wantRcode int
		wantTTLs  []uint32
		wantNs    []uint32
	}{
		{"miss_filters_poison", newQuery("WWW.example.com.", dns.TypeA, true, true), 0, "miss", dns.RcodeSuccess, []uint32{120, 120}, nil},
		{"hit_after_30s", newQuery("www.example.COM.", dns.TypeA, true, true), 30 * time.Second, "hit", dns.RcodeSuccess, []uint32{90, 90}, nil},
		{"other_do_bit_misses", newQuery("www.example.com.", dns.TypeA, false, false), 0, "miss", dns.RcodeSuccess, []uint32{120, 120}, nil},
		{"nxdomain_miss", newQuery("nope.example.com.", dns.TypeA, false, false), 0, "miss", dns.RcodeNameError, nil, []uint32{60}},
		{"nxdomain_hit", newQuery("nope.example.com.", dns.TypeA, false, false), 20 * time.Second, "hit", dns.RcodeNameError, nil, []uint32{40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk.step(tt.step)
			resp, st, upstream, err := c.Resolve(context.Background(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if st.String() != tt.wantSt || resp.Rcode != tt.wantRcode {
				t.Errorf("status %s rcode %d, want %s %d", st, resp.Rcode, tt.wantSt, tt.wantRcode)
			}
			if (st.String() == "miss") != (upstream == addr) {
				t.Errorf("upstream %q for status %s", upstream, st)
			}
			if got := ttls(resp.Answer); !slices.Equal(got, tt.wantTTLs) {
				t.Errorf("answer TTLs %v, want %v", got, tt.wantTTLs)
			}
			if got := ttls(resp.Ns); !slices.Equal(got, tt.wantNs) {
				t.Errorf("authority TTLs %v, want %v", got, tt.wantNs)
			}
			if resp.Question[0] != tt.req.Question[0] || resp.Id != tt.req.Id {
				t.Errorf("question %v id %d, want %v %d", resp.Question[0], resp.Id, tt.req.Question[0], tt.req.Id)
			}
			// The reply must pack: it goes on the wire next.
			if _, err := resp.Pack(); err != nil {
				t.Errorf("pack: %v", err)
			}
		})
	}
	if got := served.Load(); got != 3 {
		t.Errorf("server saw %d queries, want 3", got)
	}
	if !sawDO.Load() {
		t.Errorf("DO bit not forwarded upstream")
	}
}

// TestResolve_real_server_down checks serve-stale against an upstream that
// stopped answering (a loopback listener that never replies).
func TestResolve_real_server_down(t *testing.T) {
	var answer atomic.Bool
	answer.Store(true)
	addr := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if !answer.Load() {
			return // no reply: the client times out
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(192, 0, 2, 1)}}
		if err := w.WriteMsg(m); err != nil {
			t.Errorf("write: %v", err)
		}
	})
	c, clk := newServerCache(t, addr, 200*time.Millisecond, DefaultConfig())
	req := newQuery("www.example.com.", dns.TypeA, true, false)
	mustResolve(t, c, req)
	answer.Store(false)
	clk.step(5 * time.Minute)
	resp, st, _, err := c.Resolve(context.Background(), req)
	if err != nil || st.String() != "stale" || ttls(resp.Answer)[0] != 30 {
		t.Fatalf("status %s err %v resp %v, want stale TTL 30", st, err, resp)
	}
	clk.step(time.Hour)
	_, st, _, err = c.Resolve(context.Background(), req)
	var ne net.Error
	if err == nil || !errors.As(err, &ne) || !ne.Timeout() || st.String() != "miss" {
		t.Fatalf("beyond serve-stale: status %s err %v, want a timeout miss", st, err)
	}
}

// TestResolve_real_server_slow checks RFC 8767's client response timer
// against a loopback upstream that takes longer than the timer: the client
// gets the stale answer on time, and the upstream's late reply still
// refreshes the entry.
func TestResolve_real_server_slow(t *testing.T) {
	var slow atomic.Bool
	release := make(chan struct{})
	ip := net.IPv4(192, 0, 2, 1)
	addr := startServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if slow.Load() {
			<-release
			ip = net.IPv4(192, 0, 2, 2)
		}
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: ip}}
		if err := w.WriteMsg(m); err != nil {
			t.Errorf("write: %v", err)
		}
	})
	cfg := DefaultConfig()
	cfg.StaleClientTimeout = 50 * time.Millisecond
	c, clk := newServerCache(t, addr, 10*time.Second, cfg)
	req := newQuery("www.example.com.", dns.TypeA, true, false)
	mustResolve(t, c, req)
	slow.Store(true)
	clk.step(5 * time.Minute)
	resp, st, _, err := c.Resolve(context.Background(), req)
	if err != nil || st.String() != "stale" || ttls(resp.Answer)[0] != 30 || resp.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Fatalf("status %s err %v resp %v, want the stale 192.0.2.1 with TTL 30", st, err, resp)
	}
	cl := inFlight(t, c, req, "no exchange in flight after the stale answer")
	close(release)
	<-cl.done
	resp, st2 := mustResolve(t, c, req)
	if st2 != "hit" || resp.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
		t.Fatalf("after the late reply: %s %v, want a hit on 192.0.2.2", st2, resp.Answer)
	}
}

// newServerCache returns a cache with the default metrics and a stepped
// clock over the loopback upstream at addr, asked over UDP with timeout.
func newServerCache(t *testing.T, addr string, timeout time.Duration, cfg Config) (*Cache, *clock) {
	t.Helper()
	up := clientExchanger{client: &dns.Client{Net: "udp", Timeout: timeout}, addr: addr}
	clk := newClock()
	c, err := New(cfg, up, nil, nil, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, clk
}

// inFlight returns the exchange in flight for req, failing with msg when
// there is none.
func inFlight(t *testing.T, c *Cache, req *dns.Msg, msg string) *call {
	t.Helper()
	c.mu.Lock()
	cl := c.calls[makeKey(req)]
	c.mu.Unlock()
	if cl == nil {
		t.Fatal(msg)
	}
	return cl
}
