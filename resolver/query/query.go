// Package query holds the leaf data types that travel with one DNS query
// through the dnsvalve chain: the Request, the Client who sent it, the
// transport it came over, and the Info annotations that stages fill in for
// the query log. It imports nothing of dnsvalve and only miekg/dns outside
// the standard library, so every other package may depend on it.
package query

import (
	"context"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Proto is the transport a query arrived over.
type Proto uint8

// Transports. The zero value is UDP.
const (
	UDP Proto = iota
	TCP
	DoT
	DoH
)

// String returns the Route 53 style transport name ("UDP", "TCP", "DoT", "DoH").
func (p Proto) String() string {
	switch p {
	case UDP:
		return "UDP"
	case TCP:
		return "TCP"
	case DoT:
		return "DoT"
	case DoH:
		return "DoH"
	}
	return "unknown"
}

// Client identifies who sent a query.
type Client struct {
	Addr netip.Addr // source address (unmapped: IPv4 as 4 bytes)
	Port uint16     // source port
	// Name is the workload name from clients.names, "" when unknown.
	Name string
	// Group is the client group that matched (clients.groups), "" for none.
	Group string
	// Policy is the name of the policy that applies to the client.
	Policy string
	// Via is the trusted forwarder or load balancer that relayed the query
	// when Addr came from its EDNS Client Subnet or PROXY header; invalid
	// when the query came straight from the client.
	Via netip.Addr
}

// CacheStatus says how the cache took part in an answer.
type CacheStatus uint8

// Cache outcomes. CacheNone means the cache was not consulted (blocked,
// refused, malformed).
const (
	CacheNone CacheStatus = iota
	CacheHit
	CacheMiss
	CacheStale
	// CacheFailure: the upstreams failed for this question moments ago
	// (cache.failure_ttl) and were not asked again.
	CacheFailure
)

// String returns "hit", "miss", "stale", "failure" or "" for CacheNone.
func (c CacheStatus) String() string {
	switch c {
	case CacheHit:
		return "hit"
	case CacheMiss:
		return "miss"
	case CacheStale:
		return "stale"
	case CacheFailure:
		return "failure"
	}
	return ""
}

// Action is the firewall decision recorded for a query.
type Action uint8

// Actions, as in Route 53 DNS Firewall. ActionNone: no rule matched.
const (
	ActionNone Action = iota
	ActionAllow
	ActionBlock
	ActionAlert
)

// String returns "ALLOW", "BLOCK", "ALERT" or "" for ActionNone.
func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "ALLOW"
	case ActionBlock:
		return "BLOCK"
	case ActionAlert:
		return "ALERT"
	}
	return ""
}

// Info collects what the stages learned about a query, for the query log
// and metrics. Stages write to it; only the goroutine serving the query
// touches it, so it needs no locking.
type Info struct {
	Action   Action
	List     string // list name that matched (firewall_domain_list_id)
	Category string // category of that list, or "tunneling"
	Rule     string // the matched list entry as written
	Source   string // file or URL the entry came from
	Line     int    // line number in Source

	Cache    CacheStatus
	Upstream string // upstream that answered, "" when none

	// Detection results. Domain is the registered domain (eTLD+1) the
	// detector scored, "" when detection did not run.
	Domain    string
	Score     float64
	Signals   []string
	Alert     bool
	NewlySeen bool

	// PolicyReason is why the policy decided as it did (the decision's
	// reason: list, allowlist_mode, qtype, cname, rebinding), kept apart
	// from Reason, which later stages also set. Target is what the answer
	// check refused: the CNAME target (cname) or the private address
	// (rebinding).
	PolicyReason string
	Target       string

	// Refused is set when access control refused the query; Reason says why
	// a query was answered the way it was when no list explains it
	// (e.g. "rate_limited", "not_allowed", "upstream_failed", "panic").
	Reason string
}

