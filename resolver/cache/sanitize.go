package cache

import (
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Reasons an upstream reply is not cached (for debug logs and tests).
const (
	reasonTruncated  = "truncated"
	reasonRcode      = "rcode"
	reasonOutOfChain = "answer_outside_question"
	reasonCNAMEClash = "conflicting_cname"
	reasonNoSOA      = "negative_without_soa"
	reasonZeroTTL    = "zero_ttl"
)

// maxChain bounds the names in a CNAME/DNAME chain (the question's
// included); longer chains are not cached. It also bounds the work a hostile
// reply can cause.
const maxChain = 16

// chain returns the records of answer that belong to qname (lowercased) and
// its CNAME/DNAME chain, in their original order, plus the chain's names
// (qname first). A DNAME record joins the chain for the names below its
// owner; one owned by a chain name is kept only for a DNAME (or ANY)
// question, which it answers. ok is false when the chain is inconsistent
// (two different CNAMEs for one owner) or longer than maxChain.
func chain(qname string, qtype uint16, answer []dns.RR) (kept []dns.RR, names []string, ok bool) {
	names = []string{qname}
	inChain := func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
	keep := make([]bool, len(answer))
	cnames := map[string]string{}
	// Records may come in any order: repeat until no record joins the chain.
	for changed := true; changed; {
		changed = false
		for i, rr := range answer {
			if keep[i] {
				continue
			}
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			owner := lowerName(h.Name)
			switch v := rr.(type) {
			case *dns.DNAME:
				// A DNAME applies to names strictly below its owner.
				for _, n := range names {
					if n != owner && dns.IsSubDomain(owner, n) {
						keep[i], changed = true, true
						target := lowerName(dns.Fqdn(v.Target))
						syn := n[:len(n)-len(owner)] + target
						if target == "." {
							syn = n[:len(n)-len(owner)]
						}
						if !inChain(syn) {
							names = append(names, syn)
						}
						break
					}
				}
				if !keep[i] && (qtype == dns.TypeDNAME || qtype == dns.TypeANY) && inChain(owner) {
					keep[i], changed = true, true
				}
				continue
			}
			if !inChain(owner) {
				continue
			}
			keep[i], changed = true, true
			if v, isCNAME := rr.(*dns.CNAME); isCNAME {
				target := lowerName(v.Target)
				if prev, dup := cnames[owner]; dup && prev != target {
					return nil, nil, false
				}
				cnames[owner] = target
				if !inChain(target) {
					names = append(names, target)
				}
			}
		}
		if len(names) > maxChain {
			return nil, nil, false
		}
	}
	for i, rr := range answer {
		if keep[i] {
			kept = append(kept, rr)
		}
	}
	return kept, names, true
}

// ancestorOfAny reports whether zone is one of names or an ancestor of one.
func ancestorOfAny(zone string, names []string) bool {
	for _, n := range names {
		if dns.IsSubDomain(zone, n) {
			return true
		}
	}
	return false
}

// parent returns name without its first label ("." for a single label).
func parent(name string) string {
	if next, end := dns.NextLabel(name, 0); !end {
		return name[next:]
	}
	return "."
}

// ttlRange clamps TTLs (in seconds) into [lo, hi].
type ttlRange struct{ lo, hi uint32 }

func (r ttlRange) clamp(t uint32) uint32 {
	if t < r.lo {
		t = r.lo
	}
	if t > r.hi {
		t = r.hi
	}
	return t
}

func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s > 1<<31-1 {
		s = 1<<31 - 1 // RFC 2181 section 8
	}
	return uint32(s)
}

