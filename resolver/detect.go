package resolver

import (
	"context"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Detection modes of a policy (policies.NAME.detect).
const (
	DetectOff     = "off"
	DetectObserve = "observe"
	DetectEnforce = "enforce"
)

// Detect is the detection stage: it scores every query of clients whose
// policy has detection on (cache hits included, so rates are right), and
// in enforce mode blocks a query whose score reaches blockScore with
// category "tunneling" (EDE Blocked) unless the policy explicitly allows
// the name or blocks the query's type anyway (block_qtypes). It feeds the
// answer's rcode back (NXDOMAIN share). now is the detector's clock; nil
// means each query's arrival time (Request.Start), which spares a clock
// read per query.
func Detect(det *detect.Detector, store *policy.Store, blockScore float64, now func() time.Time) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			snap := store.Load()
			mode := snap.DetectMode(req.Client.Policy)
			if mode == DetectOff {
				return next.ServeDNS(ctx, req)
			}
			q := req.Msg.Question[0]
			t := req.Start
			if now != nil {
				t = now()
			}
			res := det.Observe(t, detect.Client{Addr: req.Client.Addr, Name: req.Client.Name,
				Group: req.Client.Group, Policy: req.Client.Policy}, q.Name, q.Qtype)
			req.Info.Domain = res.Domain
			req.Info.Score = res.Score
			req.Info.Signals = res.Signals
			req.Info.Alert = res.Alert
			req.Info.NewlySeen = res.NewlySeen
			if mode == DetectEnforce && !res.Ignored && res.Score >= blockScore {
				// An allow list exempts the name; a blocked query type is left
				// to the policy stage, which answers it NODATA whatever the score.
				if d := snap.Decide(req.Client.Policy, q.Name, q.Qtype); d.Reason != policy.ReasonQtype &&
					(d.Action != query.ActionAllow || d.Reason != policy.ReasonList) {
					d = policy.Decision{Action: query.ActionBlock, Policy: req.Client.Policy, List: "tunneling",
						Category: "tunneling", EDE: dns.ExtendedErrorCodeBlocked, Reason: policy.ReasonList,
						Match: tunnelMatch(res.Domain)}
					record(&req.Info, &d)
					req.Info.Reason = "tunneling"
					return snap.BlockReply(req.Msg, d), nil
				}
			}
			resp, err := next.ServeDNS(ctx, req)
			if resp != nil && res.Domain != "" && !res.Ignored {
				det.ObserveRcode(t, req.Client.Addr, res.Domain, resp.Rcode)
			}
			return resp, err
		})
	}
}

// tunnelMatch describes a detection block as a list match, for the query
// log's rule field and "why was this blocked?".
func tunnelMatch(domain string) lists.Match {
	return lists.Match{Rule: "*." + domain, Source: "detect"}
}