// Request is one client query in flight.
//
// Msg is owned by the server: stages must treat it as read-only and Copy()
// it before changing anything. Exactly one question is guaranteed by the
// server before the chain runs.
type Request struct {
	Msg    *dns.Msg
	Client Client
	Proto  Proto
	// Server is the address the query was sent to: the listener's, or for
	// a UDP listener on a wildcard address the packet's destination; zero
	// when unknown. The query log's dnstap response_address.
	Server netip.AddrPort
	Start  time.Time
	// UDPSize is the payload size the client can receive: its EDNS0 buffer
	// size, or 512 without EDNS0. Meaningless for TCP.
	UDPSize uint16
	// Info is filled in by the stages.
	Info Info
	// Lease is set when Msg and the reply come from the server's pool
	// (nil otherwise): see Lease for who may keep them.
	Lease *Lease
}

// Question returns the request's single question.
func (r *Request) Question() dns.Question { return r.Msg.Question[0] }

// beforeWaitKey is the context key of the hook BeforeWait calls.
type beforeWaitKey struct{}

// WithBeforeWait returns a context whose BeforeWait calls f. A server that
// holds finished replies back to send them in batches sets it, so that
// they leave before a stage waits on the network. Set it once per worker,
// not per query: it allocates.
func WithBeforeWait(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, beforeWaitKey{}, f)
}

// BeforeWait is called by a stage just before it waits on I/O of
// unbounded length (an upstream exchange); it runs the hook of
// WithBeforeWait, if any.
func BeforeWait(ctx context.Context) {
	if f, ok := ctx.Value(beforeWaitKey{}).(func()); ok && f != nil {
		f()
	}
}

// WithoutBeforeWait returns ctx without the hook of WithBeforeWait. A stage
// that hands ctx to work running on another goroutine (the cache's
// detached upstream exchange) strips it: the hook belongs to the goroutine
// serving the query, and must not run anywhere else.
func WithoutBeforeWait(ctx context.Context) context.Context {
	if f, ok := ctx.Value(beforeWaitKey{}).(func()); !ok || f == nil {
		return ctx
	}
	return context.WithValue(ctx, beforeWaitKey{}, (func())(nil))
}

// ECSOption returns the EDNS Client Subnet option of m, nil when it has
// none (or m is nil).
func ECSOption(m *dns.Msg) *dns.EDNS0_SUBNET {
	if m == nil {
		return nil
	}
	opt := m.IsEdns0()
	if opt == nil {
		return nil
	}
	for _, o := range opt.Option {
		if sn, ok := o.(*dns.EDNS0_SUBNET); ok {
			return sn
		}
	}
	return nil
}

// Unservable returns why dnsvalve answers a question of class qclass and
// type qtype itself instead of forwarding it (resolver.Unserved), or ""
// when it forwards it:
//   - "class": a class other than IN;
//   - "zone_transfer": AXFR or IXFR;
//   - "meta_type": a type that is no question (RFC 6895 section 3.1: OPT
//     (41), NXNAME (128, RFC 9824), TKEY, TSIG and the rest of 128-248,
//     unassigned) or an obsolete one (MAILA, MAILB). IXFR, AXFR and ANY,
//     the other QTYPEs of RFC 6895's 128-255 range, are questions.
func Unservable(qclass, qtype uint16) string {
	switch {
	case qclass != dns.ClassINET:
		return "class"
	case qtype == dns.TypeAXFR || qtype == dns.TypeIXFR:
		return "zone_transfer"
	case qtype == dns.TypeOPT || qtype == dns.TypeTSIG || qtype == dns.TypeTKEY ||
		qtype == dns.TypeMAILA || qtype == dns.TypeMAILB || (qtype >= dns.TypeNXNAME && qtype <= 248):
		return "meta_type"
	}
	return ""
}

// RcodeString names an rcode as logs and metrics show it: "NOERROR",
// "NXDOMAIN", ..., and 16 as "BADVERS", what it means in a reply's OPT
// record (miekg/dns names it "BADSIG", its TSIG meaning, which a resolver's
// reply never has); "" for an rcode without a name.
func RcodeString(rc int) string {
	if rc == dns.RcodeBadVers {
		return "BADVERS"
	}
	return dns.RcodeToString[rc]
}
