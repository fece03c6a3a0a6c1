package cache

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// key identifies a cache entry. name is lowercased (ASCII only, as DNS
// compares names); DO and CD change what an upstream returns, so they are
// part of the key.
type key struct {
	name   string
	qtype  uint16
	qclass uint16
	do     bool
	cd     bool
}

// makeKey builds the key for req's single question. It allocates only when
// the name contains upper-case letters.
func makeKey(req *dns.Msg) key {
	q := &req.Question[0]
	k := key{name: lowerName(q.Name), qtype: q.Qtype, qclass: q.Qclass, cd: req.CheckingDisabled}
	if opt := req.IsEdns0(); opt != nil {
		k.do = opt.Do()
	}
	return k
}

// lowerName lowercases ASCII letters in s, returning s itself when it has
// none (the common case: no allocation).
func lowerName(s string) string {
	i := 0
	for ; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' {
			break
		}
	}
	if i == len(s) {
		return s
	}
	b := make([]byte, len(s))
	copy(b, s[:i])
	for ; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

// entry is one cached answer. msg and everything in it are read-only once
// the entry is stored; hits and prefetching are the only mutable fields.
type entry struct {
	msg     *dns.Msg // sanitized reply: no question, no OPT, TTLs clamped
	qname   string   // lowercased question name, equal to the key's
	stored  time.Time
	expires time.Time
	ttl     time.Duration // original lifetime, expires - stored
	aaaa    bool          // msg has AAAA records: replies use replyBufAAAA
	// ede holds the upstream's Extended DNS Errors (RFC 8914) about the
	// answer, bounded (upstreamEDE): a filtering upstream's "Blocked" or
	// "Filtered" reason goes with every answer from this entry, not only
	// the first.
	ede []dns.EDNS0_EDE

	hits        atomic.Int64 // hits while fresh
	prefetching atomic.Bool  // a prefetch was started for this entry
}

// staleTTL is the TTL given to every record of a stale answer (RFC 8767
// section 4 recommends 30 seconds).
const staleTTL = 30

// udpSize is the EDNS0 buffer size advertised upstream and to clients
// (DNS flag day 2020).
const udpSize = 1232

// Inline capacity of a reply: replies that fit need a single allocation.
// Sized for common answers (a CNAME or two, a few addresses, the OPT).
const (
	inlineRRs  = 6
	inlineA    = 3
	inlineAAAA = 2
)

// replyHead is the part of every reply buffer: the message and, inline, the
// storage its question, sections and OPT point into.
type replyHead struct {
	msg dns.Msg
	q   [1]dns.Question
	rrs [inlineRRs]dns.RR
	opt dns.OPT
}

// replyBufA and replyBufAAAA add inline address records, so that building a
// typical reply from the cache is one allocation. Two shapes keep the
// allocation small; the entry knows which one it needs. The caller owns all
// of it once returned.
type replyBufA struct {
	replyHead
	a  [inlineA]dns.A
	ip [inlineA * 4]byte
}

type replyBufAAAA struct {
	replyHead
	aaaa [inlineAAAA]dns.AAAA
	ip   [inlineAAAA * 16]byte
}

// An Arena is room for one reply built from the cache, lent by a server
// that recycles its replies (see ArenaSlot). The zero value is ready.
type Arena struct {
	a    replyBufA
	aaaa replyBufAAAA
}

// An ArenaSlot hands the cache the Arena for the next reply it builds for
// the query being served on one goroutine: the server sets it before the
// query and clears it after, and the first reply built takes it (a second
// one for the same query is allocated). The server may reuse the Arena
// once it no longer needs that reply, nor does anyone it lent it to (see
// query.Lease). A slot belongs to its goroutine: the context that carries
// it (WithArenaSlot) must not be used for lookups on another goroutine.
type ArenaSlot struct{ arena *Arena }

// Set puts a in the slot (nil empties it).
func (s *ArenaSlot) Set(a *Arena) { s.arena = a }

