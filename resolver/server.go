package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// AdvertisedUDPSize is the EDNS0 buffer size dnsvalve advertises to clients
// (DNS Flag Day 2020).
const AdvertisedUDPSize = 1232

// Sentinel errors understood by the Server.
var (
	// ErrDrop asks the Server to send no reply at all (rate limits and
	// access control in "drop" mode).
	ErrDrop = errors.New("drop query")
	// ErrPanic is what a recovered panic in a stage becomes.
	ErrPanic = errors.New("panic in handler")

	// errNoReply is what a handler returning neither a reply nor an error
	// becomes (a broken stage must not crash the server).
	errNoReply = errors.New("handler returned no reply")
)

// Observer sees every query after its reply was written (or dropped):
// metrics, the query log. It must not block, and must not keep req (the
// server reuses it) nor req.Msg or resp beyond the call, unless it copies
// them or retains req.Lease (then the server reuses neither until it is
// released; see query.Lease).
type Observer interface {
	Observe(req *query.Request, resp *dns.Msg, latency time.Duration)
}

// Identifier maps a client address to its group, policy and workload name.
type Identifier interface {
	Identify(addr netip.Addr) (group, policy, name string)
}

// ServerConfig holds the listener settings.
type ServerConfig struct {
	// Listen addresses; each gets a UDP and a TCP listener.
	Listen []string
	// TCPIdleTimeout closes idle TCP connections (default 10s).
	TCPIdleTimeout time.Duration
	// TCPMaxQueries per TCP connection; 0 = unlimited (default 0).
	TCPMaxQueries int
	// TCPMaxConns bounds the open TCP connections of a listen address
	// (0 = unlimited); TCPMaxConnsPerClient those of one client address
	// (IPv4 /32, IPv6 /64; trusted forwarders are exempt). A connection
	// beyond either is closed at once: a client must not exhaust the
	// file descriptors the resolver needs for its upstreams.
	TCPMaxConns, TCPMaxConnsPerClient int
	// Allowed tells whether a client address may be answered at all
	// (server.allow_clients; nil: every client). With DropOutsiders
	// (refuse_action: drop) a client it refuses gets nothing from the
	// server, not even FORMERR, NOTIMP or BADVERS for a malformed query,
	// and its TCP connections are closed unread; without, a refused
	// client's TCP connection is closed after its first reply.
	Allowed       func(netip.Addr) bool
	DropOutsiders bool
	// TrustedForwarders may tell who the real client is (ECS, PROXY v2).
	TrustedForwarders []netip.Prefix
	// ECSClient takes the client address from a full-length EDNS Client
	// Subnet option (/32, /128) of queries from TrustedForwarders.
	ECSClient bool
	// ProxyProtocol reads a PROXY protocol v2 header in front of TCP
	// streams and UDP datagrams from TrustedForwarders.
	ProxyProtocol bool
}

// Server owns the listeners, runs each query through the handler chain and
// does the single write to the wire.
type Server struct {
	cfg      ServerConfig
	handler  Handler
	identify atomic.Pointer[Identifier]
	observer Observer
	metrics  *Metrics
	logger   *slog.Logger
	now      func() time.Time

	mu       sync.Mutex
	tcps     []*tcpServer
	udpConns []*net.UDPConn
	loops    []*udpLoop
	stopping atomic.Bool // set by Shutdown: UDP readers exit on their next read error
	addrs    []net.Addr
	inflight sync.RWMutex
	// udpPending counts the UDP packets read and not yet done with (their
	// reply sent, or dropped), plus one for each reader inside a read:
	// Shutdown waits for it to reach zero before it closes the sockets.
	// udpDrained is signalled when it does while stopping.
	udpPending atomic.Int64
	udpDrained chan struct{}
	ready      atomic.Bool
	reqPool    sync.Pool

	// tcpPipeline overrides the bound on a TCP connection's queries in
	// flight (tests); tcpFullHook runs when a connection's reader pauses
	// at that bound (tests).
	tcpPipeline int
	tcpFullHook func()
}

