package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func testLogger(tb testing.TB) *slog.Logger {
	tb.Helper()
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// testServer is an in-process miekg/dns server on loopback.
type testServer struct {
	Addr    string       // ip:port, the same port for UDP and TCP when both run
	accepts atomic.Int64 // TCP connections accepted
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// startDNS serves h over UDP and TCP on the same loopback port.
func startDNS(tb testing.TB, h dns.HandlerFunc) *testServer {
	tb.Helper()
	s := &testServer{}
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatalf("listen tcp: %v", err)
		}
		if pc, err = net.ListenPacket("udp", l.Addr().String()); err == nil {
			break
		}
		l.Close()
		if attempt == 10 {
			tb.Fatalf("listen udp: %v", err)
		}
	}
	s.Addr = l.Addr().String()
	serve(tb, &dns.Server{PacketConn: pc, Handler: h})
	serve(tb, &dns.Server{Listener: countingListener{l, &s.accepts}, Handler: h})
	return s
}

// startDoT serves h over DNS over TLS with cert.
func startDoT(tb testing.TB, h dns.HandlerFunc, cert tls.Certificate) *testServer {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	s := &testServer{Addr: l.Addr().String()}
	tl := tls.NewListener(countingListener{l, &s.accepts}, &tls.Config{Certificates: []tls.Certificate{cert}})
	serve(tb, &dns.Server{Listener: tl, Net: "tcp-tls", Handler: h})
	return s
}

func serve(tb testing.TB, srv *dns.Server) {
	tb.Helper()
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		tb.Fatalf("serve: %v", err)
	}
	tb.Cleanup(func() { _ = srv.Shutdown() })
}

// dropUDP returns the address of a UDP socket that reads and drops every
// packet: an upstream that never answers.
func dropUDP(tb testing.TB) string {
	tb.Helper()
	return rawUDP(tb, func(*dns.Msg) [][]byte { return nil })
}

// rawUDP serves UDP with fn, which returns the raw packets to send back
// (in order) for each query.
func rawUDP(tb testing.TB, fn func(q *dns.Msg) [][]byte) string {
	tb.Helper()
	return rawUDPFrom(tb, func(q *dns.Msg, _ *net.UDPAddr) [][]byte { return fn(q) })
}

// rawUDPFrom is rawUDP with the query's source address passed to fn.
func rawUDPFrom(tb testing.TB, fn func(q *dns.Msg, from *net.UDPAddr) [][]byte) string {
	tb.Helper()
	return rawUDPServe(tb, func(pc net.PacketConn, q *dns.Msg, from net.Addr) {
		for _, b := range fn(q, from.(*net.UDPAddr)) {
			_, _ = pc.WriteTo(b, from)
		}
	})
}

// rawUDPServe calls fn with every DNS message the UDP socket it listens on
// receives, and the socket, to answer it when and how fn likes. It returns
// the socket's address; the socket is closed at cleanup.
func rawUDPServe(tb testing.TB, fn func(pc net.PacketConn, q *dns.Msg, from net.Addr)) string {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen udp: %v", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			q := new(dns.Msg)
			if q.Unpack(buf[:n]) != nil {
				continue
			}
			fn(pc, q, from)
		}
	}()
	tb.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}

// oneShotTCP answers one query per TCP connection with h, then closes it,
// like a server with a very short idle timeout.
func oneShotTCP(tb testing.TB, h func(q *dns.Msg) *dns.Msg) *testServer {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	s := &testServer{Addr: l.Addr().String()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			func() {
				defer c.Close()
				var lb [2]byte
				if _, err := io.ReadFull(c, lb[:]); err != nil {
					return
				}
				b := make([]byte, int(lb[0])<<8|int(lb[1]))
				if _, err := io.ReadFull(c, b); err != nil {
					return
				}
				q := new(dns.Msg)
				if q.Unpack(b) != nil {
					return
				}
				out, _ := h(q).Pack()
				_, _ = c.Write(append([]byte{byte(len(out) >> 8), byte(len(out))}, out...))
			}()
		}
	}()
	tb.Cleanup(func() { l.Close(); <-done })
	return s
}

func reply(q *dns.Msg, rcode int, ip string) *dns.Msg {
	m := new(dns.Msg)
	m.SetRcode(q, rcode)
	if ip != "" && len(q.Question) == 1 {
		m.Answer = append(m.Answer, &dns.A{
			Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
			A:   net.ParseIP(ip).To4(),
		})
	}
	return m
}

func pack(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("pack: %v", err)
	}
	return b
}

// answer replies with rcode and, for NOERROR, an A record for ip.
func answer(rcode int, ip string) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) { _ = w.WriteMsg(reply(r, rcode, ip)) }
}

// answerNoQuestion answers every query with rcode and no question section,
// as servers that reject a query may.
func answerNoQuestion(rcode int) dns.HandlerFunc {
	return func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetRcode(r, rcode)
		m.Question = nil
		_ = w.WriteMsg(m)
	}
}

func newQuery(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 4242
	return m
}

// testPKI is a throwaway CA and a server certificate for 127.0.0.1 and
// dns.example signed by it.
type testPKI struct {
	roots *x509.CertPool
	cert  tls.Certificate
}

func newTestPKI(tb testing.TB) testPKI {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "dnsvalve test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "dns.example"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
		DNSNames:     []string{"dns.example"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testPKI{roots: pool, cert: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
}

func mustNew(tb testing.TB, addr string, opts Options) Upstream {
	tb.Helper()
	u, err := New(addr, opts)
	if err != nil {
		tb.Fatalf("New(%q): %v", addr, err)
	}
	if c, ok := u.(io.Closer); ok {
		tb.Cleanup(func() { _ = c.Close() })
	}
	return u
}

func wantErrIs(tb testing.TB, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Fatalf("error = %v, want one wrapping %v", err, target)
	}
}
