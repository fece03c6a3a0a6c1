package resolver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/resolver"
)

// hostileIdle is the TCP idle timeout of the hostile-input server: short,
// so that the slow-client cases finish quickly.
const hostileIdle = 400 * time.Millisecond

// Expected outcomes of a hostile message besides an rcode.
const (
	wantSilence  = -1 // no reply at all (a TCP connection may be closed)
	wantHarmless = -2 // no reply, or a reply without answers (garbage)
)

// newHostileHarness is newHarness with the production chain's unserved and
// minimal-ANY stages, no observer (nothing must hold the server up) and a
// short TCP idle timeout.
func newHostileHarness(tb testing.TB, hc harnessConfig) *harness {
	tb.Helper()
	h := &harness{clock: newClock(), reg: prometheus.NewRegistry()}
	if hc.handler == nil {
		hc.handler = answer(tb, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1"}, nil)
	}
	hc.inner = append([]resolver.Middleware{resolver.Unserved(nil), resolver.MinimalANY()}, hc.inner...)
	h.up = startUpstream(tb, hc.handler)
	h.metrics = resolver.NewMetrics(h.reg)
	var chain resolver.Handler
	chain, h.cache, h.store = buildChain(tb, hc, h.clock, h.reg, h.metrics, h.up.url())
	var err error
	for range 10 {
		h.srv = resolver.NewServer(resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}, TCPIdleTimeout: hostileIdle},
			chain, nil, h.metrics, nil, h.clock.now)
		h.srv.SetIdentifier(storeIdentifier{h.store})
		if err = h.srv.Start(context.Background()); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.srv.Shutdown(ctx)
	})
	h.addr = h.srv.Addrs()[0].String()
	return h
}

// wire helpers ---------------------------------------------------------

// header is a 12-byte DNS header with ID 0xbeef.
func header(bits, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], 0xbeef)
	binary.BigEndian.PutUint16(b[2:], bits)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
	return b
}

const rd = 1 << 8 // the RD bit in header bits

func pack(tb testing.TB, m *dns.Msg) []byte {
	tb.Helper()
	b, err := m.Pack()
	if err != nil {
		tb.Fatalf("pack: %v", err)
	}
	return b
}

// mkQuery returns a packed query with ID 0xbeef; edit lets a case change it.
func mkQuery(tb testing.TB, name string, qtype uint16, bufsize uint16, edit func(*dns.Msg)) []byte {
	tb.Helper()
	m := msg(name, qtype, bufsize, false)
	if edit != nil {
		edit(m)
	}
	return pack(tb, m)
}

