package resolver

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// Wire fast paths: the common query and the common reply, read and written
// without miekg/dns's general code.
//
// Nearly every query a resolver gets has the same shape: a header, one
// question whose name is letters, digits, hyphens and underscores, and at
// most an OPT record without options. Nearly every cache hit answers it
// with address or short text records owned by that very name. miekg/dns
// handles any message, escapes and compression included, and pays for it
// on every call: for a cache hit, reading the query and writing the reply
// were a fifth of dnsvalve's own CPU time. These functions handle those
// shapes only, produce exactly what miekg/dns would (the fuzz tests
// compare them byte for byte and field for field), and say so when a
// message is anything else, which then takes miekg/dns's way.

// queryMsg is what unpackQuery allocates for a query: the message with
// room for its question and OPT record, in one allocation.
type queryMsg struct {
	msg   dns.Msg
	q     [1]dns.Question
	extra [1]dns.RR
	opt   dns.OPT
}

// wireHeader reads the header of data, which has at least 12 bytes.
func wireHeader(data []byte) dns.Header {
	return dns.Header{Id: binary.BigEndian.Uint16(data[0:]), Bits: binary.BigEndian.Uint16(data[2:]),
		Qdcount: binary.BigEndian.Uint16(data[4:]), Ancount: binary.BigEndian.Uint16(data[6:]),
		Nscount: binary.BigEndian.Uint16(data[8:]), Arcount: binary.BigEndian.Uint16(data[10:])}
}

// unpackQuery reads data, a message whose 12-byte header the caller has
// parsed into dh (and checked), when it has the common query shape: one question with a plain
// name (see plainLabelByte), no answer or authority records, and no
// additional record or one OPT without options. It returns false for
// anything else, and the caller unpacks it with miekg/dns. What it returns
// is what (*dns.Msg).Unpack would: bytes after the last record are ignored
// as there. The message is built in into when it is not nil (whatever it
// held is overwritten), and allocated otherwise.
func unpackQuery(dh dns.Header, data []byte, into *queryMsg) (*dns.Msg, bool) {
	if len(data) < 12 || dh.Qdcount != 1 || dh.Ancount != 0 || dh.Nscount != 0 || dh.Arcount > 1 {
		return nil, false
	}
	bits, ar := dh.Bits, dh.Arcount
	off := 12
	name, off, ok := plainName(data, off)
	if !ok || len(data)-off < 4 {
		return nil, false
	}
	b := into
	if b == nil {
		b = new(queryMsg)
	} else {
		*b = queryMsg{}
	}
	m := &b.msg
	m.Id = dh.Id
	m.Response = bits&(1<<15) != 0
	m.Opcode = int(bits>>11) & 0xF
	m.Authoritative = bits&(1<<10) != 0
	m.Truncated = bits&(1<<9) != 0
	m.RecursionDesired = bits&(1<<8) != 0
	m.RecursionAvailable = bits&(1<<7) != 0
	m.Zero = bits&(1<<6) != 0
	m.AuthenticatedData = bits&(1<<5) != 0
	m.CheckingDisabled = bits&(1<<4) != 0
	m.Rcode = int(bits & 0xF)
	b.q[0] = dns.Question{Name: name, Qtype: binary.BigEndian.Uint16(data[off:]), Qclass: binary.BigEndian.Uint16(data[off+2:])}
	off += 4
	m.Question = b.q[:]
	if ar == 1 {
		// The OPT record: root owner, type OPT, no options.
		if len(data)-off < 11 || data[off] != 0 || binary.BigEndian.Uint16(data[off+1:]) != dns.TypeOPT ||
			binary.BigEndian.Uint16(data[off+9:]) != 0 {
			return nil, false
		}
		b.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT,
			Class: binary.BigEndian.Uint16(data[off+3:]), Ttl: binary.BigEndian.Uint32(data[off+5:])}
		b.extra[0] = &b.opt
		m.Extra = b.extra[:]
		m.Rcode |= b.opt.ExtendedRcode()
	}
	return m, true
}

// plainLabelByte says which bytes a name may hold for the fast paths:
// those miekg/dns writes as they are in a name's text form (no escaping).
var plainLabelByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['-'], t['_'] = true, true
	return t
}()