// NewServer builds a Server. observer may be nil; m nil counts into a
// registry of its own; now defaults to time.Now.
func NewServer(cfg ServerConfig, h Handler, observer Observer, m *Metrics, logger *slog.Logger, now func() time.Time) *Server {
	if cfg.TCPIdleTimeout <= 0 {
		cfg.TCPIdleTimeout = 10 * time.Second
	}
	if now == nil {
		now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(prometheus.NewRegistry()) // counted, never exported
	}
	s := &Server{cfg: cfg, handler: h, observer: observer, metrics: m, logger: logger, now: now, udpDrained: make(chan struct{}, 1)}
	s.reqPool.New = func() any { return new(query.Request) }
	return s
}

// SetIdentifier installs (or replaces, on reload) the client identifier.
func (s *Server) SetIdentifier(id Identifier) { s.identify.Store(&id) }

// Start binds every listener (UDP and TCP on each address) and serves them
// in the background. It fails, closing what it opened, if any bind fails.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lc net.ListenConfig
	for _, addr := range s.cfg.Listen {
		pc, l, err := listenPair(ctx, &lc, addr)
		if err != nil {
			s.closeLocked()
			return err
		}
		tcpAddr := l.Addr().String()
		s.addrs = append(s.addrs, pc.LocalAddr())
		if s.cfg.ProxyProtocol && len(s.cfg.TrustedForwarders) > 0 {
			l = &proxyListener{Listener: l, trusted: s.cfg.TrustedForwarders}
		}
		uc, ok := pc.(*net.UDPConn)
		if !ok {
			pc.Close()
			l.Close()
			s.closeLocked()
			return fmt.Errorf("listen udp %s: not a UDP socket", addr)
		}
		s.udpConns = append(s.udpConns, uc)
		tcp := newTCPServer(s, l, tcpAddr)
		s.tcps = append(s.tcps, tcp)
		tcp.start()
		loop := newUDPLoop(s, uc)
		s.loops = append(s.loops, loop)
		loop.start()
		s.logger.Info("listening", "addr", pc.LocalAddr().String(), "proto", "udp+tcp")
	}
	s.ready.Store(true)
	return nil
}

// listenPair opens UDP and TCP on addr. TCP takes the port UDP actually
// got, so ":0" gives one port for both; as that port may be taken for TCP
// (a client connection's ephemeral port), a ":0" address is retried on
// another port a few times.
func listenPair(ctx context.Context, lc *net.ListenConfig, addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen udp %s: %w", addr, err)
		}
		tcpAddr := pc.LocalAddr().String()
		l, err := lc.Listen(ctx, "tcp", tcpAddr)
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if port != "0" || attempt == 9 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("listen tcp %s: %w", tcpAddr, err)
		}
	}
}

// Addrs returns the bound listen addresses (UDP; TCP uses the same ports).
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Ready reports whether every listener is up.
func (s *Server) Ready() bool { return s.ready.Load() }

// Shutdown stops accepting queries and waits, until ctx is done, for the
// queries in flight to be answered: those in a handler, and the UDP
// packets already read but not yet served (the rest of a batch).
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	s.mu.Lock()
	tcps, udpConns, loops := s.tcps, s.udpConns, s.loops
	s.tcps, s.udpConns, s.loops = nil, nil, nil
	s.mu.Unlock()
	// UDP readers stop reading at once; the sockets stay open until the
	// queries in flight have written their replies.
	var errs []error
	s.stopping.Store(true)
	for _, l := range loops {
		close(l.stop)
	}
	for _, c := range udpConns {
		_ = c.SetReadDeadline(time.Unix(1, 0))
	}
	defer func() {
		for _, c := range udpConns {
			_ = c.Close()
		}
	}()
	// All listeners at once: shutting them down one by one would keep the
	// later ones accepting queries while an earlier one drains.
	errc := make(chan error, len(tcps))
	for _, t := range tcps {
		go func() { errc <- t.shutdown(ctx) }()
	}
	for range tcps {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, err)
		}
	}
	// The UDP packets already read (a batch is read at once, and served
	// one after the other) are answered, and the replies a send batch
	// holds are sent, before the sockets close. Only then the read lock
	// below: a writer waiting for it would keep the rest of a batch from
	// getting it.
	if err := s.waitUDPDrained(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	done := make(chan struct{})
	go func() {
		// Waits for every query holding the read lock. Unlocked again so
		// that a second Shutdown (or a late ServeDNS) does not block forever.
		s.inflight.Lock()
		//lint:ignore SA2001 the empty section is the point: it waits for the readers
		s.inflight.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("shutdown: queries still in flight: %w", ctx.Err()))
	}
	return errors.Join(errs...)
}

