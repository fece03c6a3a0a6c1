// Command constserver is the floor of the dnsvalve benchmarks: a bare
// miekg/dns server that does no work beyond parsing the query and writing a
// fixed reply. A queries get the one record "A 192.0.2.1" (TTL 300), every
// other type gets an empty NOERROR. The benchmark scripts measure it exactly
// like dnsvalve and Unbound, so "CPU µs per query" targets can be stated
// relative to what miekg/dns itself costs on the same machine.
//
// Usage:
//
//	constserver -listen 127.0.0.1:5302 -stats
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/miekg/dns"
)

// answerIP is the address of every A answer (TEST-NET-1).
var answerIP = net.IPv4(192, 0, 2, 1).To4()

// handler writes the constant reply. It is safe for concurrent use.
type handler struct {
	answered atomic.Uint64
}

var _ dns.Handler = (*handler)(nil)

// ServeDNS replies to req without modifying it.
func (h *handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(req)
	if len(req.Question) == 1 && req.Question[0].Qtype == dns.TypeA {
		resp.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
			A:   answerIP,
		}}
	}
	if err := w.WriteMsg(resp); err == nil {
		h.answered.Add(1)
	}
}

// serve runs UDP and TCP servers on listen until ctx is done, then shuts them
// down and, with stats, prints the answered count to out. ready, if not nil,
// gets the bound UDP address once both listeners serve.
func serve(ctx context.Context, listen string, stats bool, out io.Writer, ready func(net.Addr)) error {
	h := &handler{}
	pc, err := net.ListenPacket("udp", listen)
	if err != nil {
		return fmt.Errorf("listen udp %s: %w", listen, err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		_ = pc.Close()
		return fmt.Errorf("listen tcp %s: %w", pc.LocalAddr(), err)
	}
	servers := []*dns.Server{
		{PacketConn: pc, Handler: h},
		{Listener: ln, Handler: h},
	}
	var started sync.WaitGroup
	errc := make(chan error, len(servers))
	for _, s := range servers {
		started.Add(1)
		s.NotifyStartedFunc = started.Done
		go func() { errc <- s.ActivateAndServe() }()
	}
	started.Wait()
	if ready != nil {
		ready(pc.LocalAddr())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	for _, s := range servers {
		_ = s.Shutdown()
	}
	if stats {
		fmt.Fprintf(out, "constserver: answered %d queries\n", h.answered.Load())
	}
	return runErr
}

func main() {
	listen := flag.String("listen", "127.0.0.1:5302", "UDP and TCP address to answer on")
	stats := flag.Bool("stats", false, "print the number of queries answered on exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, *listen, *stats, os.Stderr, nil); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "constserver:", err)
		os.Exit(1)
	}
}
