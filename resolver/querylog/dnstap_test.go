package querylog

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"github.com/miekg/dns"
	"google.golang.org/protobuf/proto"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// dnstapReceiver is an in-process dnstap collector: it accepts Frame
// Streams connections (bidirectional, dnstap content type) and sends every
// decoded message to msgs.
type dnstapReceiver struct {
	ln    net.Listener
	msgs  chan *dnstap.Dnstap
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startReceiver(tb testing.TB, network, addr string) *dnstapReceiver {
	tb.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		tb.Fatalf("listen %s %s: %v", network, addr, err)
	}
	rx := &dnstapReceiver{ln: ln, msgs: make(chan *dnstap.Dnstap, 4096)}
	rx.wg.Add(1)
	go func() {
		defer rx.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			rx.mu.Lock()
			rx.conns = append(rx.conns, c)
			rx.mu.Unlock()
			rx.wg.Add(1)
			go rx.serve(tb, c)
		}
	}()
	tb.Cleanup(rx.kill)
	return rx
}

func (rx *dnstapReceiver) serve(tb testing.TB, c net.Conn) {
	defer rx.wg.Done()
	r, err := framestream.NewReader(c, &framestream.ReaderOptions{
		ContentTypes: [][]byte{dnstap.FSContentType}, Bidirectional: true, Timeout: 10 * time.Second,
	})
	if err != nil {
		return
	}
	buf := make([]byte, 1<<16)
	for {
		n, err := r.ReadFrame(buf)
		if err != nil {
			return
		}
		dt := new(dnstap.Dnstap)
		if err := proto.Unmarshal(buf[:n], dt); err != nil {
			tb.Errorf("receiver: unmarshal: %v", err)
			return
		}
		rx.msgs <- dt
	}
}

// kill stops the receiver abruptly: listener and connections closed.
func (rx *dnstapReceiver) kill() {
	rx.ln.Close()
	rx.mu.Lock()
	for _, c := range rx.conns {
		c.Close()
	}
	rx.mu.Unlock()
	rx.wg.Wait()
}

func (rx *dnstapReceiver) next(tb testing.TB) *dnstap.Dnstap {
	tb.Helper()
	select {
	case m := <-rx.msgs:
		return m
	case <-time.After(10 * time.Second):
		tb.Fatal("no dnstap message within 10s")
		return nil
	}
}

func unpack(tb testing.TB, b []byte) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		tb.Fatalf("unpack dnstap DNS message: %v", err)
	}
	return m
}