// garbage returns n deterministic pseudo-random bytes.
func garbage(n int, seed uint32) []byte {
	b := make([]byte, n)
	x := seed | 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// labels returns a wire name of n labels of length l each.
func labels(n, l int) []byte {
	var b []byte
	for range n {
		b = append(b, byte(l))
		b = append(b, strings.Repeat("a", l)...)
	}
	return append(b, 0)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var typeClassIN = []byte{0, 1, 0, 1}

type hostileCase struct {
	name  string
	wire  []byte
	rcode int // an rcode, wantSilence or wantHarmless
	// questions is how many questions the reply echoes.
	questions int
	udpOnly   bool
}

func hostileCases(tb testing.TB) []hostileCase {
	tb.Helper()
	opcode := func(op int) func(*dns.Msg) { return func(m *dns.Msg) { m.Opcode = op } }
	twoQ := mkQuery(tb, "a.example.", dns.TypeA, 0, nil)
	binary.BigEndian.PutUint16(twoQ[4:], 2)
	twoQ = append(twoQ, mkQuery(tb, "b.example.", dns.TypeA, 0, nil)[12:]...)
	manyOpts := func(m *dns.Msg) {
		opt := m.IsEdns0()
		for i := range 300 {
			opt.Option = append(opt.Option, &dns.EDNS0_LOCAL{Code: 65001, Data: []byte{byte(i), 1, 2, 3, 4, 5, 6, 7}})
		}
	}
	cases := []hostileCase{
		{name: "truncated_header_4", wire: header(rd, 1, 0, 0, 0)[:4], rcode: wantSilence},
		{name: "truncated_header_11", wire: header(rd, 1, 0, 0, 0)[:11], rcode: wantSilence},
		{name: "header_only_claims_question", wire: header(rd, 1, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "compression_loop_self", wire: cat(header(rd, 1, 0, 0, 0), []byte{0xc0, 12}, typeClassIN), rcode: dns.RcodeFormatError},
		{name: "compression_loop_pair", wire: cat(header(rd, 1, 0, 0, 0), []byte{1, 'a', 0xc0, 16, 1, 'b', 0xc0, 12}, typeClassIN), rcode: dns.RcodeFormatError},
		{name: "pointer_past_end", wire: cat(header(rd, 1, 0, 0, 0), []byte{0xc0, 0xff}, typeClassIN), rcode: dns.RcodeFormatError},
		{name: "label_64", wire: cat(header(rd, 1, 0, 0, 0), labels(1, 64), typeClassIN), rcode: dns.RcodeFormatError},
		{name: "name_over_255", wire: cat(header(rd, 1, 0, 0, 0), labels(5, 63), typeClassIN), rcode: dns.RcodeFormatError},
		{name: "question_without_type_and_class", wire: cat(header(rd, 1, 0, 0, 0), labels(1, 40)), rcode: dns.RcodeFormatError},
		{name: "question_without_class", wire: cat(header(rd, 1, 0, 0, 0), labels(1, 40), []byte{0, 1}), rcode: dns.RcodeFormatError},
		{name: "notify_question_without_type", wire: cat(header(4<<11, 1, 0, 0, 0), labels(2, 20)), rcode: dns.RcodeFormatError},
		{name: "zero_questions", wire: header(rd, 0, 0, 0, 0), rcode: dns.RcodeFormatError},
		{name: "zero_questions_edns", wire: mkQuery(tb, "example.", dns.TypeA, 1232, func(m *dns.Msg) { m.Question = nil }), rcode: dns.RcodeFormatError},
		{name: "two_questions", wire: twoQ, rcode: dns.RcodeFormatError},
		{name: "five_questions_count", wire: cat(header(rd, 5, 0, 0, 0), labels(1, 3), typeClassIN), rcode: dns.RcodeFormatError},
		{name: "huge_section_counts", wire: cat(header(rd, 1, 0xffff, 0xffff, 0xffff), labels(1, 3), typeClassIN), rcode: dns.RcodeFormatError},
		{name: "class_chaos", wire: mkQuery(tb, "version.bind.", dns.TypeTXT, 0, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }), rcode: dns.RcodeRefused, questions: 1},
		{name: "class_any", wire: mkQuery(tb, "example.", dns.TypeA, 0, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassANY }), rcode: dns.RcodeRefused, questions: 1},
		{name: "class_unknown", wire: mkQuery(tb, "example.", dns.TypeA, 0, func(m *dns.Msg) { m.Question[0].Qclass = 0x1234 }), rcode: dns.RcodeRefused, questions: 1},
		{name: "huge_opt_many_options", wire: mkQuery(tb, "opts.example.", dns.TypeA, 4096, manyOpts), rcode: dns.RcodeSuccess, questions: 1},
		{name: "two_opt_records", wire: mkQuery(tb, "example.", dns.TypeA, 1232, func(m *dns.Msg) { m.Extra = append(m.Extra, m.Extra[0]) }), rcode: dns.RcodeFormatError},
		{name: "edns_version_1", wire: mkQuery(tb, "example.", dns.TypeA, 1232, func(m *dns.Msg) { m.IsEdns0().SetVersion(1) }), rcode: dns.RcodeBadVers, questions: 1},
		{name: "opcode_iquery", wire: mkQuery(tb, "example.", dns.TypeA, 0, opcode(dns.OpcodeIQuery)), rcode: dns.RcodeNotImplemented, questions: 1},
		{name: "opcode_status", wire: mkQuery(tb, "example.", dns.TypeA, 0, opcode(dns.OpcodeStatus)), rcode: dns.RcodeNotImplemented, questions: 1},
		{name: "opcode_notify", wire: mkQuery(tb, "example.", dns.TypeSOA, 0, opcode(dns.OpcodeNotify)), rcode: dns.RcodeNotImplemented, questions: 1},
		{name: "opcode_update", wire: mkQuery(tb, "example.", dns.TypeSOA, 0, opcode(dns.OpcodeUpdate)), rcode: dns.RcodeNotImplemented, questions: 1},
		{name: "opcode_15", wire: mkQuery(tb, "example.", dns.TypeA, 0, opcode(15)), rcode: dns.RcodeNotImplemented, questions: 1},
		{name: "response_qr_set", wire: mkQuery(tb, "example.", dns.TypeA, 0, func(m *dns.Msg) { m.Response = true }), rcode: wantSilence},
		{name: "response_with_answers", wire: mkQuery(tb, "example.", dns.TypeA, 0, func(m *dns.Msg) {
			m.Response = true
			rr, _ := dns.NewRR("example. 300 IN A 192.0.2.66")
			m.Answer = []dns.RR{rr}
		}), rcode: wantSilence},
		{name: "axfr", wire: mkQuery(tb, "example.", dns.TypeAXFR, 0, nil), rcode: dns.RcodeRefused, questions: 1},
		{name: "qtype_tsig", wire: mkQuery(tb, "example.", dns.TypeTSIG, 0, nil), rcode: dns.RcodeFormatError, questions: 1},
	}
	for _, n := range []int{1, 12, 13, 31, 100, 512, 1500, 3000} {
		cases = append(cases, hostileCase{name: "garbage_" + itoa(n), wire: garbage(n, uint32(n)), rcode: wantHarmless})
	}
	// Larger than the UDP read buffer.
	cases = append(cases, hostileCase{name: "garbage_8000", wire: garbage(8000, 8000), rcode: wantHarmless})
	return cases
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestHostileInput sends malformed and abusive messages over UDP and TCP
// and checks each reply: the right rcode or silence, never an answer to
// garbage, never a UDP reply larger than the malformed query (a spoofed
// source must not gain amplification), and the server keeps answering.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	h := newHostileHarness(t, harnessConfig{handler: func(w dns.ResponseWriter, r *dns.Msg) {
		answer(t, dns.RcodeSuccess, []string{"@ 300 IN A 192.0.2.1"}, nil)(w, r)
	}})
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			for _, c := range hostileCases(t) {
				if c.udpOnly && network != "udp" {
					continue
				}
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					var raw []byte
					if network == "udp" {
						wait := 10 * time.Second
						if c.rcode < 0 {
							wait = noReplyWait
						}
						raw = rawUDP(t, h.addr, c.wire, wait)
						if c.rcode != dns.RcodeSuccess && len(raw) > len(c.wire) {
							t.Errorf("%d-byte UDP reply to a %d-byte malformed query (amplification)", len(raw), len(c.wire))
						}
					} else {
						raw = rawTCP(t, h.addr, c.wire, c.rcode < 0)
					}
					checkHostileReply(t, raw, c)
					stillAnswers(t, h)
				})
			}
		})
	}
	// TCP-only abuse.
	t.Run("tcp", func(t *testing.T) {
		t.Run("message_64k_valid_query", func(t *testing.T) {
			m := msg("padded.example.", dns.TypeA, 1232, false)
			wire := pack(t, m)
			pad := 65535 - len(wire) - 4 // option code and length
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_PADDING{Padding: make([]byte, pad)}}
			wire = pack(t, m)
			if len(wire) != 65535 {
				t.Fatalf("built a %d-byte message, want 65535", len(wire))
			}
			raw := rawTCP(t, h.addr, wire, false)
			checkHostileReply(t, raw, hostileCase{rcode: dns.RcodeSuccess, questions: 1})
			stillAnswers(t, h)
		})
		t.Run("message_64k_garbage", func(t *testing.T) {
			raw := rawTCP(t, h.addr, garbage(65535, 65535), true)
			checkHostileReply(t, raw, hostileCase{rcode: wantHarmless})
			stillAnswers(t, h)
		})
		t.Run("length_prefix_longer_than_message", func(t *testing.T) {
			c := dialTCP(t, h.addr)
			wire := pack(t, msg("short.example.", dns.TypeA, 0, false))
			var l [2]byte
			binary.BigEndian.PutUint16(l[:], uint16(len(wire)+100))
			if _, err := c.Write(append(l[:], wire...)); err != nil {
				t.Fatalf("write: %v", err)
			}
			// The server waits for the missing bytes at most the idle
			// timeout, then closes the connection.
			start := time.Now()
			waitClosed(t, c, hostileIdle+5*time.Second)
			if el := time.Since(start); el > hostileIdle+2*time.Second {
				t.Errorf("connection closed after %v, idle timeout is %v", el, hostileIdle)
			}
			stillAnswers(t, h)
		})
		t.Run("many_idle_connections", func(t *testing.T) {
			const n = 200
			conns := make([]net.Conn, n)
			for i := range conns {
				conns[i] = dialTCP(t, h.addr)
			}
			// Half of them sent one byte of a length prefix.
			for _, c := range conns[:n/2] {
				if _, err := c.Write([]byte{0}); err != nil {
					t.Fatalf("write: %v", err)
				}
			}
			stillAnswers(t, h)
			// And the server closes them once idle.
			for _, c := range []net.Conn{conns[0], conns[n-1]} {
				waitClosed(t, c, hostileIdle+5*time.Second)
			}
			stillAnswers(t, h)
		})
	})
}

