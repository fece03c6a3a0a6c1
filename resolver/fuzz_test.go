package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
)

// FuzzServePacket feeds raw datagrams through the whole UDP request path
// (servePacket's header checks and unpacking, ServeDNS, the production-like
// chain access -> policy -> minimal ANY -> cache -> a fake upstream) and
// reads what the server wrote on a real loopback UDP socket pair.
//
// Properties: nothing panics; a reply, when there is one, parses, carries
// the query's ID and QR; datagrams shorter than a header or with QR set get
// no reply, every other one gets exactly one; a malformed query (does not
// unpack, out-of-range section counts, opcode other than QUERY, not one
// complete question, several OPT records, EDNS version other than 0) never
// gets a reply larger than itself; a valid query never gets one larger than
// max(512, its EDNS0 buffer size), nor larger than AdvertisedUDPSize.
//
// Seeds live in testdata/fuzz/FuzzServePacket; run with
//
//	go test ./resolver -run '^$' -fuzz FuzzServePacket -fuzztime 60s
func FuzzServePacket(f *testing.F) {
	fx := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		fx.check(t, data)
	})
}

// fuzzServer is a Server (not started: packets are handed to servePacket
// directly) whose replies go from srvConn to cliConn over loopback.
type fuzzServer struct {
	srv     *Server
	w       *udpWriter
	cliConn *net.UDPConn
	cliRaw  syscall.RawConn
	buf     []byte
}

func newFuzzServer(tb testing.TB) *fuzzServer {
	tb.Helper()
	srvConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("listen: %v", err)
	}
	cliConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		srvConn.Close()
		tb.Fatalf("listen: %v", err)
	}
	tb.Cleanup(func() { srvConn.Close(); cliConn.Close() })
	// Large receive buffer: a valid reply can be up to 4 KB.
	_ = cliConn.SetReadBuffer(1 << 20)
	raw, err := cliConn.SyscallConn()
	if err != nil {
		tb.Fatalf("syscall conn: %v", err)
	}

	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	c, err := cache.New(cache.Config{Size: 4096}, cache.ExchangerFunc(fuzzUpstream), cache.NewMetrics(reg), nil, nil)
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	tb.Cleanup(c.Close)
	snap, err := policy.Compile(policy.Config{}, nil)
	if err != nil {
		tb.Fatalf("policy.Compile: %v", err)
	}
	store := policy.NewStore(snap)
	allow := AccessConfig{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	chain := Chain(Forward(c),
		Access(allow, m, nil),
		Policy(store, policy.NewMetrics(reg)),
		MinimalANY(),
	)
	s := NewServer(ServerConfig{}, chain, nil, m, nil, nil)
	ap := cliConn.LocalAddr().(*net.UDPAddr).AddrPort()
	cli := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	w := &udpWriter{conn: srvConn, local: srvConn.LocalAddr(), remote: cli, client: cli, buf: make([]byte, 0, 4096)}
	w.initContext()
	return &fuzzServer{
		srv:     s,
		w:       w,
		cliConn: cliConn,
		cliRaw:  raw,
		buf:     make([]byte, 65536),
	}
}

// fuzzUpstream answers every query itself: names with a "big" label get 200
// A records, "txt" labels a 4000-byte TXT answer, "nx" NXDOMAIN, "fail" an
// error, anything else one A record. The reply echoes the question.
func fuzzUpstream(_ context.Context, q *dns.Msg) (*dns.Msg, string, error) {
	r := new(dns.Msg)
	r.SetReply(q)
	r.RecursionAvailable = true
	qn := q.Question[0].Name
	hdr := dns.RR_Header{Name: qn, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}
	lname := strings.ToLower(qn)
	switch {
	case strings.Contains(lname, "fail"):
		return nil, "fuzz", errors.New("fuzz upstream failure")
	case strings.Contains(lname, "nx"):
		r.Rcode = dns.RcodeNameError
		r.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300},
			Ns: "a.", Mbox: "b.", Serial: 1, Refresh: 2, Retry: 3, Expire: 4, Minttl: 300}}
	case strings.Contains(lname, "big"):
		for i := range 200 {
			r.Answer = append(r.Answer, &dns.A{Hdr: hdr, A: net.IPv4(198, 51, 100+byte(i/250), byte(1+i%250))})
		}
	case strings.Contains(lname, "txt"):
		hdr.Rrtype = dns.TypeTXT
		txt := make([]string, 16)
		for i := range txt {
			txt[i] = strings.Repeat("x", 250)
		}
		r.Answer = []dns.RR{&dns.TXT{Hdr: hdr, Txt: txt}}
	default:
		r.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, 1)}}
	}
	if opt := q.IsEdns0(); opt != nil {
		r.SetEdns0(opt.UDPSize(), opt.Do())
	}
	return r, "fuzz", nil
}