// plainName reads the uncompressed name at data[off:] when every label is
// plain (plainLabelByte) and the name is at most 255 bytes, returning its
// text form ("." for the root) and the offset after it.
func plainName(data []byte, off int) (string, int, bool) {
	start := off
	for {
		if off >= len(data) {
			return "", 0, false
		}
		l := int(data[off])
		if l == 0 {
			break
		}
		if l > 63 || off+1+l > len(data) {
			return "", 0, false // a pointer, a reserved label type, or cut short
		}
		for _, c := range data[off+1 : off+1+l] {
			if !plainLabelByte[c] {
				return "", 0, false
			}
		}
		off += 1 + l
	}
	wireLen := off + 1 - start
	if wireLen > 255 {
		return "", 0, false
	}
	if wireLen == 1 {
		return ".", off + 1, true
	}
	// The text form has the wire form's length: each length byte becomes
	// a dot (the first one moves to the end).
	buf := make([]byte, wireLen-1)
	for i, p := 0, start; data[p] != 0; {
		l := int(data[p])
		copy(buf[i:], data[p+1:p+1+l])
		buf[i+l] = '.'
		i += l + 1
		p += 1 + l
	}
	return string(buf), off + 1, true
}

// packReply writes into buf the bytes m.PackBuffer(buf) would give when m
// has the common reply shape: one question with a plain name
// (plainLabelByte), a header rcode, and only A, AAAA and plain TXT records
// owned by that name, plus an OPT record without options. ok is false for
// anything else, and when buf is too small (where PackBuffer would
// allocate): nothing was written, and the caller packs m with miekg/dns.
// Like PackBuffer it sets the OPT record's extended rcode bits from
// m.Rcode.
func packReply(m *dns.Msg, buf []byte) (out []byte, ok bool) {
	if len(m.Question) != 1 || m.Rcode < 0 || m.Rcode > 0xF {
		return nil, false
	}
	qname := m.Question[0].Name
	// A pointer to the question name (at 12) replaces an owner name equal
	// to it, as miekg/dns's compression would; it never points at the root.
	compress := m.Compress && qname != "." && len(m.Answer)+len(m.Ns)+len(m.Extra) > 0
	// Check every record and work out the length before writing anything.
	qlen, ok := plainNameLen(qname)
	if !ok {
		return nil, false
	}
	ownerLen := qlen
	if compress {
		ownerLen = 2
	}
	n := 12 + qlen + 4
	var opt *dns.OPT
	for i, sec := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			l, o, ok := fastRRLen(rr, qname, ownerLen)
			if !ok {
				return nil, false
			}
			if o != nil {
				// One OPT record, in the additional section (where
				// PackBuffer looks for the one it sets the rcode bits of).
				if i != 2 || opt != nil {
					return nil, false
				}
				opt = o
			}
			n += l
		}
	}
	if n > len(buf) {
		return nil, false
	}
	if opt != nil {
		opt.SetExtendedRcode(uint16(m.Rcode))
	}

	var bits uint16 = uint16(m.Opcode)<<11 | uint16(m.Rcode&0xF)
	for _, f := range [...]struct {
		set bool
		bit uint16
	}{{m.Response, 1 << 15}, {m.Authoritative, 1 << 10}, {m.Truncated, 1 << 9}, {m.RecursionDesired, 1 << 8},
		{m.RecursionAvailable, 1 << 7}, {m.Zero, 1 << 6}, {m.AuthenticatedData, 1 << 5}, {m.CheckingDisabled, 1 << 4}} {
		if f.set {
			bits |= f.bit
		}
	}
	b := buf[:n]
	binary.BigEndian.PutUint16(b[0:], m.Id)
	binary.BigEndian.PutUint16(b[2:], bits)
	binary.BigEndian.PutUint16(b[4:], 1)
	binary.BigEndian.PutUint16(b[6:], uint16(len(m.Answer)))
	binary.BigEndian.PutUint16(b[8:], uint16(len(m.Ns)))
	binary.BigEndian.PutUint16(b[10:], uint16(len(m.Extra)))
	off := 12
	putPlainName(b[off:], qname)
	qwire := b[off : off+qlen]
	off += qlen
	binary.BigEndian.PutUint16(b[off:], m.Question[0].Qtype)
	binary.BigEndian.PutUint16(b[off+2:], m.Question[0].Qclass)
	off += 4
	for _, sec := range [3][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			off = putFastRR(b, off, rr, qwire, compress)
		}
	}
	return b, true
}

