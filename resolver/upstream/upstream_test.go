package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name       string
		addr       string
		wantProto  string // udp, tcp, tls, https
		wantServer string // ip:port, or the URL for https
		wantSNI    string
		wantErr    bool
	}{
		{name: "bare_ipv4", addr: "1.2.3.4", wantProto: "udp", wantServer: "1.2.3.4:53"},
		{name: "bare_ipv4_port", addr: "1.2.3.4:5353", wantProto: "udp", wantServer: "1.2.3.4:5353"},
		{name: "bare_ipv6", addr: "::1", wantProto: "udp", wantServer: "[::1]:53"},
		{name: "bracketed_ipv6_port", addr: "[::1]:53", wantProto: "udp", wantServer: "[::1]:53"},
		{name: "udp_scheme", addr: "udp://9.9.9.9:53", wantProto: "udp", wantServer: "9.9.9.9:53"},
		{name: "tcp_default_port", addr: "tcp://9.9.9.9", wantProto: "tcp", wantServer: "9.9.9.9:53"},
		{name: "tls_fragment", addr: "tls://1.1.1.1:853#cloudflare-dns.com", wantProto: "tls", wantServer: "1.1.1.1:853", wantSNI: "cloudflare-dns.com"},
		{name: "tls_default_port_ip_sni", addr: "tls://1.1.1.1", wantProto: "tls", wantServer: "1.1.1.1:853", wantSNI: "1.1.1.1"},
		{name: "https", addr: "https://dns.example/dns-query", wantProto: "https", wantServer: "https://dns.example/dns-query", wantSNI: "dns.example"},
		{name: "https_empty_path", addr: "https://127.0.0.1:8443", wantProto: "https", wantServer: "https://127.0.0.1:8443/dns-query", wantSNI: "127.0.0.1"},
		{name: "https_fragment_sni", addr: "https://127.0.0.1/q#dns.example", wantProto: "https", wantServer: "https://127.0.0.1/q", wantSNI: "dns.example"},
		{name: "unknown_scheme", addr: "quic://1.2.3.4", wantErr: true},
		{name: "hostname_udp", addr: "udp://dns.example:53", wantErr: true},
		{name: "empty", addr: "", wantErr: true},
		{name: "port_zero", addr: "1.2.3.4:0", wantErr: true},
		{name: "bad_port", addr: "1.2.3.4:99999", wantErr: true},
		{name: "empty_sni", addr: "tls://1.2.3.4#", wantErr: true},
		{name: "fragment_on_udp", addr: "udp://1.2.3.4#x", wantErr: true},
		{name: "http_plain", addr: "http://dns.example/dns-query", wantErr: true},
		{name: "https_no_host", addr: "https:///dns-query", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New(tc.addr, Options{})
			if tc.wantErr {
				if err == nil {
					t.Fatalf("New(%q) = %v, want error", tc.addr, u)
				}
				if !strings.Contains(err.Error(), `"`+tc.addr+`"`) {
					t.Errorf("error %q does not name the address", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q): %v", tc.addr, err)
			}
			if u.String() != tc.addr {
				t.Errorf("String() = %q, want %q", u.String(), tc.addr)
			}
			var proto, server, sni string
			switch x := u.(type) {
			case *udpUpstream:
				proto, server = "udp", x.server
			case *streamUpstream:
				proto, server = x.proto(), x.server
				if x.tls != nil {
					sni = x.tls.ServerName
				}
			case *dohUpstream:
				proto, server, sni = "https", x.url, x.transport.TLSClientConfig.ServerName
			}
			if proto != tc.wantProto || server != tc.wantServer || sni != tc.wantSNI {
				t.Errorf("got (%s, %s, sni %q), want (%s, %s, sni %q)", proto, server, sni, tc.wantProto, tc.wantServer, tc.wantSNI)
			}
		})
	}
}

