package resolver

import (
	"bytes"
	"net"
	"reflect"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// wireQuery packs a query for name and qtype with miekg/dns, after edit.
func wireQuery(t testing.TB, name string, qtype uint16, edit func(*dns.Msg)) []byte {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0xbeef
	if edit != nil {
		edit(m)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatalf("pack %s: %v", name, err)
	}
	return b
}

// TestUnpackQuery: the common query shapes take the fast path and come out
// exactly as miekg/dns reads them; every other shape is left to miekg/dns.
func TestUnpackQuery(t *testing.T) {
	withOPT := func(do bool, size uint16) func(*dns.Msg) {
		return func(m *dns.Msg) { m.SetEdns0(size, do) }
	}
	tests := []struct {
		name string
		data []byte
		fast bool
	}{
		{"plain A", wireQuery(t, "www.example.com.", dns.TypeA, nil), true},
		{"mixed case (0x20)", wireQuery(t, "wWw.ExAmPlE.cOm.", dns.TypeAAAA, nil), true},
		{"underscores and digits", wireQuery(t, "_dmarc.mail-1.example.org.", dns.TypeTXT, nil), true},
		{"root", wireQuery(t, ".", dns.TypeNS, nil), true},
		{"EDNS0", wireQuery(t, "example.com.", dns.TypeA, withOPT(false, 1232)), true},
		{"EDNS0 with DO and CD", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(4096, true)
			m.CheckingDisabled = true
		}), true},
		{"EDNS0 extended rcode and version bits", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(512, false)
			m.IsEdns0().SetVersion(1)
			m.IsEdns0().Hdr.Ttl |= 0x01000000
		}), true},
		{"every header bit", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.Response, m.Authoritative, m.Truncated, m.RecursionAvailable = true, true, true, true
			m.Zero, m.AuthenticatedData, m.Opcode, m.Rcode = true, true, dns.OpcodeNotify, dns.RcodeRefused
		}), true},
		{"63-byte label", wireQuery(t, strings.Repeat("a", 63)+".example.", dns.TypeA, nil), true},
		{"253-character name", wireQuery(t, strings.Repeat(strings.Repeat("b", 62)+".", 4)+"c.", dns.TypeA, nil), true},
		{"trailing bytes", append(wireQuery(t, "example.com.", dns.TypeA, nil), 1, 2, 3), true},

		{"OPT with a cookie", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = append(m.IsEdns0().Option, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"})
		}), false},
		{"escaped dot in a label", wireQuery(t, `a\.b.example.`, dns.TypeA, nil), false},
		{"space in a label", wireQuery(t, `a\032b.example.`, dns.TypeA, nil), false},
		{"two questions", func() []byte {
			m := new(dns.Msg)
			m.Question = []dns.Question{{Name: "a.", Qtype: 1, Qclass: 1}, {Name: "b.", Qtype: 1, Qclass: 1}}
			b, _ := m.Pack()
			return b
		}(), false},
		{"an answer record", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: 1}, A: net.IPv4(192, 0, 2, 1)}}
		}), false},
		{"additional record that is not OPT", wireQuery(t, "example.com.", dns.TypeA, func(m *dns.Msg) {
			m.Extra = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "example.com.", Rrtype: dns.TypeA, Class: 1}, A: net.IPv4(192, 0, 2, 1)}}
		}), false},
		{"question without class", wireQuery(t, "example.com.", dns.TypeA, nil)[:12+13+2], false},
		{"question name only", wireQuery(t, "example.com.", dns.TypeA, nil)[:12+13], false},
		{"header only", wireQuery(t, "example.com.", dns.TypeA, nil)[:12], false},
		{"compression pointer", func() []byte {
			b := wireQuery(t, "example.com.", dns.TypeA, nil)[:12]
			return append(b, 0xC0, 12, 0, 1, 0, 1)
		}(), false},
		{"OPT cut short", wireQuery(t, "example.com.", dns.TypeA, withOPT(false, 1232))[:12+13+4+8], false},
	}
	// Each case also unpacks into the room every case before it used, as
	// servePacket does with lent messages: nothing of them may remain.
	var reused queryMsg
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, into := range []*queryMsg{nil, &reused} {
				got, ok := unpackHeaderAndQuery(tt.data, into)
				if ok != tt.fast {
					t.Fatalf("fast path taken = %v, want %v", ok, tt.fast)
				}
				if ok {
					sameAsMiekg(t, tt.data, got)
					if into != nil && got != &into.msg {
						t.Fatalf("not built in the room given")
					}
				}
			}
		})
	}
	data := wireQuery(t, "www.example.com.", dns.TypeA, withOPT(true, 1232))
	if n := testing.AllocsPerRun(100, func() { _, _ = unpackHeaderAndQuery(data, &reused) }); n != 1 {
		t.Errorf("unpacking into a given room allocates %v times, want 1 (the name)", n)
	}
}

