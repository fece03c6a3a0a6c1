package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// Resolver is the cache-and-forward step. *cache.Cache satisfies it: it
// answers from the cache or forwards (coalescing identical misses) and
// returns a message the caller owns, or, when ctx carries a
// cache.ArenaSlot (a UDP listener's queries), one built in the arena the
// server lent for this query: the caller may change it but not keep it
// beyond the query (see query.Lease).
type Resolver interface {
	Resolve(ctx context.Context, req *dns.Msg) (*dns.Msg, query.CacheStatus, string, error)
}

// TimedResolver is a Resolver that can take the query's arrival time
// (query.Request.Start) for the time of its lookup (cache.Cache.ResolveAt).
type TimedResolver interface {
	ResolveAt(ctx context.Context, req *dns.Msg, now time.Time) (*dns.Msg, query.CacheStatus, string, error)
}

// Forward is the innermost handler: it asks r (the cache, which forwards
// on a miss) and records the cache status and upstream.
func Forward(r Resolver) Handler {
	resolve := func(ctx context.Context, req *query.Request) (*dns.Msg, query.CacheStatus, string, error) {
		return r.Resolve(ctx, req.Msg)
	}
	if tr, ok := r.(TimedResolver); ok {
		resolve = func(ctx context.Context, req *query.Request) (*dns.Msg, query.CacheStatus, string, error) {
			return tr.ResolveAt(ctx, req.Msg, req.Start)
		}
	}
	return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		resp, status, up, err := resolve(ctx, req)
		req.Info.Cache = status
		req.Info.Upstream = up
		if err != nil {
			req.Info.Reason = "upstream_failed"
		}
		return resp, err
	})
}

// Policy is the policy stage: one snapshot load per query, the decision
// for the question, a synthesized block answer when the decision is a
// block, and on what the inner stages returned the address hints of
// blocked query types stripped and the response check (CNAME chain,
// rebinding). The inner stages' reply must be this stage's to modify (the
// cache's replies are deep copies).
func Policy(store *policy.Store, m *policy.Metrics) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			snap := store.Load()
			q := req.Msg.Question[0]
			d := snap.Decide(req.Client.Policy, q.Name, q.Qtype)
			if d.Action != query.ActionNone {
				record(&req.Info, &d)
				if m != nil {
					m.Observe(d)
				}
			}
			if d.Action == query.ActionBlock {
				return snap.BlockReply(req.Msg, d), nil
			}
			resp, err := next.ServeDNS(ctx, req)
			if err != nil || resp == nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) == 0 {
				return resp, err
			}
			snap.StripHints(req.Client.Policy, resp)
			rd := snap.InspectResponse(req.Client.Policy, q.Name, resp)
			switch rd.Action {
			case query.ActionBlock:
				record(&req.Info, &rd)
				if m != nil {
					m.Observe(rd)
				}
				return snap.BlockReply(req.Msg, rd), nil
			case query.ActionAlert:
				if req.Info.Action != query.ActionBlock {
					record(&req.Info, &rd)
					if m != nil {
						m.Observe(rd)
					}
				}
			}
			return resp, nil
		})
	}
}

// record copies a policy decision into the query's log annotations.
func record(info *query.Info, d *policy.Decision) {
	info.Action = d.Action
	info.List = d.List
	info.Category = d.Category
	info.Rule = d.Match.Rule
	info.Source = d.Match.Source
	info.Line = d.Match.Line
	info.PolicyReason = d.Reason
	switch d.Reason {
	case policy.ReasonCNAME:
		info.Target = d.CNAME
	case policy.ReasonRebinding:
		info.Target = d.Addr.String()
	default:
		info.Target = ""
	}
	if d.Reason != "" && d.Reason != "list" {
		info.Reason = d.Reason
	}
}

// Unserved answers, itself, the queries dnsvalve does not forward, as
// Unbound does:
//   - a class other than IN (CHAOS "version.bind" and "id.server", Hesiod,
//     the ANY class): REFUSED with EDE 21 Not Supported. CHAOS queries
//     fingerprint the upstream's software, the classes are a channel no
//     policy list speaks to, and the cache, the policy's answers and the
//     detector reason about IN;
//   - a zone transfer (AXFR, IXFR): REFUSED with EDE 21. A transfer is a
//     stream of messages that a forwarder's one exchange cannot relay, and
//     an egress resolver has no business copying zones out;
//   - a type that is no question (OPT, NXNAME, TKEY, TSIG and the rest of
//     128-248) or an obsolete one (MAILA, MAILB): FORMERR with the
//     question echoed (RFC 9824 section 3.5 asks exactly that for NXNAME).
//
// query.Unservable says which. It sits right after access control, before
// detection, policy and the minimal-ANY stage, so such a query is answered
// the same whatever its name and never enters the first-seen set. Counted in
// m.Refused{reason="class"|"zone_transfer"} and m.Malformed{reason=
// "meta_type"}; m may be nil.
func Unserved(m *Metrics) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			q := req.Msg.Question[0]
			reason := query.Unservable(q.Qclass, q.Qtype)
			var text string
			switch reason {
			case "":
				return next.ServeDNS(ctx, req)
			case "class":
				text = "class " + querylog.ClassString(q.Qclass) + " is not served"
			case "zone_transfer":
				text = "zone transfers are not served"
			default: // meta_type
				req.Info.Reason = reason
				if m != nil {
					m.malformed(reason)
				}
				return formerrEcho(req.Msg), nil
			}
			req.Info.Reason = reason
			if m != nil {
				m.Refused.WithLabelValues(reason).Inc()
			}
			r := rcodeReply(req.Msg, dns.RcodeRefused)
			AddEDE(req.Msg, r, dns.ExtendedErrorCodeNotSupported, text)
			return r, nil
		})
	}
}

// MinimalANY answers ANY queries with the single synthesized HINFO record
// of RFC 8482 instead of forwarding them: ANY is the classic amplification
// query, and no legitimate client needs the full answer from a forwarder.
func MinimalANY() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			q := req.Msg.Question[0]
			if q.Qtype != dns.TypeANY {
				return next.ServeDNS(ctx, req)
			}
			r := rcodeReply(req.Msg, dns.RcodeSuccess)
			r.Answer = []dns.RR{&dns.HINFO{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeHINFO, Class: q.Qclass, Ttl: 8482},
				Cpu: "RFC8482",
			}}
			req.Info.Reason = "rfc8482"
			return r, nil
		})
	}
}