// checkHostileReply checks raw (nil: no reply) against c's expectation.
func checkHostileReply(t *testing.T, raw []byte, c hostileCase) {
	t.Helper()
	switch c.rcode {
	case wantSilence:
		if raw != nil {
			t.Fatalf("got a %d-byte reply, want none", len(raw))
		}
		return
	case wantHarmless:
		if raw == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(raw); err != nil {
			t.Fatalf("reply to garbage does not parse: %v", err)
		}
		if len(r.Answer) > 0 || len(r.Ns) > 0 || !r.Response {
			t.Fatalf("garbage got an answer: %v", r)
		}
		if r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeNotImplemented && r.Rcode != dns.RcodeBadVers &&
			r.Rcode != dns.RcodeRefused && r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("garbage got rcode %s", dns.RcodeToString[r.Rcode])
		}
		return
	}
	if raw == nil {
		t.Fatal("no reply")
	}
	r := new(dns.Msg)
	if err := r.Unpack(raw); err != nil {
		t.Fatalf("unpack reply: %v", err)
	}
	wantRcode(t, r, c.rcode)
	if !r.Response || r.Id != 0xbeef {
		t.Errorf("QR=%v id=%#x, want a reply to 0xbeef", r.Response, r.Id)
	}
	if len(r.Question) != c.questions {
		t.Errorf("reply echoes %d questions, want %d", len(r.Question), c.questions)
	}
	if c.rcode != dns.RcodeSuccess && (len(r.Answer) != 0 || len(r.Ns) != 0) {
		t.Errorf("%s reply with %d answers, %d authority records", dns.RcodeToString[r.Rcode], len(r.Answer), len(r.Ns))
	}
	if opt := r.IsEdns0(); opt != nil && (opt.Version() != 0 || len(opt.Option) > 1) {
		t.Errorf("reply OPT %v: want version 0 and at most an EDE", opt)
	}
	if c.rcode == dns.RcodeBadVers && r.IsEdns0() == nil {
		t.Error("BADVERS without an OPT record")
	}
}

