// Command fakeupstream is a fast, deterministic, authoritative-style DNS server
// used as the upstream in dnsvalve benchmarks. It answers any name on UDP and
// TCP without looking anything up:
//
//   - names under "nx." or with a label "nxdomain" get NXDOMAIN with an SOA;
//   - A gets one or two addresses in 192.0.2.0/24 (TEST-NET-1), derived from
//     a hash of the lower-cased name, so the same name always gets the same
//     answer;
//   - AAAA gets one address in 2001:db8::/32, also derived from the hash;
//   - TXT gets a short string naming the hash;
//   - every other type gets NODATA (NOERROR, empty answer) with an SOA.
//
// It logs nothing per query and keeps one atomic counter, so on the benchmark
// machine it costs far less than the resolver under test. With -stats it
// prints the number of queries answered when it receives SIGTERM or SIGINT.
//
// Usage:
//
//	fakeupstream -listen 127.0.0.1:5399 -ttl 300 -delay 0 -stats
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// soaName is the owner of the SOA record returned in negative answers. The
// fake server claims authority for the root, so one SOA fits every name.
const soaName = "."

// handler answers every query from the name's hash. It is safe for
// concurrent use; the zero value is not usable, build it with newHandler.
type handler struct {
	ttl      uint32
	delay    time.Duration
	answered atomic.Uint64
	soa      *dns.SOA
}

var _ dns.Handler = (*handler)(nil)

func newHandler(ttl uint32, delay time.Duration) *handler {
	return &handler{
		ttl:   ttl,
		delay: delay,
		soa: &dns.SOA{
			Hdr:     dns.RR_Header{Name: soaName, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:      "ns.fake.test.",
			Mbox:    "hostmaster.fake.test.",
			Serial:  1,
			Refresh: 3600,
			Retry:   600,
			Expire:  86400,
			Minttl:  ttl,
		},
	}
}

// ServeDNS writes one response per query. It does not modify req.
func (h *handler) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if h.delay > 0 {
		time.Sleep(h.delay)
	}
	resp := h.answer(req)
	if err := w.WriteMsg(resp); err == nil {
		h.answered.Add(1)
	}
}

// answer builds the response to req; req is only read.
func (h *handler) answer(req *dns.Msg) *dns.Msg {
	resp := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		resp.SetRcode(req, dns.RcodeFormatError)
		return resp
	}
	resp.SetReply(req)
	resp.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	if isNX(name) {
		resp.Rcode = dns.RcodeNameError
		resp.Ns = []dns.RR{h.soa}
		return resp
	}
	hash := nameHash(name)
	hdr := dns.RR_Header{Name: q.Name, Rrtype: q.Qtype, Class: dns.ClassINET, Ttl: h.ttl}
	switch q.Qtype {
	case dns.TypeA:
		first := hash % 254 // host part 1..254 is first+1
		resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, byte(first+1)).To4()})
		if hash&(1<<20) != 0 {
			second := (first + 1) % 254 // distinct from first
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr, A: net.IPv4(192, 0, 2, byte(second+1)).To4()})
		}
	case dns.TypeAAAA:
		ip := net.IP{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
			byte(hash >> 24), byte(hash >> 16), byte(hash >> 8), byte(hash)}
		resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr, AAAA: ip})
	case dns.TypeTXT:
		resp.Answer = append(resp.Answer, &dns.TXT{Hdr: hdr, Txt: []string{fmt.Sprintf("fake h=%08x", hash)}})
	default:
		resp.Ns = []dns.RR{h.soa}
	}
	return resp
}

// isNX reports whether the lower-cased, fully qualified name must get
// NXDOMAIN: it is "nx." or under it, or one of its labels is "nxdomain".
func isNX(name string) bool {
	if name == "nx." || strings.HasSuffix(name, ".nx.") {
		return true
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if label == "nxdomain" {
			return true
		}
	}
	return false
}

// nameHash is FNV-1a over the lower-cased name.
func nameHash(name string) uint32 {
	f := fnv.New32a()
	_, _ = io.WriteString(f, name)
	return f.Sum32()
}

// config is the parsed command line.
type config struct {
	listen string
	ttl    uint
	delay  time.Duration
	stats  bool
}

// serve runs UDP and TCP servers on cfg.listen until ctx is done, then shuts
// them down and, with cfg.stats, prints the answered count to out. ready, if
// not nil, is called with the bound UDP and TCP addresses once both listen.
// listenPair binds UDP on addr and TCP on the port UDP got, so that port 0
// yields one port for both; when the kernel's pick for UDP is taken for
// TCP, port 0 tries again (up to 10 picks).
func listenPair(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 1; ; attempt++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		_ = pc.Close()
		if port != "0" || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", pc.LocalAddr(), err)
		}
	}
}

func serve(ctx context.Context, cfg config, out io.Writer, ready func(udp, tcp net.Addr)) error {
	h := newHandler(uint32(cfg.ttl), cfg.delay)
	pc, ln, err := listenPair(cfg.listen)
	if err != nil {
		return err
	}
	servers := []*dns.Server{
		{PacketConn: pc, Handler: h, UDPSize: dns.DefaultMsgSize},
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
		ready(pc.LocalAddr(), ln.Addr())
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
	if cfg.stats {
		fmt.Fprintf(out, "fakeupstream: answered %d queries\n", h.answered.Load())
	}
	return runErr
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:5399", "UDP and TCP address to answer on")
	flag.UintVar(&cfg.ttl, "ttl", 300, "TTL of every record, and the negative TTL, in seconds")
	flag.DurationVar(&cfg.delay, "delay", 0, "wait this long before each response")
	flag.BoolVar(&cfg.stats, "stats", false, "print the number of queries answered on exit")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := serve(ctx, cfg, os.Stderr, nil); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "fakeupstream:", err)
		os.Exit(1)
	}
}