// udpDone records k UDP packets (or readers leaving a read) as done with.
func (s *Server) udpDone(k int64) {
	if s.udpPending.Add(-k) == 0 && s.stopping.Load() {
		select {
		case s.udpDrained <- struct{}{}:
		default:
		}
	}
}

// waitUDPDrained waits, once the readers were told to stop, until every UDP
// packet read has been answered or dropped and no reader is inside a read.
func (s *Server) waitUDPDrained(ctx context.Context) error {
	for s.udpPending.Load() != 0 {
		select {
		case <-s.udpDrained:
		case <-ctx.Done():
			return fmt.Errorf("shutdown: %d UDP queries (and readers) still in flight: %w", s.udpPending.Load(), ctx.Err())
		}
	}
	return nil
}

func (s *Server) closeLocked() {
	for _, t := range s.tcps {
		_ = t.shutdown(context.Background())
	}
	for _, c := range s.udpConns {
		_ = c.Close()
	}
	for _, l := range s.loops {
		close(l.stop)
	}
	s.tcps, s.udpConns, s.loops = nil, nil, nil
}

// accept decides, from the header alone, what servePacket does with a
// message (UDP and TCP alike). Responses are ignored (never answer an
// answer); absurd section counts get a header-only FORMERR, which is never
// larger than the query. Everything else reaches ServeDNS, which answers
// FORMERR/NOTIMP itself so those queries are logged with their client.
//
// The counts are absurd only for a QUERY: other opcodes are answered
// NOTIMP whatever their sections hold (a DNS UPDATE carries its
// prerequisites and updates in the answer and authority sections). Those
// the query limits would reject get a header-only NOTIMP without being
// unpacked.
func (s *Server) accept(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR
		s.metrics.malformed("response")
		return dns.MsgIgnore
	}
	if dh.Qdcount > 4 || dh.Ancount > 1 || dh.Nscount > 1 || dh.Arcount > 2 {
		s.metrics.malformed("counts")
		if int(dh.Bits>>11)&0xF != dns.OpcodeQuery {
			return dns.MsgRejectNotImplemented
		}
		return dns.MsgReject
	}
	return dns.MsgAccept
}

func (s *Server) invalid(_ []byte, err error) {
	s.metrics.malformed("unpack")
	s.logger.Debug("malformed message", "err", err)
}

// ServeDNS implements dns.Handler: it is the one place that writes replies.
func (s *Server) ServeDNS(w dns.ResponseWriter, m *dns.Msg) {
	s.inflight.RLock()
	defer s.inflight.RUnlock()

	req := s.reqPool.Get().(*query.Request)
	*req = query.Request{Msg: m, Start: s.now()}
	setClient(req, w)
	if s.cfg.ECSClient && req.Client.Addr.IsValid() && containsAddr(s.cfg.TrustedForwarders, req.Client.Addr) {
		ecsClient(req)
	}
	if idp := s.identify.Load(); idp != nil && req.Client.Addr.IsValid() {
		req.Client.Group, req.Client.Policy, req.Client.Name = (*idp).Identify(req.Client.Addr)
	}

	ctx := context.Background()
	if qw, ok := w.(interface{ queryContext() context.Context }); ok {
		ctx = qw.queryContext()
	}
	resp, err := s.answer(ctx, req)
	if errors.Is(err, ErrDrop) {
		s.observe(req, nil)
		return
	}
	if err != nil {
		resp = s.errorReply(req, err)
	}
	s.finish(req, resp)
	resp = s.write(w, req, resp)
	s.observe(req, resp)
}

// observe records a finished query (resp nil: no reply was sent) and
// returns the request to the pool.
func (s *Server) observe(req *query.Request, resp *dns.Msg) {
	lat := s.now().Sub(req.Start)
	if s.observer != nil {
		s.observer.Observe(req, resp, lat)
	}
	s.metrics.observe(req, resp, lat)
	s.release(req)
}

func (s *Server) release(req *query.Request) {
	*req = query.Request{}
	s.reqPool.Put(req)
}

