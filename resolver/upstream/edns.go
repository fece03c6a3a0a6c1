package upstream

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// EDNS0 fallback (RFC 6891 section 7). A server that does not know EDNS0
// answers a query with an OPT record FORMERR (some NOTIMP). dnsvalve
// then asks that upstream once more without EDNS0, and when that is
// answered, queries it without EDNS0 for ednsOffFor before trying EDNS0
// again, as Unbound keeps such a verdict in its infrastructure cache.
// Without the fallback such an upstream fails every query.
//
// Queries without EDNS0 get at most 512 bytes over UDP; larger answers come
// truncated and are fetched again over TCP (udpUpstream). The client still
// gets dnsvalve's own OPT record, but no DNSSEC records: the upstream was
// not asked for them.

// ednsOffFor is how long an upstream that rejected EDNS0 but answered
// without it is queried without EDNS0.
const ednsOffFor = 15 * time.Minute

type noEDNSKey struct{}

// withoutEDNS marks the exchanges under ctx as sent without EDNS0: the UDP
// transport then adds no OPT record of its own.
func withoutEDNS(ctx context.Context) context.Context {
	return context.WithValue(ctx, noEDNSKey{}, true)
}

// noEDNS reports whether ctx was marked by withoutEDNS.
func noEDNS(ctx context.Context) bool {
	v, _ := ctx.Value(noEDNSKey{}).(bool)
	return v
}

// withoutOPT returns m, or when it has an OPT record a shallow copy of it
// without one. m is not modified.
func withoutOPT(m *dns.Msg) *dns.Msg {
	if m.IsEdns0() == nil {
		return m
	}
	c := *m
	c.Extra = make([]dns.RR, 0, len(m.Extra)-1)
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			c.Extra = append(c.Extra, rr)
		}
	}
	return &c
}

// ednsRejection reports whether r, the reply to a query with an OPT
// record, is what a server that does not know EDNS0 answers: FORMERR or
// NOTIMP without an OPT record of its own. (The UDP transport removes an
// OPT record it added from the reply, so there a rejection with one counts
// too: the retry then costs one query.)
func ednsRejection(r *dns.Msg) bool {
	return (r.Rcode == dns.RcodeFormatError || r.Rcode == dns.RcodeNotImplemented) && r.IsEdns0() == nil
}

// sendsOPT reports whether m goes to mb with an OPT record: its own, or
// the one the UDP transport adds.
func (mb *member) sendsOPT(m *dns.Msg) bool {
	return mb.addsOPT || m.IsEdns0() != nil
}

// ednsOff reports whether mb is queried without EDNS0 at now.
func (mb *member) ednsOff(now time.Time) bool {
	until := mb.ednsOffUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// ednsRejected records that mb rejected EDNS0 and answered without it: it
// is queried without EDNS0 for ednsOffFor from now. The first record of a
// period is logged.
func (g *Group) ednsRejected(mb *member) {
	now := g.now()
	if prev := mb.ednsOffUntil.Swap(now.Add(ednsOffFor).UnixNano()); prev == 0 || now.UnixNano() >= prev {
		g.log.Warn("upstream rejects EDNS0 but answers without it: querying it without EDNS0 (answers over UDP are then at most 512 bytes, no DNSSEC records)",
			"upstream", mb.name, "for", ednsOffFor)
	}
}