// TestExchange_transports forwards one query over each transport to an
// in-process server and checks the caller's ID and question come back.
func TestExchange_transports(t *testing.T) {
	pki := newTestPKI(t)
	tlsOpts := Options{TLSConfig: &tls.Config{RootCAs: pki.roots}}
	var sawHTTP2 atomic.Bool
	tests := []struct {
		name  string
		setup func(t *testing.T) (addr string, opts Options)
	}{
		{name: "udp", setup: func(t *testing.T) (string, Options) {
			return "udp://" + startDNS(t, answer(dns.RcodeSuccess, "192.0.2.1")).Addr, Options{}
		}},
		{name: "bare", setup: func(t *testing.T) (string, Options) {
			return startDNS(t, answer(dns.RcodeSuccess, "192.0.2.1")).Addr, Options{}
		}},
		{name: "tcp", setup: func(t *testing.T) (string, Options) {
			return "tcp://" + startDNS(t, answer(dns.RcodeSuccess, "192.0.2.1")).Addr, Options{}
		}},
		{name: "tls", setup: func(t *testing.T) (string, Options) {
			return "tls://" + startDoT(t, answer(dns.RcodeSuccess, "192.0.2.1"), pki.cert).Addr + "#dns.example", tlsOpts
		}},
		{name: "https", setup: func(t *testing.T) (string, Options) {
			ts := startDoH(t, pki, func(w http.ResponseWriter, r *http.Request, q *dns.Msg) {
				sawHTTP2.Store(r.ProtoMajor == 2)
				writeDoH(w, reply(q, dns.RcodeSuccess, "192.0.2.1"))
			})
			return ts.URL + "/dns-query", tlsOpts
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr, opts := tc.setup(t)
			u := mustNew(t, addr, opts)
			q := newQuery("Www.Example.ORG.", dns.TypeA)
			before := q.Copy()
			for i := range 3 { // repeated: pooled connections get used
				r, err := u.Exchange(t.Context(), q)
				if err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
				if r.Id != q.Id || r.Question[0] != q.Question[0] {
					t.Fatalf("reply id %d question %v, want %d %v", r.Id, r.Question[0], q.Id, q.Question[0])
				}
				if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
					t.Fatalf("answer = %v", r.Answer)
				}
			}
			if q.String() != before.String() {
				t.Errorf("query was modified:\n%v\nwant\n%v", q, before)
			}
		})
	}
	if !sawHTTP2.Load() {
		t.Errorf("DoH request did not use HTTP/2")
	}
}

func startDoH(tb testing.TB, pki testPKI, h func(w http.ResponseWriter, r *http.Request, q *dns.Msg)) *httptest.Server {
	tb.Helper()
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != dnsMessageType || r.URL.Path != "/dns-query" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		q := new(dns.Msg)
		if err := q.Unpack(b[:n]); err != nil || q.Id != 0 {
			http.Error(w, "bad message or nonzero id", http.StatusBadRequest)
			return
		}
		h(w, r, q)
	}))
	ts.EnableHTTP2 = true
	ts.TLS = &tls.Config{Certificates: []tls.Certificate{pki.cert}}
	ts.StartTLS()
	tb.Cleanup(ts.Close)
	return ts
}

func writeDoH(w http.ResponseWriter, m *dns.Msg) {
	b, _ := m.Pack()
	w.Header().Set("Content-Type", dnsMessageType)
	_, _ = w.Write(b)
}

func TestDoH_errors(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name        string
		h           func(w http.ResponseWriter, r *http.Request, q *dns.Msg)
		wantInvalid bool
		wantText    string
	}{
		{name: "status_500", h: func(w http.ResponseWriter, _ *http.Request, _ *dns.Msg) {
			http.Error(w, "boom", http.StatusInternalServerError)
		}, wantText: "http status 500"},
		{name: "wrong_content_type", h: func(w http.ResponseWriter, _ *http.Request, q *dns.Msg) {
			b, _ := reply(q, dns.RcodeSuccess, "192.0.2.1").Pack()
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write(b)
		}, wantInvalid: true, wantText: "content type"},
		{name: "garbage_body", h: func(w http.ResponseWriter, _ *http.Request, _ *dns.Msg) {
			w.Header().Set("Content-Type", dnsMessageType)
			_, _ = w.Write([]byte{1, 2, 3})
		}, wantInvalid: true, wantText: "unpack"},
		{name: "wrong_question", h: func(w http.ResponseWriter, _ *http.Request, q *dns.Msg) {
			other := q.Copy()
			other.Question[0].Name = "evil.example."
			writeDoH(w, reply(other, dns.RcodeSuccess, "192.0.2.66"))
		}, wantInvalid: true, wantText: "question name mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startDoH(t, pki, tc.h)
			m := NewMetrics(nil)
			u := mustNew(t, ts.URL+"/dns-query", Options{TLSConfig: &tls.Config{RootCAs: pki.roots}, Metrics: m})
			_, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			if err == nil || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error = %v, want one containing %q", err, tc.wantText)
			}
			if got := errors.Is(err, ErrInvalidResponse); got != tc.wantInvalid {
				t.Errorf("errors.Is(err, ErrInvalidResponse) = %v, want %v", got, tc.wantInvalid)
			}
			wantCount := 0.0
			if tc.wantInvalid {
				wantCount = 1
			}
			if got := testutil.ToFloat64(m.InvalidResponses.WithLabelValues(u.String())); got != wantCount {
				t.Errorf("invalid_responses_total = %v, want %v", got, wantCount)
			}
		})
	}
}