// answer validates the message and runs the chain, turning a panic into an
// error.
func (s *Server) answer(ctx context.Context, req *query.Request) (resp *dns.Msg, err error) {
	m := req.Msg
	req.UDPSize = dns.MinMsgSize
	if len(m.Extra) > 1 && multipleOPT(m.Extra) {
		req.Info.Reason = "formerr" // RFC 6891 section 6.1.1: MUST
		return s.early(req, rcodeReply(m, dns.RcodeFormatError))
	}
	if opt := m.IsEdns0(); opt != nil {
		if opt.Version() != 0 {
			req.Info.Reason = "badvers"
			return s.early(req, badVers(m))
		}
		if sz := opt.UDPSize(); sz > dns.MinMsgSize {
			req.UDPSize = sz
		}
	}
	switch {
	case len(m.Question) == 1 && (m.Question[0].Qtype == 0 || m.Question[0].Qclass == 0):
		// miekg/dns accepts a question cut short after its name and leaves
		// type and class 0 (both reserved): echoing it back would make the
		// reply larger than the query.
		req.Info.Reason = "formerr"
		return s.early(req, rcodeReply(m, dns.RcodeFormatError))
	case m.Opcode != dns.OpcodeQuery:
		req.Info.Reason = "notimp"
		return s.early(req, rcodeReply(m, dns.RcodeNotImplemented))
	case len(m.Question) != 1:
		req.Info.Reason = "formerr"
		return s.early(req, rcodeReply(m, dns.RcodeFormatError))
	}
	defer func() {
		if r := recover(); r != nil {
			s.metrics.Panics.Inc()
			s.logger.Error("panic while answering", "qname", req.Msg.Question[0].Name, "panic", r, "stack", string(debug.Stack()))
			resp, err = nil, fmt.Errorf("%w: %v", ErrPanic, r)
		}
	}()
	resp, err = s.handler.ServeDNS(ctx, req)
	if resp == nil && err == nil {
		err = errNoReply
	}
	return resp, err
}

// early returns r, an answer given before the chain (FORMERR, NOTIMP,
// BADVERS), or ErrDrop when the client gets no reply at all (see
// ServerConfig.DropOutsiders): the access stage, which would drop it,
// does not run for these.
func (s *Server) early(req *query.Request, r *dns.Msg) (*dns.Msg, error) {
	if s.silent(req.Client.Addr) {
		req.Info.Reason = "not_allowed"
		return nil, ErrDrop
	}
	return r, nil
}

// multipleOPT reports whether extra holds more than one OPT record.
func multipleOPT(extra []dns.RR) bool {
	n := 0
	for _, rr := range extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			n++
		}
	}
	return n > 1
}

// finish makes resp a proper reply to req: header bits, question, and the
// EDNS0 record that matches what the client sent.
func (s *Server) finish(req *query.Request, resp *dns.Msg) {
	m := req.Msg
	resp.Id = m.Id
	resp.Response = true
	resp.Opcode = m.Opcode
	resp.RecursionDesired = m.RecursionDesired
	resp.RecursionAvailable = true
	resp.CheckingDisabled = m.CheckingDisabled
	if len(m.Question) == 1 && resp.Rcode != dns.RcodeFormatError {
		if len(resp.Question) != 1 {
			resp.Question = []dns.Question{m.Question[0]}
		} else {
			resp.Question[0] = m.Question[0] // the client's spelling (0x20-safe)
		}
	}
	fixOPT(m, resp)
	echoECS(req, resp)
	resp.Compress = true
}

// echoECS returns the client's EDNS Client Subnet option, with a scope of
// its full length, when dnsvalve took the client's identity from it: the
// answer (the client's group's policy) is for that address only, and a
// caching forwarder given no ECS option would take it for an answer valid
// for every client (RFC 7871 section 7.3) and serve one group's answer to
// the others.
func echoECS(req *query.Request, resp *dns.Msg) {
	if !req.Client.Via.IsValid() {
		return
	}
	opt, sn := resp.IsEdns0(), query.ECSOption(req.Msg)
	if opt == nil || sn == nil {
		return
	}
	if a, ok := netip.AddrFromSlice(sn.Address); ok && a.Unmap() == req.Client.Addr {
		opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: sn.Family,
			SourceNetmask: sn.SourceNetmask, SourceScope: sn.SourceNetmask, Address: sn.Address})
	}
}

