package resolver

import (
	"context"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// Resolver is the cache-and-forward step. *cache.Cache satisfies it: it
// answers from the cache or forwards (coalescing identical misses) and
// returns a message the caller owns.
type Resolver interface {
	Resolve(ctx context.Context, req *dns.Msg) (*dns.Msg, query.CacheStatus, string, error)
}

// Forward is the innermost handler: it asks r (the cache, which forwards
// on a miss) and records the cache status and upstream.
func Forward(r Resolver) Handler {
	return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		resp, status, up, err := r.Resolve(ctx, req.Msg)
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
// block, and the response check (CNAME chain, rebinding) on what the
// inner stages returned.
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
	if d.Reason != "" && d.Reason != "list" {
		info.Reason = d.Reason
	}
}

// ClassIN answers queries of every class but IN (CHAOS "version.bind" and
// "id.server", Hesiod, the ANY class) itself, with REFUSED and EDE 21 Not
// Supported, instead of forwarding them. An egress resolver has no reason
// to relay them: CHAOS queries fingerprint the upstream's software, the
// classes are a channel no policy list speaks to, and the cache, the
// policy's answers and the detector reason about IN. It sits right after
// access control, before detection, policy and the minimal-ANY stage, so
// such a query is refused whatever its type and never enters the
// first-seen set. Counted in m.Refused{reason="class"}; m may be nil.
func ClassIN(m *Metrics) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			q := req.Msg.Question[0]
			if q.Qclass == dns.ClassINET {
				return next.ServeDNS(ctx, req)
			}
			req.Info.Reason = "class"
			if m != nil {
				m.Refused.WithLabelValues("class").Inc()
			}
			r := rcodeReply(req.Msg, dns.RcodeRefused)
			AddEDE(req.Msg, r, dns.ExtendedErrorCodeNotSupported, "class "+querylog.ClassString(q.Qclass)+" is not served")
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