func TestDoT_badCertificate(t *testing.T) {
	pki := newTestPKI(t)
	srv := startDoT(t, answer(dns.RcodeSuccess, "192.0.2.1"), pki.cert)
	tests := []struct {
		name string
		addr string
		opts Options
	}{
		{name: "unknown_ca", addr: "tls://" + srv.Addr + "#dns.example", opts: Options{}},
		{name: "wrong_server_name", addr: "tls://" + srv.Addr + "#other.example", opts: Options{TLSConfig: &tls.Config{RootCAs: pki.roots}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u := mustNew(t, tc.addr, tc.opts)
			_, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			if err == nil || !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("error = %v, want a certificate error", err)
			}
		})
	}
}

func TestUDP_EDNS(t *testing.T) {
	tests := []struct {
		name        string
		query       func() *dns.Msg
		wantUDPSize uint16 // seen by the server
		wantDO      bool
		wantOPT     bool // in the reply to the caller
	}{
		{name: "no_opt_gets_1232_then_stripped", query: func() *dns.Msg {
			return newQuery("example.org.", dns.TypeA)
		}, wantUDPSize: 1232},
		{name: "caller_opt_forwarded_as_is", query: func() *dns.Msg {
			q := newQuery("example.org.", dns.TypeA)
			q.SetEdns0(4096, true)
			return q
		}, wantUDPSize: 4096, wantDO: true, wantOPT: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan *dns.OPT, 1)
			srv := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
				opt := r.IsEdns0()
				seen <- opt
				m := reply(r, dns.RcodeSuccess, "192.0.2.1")
				if opt != nil {
					m.SetEdns0(opt.UDPSize(), opt.Do())
				}
				_ = w.WriteMsg(m)
			})
			u := mustNew(t, "udp://"+srv.Addr, Options{})
			r, err := u.Exchange(t.Context(), tc.query())
			if err != nil {
				t.Fatal(err)
			}
			opt := <-seen
			if opt == nil || opt.UDPSize() != tc.wantUDPSize || opt.Do() != tc.wantDO {
				t.Fatalf("server saw OPT %v, want size %d DO %v", opt, tc.wantUDPSize, tc.wantDO)
			}
			if got := r.IsEdns0() != nil; got != tc.wantOPT {
				t.Errorf("reply has OPT = %v, want %v", got, tc.wantOPT)
			}
		})
	}
}

func TestUDP_truncatedRetriesOverTCP(t *testing.T) {
	var udpQueries, tcpQueries atomic.Int64
	srv := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		if w.RemoteAddr().Network() == "udp" {
			udpQueries.Add(1)
			m := reply(r, dns.RcodeSuccess, "")
			m.Truncated = true
			_ = w.WriteMsg(m)
			return
		}
		tcpQueries.Add(1)
		m := reply(r, dns.RcodeSuccess, "192.0.2.1")
		for i := range 100 { // larger than 1232 bytes
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
				A:   net.IPv4(192, 0, 2, byte(i)),
			})
		}
		_ = w.WriteMsg(m)
	})
	u := mustNew(t, "udp://"+srv.Addr, Options{})
	q := newQuery("big.example.", dns.TypeA)
	r, err := u.Exchange(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	if r.Truncated || len(r.Answer) != 101 || r.Id != q.Id {
		t.Fatalf("reply TC=%v answers=%d id=%d, want full answer with id %d", r.Truncated, len(r.Answer), r.Id, q.Id)
	}
	if udpQueries.Load() != 1 || tcpQueries.Load() != 1 {
		t.Errorf("udp=%d tcp=%d queries, want 1 and 1", udpQueries.Load(), tcpQueries.Load())
	}
}