// fixOPT gives resp an OPT record only when the client sent one: our
// advertised size, the client's DO bit, and the EDE options stages added.
// Upstream OPT options (cookies, NSID, padding) are not passed on. resp is
// the caller's to change, its OPT record included (every stage and the
// cache hand out replies they do not keep): that record is reused, so a
// cache hit's reply gets its OPT without another allocation.
func fixOPT(req, resp *dns.Msg) {
	var ede []dns.EDNS0
	var reuse *dns.OPT
	for i := len(resp.Extra) - 1; i >= 0; i-- {
		opt, ok := resp.Extra[i].(*dns.OPT)
		if !ok {
			continue
		}
		for _, o := range opt.Option {
			if o.Option() == dns.EDNS0EDE {
				ede = append(ede, o)
			}
		}
		resp.Extra = append(resp.Extra[:i], resp.Extra[i+1:]...)
		reuse = opt
	}
	ropt := req.IsEdns0()
	if ropt == nil {
		if resp.Rcode > 0xF {
			// An extended RCODE (BADCOOKIE, BADVERS from an upstream)
			// needs an OPT record to carry its upper bits, and a client
			// without EDNS0 must not get one (RFC 6891 section 7): such
			// a reply cannot even be packed. The client gets a plain
			// SERVFAIL instead.
			resp.Rcode = dns.RcodeServerFailure
			resp.Answer, resp.Ns, resp.Extra = nil, nil, nil
		}
		return
	}
	opt := reuse
	if opt == nil {
		opt = new(dns.OPT)
	}
	opt.Hdr = dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}
	opt.SetUDPSize(AdvertisedUDPSize)
	if ropt.Do() {
		opt.SetDo()
	}
	opt.Option = ede
	if resp.Rcode > 0xF {
		opt.SetExtendedRcode(uint16(resp.Rcode))
	}
	resp.Extra = append(resp.Extra, opt)
}

// write truncates for UDP clients and sends the reply. UDP replies never
// exceed AdvertisedUDPSize, whatever buffer size the client claims (as
// Unbound's and BIND's max-udp-size): no IP fragmentation, and a minimal
// query cannot be amplified beyond about 41 times.
//
// A reply that cannot be packed (a bug in a stage, or an upstream record
// miekg/dns reads but cannot write back) is replaced by a SERVFAIL without
// records, so the client is not left waiting for its timeout. write
// returns the reply it sent (or tried to send).
func (s *Server) write(w dns.ResponseWriter, req *query.Request, resp *dns.Msg) *dns.Msg {
	if req.Proto == query.UDP {
		resp.Truncate(min(int(req.UDPSize), AdvertisedUDPSize))
	}
	err := w.WriteMsg(resp)
	if err == nil {
		return resp
	}
	s.metrics.WriteErrors.Inc()
	// A network error may come after part of a TCP reply was written: a
	// second message would corrupt the stream. Any other error comes from
	// packing, before anything was written.
	var ne net.Error
	if errors.As(err, &ne) {
		s.logger.Debug("write reply", "client", req.Client.Addr, "err", err)
		return resp
	}
	s.logger.Warn("cannot pack reply, answering SERVFAIL", "client", req.Client.Addr, "rcode", resp.Rcode, "err", err)
	if req.Info.Reason == "" {
		req.Info.Reason = "servfail"
	}
	fb := rcodeReply(req.Msg, dns.RcodeServerFailure)
	fixOPT(req.Msg, fb)
	if err := w.WriteMsg(fb); err != nil {
		s.logger.Debug("write fallback reply", "client", req.Client.Addr, "err", fmt.Errorf("servfail after pack error: %w", err))
	}
	return fb
}