// newEntry turns the upstream reply resp to the question of k into a cache
// entry, or returns the reason it must not be cached. resp is not modified:
// kept records are copied.
//
// Positive answers (NOERROR with records in the question's chain) live for
// the smallest TTL over the kept answer and authority records, clamped to
// [MinTTL, MaxTTL]. Negative answers (NXDOMAIN, or NOERROR without answer
// records: NODATA) need a SOA for the zone of the last name in the chain and
// live for min(SOA TTL, SOA MINIMUM) (RFC 2308 section 5), clamped to
// [MinTTL, min(MaxTTL, NegativeTTL)]; without a SOA they are not cached.
func (c *Cache) newEntry(k key, resp *dns.Msg, now time.Time) (*entry, string) {
	if resp.Truncated {
		return nil, reasonTruncated
	}
	if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
		return nil, reasonRcode
	}
	answer, names, ok := chain(k.name, k.qtype, resp.Answer)
	if !ok {
		return nil, reasonCNAMEClash
	}
	answer = ofQuestion(answer, k.qtype, k.qclass)
	if len(answer) == 0 && hasRecords(resp.Answer) {
		return nil, reasonOutOfChain
	}
	last := names[len(names)-1]
	var soa *dns.SOA
	for _, rr := range resp.Ns {
		if s, isSOA := rr.(*dns.SOA); isSOA && dns.IsSubDomain(s.Hdr.Name, last) {
			soa = s
			break
		}
	}
	// A chain of CNAMEs that ends without the asked type, with the SOA of
	// the last name's zone, is NODATA too (RFC 2308 section 2.2).
	negative := resp.Rcode == dns.RcodeNameError || len(answer) == 0 ||
		(soa != nil && !answersType(answer, k.qtype))

	rng := ttlRange{lo: seconds(c.cfg.MinTTL), hi: seconds(c.cfg.MaxTTL)}
	var ns []dns.RR
	if negative {
		if soa == nil {
			return nil, reasonNoSOA
		}
		if neg := seconds(c.cfg.NegativeTTL); neg < rng.hi {
			rng.hi = neg
		}
		if rng.lo > rng.hi {
			rng.lo = rng.hi
		}
		// Keep the SOA and the zone's denial proofs (NSEC, NSEC3, RRSIG)
		// for validating clients; drop anything outside the zone.
		for _, rr := range resp.Ns {
			if rr.Header().Rrtype != dns.TypeOPT && dns.IsSubDomain(soa.Hdr.Name, rr.Header().Name) {
				ns = append(ns, rr)
			}
		}
	} else {
		// Authority records of the chain's zones: at a chain name or an
		// ancestor of one, and NSEC/NSEC3 wildcard proofs (with their
		// RRSIGs) owned by a child of such an ancestor, below the root.
		for _, rr := range resp.Ns {
			h := rr.Header()
			if h.Rrtype == dns.TypeOPT {
				continue
			}
			owner := lowerName(h.Name)
			if ancestorOfAny(owner, names) || (isProof(h.Rrtype) && owner != "." && parent(owner) != "." && ancestorOfAny(parent(owner), names)) {
				ns = append(ns, rr)
			}
		}
	}

	// Additional: only addresses of names the kept records point at.
	var extra []dns.RR
	if len(resp.Extra) > 0 {
		targets := map[string]bool{}
		for _, set := range [][]dns.RR{answer, ns} {
			for _, rr := range set {
				if t := target(rr); t != "" {
					targets[lowerName(t)] = true
				}
			}
		}
		for _, rr := range resp.Extra {
			if t := rr.Header().Rrtype; (t == dns.TypeA || t == dns.TypeAAAA) && targets[lowerName(rr.Header().Name)] {
				extra = append(extra, rr)
			}
		}
	}

	ttl := uint32(1<<32 - 1)
	for _, set := range [][]dns.RR{answer, ns} {
		for _, rr := range set {
			t := rr.Header().Ttl
			if s, isSOA := rr.(*dns.SOA); isSOA && s == soa && s.Minttl < t {
				t = s.Minttl
			}
			ttl = min(ttl, t)
		}
	}
	ttl = rng.clamp(ttl)
	if ttl == 0 {
		return nil, reasonZeroTTL
	}

	// The entry and its message are one allocation (entryBox).
	box := new(entryBox)
	e, msg := &box.entry, &box.msg
	msg.MsgHdr = resp.MsgHdr
	msg.Id = 0
	msg.Response = true
	// dnsvalve is not the authority of what it cached (CoreDNS and Unbound
	// clear AA on cached answers too).
	msg.Authoritative = false
	msg.Answer = copyClamped(answer, rng, k.name)
	msg.Ns = copyClamped(ns, rng, "")
	msg.Extra = copyClamped(extra, rng, "")
	if soa != nil {
		// RFC 2308 section 3: the SOA is sent with the negative TTL.
		for _, rr := range msg.Ns {
			if s, isSOA := rr.(*dns.SOA); isSOA && dns.IsSubDomain(s.Hdr.Name, last) {
				s.Hdr.Ttl = ttl
				break
			}
		}
	}
	life := time.Duration(ttl) * time.Second
	e.msg, e.qname, e.stored, e.expires, e.ttl, e.ede = msg, k.name, now, now.Add(life), life, upstreamEDE(resp)
	for _, set := range [][]dns.RR{msg.Answer, msg.Ns, msg.Extra} {
		for _, rr := range set {
			if rr.Header().Rrtype == dns.TypeAAAA {
				e.aaaa = true
			}
		}
	}
	return e, ""
}

// maxEDE and maxEDEText bound the upstream Extended DNS Errors an entry
// keeps: at most maxEDE options with maxEDEText bytes of text between
// them, so the OPT record of every answer from the entry stays under 200
// bytes. (A UDP reply is truncated to the client's size with the whole OPT
// kept, so a large one would crowd out the answer.)
const (
	maxEDE     = 3
	maxEDEText = 150
)

