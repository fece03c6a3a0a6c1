package resolver

import (
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// QueryLog is the observe stage's query-log half: it hands one record per
// answered, refused, blocked, failed or dropped query to the log without
// blocking.
type QueryLog struct {
	Log      *querylog.Logger
	Instance string // this dnsvalve's name (hostname) in every record
}

var _ Observer = (*QueryLog)(nil)

// Observe implements Observer.
func (q *QueryLog) Observe(req *query.Request, resp *dns.Msg, latency time.Duration) {
	r := querylog.Record{
		Time:     req.Start,
		Req:      req.Msg,
		Resp:     resp,
		Client:   req.Client,
		Server:   req.Server,
		Proto:    req.Proto,
		Info:     req.Info,
		Latency:  latency,
		Instance: q.Instance,
		Lease:    req.Lease,
	}
	if len(req.Msg.Question) > 0 {
		r.Question = req.Msg.Question[0]
	}
	q.Log.Log(&r)
}