// plainNameLen is the wire length of a text-form name all of whose labels
// are plain and non-empty, or false.
func plainNameLen(name string) (int, bool) {
	if name == "." {
		return 1, true
	}
	if len(name) == 0 || len(name) > 254 || name[len(name)-1] != '.' {
		return 0, false
	}
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			if label == 0 || label > 63 {
				return 0, false
			}
			label = 0
			continue
		}
		if !plainLabelByte[c] {
			return 0, false
		}
		label++
	}
	return len(name) + 1, true
}

// putPlainName writes a name plainNameLen accepted.
func putPlainName(b []byte, name string) {
	if name == "." {
		b[0] = 0
		return
	}
	lenAt := 0
	for i := 0; i < len(name); i++ {
		if name[i] == '.' {
			b[lenAt] = byte(i - lenAt)
			lenAt = i + 1
			continue
		}
		b[i+1] = name[i]
	}
	b[len(name)] = 0
}

// fastRRLen is the wire length of rr if packReply can write it: an A,
// AAAA or plain TXT record owned by qname (written in ownerLen bytes), or
// an OPT record without options, which it also returns. The header's type
// must be the record's own.
func fastRRLen(rr dns.RR, qname string, ownerLen int) (int, *dns.OPT, bool) {
	switch v := rr.(type) {
	case *dns.A:
		if v.Hdr.Name != qname || v.Hdr.Rrtype != dns.TypeA || v.A.To4() == nil {
			return 0, nil, false
		}
		return ownerLen + 10 + 4, nil, true
	case *dns.AAAA:
		if v.Hdr.Name != qname || v.Hdr.Rrtype != dns.TypeAAAA || len(v.AAAA) != 16 {
			return 0, nil, false
		}
		return ownerLen + 10 + 16, nil, true
	case *dns.TXT:
		if v.Hdr.Name != qname || v.Hdr.Rrtype != dns.TypeTXT {
			return 0, nil, false
		}
		l := 0
		for _, s := range v.Txt {
			if len(s) > 255 {
				return 0, nil, false
			}
			for i := 0; i < len(s); i++ {
				if s[i] == '\\' {
					return 0, nil, false
				}
			}
			l += 1 + len(s)
		}
		if l > 0xFFFF {
			return 0, nil, false
		}
		return ownerLen + 10 + l, nil, true
	case *dns.OPT:
		if v.Hdr.Name != "." || v.Hdr.Rrtype != dns.TypeOPT || len(v.Option) != 0 {
			return 0, nil, false
		}
		return 1 + 10, v, true
	}
	return 0, nil, false
}

// putFastRR writes a record fastRRLen accepted at b[off:] and returns the
// offset after it.
func putFastRR(b []byte, off int, rr dns.RR, qwire []byte, compress bool) int {
	h := rr.Header()
	if _, isOPT := rr.(*dns.OPT); isOPT {
		b[off] = 0 // its owner is the root
		off++
	} else if compress {
		binary.BigEndian.PutUint16(b[off:], 0xC000|12)
		off += 2
	} else {
		off += copy(b[off:], qwire)
	}
	binary.BigEndian.PutUint16(b[off:], h.Rrtype)
	binary.BigEndian.PutUint16(b[off+2:], h.Class)
	binary.BigEndian.PutUint32(b[off+4:], h.Ttl)
	rdlen := off + 8
	off += 10
	switch v := rr.(type) {
	case *dns.A:
		off += copy(b[off:], v.A.To4())
	case *dns.AAAA:
		off += copy(b[off:], v.AAAA)
	case *dns.TXT:
		for _, s := range v.Txt {
			b[off] = byte(len(s))
			off += 1 + copy(b[off+1:], s)
		}
	}
	binary.BigEndian.PutUint16(b[rdlen:], uint16(off-rdlen-2))
	return off
}