// recvWait reads one datagram, waiting up to 5s for it.
func (fx *fuzzServer) recvWait(tb testing.TB) []byte {
	tb.Helper()
	if b := fx.recvNow(tb); b != nil {
		return b
	}
	_ = fx.cliConn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := fx.cliConn.Read(fx.buf)
	// Cleared, or recvNow's raw read fails once it has passed.
	_ = fx.cliConn.SetReadDeadline(time.Time{})
	if err != nil {
		return nil
	}
	return fx.buf[:n]
}

// check serves data and verifies the reply against the properties.
func (fx *fuzzServer) check(t *testing.T, data []byte) {
	t.Helper()
	in := append([]byte(nil), data...) // servePacket must not keep or change it
	fx.srv.servePacket(fx.w, data)
	if string(in) != string(data) {
		t.Fatalf("servePacket modified its input")
	}
	if n := testutil.ToFloat64(fx.srv.metrics.Panics); n != 0 {
		t.Fatalf("a stage panicked serving % x", data)
	}
	expectReply := len(data) >= 12 && data[2]&0x80 == 0
	var reply []byte
	if expectReply {
		reply = fx.recvWait(t)
		if reply == nil {
			t.Fatalf("no reply to a %d-byte datagram without QR", len(data))
		}
	} else if reply = fx.recvNow(t); reply != nil {
		t.Fatalf("%d-byte reply to a %d-byte datagram that must be ignored", len(reply), len(data))
	}
	if reply == nil {
		return
	}
	if extra := fx.recvNow(t); extra != nil {
		t.Fatalf("two replies to one datagram")
	}
	r := new(dns.Msg)
	if err := r.Unpack(reply); err != nil {
		t.Fatalf("reply does not parse: %v\n% x", err, reply)
	}
	if !r.Response || r.Id != binary.BigEndian.Uint16(data) {
		t.Fatalf("reply QR=%v id=%#x, want a reply to id %#x", r.Response, r.Id, binary.BigEndian.Uint16(data))
	}
	q, limit := validQuery(data)
	if q == nil {
		if len(reply) > len(data) {
			t.Fatalf("%d-byte reply (rcode %s) to a %d-byte malformed query: amplification",
				len(reply), dns.RcodeToString[r.Rcode], len(data))
		}
		return
	}
	if len(reply) > limit {
		t.Fatalf("%d-byte reply to a valid query whose limit is %d bytes", len(reply), limit)
	}
}

// validQuery returns the parsed query and its UDP reply limit
// (max(512, EDNS0 buffer size), capped by AdvertisedUDPSize) when data is
// a query the chain answers
// (header counts in range, unpacks, QUERY opcode, one complete question,
// at most one OPT record, EDNS version 0), nil otherwise.
func validQuery(data []byte) (*dns.Msg, int) {
	if len(data) < 12 {
		return nil, 0
	}
	an, ns, ar := binary.BigEndian.Uint16(data[6:]), binary.BigEndian.Uint16(data[8:]), binary.BigEndian.Uint16(data[10:])
	if an > 1 || ns > 1 || ar > 2 {
		return nil, 0
	}
	m := new(dns.Msg)
	if m.Unpack(data) != nil || m.Response || m.Opcode != dns.OpcodeQuery || len(m.Question) != 1 ||
		m.Question[0].Qtype == 0 || m.Question[0].Qclass == 0 || multipleOPT(m.Extra) {
		return nil, 0
	}
	limit := dns.MinMsgSize
	if opt := m.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			return nil, 0
		}
		limit = max(limit, int(opt.UDPSize()))
	}
	return m, min(limit, AdvertisedUDPSize)
}