// take empties the slot and returns what it held.
func (s *ArenaSlot) take() *Arena {
	if s == nil {
		return nil
	}
	a := s.arena
	s.arena = nil
	return a
}

type arenaSlotKey struct{}

// WithArenaSlot returns a context whose lookups build their reply in the
// Arena s holds, if any. Set it once per goroutine, not per query: it
// allocates.
func WithArenaSlot(ctx context.Context, s *ArenaSlot) context.Context {
	return context.WithValue(ctx, arenaSlotKey{}, s)
}

// arenaSlot returns ctx's slot, nil when it has none.
func arenaSlot(ctx context.Context) *ArenaSlot {
	s, _ := ctx.Value(arenaSlotKey{}).(*ArenaSlot)
	return s
}

// withoutArenaSlot returns ctx without its slot, for work handed to
// another goroutine.
func withoutArenaSlot(ctx context.Context) context.Context {
	if arenaSlot(ctx) == nil {
		return ctx
	}
	return context.WithValue(ctx, arenaSlotKey{}, (*ArenaSlot)(nil))
}

// rrCopier copies records into a reply buffer, falling back to dns.Copy when
// the inline storage is used up or the type has none.
type rrCopier struct {
	a                []dns.A    // inline A storage, len = used
	aaaa             []dns.AAAA // inline AAAA storage, len = used
	ip               []byte     // inline address bytes, len = used
	qname, userQName string     // owner names equal to qname are written as userQName
	stale            bool
	age              uint32
}

func (cp *rrCopier) ttl(t uint32) uint32 {
	if cp.stale {
		return staleTTL
	}
	if t > cp.age {
		return t - cp.age
	}
	return 0
}

func (cp *rrCopier) copy(rr dns.RR) dns.RR {
	h := rr.Header()
	var out dns.RR
	switch v := rr.(type) {
	case *dns.A:
		ip := v.A.To4()
		if ip == nil || len(cp.a) == cap(cp.a) || cap(cp.ip)-len(cp.ip) < 4 {
			break
		}
		cp.a = cp.a[:len(cp.a)+1]
		a := &cp.a[len(cp.a)-1]
		a.Hdr = v.Hdr
		n := len(cp.ip)
		cp.ip = append(cp.ip, ip...)
		a.A = cp.ip[n : n+4 : n+4]
		out = a
	case *dns.AAAA:
		if len(v.AAAA) != 16 || len(cp.aaaa) == cap(cp.aaaa) || cap(cp.ip)-len(cp.ip) < 16 {
			break
		}
		cp.aaaa = cp.aaaa[:len(cp.aaaa)+1]
		a := &cp.aaaa[len(cp.aaaa)-1]
		a.Hdr = v.Hdr
		n := len(cp.ip)
		cp.ip = append(cp.ip, v.AAAA...)
		a.AAAA = cp.ip[n : n+16 : n+16]
		out = a
	}
	if out == nil {
		out = dns.Copy(rr)
	}
	oh := out.Header()
	oh.Ttl = cp.ttl(h.Ttl)
	if h.Name == cp.qname {
		oh.Name = cp.userQName
	}
	return out
}