// TestUDP_spoofedReplyDiscarded has the server send a forged packet before
// the real answer; the forgery must be counted and ignored.
func TestUDP_spoofedReplyDiscarded(t *testing.T) {
	tests := []struct {
		name  string
		forge func(q *dns.Msg) *dns.Msg
	}{
		{name: "wrong_id", forge: func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, "192.0.2.66")
			m.Id = q.Id + 1
			return m
		}},
		{name: "wrong_question_name", forge: func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, "192.0.2.66")
			m.Question[0].Name = "evil.example."
			return m
		}},
		{name: "wrong_question_type", forge: func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, "")
			m.Question[0].Qtype = dns.TypeAAAA
			return m
		}},
		{name: "not_a_response", forge: func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, "192.0.2.66")
			m.Response = false
			return m
		}},
		{name: "no_question", forge: func(q *dns.Msg) *dns.Msg {
			m := reply(q, dns.RcodeSuccess, "")
			m.Question = nil
			return m
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			addr := rawUDP(t, func(q *dns.Msg) [][]byte {
				return [][]byte{pack(t, tc.forge(q)), {0xde, 0xad}, pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
			})
			m := NewMetrics(nil)
			u := mustNew(t, "udp://"+addr, Options{Metrics: m})
			r, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Answer[0].(*dns.A).A.String(); got != "192.0.2.1" {
				t.Errorf("accepted answer %s, want the real 192.0.2.1", got)
			}
			if got := testutil.ToFloat64(m.InvalidResponses.WithLabelValues(u.String())); got != 2 {
				t.Errorf("invalid_responses_total = %v, want 2 (forgery and garbage)", got)
			}
		})
	}
}

func TestUDP_onlyInvalidRepliesTimesOut(t *testing.T) {
	addr := rawUDP(t, func(q *dns.Msg) [][]byte {
		m := reply(q, dns.RcodeSuccess, "192.0.2.66")
		m.Id++
		return [][]byte{pack(t, m)}
	})
	u := mustNew(t, "udp://"+addr, Options{Timeout: 100 * time.Millisecond})
	_, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
	wantErrIs(t, err, ErrInvalidResponse)
	wantErrIs(t, err, context.DeadlineExceeded)
}

func TestUDP_closedPortFailsFast(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	u := mustNew(t, "udp://"+addr, Options{Timeout: 5 * time.Second})
	start := time.Now()
	_, err = u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
	if err == nil || isTimeout(err) {
		t.Fatalf("error = %v, want a network error", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v, want a fast failure (ICMP port unreachable)", d)
	}
}

func TestUDP_0x20(t *testing.T) {
	const name = "AbcdefghijklmnopqrstuvwxyZ.example."
	tests := []struct {
		name    string
		lower   bool // server lowercases the question in its reply
		wantErr bool
	}{
		{name: "echoed_case_accepted_and_restored"},
		{name: "lowercased_echo_rejected", lower: true, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sent := make(chan string, 1)
			addr := rawUDP(t, func(q *dns.Msg) [][]byte {
				sent <- q.Question[0].Name
				if tc.lower {
					q.Question[0].Name = strings.ToLower(q.Question[0].Name)
				}
				return [][]byte{pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
			})
			u := mustNew(t, "udp://"+addr, Options{Randomize0x20: true, Timeout: 200 * time.Millisecond})
			r, err := u.Exchange(t.Context(), newQuery(name, dns.TypeA))
			wire := <-sent
			if wire == name || !strings.EqualFold(wire, name) {
				t.Errorf("name on the wire %q: want %q with randomised case", wire, name)
			}
			if tc.wantErr {
				wantErrIs(t, err, ErrInvalidResponse)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Question[0].Name != name || r.Answer[0].Header().Name != name {
				t.Errorf("reply question %q answer owner %q, want the caller's %q", r.Question[0].Name, r.Answer[0].Header().Name, name)
			}
		})
	}
}

// TestUDP_freshIDAndSourcePort checks every upstream query uses a new
// random ID and a new source port.
func TestUDP_freshIDAndSourcePort(t *testing.T) {
	const n = 32
	var mu sync.Mutex
	ids := map[uint16]bool{}
	ports := map[string]bool{}
	srv := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		mu.Lock()
		ids[r.Id] = true
		ports[w.RemoteAddr().String()] = true
		mu.Unlock()
		_ = w.WriteMsg(reply(r, dns.RcodeSuccess, "192.0.2.1"))
	})
	u := mustNew(t, "udp://"+srv.Addr, Options{})
	q := newQuery("example.org.", dns.TypeA)
	for range n {
		if _, err := u.Exchange(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Collisions are possible by chance (birthday bound ~1% for IDs), so
	// allow a few; a fixed ID or port would give 1.
	if len(ids) < n-3 || len(ports) < n-3 {
		t.Errorf("%d distinct IDs and %d distinct source ports over %d queries", len(ids), len(ports), n)
	}
	if ids[q.Id] && len(ids) == 1 {
		t.Errorf("caller's ID was sent upstream")
	}
}

func TestStream_connectionReuse(t *testing.T) {
	pki := newTestPKI(t)
	tests := []struct {
		name  string
		setup func(t *testing.T) (*testServer, string, Options)
	}{
		{name: "tcp", setup: func(t *testing.T) (*testServer, string, Options) {
			s := startDNS(t, answer(dns.RcodeSuccess, "192.0.2.1"))
			return s, "tcp://" + s.Addr, Options{}
		}},
		{name: "tls", setup: func(t *testing.T) (*testServer, string, Options) {
			s := startDoT(t, answer(dns.RcodeSuccess, "192.0.2.1"), pki.cert)
			return s, "tls://" + s.Addr + "#dns.example", Options{TLSConfig: &tls.Config{RootCAs: pki.roots}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, addr, opts := tc.setup(t)
			u := mustNew(t, addr, opts)
			for i := range 5 {
				if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
					t.Fatalf("exchange %d: %v", i, err)
				}
			}
			if got := srv.accepts.Load(); got != 1 {
				t.Errorf("server accepted %d connections for 5 sequential queries, want 1", got)
			}
		})
	}
}

func TestStream_brokenPooledConnectionRetried(t *testing.T) {
	srv := oneShotTCP(t, func(q *dns.Msg) *dns.Msg { return reply(q, dns.RcodeSuccess, "192.0.2.1") })
	u := mustNew(t, "tcp://"+srv.Addr, Options{})
	for i := range 3 {
		if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
	}
	if got := srv.accepts.Load(); got != 3 {
		t.Errorf("accepted %d connections, want 3 (one per query after each pooled one broke)", got)
	}
}

func TestParseResolvConf(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
		wantErr bool
	}{
		{name: "mixed", content: "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver 2001:db8::53 ; trailing\noptions ndots:2\nnameserver 198.51.100.1\n",
			want: []string{"udp://192.0.2.53:53", "udp://[2001:db8::53]:53", "udp://198.51.100.1:53"}},
		{name: "loopback_skipped", content: "nameserver 127.0.0.53\nnameserver ::1\nnameserver 192.0.2.53\n",
			want: []string{"udp://192.0.2.53:53"}},
		{name: "only_stub", content: "nameserver 127.0.0.53\noptions edns0 trust-ad\n", wantErr: true},
		{name: "malformed_ignored", content: "nameserver\nnameserver not-an-ip\nnameserver 192.0.2.1\n",
			want: []string{"udp://192.0.2.1:53"}},
		{name: "empty", content: "", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := ParseResolvConf(path)
			if tc.wantErr {
				wantErrIs(t, err, ErrNoNameservers)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for _, a := range got {
				if _, err := New(a, Options{}); err != nil {
					t.Errorf("New(%q): %v", a, err)
				}
			}
		})
	}
	if _, err := ParseResolvConf(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Errorf("missing file: want error")
	}
}

// trackingListener records the connections it accepts, so a test can close
// them from the server's side, as a server's idle timeout does.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		_ = c.Close()
	}
	l.conns = nil
}

