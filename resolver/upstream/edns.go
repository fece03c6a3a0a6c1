package upstream

import (
	"context"
	"time"

	"github.com/miekg/dns"
)

// EDNS0 fallback (RFC 6891 section 7). A server that does not know EDNS0
// answers a query with an OPT record FORMERR (some NOTIMP), without an OPT
// record of its own. dnsvalve then asks that upstream once more without
// EDNS0, and when that is answered, queries it without EDNS0 for
// ednsOffFor before trying EDNS0 again, as Unbound keeps such a verdict in
// its infrastructure cache. Without the fallback such an upstream fails
// every query.
//
// The verdict is kept only on evidence as strong as an answer's: a
// rejection without its question is accepted on its ID alone (validate),
// so from a udp:// upstream it earns the one retry but no verdict. An
// off-path forger would otherwise need only the ID and port, not the 0x20
// case of the name, to switch an upstream's EDNS0 off for every name.
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

// ednsNote is what a transport's restore hides from the caller of
// Exchange: whether the reply carried an OPT record (restore removes one
// the UDP transport added) and whether it came without its question
// (restore puts it back).
type ednsNote struct{ hadOPT, noQuestion bool }

type ednsNoteKey struct{}

func withEDNSNote(ctx context.Context, n *ednsNote) context.Context {
	return context.WithValue(ctx, ednsNoteKey{}, n)
}

func noteOf(ctx context.Context) *ednsNote {
	n, _ := ctx.Value(ednsNoteKey{}).(*ednsNote)
	return n
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

// ednsOff reports whether mb is queried without EDNS0 at now.
func (mb *member) ednsOff(now time.Time) bool {
	until := mb.ednsOffUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// exchangeEDNS sends m to mb through send (one attempt each) with the
// fallback: without EDNS0 while mb is known to reject it, and once more
// without it when mb rejects it with EDNS0. The retry shares the first
// attempt's per-upstream timeout, so a fallback never takes more of the
// group's budget than one try.
func (g *Group) exchangeEDNS(ctx context.Context, mb *member, m *dns.Msg,
	send func(context.Context, *dns.Msg) (*dns.Msg, error)) (*dns.Msg, error) {
	if mb.ednsOff(g.now()) {
		return send(withoutEDNS(ctx), withoutOPT(m))
	}
	if !mb.udp && m.IsEdns0() == nil {
		return send(ctx, m) // sent without EDNS0 anyway
	}
	start := time.Now() // the wall clock, not g.now: the retry's deadline is real
	var note ednsNote
	r, err := send(withEDNSNote(ctx, &note), m)
	if err != nil || note.hadOPT || (r.Rcode != dns.RcodeFormatError && r.Rcode != dns.RcodeNotImplemented) {
		return r, err
	}
	mb.ednsFallbacks.Inc()
	if t, ok := mb.up.(interface{ tryTimeout() time.Duration }); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, start.Add(t.tryTimeout()))
		defer cancel()
	}
	verified := !(mb.udp && note.noQuestion)
	r, err = send(withoutEDNS(ctx), withoutOPT(m))
	if err == nil && !rejects(r.Rcode) && verified {
		g.ednsRejected(mb)
	}
	return r, err
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
