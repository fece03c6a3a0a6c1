// Package resolver is the DNS-facing core of dnsvalve: the Server that owns
// the listeners and the single write to the wire, and the chain of stages
// every query runs through (access, detect, policy, cache and forward,
// response check). Only this package and its subpackages speak DNS on the
// wire.
//
// A stage is a Handler. Handlers return the reply message they built or were
// given by the next stage, or an error; they never write to the wire and
// never mutate a message they did not create. What they learn about the
// query (cache status, upstream, policy decision, detection score) goes into
// the request's query.Info, which the Server hands to the query log after
// the reply was written.
package resolver

import (
	"context"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Handler answers one query. The returned message is owned by the caller
// (the Server), which sets the ID, truncates it for UDP and writes it.
// Implementations must be safe for concurrent use and must not modify
// req.Msg. A handler that is about to wait on the network (an upstream
// exchange) must call query.BeforeWait(ctx) first: the UDP listener reads
// and answers queries in batches, and that call sends the replies held so
// far and hands the rest of the batch, with the right to read the socket,
// to another goroutine, so that hits read with a miss are not delayed by
// it (the cache does this). A handler that blocks without calling it still
// works, but holds up its batch and the socket until the listener's
// watcher notices (two on-time 10 ms ticks without progress; 100 ms ticks
// after the listener was idle), adds a reader, and counts it in
// dnsvalve_server_udp_stuck_total.
type Handler interface {
	ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *query.Request) (*dns.Msg, error)

// ServeDNS calls f.
func (f HandlerFunc) ServeDNS(ctx context.Context, req *query.Request) (*dns.Msg, error) {
	return f(ctx, req)
}

// Middleware wraps a Handler into another one.
type Middleware func(next Handler) Handler

// Chain builds a Handler that runs the middlewares in order, outermost
// first, around final.
func Chain(final Handler, mws ...Middleware) Handler {
	h := final
	for i := len(mws) - 1; i >= 0; i-- {
		h = mws[i](h)
	}
	return h
}

var _ Handler = HandlerFunc(nil)