// stillAnswers checks that a normal query is answered over UDP and TCP.
func stillAnswers(t *testing.T, h *harness) {
	t.Helper()
	for _, network := range []string{"udp", "tcp"} {
		r, err := tryExchangeTimeout(network, h.addr, msg("alive.example.", dns.TypeA, 0, false), 5*time.Second)
		if err != nil {
			t.Fatalf("normal %s query after the hostile one: %v", network, err)
		}
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("normal %s query after the hostile one got %v", network, r)
		}
	}
}

func dialTCP(tb testing.TB, addr string) net.Conn {
	tb.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		tb.Fatalf("dial tcp: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// rawTCP sends wire with its length prefix on a new connection and reads
// one reply. When silence is expected it waits noReplyWait and returns nil
// on a timeout or a closed connection.
func rawTCP(tb testing.TB, addr string, wire []byte, silence bool) []byte {
	tb.Helper()
	c := dialTCP(tb, addr)
	out := make([]byte, 2, 2+len(wire))
	binary.BigEndian.PutUint16(out, uint16(len(wire)))
	if _, err := c.Write(append(out, wire...)); err != nil {
		tb.Fatalf("write: %v", err)
	}
	wait := 10 * time.Second
	if silence {
		wait = noReplyWait
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		var ne net.Error
		if silence && (errors.Is(err, io.EOF) || errors.As(err, &ne) && ne.Timeout() || errors.Is(err, io.ErrUnexpectedEOF)) {
			return nil
		}
		if errors.Is(err, io.EOF) {
			return nil // closed without a reply: checked by the caller
		}
		tb.Fatalf("read length: %v", err)
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		tb.Fatalf("read reply: %v", err)
	}
	return b
}

// waitClosed reads from c until the peer closes it, failing if that takes
// longer than limit or if data arrives.
func waitClosed(tb testing.TB, c net.Conn, limit time.Duration) {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(limit))
	var b [1]byte
	n, err := c.Read(b[:])
	var ne net.Error
	switch {
	case n > 0:
		tb.Fatalf("unexpected data from the server")
	case errors.As(err, &ne) && ne.Timeout():
		tb.Fatalf("connection still open after %v", limit)
	case err == nil:
		tb.Fatalf("read returned no data and no error")
	}
}

// TestAmplificationRatio measures the largest reply/query size ratio an
// allowed UDP client can get from the server with the production chain
// (minimal ANY included) in front of an upstream whose answers are as big
// as DNS allows: 200 A records (3.2 KB), a 4 KB TXT record, 60 KB of TXT
// records. The reply is capped by 512 bytes without EDNS0, by the client's
// buffer size with it and by AdvertisedUDPSize whatever the client claims;
// ANY gets one HINFO record.
func TestAmplificationRatio(t *testing.T) {
	t.Parallel()
	txt := "@ 300 IN TXT" + strings.Repeat(` "`+strings.Repeat("x", 250)+`"`, 16)
	var huge []string
	for i := range 230 {
		huge = append(huge, fmt.Sprintf(`@ 300 IN TXT "%03d%s"`, i, strings.Repeat("y", 250)))
	}
	h := newHostileHarness(t, harnessConfig{handler: byType(t, map[uint16][]string{
		dns.TypeA:   manyA(200),
		dns.TypeTXT: {txt},
		dns.TypeSPF: huge,       // stands for any name with a 60 KB answer
		dns.TypeANY: manyA(200), // never asked: minimal ANY answers first
	})})
	// Prime the cache over TCP so every UDP query below is a hit.
	for _, qt := range []uint16{dns.TypeA, dns.TypeTXT, dns.TypeSPF} {
		if r := h.exchange(t, "tcp", msg("a.", qt, 0, false)); len(r.Answer) == 0 {
			t.Fatalf("priming %s: no answer", dns.TypeToString[qt])
		}
	}
	type result struct {
		label        string
		query, reply int
	}
	var worst result
	ratio := func(r result) float64 { return float64(r.reply) / float64(r.query) }
	for _, qt := range []uint16{dns.TypeA, dns.TypeTXT, dns.TypeSPF, dns.TypeANY} {
		for _, bufsize := range []uint16{0, 512, 1232, 1400, 4096, 65535} {
			for _, do := range []bool{false, true} {
				if bufsize == 0 && do {
					continue
				}
				wire := pack(t, msg("a.", qt, bufsize, do))
				raw := rawUDP(t, h.addr, wire, 10*time.Second)
				if raw == nil {
					t.Fatalf("%s bufsize %d: no reply", dns.TypeToString[qt], bufsize)
				}
				limit := min(max(dns.MinMsgSize, int(bufsize)), resolver.AdvertisedUDPSize)
				if len(raw) > limit {
					t.Errorf("%s bufsize %d: %d-byte reply, limit %d", dns.TypeToString[qt], bufsize, len(raw), limit)
				}
				r := new(dns.Msg)
				if err := r.Unpack(raw); err != nil {
					t.Fatalf("unpack: %v", err)
				}
				if qt == dns.TypeANY {
					if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeHINFO {
						t.Errorf("ANY answered with %v, want one HINFO (RFC 8482)", r.Answer)
					}
				}
				res := result{label: dns.TypeToString[qt] + " bufsize=" + itoa(int(bufsize)), query: len(wire), reply: len(raw)}
				if do {
					res.label += " do"
				}
				t.Logf("%-22s query %3d B  reply %5d B  ratio %5.1f", res.label, res.query, res.reply, ratio(res))
				if ratio(res) > ratio(worst) || worst.query == 0 {
					worst = res
				}
			}
		}
	}
	t.Logf("worst UDP amplification: %.1fx (%s: %d-byte query, %d-byte reply; AdvertisedUDPSize %d)",
		ratio(worst), worst.label, worst.query, worst.reply, resolver.AdvertisedUDPSize)
}
