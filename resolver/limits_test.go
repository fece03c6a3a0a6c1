package resolver_test

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver"
)

// tcpAsk sends m on c and reads one reply; it returns the read error when
// the server closed the connection instead.
func tcpAsk(t *testing.T, c net.Conn, m *dns.Msg) (*dns.Msg, error) {
	t.Helper()
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	r := new(dns.Msg)
	return r, r.Unpack(buf)
}

// TestTCPConnectionLimits: connections beyond server.tcp_max_connections
// or tcp_max_connections_per_client are closed as soon as accepted and
// counted, so that one client cannot exhaust the file descriptors the
// upstreams need; the ones within keep being answered.
func TestTCPConnectionLimits(t *testing.T) {
	for _, tc := range []struct {
		name           string
		total, perClnt int
		open           int // connections opened, each answered once
		wantKept       int
		reason         string
	}{
		{"per_client", 0, 2, 3, 2, "max_per_client"},
		{"total", 2, 0, 3, 2, "max_connections"},
		{"within", 4, 4, 3, 3, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			allow := loopbackAllowed()
			h := newHarness(t, harnessConfig{access: &allow, tcpMaxConns: tc.total, tcpMaxConnsPerClient: tc.perClnt})
			kept := 0
			var conns []net.Conn
			for i := range tc.open {
				c, err := net.Dial("tcp", h.addr)
				if err != nil {
					t.Fatal(err)
				}
				conns = append(conns, c)
				defer c.Close()
				// A query on each, in order: the server has accepted (or
				// closed) every earlier one when this one is answered.
				if r, err := tcpAsk(t, c, msg("limits.example.", dns.TypeA, 0, false)); err == nil && r.Rcode == dns.RcodeSuccess {
					kept++
				} else if err == nil || !(errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err)) {
					t.Fatalf("connection %d: %v %v, want an answer or a closed connection", i+1, r, err)
				}
			}
			if kept != tc.wantKept {
				t.Errorf("%d connections answered, want %d", kept, tc.wantKept)
			}
			// The kept ones are still served.
			for _, c := range conns[:tc.wantKept] {
				if r, err := tcpAsk(t, c, msg("again.example.", dns.TypeA, 0, false)); err != nil || r.Rcode != dns.RcodeSuccess {
					t.Errorf("kept connection: %v %v", r, err)
				}
			}
			if tc.reason != "" {
				if got := testutil.ToFloat64(h.metrics.TCPRejected.WithLabelValues(tc.reason)); got != float64(tc.open-tc.wantKept) {
					t.Errorf("tcp_rejected_total{reason=%s} = %v, want %d", tc.reason, got, tc.open-tc.wantKept)
				}
			}
		})
	}
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// TestOutsidersGetNothingInDropMode: with refuse_action: drop, a client
// outside allow_clients gets no reply at all, not even the FORMERR,
// NOTIMP or BADVERS answered before the access stage, and its TCP
// connections are closed unread; in refuse mode it gets its REFUSED and
// the connection closes.
func TestOutsidersGetNothingInDropMode(t *testing.T) {
	tenOnly := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	notify := msg("x.example.", dns.TypeSOA, 0, false)
	notify.Opcode = dns.OpcodeNotify
	badvers := msg("x.example.", dns.TypeA, 1232, false)
	badvers.IsEdns0().SetVersion(1)
	counts := msg("x.example.", dns.TypeA, 0, false)
	counts.Question = append(counts.Question, counts.Question[0]) // two questions: FORMERR
	t.Run("drop", func(t *testing.T) {
		h := newHarness(t, harnessConfig{access: &resolver.AccessConfig{Allow: tenOnly, Drop: true}})
		for name, m := range map[string]*dns.Msg{"notimp": notify, "badvers": badvers, "two_questions": counts} {
			wire, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			if raw := rawUDP(t, h.addr, wire, noReplyWait); raw != nil {
				t.Errorf("%s over UDP: a %d-byte reply, want none", name, len(raw))
			}
		}
		c := dialTCP(t, h.addr)
		if r, err := tcpAsk(t, c, msg("x.example.", dns.TypeA, 0, false)); err == nil {
			t.Errorf("TCP: reply %v, want the connection closed unread", r)
		}
		if got := testutil.ToFloat64(h.metrics.TCPRejected.WithLabelValues("not_allowed")); got != 1 {
			t.Errorf("tcp_rejected_total{reason=not_allowed} = %v, want 1", got)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		h := newHarness(t, harnessConfig{access: &resolver.AccessConfig{Allow: tenOnly}})
		c := dialTCP(t, h.addr)
		if r, err := tcpAsk(t, c, msg("x.example.", dns.TypeA, 0, false)); err != nil || r.Rcode != dns.RcodeRefused {
			t.Fatalf("first query: %v %v, want REFUSED", r, err)
		}
		if r, err := tcpAsk(t, c, msg("y.example.", dns.TypeA, 0, false)); err == nil {
			t.Errorf("second query on the connection: %v, want it closed after the REFUSED", r)
		}
	})
}