// unpackHeaderAndQuery is unpackQuery as servePacket calls it: on a
// message of at least a header, with the header read.
func unpackHeaderAndQuery(data []byte, into *queryMsg) (*dns.Msg, bool) {
	if len(data) < 12 {
		return nil, false
	}
	return unpackQuery(wireHeader(data), data, into)
}

// sameAsMiekg fails t unless miekg/dns reads data as got.
func sameAsMiekg(t *testing.T, data []byte, got *dns.Msg) {
	t.Helper()
	want := new(dns.Msg)
	if err := want.Unpack(data); err != nil {
		t.Fatalf("fast path read what miekg/dns rejects (%v): %x", err, data)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("fast path read\n%v\nmiekg/dns read\n%v\nfrom %x", got, want, data)
	}
}

// FuzzUnpackQuery: whatever unpackQuery accepts, miekg/dns reads the same.
func FuzzUnpackQuery(f *testing.F) {
	f.Add(wireQuery(f, "www.example.com.", dns.TypeA, nil))
	f.Add(wireQuery(f, "_x.Example.", dns.TypeTXT, func(m *dns.Msg) { m.SetEdns0(1232, true) }))
	f.Add(wireQuery(f, ".", dns.TypeNS, nil))
	var reused queryMsg // what every earlier input left, as in servePacket's lent rooms
	f.Fuzz(func(t *testing.T, data []byte) {
		in := bytes.Clone(data)
		got, ok := unpackHeaderAndQuery(data, nil)
		if !bytes.Equal(in, data) {
			t.Fatal("unpackQuery changed its input")
		}
		if ok {
			sameAsMiekg(t, data, got)
		}
		again, okAgain := unpackHeaderAndQuery(data, &reused)
		if okAgain != ok {
			t.Fatalf("fast path taken = %v into a used room, %v into a fresh one", okAgain, ok)
		}
		if ok {
			sameAsMiekg(t, data, again)
		}
	})
}

// replyTo returns a reply to a query for name/qtype holding rrs, for edit.
func replyTo(name string, qtype uint16, rrs ...dns.RR) *dns.Msg {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	m := new(dns.Msg)
	m.SetReply(q)
	m.Answer = rrs
	return m
}

func aRR(name string, ttl uint32, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip)}
}

func aaaaRR(name string, ttl uint32, ip string) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.ParseIP(ip)}
}

func txtRR(name string, ttl uint32, txt ...string) dns.RR {
	return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: txt}
}