func TestDnstapSink(t *testing.T) {
	tests := []struct {
		name    string
		network string
		addr    func(t *testing.T) string
	}{
		{"unix_socket", "unix", func(t *testing.T) string { return filepath.Join(t.TempDir(), "dnstap.sock") }},
		{"tcp_loopback", "tcp", func(t *testing.T) string { return "127.0.0.1:0" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rx := startReceiver(t, tt.network, tt.addr(t))
			addr := rx.ln.Addr().String()
			clock := newFakeClock()
			sink, err := NewDnstapSink(tt.network, addr, DnstapOptions{
				Now: clock.Now, MinBackoff: time.Second, MaxBackoff: time.Second, Identity: "test-host", Logger: discardLogger(),
			})
			if err != nil {
				t.Fatal(err)
			}
			m := NewMetrics(nil)
			l := NewWithOptions([]Sink{sink}, Options{BufferSize: 1024, FlushInterval: time.Millisecond}, m, discardLogger())
			sent := uint64(0)

			// An IPv4 UDP query and its response.
			r := testRecord(t, "cache_hit_a")
			r.Server = netip.MustParseAddrPort("127.0.0.1:5353")
			l.Log(&r)
			sent++
			q, resp := rx.next(t), rx.next(t)
			checkDnstap(t, q, dnstap.Message_CLIENT_QUERY, &r, "test-host")
			checkDnstap(t, resp, dnstap.Message_CLIENT_RESPONSE, &r, "test-host")
			if got := unpack(t, q.Message.QueryMessage); got.Question[0] != r.Question || got.Id != r.Req.Id {
				t.Errorf("query message = %v", got)
			}
			if got := unpack(t, resp.Message.ResponseMessage); len(got.Answer) != 3 || got.Rcode != dns.RcodeSuccess {
				t.Errorf("response message = %v", got)
			}

			// An IPv6 TCP query that was dropped: no response message.
			r6 := testRecord(t, "dropped_rate_limited")
			r6.Client.Addr, r6.Proto, r6.Instance = netip.MustParseAddr("::1"), query.TCP, ""
			l.Log(&r6)
			sent++
			q6 := rx.next(t)
			checkDnstap(t, q6, dnstap.Message_CLIENT_QUERY, &r6, "test-host")

			// The collector goes away and comes back at the same address.
			rx.kill()
			rx2 := startReceiver(t, tt.network, addr)
			r.Question.Name = "after.example."
			r.Req = r.Req.Copy()
			r.Req.Question[0].Name = "after.example."
			deadline := time.After(20 * time.Second)
		wait:
			for {
				l.Log(&r)
				sent++
				clock.Advance(2 * time.Second) // past the backoff
				select {
				case got := <-rx2.msgs:
					checkDnstap(t, got, dnstap.Message_CLIENT_QUERY, &r, "test-host")
					break wait
				case <-time.After(5 * time.Millisecond):
				case <-deadline:
					t.Fatal("sink did not reconnect to the new collector")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := l.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if sink.Connects() < 2 {
				t.Errorf("connects = %d, want a reconnection", sink.Connects())
			}
			checkAccounting(t, l, m, sent)
			if st := l.Stats()[0]; st.Written < 3 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func checkDnstap(tb testing.TB, dt *dnstap.Dnstap, typ dnstap.Message_Type, r *Record, identity string) {
	tb.Helper()
	if dt.GetType() != dnstap.Dnstap_MESSAGE || string(dt.Version) != "dnsvalve" {
		tb.Errorf("dnstap type %v version %q", dt.GetType(), dt.Version)
	}
	wantID := r.Instance
	if wantID == "" {
		wantID = identity
	}
	if string(dt.Identity) != wantID {
		tb.Errorf("identity = %q, want %q", dt.Identity, wantID)
	}
	m := dt.Message
	if m.GetType() != typ {
		tb.Fatalf("message type = %v, want %v", m.GetType(), typ)
	}
	wantFam := dnstap.SocketFamily_INET
	if r.Client.Addr.Is6() {
		wantFam = dnstap.SocketFamily_INET6
	}
	if m.GetSocketFamily() != wantFam || m.GetSocketProtocol() != socketProtocol(r.Proto) {
		tb.Errorf("family %v protocol %v, want %v %v", m.GetSocketFamily(), m.GetSocketProtocol(), wantFam, socketProtocol(r.Proto))
	}
	if a, ok := netip.AddrFromSlice(m.QueryAddress); !ok || a != r.Client.Addr || m.GetQueryPort() != uint32(r.Client.Port) {
		tb.Errorf("query address %v port %d, want %v %d", m.QueryAddress, m.GetQueryPort(), r.Client.Addr, r.Client.Port)
	}
	if r.Server.IsValid() {
		if a, ok := netip.AddrFromSlice(m.ResponseAddress); !ok || a != r.Server.Addr() || m.GetResponsePort() != uint32(r.Server.Port()) {
			tb.Errorf("response address %v port %d, want %v", m.ResponseAddress, m.GetResponsePort(), r.Server)
		}
	}
	if qt := time.Unix(int64(m.GetQueryTimeSec()), int64(m.GetQueryTimeNsec())); !qt.Equal(r.Time) {
		tb.Errorf("query time %v, want %v", qt, r.Time)
	}
	if typ == dnstap.Message_CLIENT_QUERY {
		if got := unpack(tb, m.QueryMessage); got.Question[0].Name != r.Question.Name {
			tb.Errorf("query name %q, want %q", got.Question[0].Name, r.Question.Name)
		}
		return
	}
	if rt := time.Unix(int64(m.GetResponseTimeSec()), int64(m.GetResponseTimeNsec())); !rt.Equal(r.Time.Add(r.Latency)) {
		tb.Errorf("response time %v, want %v", rt, r.Time.Add(r.Latency))
	}
}

// TestDnstapSinkDisconnected: with no collector, records fail fast (no
// dial per record while backing off) and are counted as errors.
func TestDnstapSinkDisconnected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed loopback port: connection refused
	clock := newFakeClock()
	s, err := NewDnstapSink("tcp", addr, DnstapOptions{Now: clock.Now, MinBackoff: time.Second, MaxBackoff: 4 * time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	r := testRecord(t, "refused")
	if err := s.Write(&r); err == nil || errors.Is(err, ErrDisconnected) {
		t.Fatalf("first write = %v, want a dial error", err)
	}
	if err := s.Write(&r); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("write while backing off = %v, want ErrDisconnected", err)
	}
	wantBackoff := []time.Duration{2 * time.Second, 4 * time.Second, 4 * time.Second}
	for _, want := range wantBackoff {
		clock.Advance(s.nextDial.Sub(clock.Now()))
		if err := s.Write(&r); err == nil || errors.Is(err, ErrDisconnected) {
			t.Fatalf("write after backoff = %v, want a dial error", err)
		}
		if s.backoff != want {
			t.Errorf("backoff = %v, want %v", s.backoff, want)
		}
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}

// TestDnstapMixedFamilies: a listener address of the other family than
// the client's is left out of the message; it used to panic (As4 of an
// IPv6 address) in the Logger's writer goroutine.
func TestDnstapMixedFamilies(t *testing.T) {
	s, err := NewDnstapSink("unix", filepath.Join(t.TempDir(), "x.sock"), DnstapOptions{Identity: "h", Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name           string
		client, server string
		wantQ, wantR   int // address lengths
	}{
		{"v4_client_v6_listener", "10.0.8.5:53211", "[2001:db8::53]:53", 4, 0},
		{"v6_client_v4_listener", "[2001:db8::5]:53211", "192.0.2.53:53", 16, 0},
		{"v4_client_mapped_listener", "10.0.8.5:53211", "[::ffff:192.0.2.53]:53", 4, 4},
		{"v6_both", "[2001:db8::5]:53211", "[2001:db8::53]:53", 16, 16},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testRecord(t, "cache_hit_a")
			ap := netip.MustParseAddrPort(tc.client)
			r.Client.Addr, r.Client.Port = ap.Addr(), ap.Port()
			r.Server = netip.MustParseAddrPort(tc.server)
			dt := s.message(&r, dnstap.Message_CLIENT_RESPONSE)
			if len(dt.Message.QueryAddress) != tc.wantQ || len(dt.Message.ResponseAddress) != tc.wantR {
				t.Errorf("query address %v, response address %v: want lengths %d, %d",
					dt.Message.QueryAddress, dt.Message.ResponseAddress, tc.wantQ, tc.wantR)
			}
		})
	}
}