// upstreamEDE returns copies of the Extended DNS Errors in resp's OPT
// record that describe the answer itself (a filtering upstream's Blocked,
// Filtered, Censored...), bounded by maxEDE and maxEDEText; texts are cut
// at a character boundary and made valid UTF-8. Codes about how the
// upstream obtained this answer (Stale Answer, Stale NXDOMAIN Answer, No
// Reachable Authority, Network Error) are not kept: they would be replayed
// on fresh hits for the whole TTL. nil when there are none.
func upstreamEDE(resp *dns.Msg) []dns.EDNS0_EDE {
	opt := resp.IsEdns0()
	if opt == nil {
		return nil
	}
	var out []dns.EDNS0_EDE
	budget := maxEDEText
	for _, o := range opt.Option {
		e, ok := o.(*dns.EDNS0_EDE)
		if !ok {
			continue
		}
		switch e.InfoCode {
		case dns.ExtendedErrorCodeStaleAnswer, dns.ExtendedErrorCodeStaleNXDOMAINAnswer,
			dns.ExtendedErrorCodeNoReachableAuthority, dns.ExtendedErrorCodeNetworkError:
			continue
		}
		if len(out) == maxEDE {
			break
		}
		text := e.ExtraText
		if len(text) > budget {
			text = text[:budget]
		}
		text = strings.Clone(strings.ToValidUTF8(text, ""))
		budget -= len(text)
		out = append(out, dns.EDNS0_EDE{InfoCode: e.InfoCode, ExtraText: text})
	}
	return out
}

func isProof(t uint16) bool {
	return t == dns.TypeNSEC || t == dns.TypeNSEC3 || t == dns.TypeRRSIG
}

func hasRecords(rrs []dns.RR) bool {
	for _, rr := range rrs {
		if rr.Header().Rrtype != dns.TypeOPT {
			return true
		}
	}
	return false
}

// target returns the name a record points at whose address may be in the
// additional section, or "".
func target(rr dns.RR) string {
	switch v := rr.(type) {
	case *dns.NS:
		return v.Ns
	case *dns.MX:
		return v.Mx
	case *dns.SRV:
		return v.Target
	case *dns.SVCB:
		return v.Target
	case *dns.HTTPS:
		return v.Target
	}
	return ""
}

// entryBox allocates an entry with its message: the cache holds many
// entries for long, and every object of theirs is one more for the
// collector to mark.
type entryBox struct {
	entry entry
	msg   dns.Msg
}

// copyClamped deep-copies rrs with TTLs clamped into rng. Owner names equal
// (case-insensitively) to qname are stored as qname: replies restore the
// client's spelling, and the entry shares the key's string instead of
// keeping one per record. A and AAAA records, most of what a cache holds,
// are copied into one slab per type with their addresses in a third, so
// an entry's records are at most four objects however many there are.
func copyClamped(rrs []dns.RR, rng ttlRange, qname string) []dns.RR {
	if len(rrs) == 0 {
		return nil
	}
	var nA, nAAAA int
	for _, rr := range rrs {
		switch v := rr.(type) {
		case *dns.A:
			if v.A.To4() != nil {
				nA++
			}
		case *dns.AAAA:
			if len(v.AAAA) == net.IPv6len {
				nAAAA++
			}
		}
	}
	var as []dns.A
	var aaaas []dns.AAAA
	var ips []byte
	if nA > 0 {
		as = make([]dns.A, 0, nA)
	}
	if nAAAA > 0 {
		aaaas = make([]dns.AAAA, 0, nAAAA)
	}
	if nA+nAAAA > 0 {
		ips = make([]byte, 0, nA*net.IPv4len+nAAAA*net.IPv6len)
	}
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		var cp dns.RR
		switch v := rr.(type) {
		case *dns.A:
			if ip := v.A.To4(); ip != nil {
				n := len(ips)
				ips = append(ips, ip...)
				as = append(as, dns.A{Hdr: v.Hdr, A: ips[n:len(ips):len(ips)]})
				cp = &as[len(as)-1]
			}
		case *dns.AAAA:
			if len(v.AAAA) == net.IPv6len {
				n := len(ips)
				ips = append(ips, v.AAAA...)
				aaaas = append(aaaas, dns.AAAA{Hdr: v.Hdr, AAAA: ips[n:len(ips):len(ips)]})
				cp = &aaaas[len(aaaas)-1]
			}
		}
		if cp == nil {
			cp = dns.Copy(rr)
		}
		h := cp.Header()
		h.Ttl = rng.clamp(h.Ttl)
		if qname != "" && lowerName(h.Name) == qname {
			h.Name = qname
		}
		out[i] = cp
	}
	return out
}

// ofQuestion keeps the chain's records that can answer the question: its
// class, and its type or the chain's CNAME/DNAME and their signatures
// (everything for ANY), as Unbound's scrubber does. A misbehaving upstream
// could otherwise have an A record cached for a TXT question.
func ofQuestion(rrs []dns.RR, qtype, qclass uint16) []dns.RR {
	out := rrs[:0:0]
	for _, rr := range rrs {
		h := rr.Header()
		if qclass != dns.ClassANY && h.Class != qclass {
			continue
		}
		switch h.Rrtype {
		case qtype, dns.TypeCNAME, dns.TypeDNAME, dns.TypeRRSIG:
		default:
			if qtype != dns.TypeANY {
				continue
			}
		}
		out = append(out, rr)
	}
	return out
}

// answersType reports whether rrs hold a record of type qtype (for ANY,
// any record but a signature).
func answersType(rrs []dns.RR, qtype uint16) bool {
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == qtype || (qtype == dns.TypeANY && t != dns.TypeRRSIG) {
			return true
		}
	}
	return false
}