// TestPackReply: the common reply shapes are written byte for byte as
// miekg/dns writes them, compressed or not; every other shape is left to
// miekg/dns.
func TestPackReply(t *testing.T) {
	const qn = "WwW.Example.com."
	withOPT := func(m *dns.Msg, do bool) *dns.Msg { m.SetEdns0(1232, do); return m }
	tests := []struct {
		name string
		msg  *dns.Msg
		fast bool
	}{
		{"one A", replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1")), true},
		{"two A, v4-mapped", replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1"), aRR(qn, 10, "::ffff:192.0.2.2")), true},
		{"AAAA", replyTo(qn, dns.TypeAAAA, aaaaRR(qn, 60, "2001:db8::1")), true},
		{"TXT", replyTo(qn, dns.TypeTXT, txtRR(qn, 60, "v=spf1 -all", "", strings.Repeat("x", 255))), true},
		{"TXT without strings", replyTo(qn, dns.TypeTXT, txtRR(qn, 60)), true},
		{"NODATA without SOA", replyTo(qn, dns.TypeMX), true},
		{"NXDOMAIN", func() *dns.Msg { m := replyTo(qn, dns.TypeA); m.Rcode = dns.RcodeNameError; return m }(), true},
		{"EDNS0", withOPT(replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1")), false), true},
		{"EDNS0 DO, AD, RA, CD", func() *dns.Msg {
			m := withOPT(replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1")), true)
			m.AuthenticatedData, m.RecursionAvailable, m.CheckingDisabled, m.Authoritative, m.Truncated = true, true, true, true, true
			return m
		}(), true},
		{"EDNS0 stale extended rcode bits cleared", func() *dns.Msg {
			m := withOPT(replyTo(qn, dns.TypeA), false)
			m.IsEdns0().Hdr.Ttl |= 0x05000000
			m.Rcode = dns.RcodeServerFailure
			return m
		}(), true},
		{"root", replyTo(".", dns.TypeA, aRR(".", 1, "192.0.2.9")), true},
		{"A in authority and additional", func() *dns.Msg {
			m := replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1"))
			m.Ns = []dns.RR{aRR(qn, 5, "192.0.2.3")}
			m.Extra = []dns.RR{aaaaRR(qn, 6, "2001:db8::2")}
			return m
		}(), true},

		{"CNAME", replyTo(qn, dns.TypeA, &dns.CNAME{Hdr: dns.RR_Header{Name: qn, Rrtype: dns.TypeCNAME, Class: 1, Ttl: 5}, Target: "x.example.com."}), false},
		{"owner another name", replyTo(qn, dns.TypeA, aRR("other.example.", 300, "192.0.2.1")), false},
		{"owner differs in case", replyTo(qn, dns.TypeA, aRR(strings.ToLower(qn), 300, "192.0.2.1")), false},
		{"SOA in authority", func() *dns.Msg {
			m := replyTo(qn, dns.TypeA)
			m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "com.", Rrtype: dns.TypeSOA, Class: 1}, Ns: "a.", Mbox: "b."}}
			return m
		}(), false},
		{"OPT with an EDE", func() *dns.Msg {
			m := withOPT(replyTo(qn, dns.TypeA), false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked}}
			return m
		}(), false},
		{"TXT with an escape", replyTo(qn, dns.TypeTXT, txtRR(qn, 60, `a\"b`)), false},
		{"TXT string over 255", replyTo(qn, dns.TypeTXT, txtRR(qn, 60, strings.Repeat("x", 256))), false},
		{"escaped question name", replyTo(`a\.b.example.`, dns.TypeA, aRR(`a\.b.example.`, 1, "192.0.2.1")), false},
		{"empty A", replyTo(qn, dns.TypeA, &dns.A{Hdr: dns.RR_Header{Name: qn, Rrtype: dns.TypeA, Class: 1}}), false},
		{"OPT in the answer section", replyTo(qn, dns.TypeA, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 512}}), false},
		{"two OPT records", func() *dns.Msg {
			m := withOPT(replyTo(qn, dns.TypeA), false)
			m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: 512}})
			return m
		}(), false},
		{"extended rcode (BADVERS)", func() *dns.Msg {
			m := withOPT(replyTo(qn, dns.TypeA), false)
			m.Rcode = dns.RcodeBadVers
			return m
		}(), false},
	}
	for _, tt := range tests {
		for _, compress := range []bool{false, true} {
			name := tt.name
			if compress {
				name += "/compressed"
			}
			t.Run(name, func(t *testing.T) {
				m := tt.msg.Copy()
				m.Compress = compress
				ok := packSameAsMiekg(t, m, make([]byte, 4096))
				if ok != tt.fast {
					t.Fatalf("fast path taken = %v, want %v", ok, tt.fast)
				}
			})
		}
	}
}

