package upstream

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/miekg/dns"
)

// randSource is a ChaCha8 generator seeded from crypto/rand, safe for
// concurrent use. It supplies query IDs and 0x20 case bits, which must not be
// predictable to an off-path attacker.
type randSource struct {
	mu sync.Mutex
	r  *rand.ChaCha8
}

func newRandSource() *randSource {
	var seed [32]byte
	crand.Read(seed[:]) // never fails since Go 1.24
	return &randSource{r: rand.NewChaCha8(seed)}
}

func (s *randSource) Uint64() uint64 {
	s.mu.Lock()
	v := s.r.Uint64()
	s.mu.Unlock()
	return v
}

// bufPools holds the per-upstream buffers: small ones for packing queries
// (with two bytes of room for the TCP length prefix) and 64 KiB ones for
// reading replies.
type bufPools struct {
	pack, read sync.Pool
}

func newBufPools() *bufPools {
	return &bufPools{
		pack: sync.Pool{New: func() any { b := make([]byte, 2+1024); return &b }},
		read: sync.Pool{New: func() any { b := make([]byte, dns.MaxMsgSize+1); return &b }},
	}
}

// prepared is one query as sent on the wire plus what a valid reply must
// echo.
type prepared struct {
	buf      *[]byte // pooled backing array, returned by release
	framed   []byte  // 2-byte length prefix + message
	id       uint16
	name     string // qname as sent (0x20 case applied)
	qtype    uint16
	qclass   uint16
	opcode   int
	exact    bool // name must match case-exactly (0x20)
	addedOPT bool // we added an OPT record the caller did not send
	pools    *bufPools
}

// wire returns the message without the TCP length prefix.
func (p *prepared) wire() []byte { return p.framed[2:] }

func (p *prepared) release() {
	if p.buf != nil {
		p.pools.pack.Put(p.buf)
		p.buf = nil
	}
}

// prepare packs m for the wire without modifying it: a shallow copy gets the
// upstream ID, the (optionally case-randomised) name and, when addOPT is set
// and m has no OPT record, an OPT advertising defaultUDPSize.
func prepare(m *dns.Msg, pools *bufPools, id uint16, rnd *randSource, x20, addOPT bool) (*prepared, error) {
	if len(m.Question) != 1 {
		return nil, fmt.Errorf("query has %d questions, want 1", len(m.Question))
	}
	q := *m // shallow: only fields of q are replaced, never shared values written
	q.Id = id
	oq := m.Question[0]
	p := &prepared{
		id:     id,
		name:   oq.Name,
		qtype:  oq.Qtype,
		qclass: oq.Qclass,
		opcode: m.Opcode,
		exact:  x20,
		pools:  pools,
	}
	if x20 {
		p.name = randomCase(oq.Name, rnd)
		if p.name != oq.Name {
			q.Question = []dns.Question{{Name: p.name, Qtype: oq.Qtype, Qclass: oq.Qclass}}
		}
	}
	// Pack writes the extended-rcode bits into the OPT record it packs, so
	// the caller's OPT is replaced by a private copy (concurrent packs of
	// the same query, as in the parallel strategy, must not race).
	hasOPT := false
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			hasOPT = true
			break
		}
	}
	switch {
	case hasOPT:
		extra := make([]dns.RR, len(m.Extra))
		for i, rr := range m.Extra {
			if o, ok := rr.(*dns.OPT); ok {
				c := *o
				rr = &c
			}
			extra[i] = rr
		}
		q.Extra = extra
	case addOPT:
		extra := make([]dns.RR, len(m.Extra), len(m.Extra)+1)
		copy(extra, m.Extra)
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		opt.SetUDPSize(defaultUDPSize)
		q.Extra = append(extra, opt)
		p.addedOPT = true
	}
	p.buf = pools.pack.Get().(*[]byte)
	b := *p.buf
	out, err := q.PackBuffer(b[2:])
	if err != nil {
		p.release()
		return nil, fmt.Errorf("pack query: %w", err)
	}
	if len(out) > 0xFFFF {
		p.release()
		return nil, errors.New("pack query: message too large")
	}
	if &out[0] == &b[2] {
		p.framed = b[:2+len(out)]
	} else { // PackBuffer had to allocate
		p.framed = make([]byte, 2+len(out))
		copy(p.framed[2:], out)
	}
	p.framed[0], p.framed[1] = byte(len(out)>>8), byte(len(out))
	return p, nil
}