// TestStream_allPooledConnectionsClosed: when the server has closed every
// pooled connection (an idle timeout: miekg/dns's is 8s, Unbound's about
// 30s, under the pool's 20s), the next query succeeds on a new connection
// however many dead ones are pooled; the retry used to take the next dead
// one and fail.
func TestStream_allPooledConnectionsClosed(t *testing.T) {
	for _, pooled := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("%d_pooled", pooled), func(t *testing.T) {
			var arrived sync.WaitGroup
			arrived.Add(pooled)
			var calls atomic.Int64
			h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
				if calls.Add(1) <= int64(pooled) {
					arrived.Done()
					arrived.Wait() // each warm-up query holds its own connection
				}
				_ = w.WriteMsg(reply(r, dns.RcodeSuccess, "192.0.2.1"))
			})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			tl := &trackingListener{Listener: l}
			serve(t, &dns.Server{Listener: tl, Handler: h})
			u := mustNew(t, "tcp://"+l.Addr().String(), Options{MaxIdleConns: 3})
			var wg sync.WaitGroup
			for range pooled {
				wg.Go(func() {
					if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
						t.Errorf("warm-up exchange: %v", err)
					}
				})
			}
			wg.Wait()
			tl.closeAll()
			if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
				t.Fatalf("exchange after the server closed %d pooled connections: %v", pooled, err)
			}
			// The dead ones went with the first: the next query reuses
			// the new connection.
			if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
				t.Fatalf("second exchange: %v", err)
			}
			tl.mu.Lock()
			n := len(tl.conns)
			tl.mu.Unlock()
			if n != 1 {
				t.Errorf("%d connections since the close, want 1", n)
			}
		})
	}
}