// TestPackReplySmallBuffer: a reply that does not fit the buffer is left to
// miekg/dns (which allocates a larger one), and nothing was written.
func TestPackReplySmallBuffer(t *testing.T) {
	m := replyTo("example.com.", dns.TypeA, aRR("example.com.", 300, "192.0.2.1"))
	want, err := m.Copy().Pack()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(want))
	if out, ok := packReply(m, buf); !ok || !bytes.Equal(out, want) {
		t.Fatalf("exact-size buffer: ok=%v, %x, want %x", ok, out, want)
	}
	small := make([]byte, len(want)-1)
	if _, ok := packReply(m, small); ok {
		t.Fatal("packed into a buffer one byte short")
	}
	if !bytes.Equal(small, make([]byte, len(small))) {
		t.Fatal("wrote into a buffer it then refused")
	}
}

// packSameAsMiekg packs a copy of m with packReply and, when that takes
// it, fails t unless the bytes and the copy's state afterwards equal what
// PackBuffer gives on another copy. It reports whether packReply took m.
func packSameAsMiekg(t *testing.T, orig *dns.Msg, buf []byte) bool {
	t.Helper()
	m, ref := orig.Copy(), orig.Copy()
	m.Compress, ref.Compress = orig.Compress, orig.Compress
	got, ok := packReply(m, buf)
	if !ok {
		return false
	}
	want, err := ref.PackBuffer(make([]byte, len(buf)))
	if err != nil {
		t.Fatalf("fast path packed what miekg/dns refuses (%v): %v", err, m)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("fast path wrote\n%x\nmiekg/dns wrote\n%x\nfor %v", got, want, m)
	}
	if !reflect.DeepEqual(m, ref) {
		t.Fatalf("fast path left the message as\n%v\nmiekg/dns as\n%v", m, ref)
	}
	return true
}

// FuzzPackReply: whatever message packReply takes, it writes as miekg/dns
// does. Inputs are wire messages, read with miekg/dns.
func FuzzPackReply(f *testing.F) {
	for _, m := range []*dns.Msg{
		replyTo("www.example.com.", dns.TypeA, aRR("www.example.com.", 300, "192.0.2.1"), aRR("www.example.com.", 300, "192.0.2.2")),
		replyTo("x.", dns.TypeAAAA, aaaaRR("x.", 300, "2001:db8::1")),
		replyTo("_t.example.", dns.TypeTXT, txtRR("_t.example.", 300, "hello", "")),
	} {
		m.SetEdns0(1232, true)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, compress bool) {
		m := new(dns.Msg)
		if m.Unpack(data) != nil {
			return
		}
		m.Compress = compress
		packSameAsMiekg(t, m, make([]byte, 4096))
	})
}

// BenchmarkUnpackQuery and BenchmarkPackReply compare the fast paths with
// miekg/dns on a typical cache hit (an A query with EDNS0; a reply of two
// A records and an OPT record).
func BenchmarkUnpackQuery(b *testing.B) {
	data := wireQuery(b, "www.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := unpackQuery(wireHeader(data), data, nil); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("miekg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := new(dns.Msg).Unpack(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkPackReply(b *testing.B) {
	const qn = "www.example.com."
	m := replyTo(qn, dns.TypeA, aRR(qn, 300, "192.0.2.1"), aRR(qn, 300, "192.0.2.2"))
	m.SetEdns0(1232, false)
	buf := make([]byte, 4096)
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := packReply(m, buf); !ok {
				b.Fatal("not taken")
			}
		}
	})
	b.Run("miekg", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := m.PackBuffer(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
}