// randomCase flips the case of every ASCII letter of name at random.
func randomCase(name string, rnd *randSource) string {
	b := []byte(name)
	var bits uint64
	n := 0
	for i, c := range b {
		lower := c | 0x20
		if lower < 'a' || lower > 'z' {
			continue
		}
		if n == 0 {
			bits, n = rnd.Uint64(), 64
		}
		if bits&1 == 1 {
			b[i] = lower &^ 0x20
		} else {
			b[i] = lower
		}
		bits >>= 1
		n--
	}
	return string(b)
}

// validate reports whether r answers p: QR set, same opcode, same ID, the
// same single question (case-exact when 0x20 is on).
func (p *prepared) validate(r *dns.Msg) error {
	switch {
	case !r.Response:
		return fmt.Errorf("QR bit not set: %w", ErrInvalidResponse)
	case r.Id != p.id:
		return fmt.Errorf("id mismatch: %w", ErrInvalidResponse)
	case r.Opcode != p.opcode:
		return fmt.Errorf("opcode mismatch: %w", ErrInvalidResponse)
	case len(r.Question) == 0 && rejects(r.Rcode):
		// Servers that reject a query often answer without its question
		// (RFC 1035 lets them): taken as the rejection it is, so the
		// query fails over now instead of waiting out its timeout.
		return nil
	case len(r.Question) != 1:
		return fmt.Errorf("reply has %d questions: %w", len(r.Question), ErrInvalidResponse)
	}
	q := r.Question[0]
	if q.Qtype != p.qtype || q.Qclass != p.qclass {
		return fmt.Errorf("question type/class mismatch: %w", ErrInvalidResponse)
	}
	if p.exact {
		if q.Name != p.name {
			return fmt.Errorf("question name mismatch (0x20): %w", ErrInvalidResponse)
		}
	} else if !equalFoldASCII(q.Name, p.name) {
		return fmt.Errorf("question name mismatch: %w", ErrInvalidResponse)
	}
	return nil
}

// rejects reports whether rcode is a server's refusal or failure to take a
// query, which may come without the question section.
func rejects(rcode int) bool {
	switch rcode {
	case dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNotImplemented, dns.RcodeRefused:
		return true
	}
	return false
}

// restore makes r look like an answer to orig: the caller's ID and question
// name (case included), owner names that echoed the randomised case put
// back, and an OPT record we added removed again.
//
// What it hides from the caller, the reply's own OPT record and a missing
// question, goes to the ednsNote in ctx, if any.
func (p *prepared) restore(ctx context.Context, r *dns.Msg, orig *dns.Msg) {
	if n := noteOf(ctx); n != nil {
		n.hadOPT, n.noQuestion = r.IsEdns0() != nil, len(r.Question) == 0
	}
	r.Id = orig.Id
	if len(r.Question) == 0 { // a rejection without the question (see validate)
		r.Question = []dns.Question{orig.Question[0]}
	}
	oname := orig.Question[0].Name
	r.Question[0].Name = oname
	if p.exact && p.name != oname {
		for _, sec := range [...][]dns.RR{r.Answer, r.Ns, r.Extra} {
			for _, rr := range sec {
				if h := rr.Header(); h.Name == p.name {
					h.Name = oname
				}
			}
		}
	}
	if p.addedOPT {
		extra := r.Extra[:0]
		for _, rr := range r.Extra {
			if rr.Header().Rrtype != dns.TypeOPT {
				extra = append(extra, rr)
			}
		}
		r.Extra = extra
		if r.Rcode > 0xF { // extended rcode needs the OPT we just removed
			r.Rcode = dns.RcodeServerFailure
		}
	}
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if x|0x20 != y|0x20 || x|0x20 < 'a' || x|0x20 > 'z' {
			return false
		}
	}
	return true
}