// errorReply turns a chain error into SERVFAIL with an Extended DNS Error.
func (s *Server) errorReply(req *query.Request, err error) *dns.Msg {
	code, text := EDEFor(err)
	if req.Info.Reason == "" {
		req.Info.Reason = "servfail"
		if errors.Is(err, ErrPanic) {
			req.Info.Reason = "panic"
		}
	}
	s.logger.Debug("query failed", "qname", req.Msg.Question[0].Name, "err", err)
	r := rcodeReply(req.Msg, dns.RcodeServerFailure)
	var cached *cache.CachedError
	if errors.As(err, &cached) {
		// The failure is remembered: the upstreams were not asked again.
		AddEDE(req.Msg, r, dns.ExtendedErrorCodeCachedError, "failed "+cached.Age.Round(time.Millisecond).String()+" ago")
	}
	AddEDE(req.Msg, r, code, text)
	return r
}

func setClient(req *query.Request, w dns.ResponseWriter) {
	if uw, ok := w.(*udpWriter); ok {
		req.Proto = query.UDP
		req.Lease = uw.lease
		req.Server = uw.dst
		req.Client.Addr, req.Client.Port = uw.client.Addr(), uw.client.Port()
		if uw.client != uw.remote {
			req.Client.Via = uw.remote.Addr()
		}
		return
	}
	switch a := w.RemoteAddr().(type) {
	case proxiedAddr:
		req.Proto = query.TCP
		req.Client.Addr, req.Client.Port = a.src.Addr(), a.src.Port()
		req.Client.Via = a.via.Addr()
	case *net.UDPAddr:
		req.Proto = query.UDP
		req.Client.Addr, req.Client.Port = addrPort(a.IP, a.Port)
	case *net.TCPAddr:
		req.Proto = query.TCP
		req.Client.Addr, req.Client.Port = addrPort(a.IP, a.Port)
	default:
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			req.Client.Addr, req.Client.Port = ap.Addr().Unmap(), ap.Port()
		}
		if a.Network() == "tcp" {
			req.Proto = query.TCP
		}
	}
	switch a := w.LocalAddr().(type) {
	case *net.TCPAddr:
		req.Server = netip.AddrPortFrom(addrPort(a.IP, a.Port))
	case *net.UDPAddr:
		req.Server = netip.AddrPortFrom(addrPort(a.IP, a.Port))
	}
}

func addrPort(ip net.IP, port int) (netip.Addr, uint16) {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap(), uint16(port)
}

// ecsClient replaces the client address with a full-length EDNS Client
// Subnet source address, remembering the forwarder as Via.
func ecsClient(req *query.Request) {
	sn := query.ECSOption(req.Msg)
	if sn == nil {
		return
	}
	a, ok := netip.AddrFromSlice(sn.Address)
	if !ok {
		return
	}
	a = a.Unmap()
	if (a.Is4() && sn.SourceNetmask == 32) || (a.Is6() && sn.SourceNetmask == 128) {
		req.Client.Via = req.Client.Addr
		req.Client.Addr = a
	}
}

// allowed reports whether client a may be answered at all (see
// ServerConfig.Allowed).
func (s *Server) allowed(a netip.Addr) bool {
	return s.cfg.Allowed == nil || s.cfg.Allowed(a)
}

// silent reports whether client a gets no reply at all: refused in drop
// mode (a trusted forwarder is answered: the client it relays for is
// judged by the access stage).
func (s *Server) silent(a netip.Addr) bool {
	return s.cfg.DropOutsiders && !s.allowed(a) && !containsAddr(s.cfg.TrustedForwarders, a)
}

// rcodeReply is a reply to m with rcode and no records.
func rcodeReply(m *dns.Msg, rcode int) *dns.Msg {
	r := new(dns.Msg)
	r.Id = m.Id
	r.Response = true
	r.Opcode = m.Opcode
	r.RecursionDesired = m.RecursionDesired
	r.RecursionAvailable = true
	r.Rcode = rcode
	if rcode != dns.RcodeFormatError && len(m.Question) == 1 {
		r.Question = []dns.Question{m.Question[0]}
	}
	return r
}

// formerrEcho is a FORMERR to m that echoes its question: the answer to a
// well-formed question dnsvalve does not serve (a meta type), where the
// FORMERR to a malformed message (rcodeReply) echoes nothing. It is never
// larger than m.
func formerrEcho(m *dns.Msg) *dns.Msg {
	r := rcodeReply(m, dns.RcodeSuccess)
	r.Rcode = dns.RcodeFormatError
	return r
}

func badVers(m *dns.Msg) *dns.Msg {
	r := rcodeReply(m, dns.RcodeBadVers)
	return r
}