// reply builds the caller-owned answer to req from e. age is how long e has
// been stored; stale answers get staleTTL on every record and, when req has
// EDNS0, an Extended DNS Error "Stale Answer" (RFC 8914 code 3) before the
// upstream's own EDEs (e.ede), which every answer to an EDNS0 client has.
//
// With ar nil the reply is allocated; otherwise it is built in ar (which
// must not hold a reply still in use).
func reply(req *dns.Msg, e *entry, age time.Duration, stale bool, ar *Arena) *dns.Msg {
	cp := rrCopier{qname: e.qname, userQName: req.Question[0].Name, stale: stale}
	var b *replyHead
	if e.aaaa {
		var buf *replyBufAAAA
		if ar != nil {
			ar.aaaa = replyBufAAAA{}
			buf = &ar.aaaa
		} else {
			buf = new(replyBufAAAA)
		}
		b, cp.aaaa, cp.ip = &buf.replyHead, buf.aaaa[:0], buf.ip[:0]
	} else {
		var buf *replyBufA
		if ar != nil {
			ar.a = replyBufA{}
			buf = &ar.a
		} else {
			buf = new(replyBufA)
		}
		b, cp.a, cp.ip = &buf.replyHead, buf.a[:0], buf.ip[:0]
	}
	m := &b.msg
	src := e.msg
	reqOpt := req.IsEdns0()
	do := reqOpt != nil && reqOpt.Do()

	m.MsgHdr = src.MsgHdr
	m.Id = req.Id
	m.Response = true
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	// RFC 6840 section 5.8: AD only for clients that asked for it.
	m.AuthenticatedData = src.AuthenticatedData && (do || req.AuthenticatedData)
	m.Compress = true
	b.q[0] = req.Question[0]
	m.Question = b.q[:]

	if age > 0 {
		cp.age = uint32(age / time.Second)
	}
	total := len(src.Answer) + len(src.Ns) + len(src.Extra)
	if reqOpt != nil {
		total++
	}
	var rrs []dns.RR
	if total <= inlineRRs {
		rrs = b.rrs[:total]
	} else {
		rrs = make([]dns.RR, total)
	}
	i := 0
	for _, rr := range src.Answer {
		rrs[i] = cp.copy(rr)
		i++
	}
	if i > 0 {
		m.Answer = rrs[0:i:i]
	}
	j := i
	for _, rr := range src.Ns {
		rrs[j] = cp.copy(rr)
		j++
	}
	if j > i {
		m.Ns = rrs[i:j:j]
	}
	k := j
	for _, rr := range src.Extra {
		rrs[k] = cp.copy(rr)
		k++
	}
	if reqOpt != nil {
		b.opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: udpSize}
		if do {
			b.opt.SetDo()
		}
		if stale || len(e.ede) > 0 {
			b.opt.Option = ednsErrors(e.ede, stale)
		}
		rrs[k] = &b.opt
		k++
	}
	if k > j {
		m.Extra = rrs[j:k:k]
	}
	return m
}

// ednsErrors returns caller-owned copies of ede, after a "Stale Answer"
// EDE when stale, as EDNS0 options.
func ednsErrors(ede []dns.EDNS0_EDE, stale bool) []dns.EDNS0 {
	n := len(ede)
	if stale {
		n++
	}
	opts := make([]dns.EDNS0, 0, n)
	errs := make([]dns.EDNS0_EDE, 0, n)
	if stale {
		errs = append(errs, dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer})
	}
	errs = append(errs, ede...)
	for i := range errs {
		opts = append(opts, &errs[i])
	}
	return opts
}

// passthrough returns a caller-owned copy of an uncacheable upstream reply
// shaped for req: req's ID and question, the upstream's OPT replaced by ours
// (keeping its Extended DNS Errors) when req has EDNS0, and dropped otherwise.
func passthrough(req, resp *dns.Msg) *dns.Msg {
	m := resp.Copy()
	m.Id = req.Id
	m.Opcode = req.Opcode
	m.RecursionDesired = req.RecursionDesired
	m.CheckingDisabled = req.CheckingDisabled
	m.Question = []dns.Question{req.Question[0]}
	reqOpt := req.IsEdns0()
	var ede []dns.EDNS0
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if opt, ok := rr.(*dns.OPT); ok {
			for _, o := range opt.Option {
				if o.Option() == dns.EDNS0EDE {
					ede = append(ede, o)
				}
			}
			continue
		}
		extra = append(extra, rr)
	}
	m.Extra = extra
	if reqOpt != nil {
		opt := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT, Class: udpSize}, Option: ede}
		if reqOpt.Do() {
			opt.SetDo()
		}
		m.Extra = append(m.Extra, opt)
	}
	if len(m.Extra) == 0 {
		m.Extra = nil
	}
	return m
}
