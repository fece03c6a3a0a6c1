package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// udpUpstream is a plain DNS over UDP upstream. Each query gets a fresh
// random ID and a connected socket of its own for the whole exchange, and
// truncated replies are retried over TCP to the same server. A query
// with no reply within the retransmission timeout is sent again on the
// same socket (rto.go).
//
// Sockets: opening and closing a socket per query costs about a quarter
// of a cache miss's CPU (socket, connect, getsockname, epoll registration
// and their undoing). So a socket whose exchange ended with a valid reply
// goes back to an idle pool and serves later queries, one at a time, until
// it is SocketLifetime old; then it is closed and a new one, on a new
// random port chosen by the kernel, takes its place. Port entropy per
// query is then that of the pool rather than a fresh port each time,
// which for a forwarder talking to fixed upstreams (an off-path attacker
// must still guess the 16-bit ID, the port of one of the pooled sockets,
// and the question) is the trade-off CoreDNS's forward plugin makes too.
// SocketLifetime 0 restores a fresh socket per query. A socket whose
// exchange failed in any way (timeout, error, cancellation) is closed, so
// a late reply can never be read as the answer to a later query.
//
// EDNS0: the caller's OPT record is forwarded as is. When the caller sent
// none, the upstream copy carries one advertising 1232 bytes so that large
// answers still come over UDP, and it is stripped from the reply again;
// fitting the reply to the client's own limit is the server's job. Under
// withoutEDNS (the EDNS0 fallback, edns.go) none is added.
type udpUpstream struct {
	addr    string // as configured
	server  string // ip:port
	timeout time.Duration
	x20     bool
	rnd     *randSource
	pools   *bufPools
	invalid prometheus.Counter // nil when no Metrics
	opened  prometheus.Counter // nil when no Metrics
	resent  prometheus.Counter // nil when no Metrics
	rtt     rttEstimator
	minRTO  time.Duration // floor of the RTO; 0: no retransmission
	raddr   *net.UDPAddr
	tcp     *streamUpstream // for truncated replies

	lifetime time.Duration // how long a socket is reused; 0: never
	// cancelPoll is defaultCancelPoll; tests change it. onHook, when set
	// (tests), is called when an exchange sets its cancellation hook.
	cancelPoll time.Duration
	onHook     func()
	now        func() time.Time
	mu         sync.Mutex
	idle       []*udpSock // FIFO: head at idle[0]
	closed     bool
}

// udpSock is one connected socket and what its last exchange left behind.
type udpSock struct {
	c    *net.UDPConn
	born time.Time
	// lastID is the ID of the last query answered on this socket: a
	// duplicate of that reply arriving late is dropped without counting
	// it as invalid.
	lastID   uint16
	answered bool // lastID is set
}

// maxIdleUDP bounds the idle pool of one upstream (file descriptors).
const maxIdleUDP = 1024

func newUDP(addr string, server netip.AddrPort, opts Options) *udpUpstream {
	u := &udpUpstream{
		addr:    addr,
		server:  server.String(),
		raddr:   net.UDPAddrFromAddrPort(server),
		timeout: opts.Timeout,
		x20:     opts.Randomize0x20,
		rnd:     newRandSource(),
		pools:   newBufPools(),
		now:     time.Now,
	}
	u.cancelPoll = defaultCancelPoll
	switch {
	case opts.RetransmitMin == 0:
		u.minRTO = defaultMinRTO
	case opts.RetransmitMin > 0:
		u.minRTO = opts.RetransmitMin
	}
	u.lifetime = opts.SocketLifetime
	if u.lifetime < 0 {
		u.lifetime = 0
	}
	if opts.Metrics != nil {
		u.invalid = opts.Metrics.InvalidResponses.WithLabelValues(addr)
		u.opened = opts.Metrics.SocketsOpened.WithLabelValues(addr)
		u.resent = opts.Metrics.Retransmits.WithLabelValues(addr)
	}
	// The TCP fallback shares the label, counters and random source.
	u.tcp = newStream(addr, u.server, nil, opts)
	u.tcp.rnd, u.tcp.pools = u.rnd, u.pools
	return u
}

func (u *udpUpstream) String() string { return u.addr }

func (u *udpUpstream) tryTimeout() time.Duration { return u.timeout }

// Close closes the idle UDP sockets and the pooled TCP connections of the
// fallback path. Sockets in use are closed when their exchange ends.
func (u *udpUpstream) Close() error {
	u.mu.Lock()
	idle := u.idle
	u.idle, u.closed = nil, true
	u.mu.Unlock()
	for _, s := range idle {
		_ = s.c.Close()
	}
	return u.tcp.Close()
}

// get returns a socket for one exchange: the oldest idle one that is still
// young enough, or a new one.
func (u *udpUpstream) get() (*udpSock, error) {
	if u.lifetime > 0 {
		now := u.now()
		var stale []*udpSock
		var s *udpSock
		u.mu.Lock()
		for len(u.idle) > 0 {
			c := u.idle[0]
			u.idle[0] = nil
			u.idle = u.idle[1:]
			if now.Sub(c.born) < u.lifetime {
				s = c
				break
			}
			stale = append(stale, c)
		}
		u.mu.Unlock()
		for _, c := range stale {
			_ = c.c.Close()
		}
		if s != nil {
			return s, nil
		}
	}
	// Connecting a UDP socket does not block, so no ctx is needed; the
	// pre-parsed address skips the resolver path of net.Dialer.
	c, err := net.DialUDP("udp", nil, u.raddr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	if u.opened != nil {
		u.opened.Inc()
	}
	return &udpSock{c: c, born: u.now()}, nil
}

// put ends an exchange on s: ok says it ended with a valid reply, and only
// then may s be reused.
func (u *udpUpstream) put(s *udpSock, ok bool) {
	if ok && u.lifetime > 0 && u.now().Sub(s.born) < u.lifetime {
		u.mu.Lock()
		if !u.closed && len(u.idle) < maxIdleUDP {
			if len(u.idle) == cap(u.idle) && cap(u.idle) > 0 {
				// Slide the live part to the front rather than growing
				// the backing array forever as the head advances.
				n := copy(u.idle[:cap(u.idle)], u.idle)
				u.idle = u.idle[:n]
			}
			u.idle = append(u.idle, s)
			u.mu.Unlock()
			return
		}
		u.mu.Unlock()
	}
	_ = s.c.Close()
}

// Exchange implements Upstream.
func (u *udpUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := withTimeout(ctx, u.timeout)
	defer cancel()
	p, err := prepare(m, u.pools, uint16(u.rnd.Uint64()), u.rnd, u.x20, !noEDNS(ctx))
	if err != nil {
		return nil, fmt.Errorf("udp %s: %w", u.addr, err)
	}
	defer p.release()
	r, err := u.exchange(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("udp %s: %w", u.addr, err)
	}
	if r.Truncated {
		if r, err = u.tcp.exchangeWire(ctx, p); err != nil {
			return nil, fmt.Errorf("udp %s: truncated, tcp retry: %w", u.addr, err)
		}
	}
	p.restore(ctx, r, m)
	return r, nil
}

// exchange sends p on a connected UDP socket of its own and reads until a
// valid reply arrives or ctx ends, sending p again each time the
// retransmission timeout passes without one. Packets that do not match the
// query are counted and ignored, so a spoofed reply cannot displace the
// real one.
func (u *udpUpstream) exchange(ctx context.Context, p *prepared) (*dns.Msg, error) {
	s, err := u.get()
	if err != nil {
		return nil, err
	}
	reuse := false // set once a valid reply was read
	var stopHook func() bool
	setHook := func() {
		if ctx.Done() != nil {
			stopHook = context.AfterFunc(ctx, func() { _ = s.c.SetDeadline(time.Unix(1, 0)) })
		}
		if u.onHook != nil {
			u.onHook()
		}
	}
	defer func() {
		if stopHook != nil && !stopHook() {
			// The cancellation hook ran (or is running): the socket's
			// deadlines are in the past, so it must not be reused.
			reuse = false
		}
		u.put(s, reuse)
	}()
	conn := s.c

	bp := u.pools.read.Get().(*[]byte)
	defer u.pools.read.Put(bp)
	buf := *bp
	invalid := 0
	if s.answered {
		// A reused socket: whatever reached it while it sat idle is
		// stale at best and a forgery queued in advance at worst, which
		// would be read before the real reply. Drop it before asking,
		// once the previous exchange's deadline, which may have passed,
		// is cleared (armRead sets this one's after the write; the drain
		// does not wait).
		_ = conn.SetReadDeadline(time.Time{})
		_, foreign, err := drainQueued(conn, buf, s.lastID)
		if err != nil {
			return nil, fmt.Errorf("drain reused socket: %w", err)
		}
		invalid += foreign
		if u.invalid != nil && foreign > 0 {
			u.invalid.Add(float64(foreign))
		}
	}
	if _, err := conn.Write(p.wire()); err != nil {
		return nil, fmt.Errorf("write: %w", ctxErr(ctx, err))
	}
	sent := time.Now()
	// Until the hook is set, every read wakes within cancelPoll to look at
	// ctx. A ctx that is likely to be cancelled early (a parallel race)
	// gets the hook at once.
	st := udpWait{poll: !cancelsEarly(ctx)}
	if u.minRTO > 0 {
		st.rto = u.rtt.rto(u.minRTO)
	}
	if !st.poll {
		setHook()
	}
	if st.resendAt, err = u.armRead(ctx, conn, sent, st.rto, st.poll); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	for {
		n, err := conn.Read(buf)
		if err != nil {
			if now := time.Now(); errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil && !pastDeadline(ctx, now) {
				if err := u.onDeadline(ctx, conn, p, now, &st, setHook); err != nil {
					return nil, err
				}
				continue
			}
			err = ctxErr(ctx, err)
			if invalid > 0 {
				return nil, fmt.Errorf("read: %d invalid replies and no valid one: %w: %w", invalid, ErrInvalidResponse, err)
			}
			return nil, fmt.Errorf("read: %w", err)
		}
		if s.answered && n >= 2 && uint16(buf[0])<<8|uint16(buf[1]) == s.lastID && s.lastID != p.id {
			continue // a late duplicate of the previous exchange's reply
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err == nil {
			if err = p.validate(r); err == nil {
				if !st.resent {
					u.rtt.sample(time.Since(sent))
				}
				s.lastID, s.answered = p.id, true
				// A socket that met unexpected datagrams may be a target:
				// not reused. Nor is one that sent copies: a reply to a
				// copy may still come.
				reuse = invalid == 0 && !st.resent
				return r, nil
			}
		}
		invalid++
		if u.invalid != nil {
			u.invalid.Inc()
		}
	}
}

// udpWait is what an exchange's reads need to know when one ends at its
// deadline with ctx alive (udpUpstream.onDeadline).
type udpWait struct {
	rto      time.Duration // of the next retransmission; 0: none
	resendAt time.Time     // when it is due; zero: none in this try
	poll     bool          // reads wake within cancelPoll: the hook is not set
	resent   bool          // a copy was sent: no RTT sample, no reuse
	graced   bool          // the grace read before the due copy was done
}

// onDeadline runs when a read of an exchange ended at its deadline with
// ctx alive and before ctx's deadline: before the retransmission is due it
// was a wake-up to look at ctx (the first one sets the cancellation hook,
// setHook); once due, a brief grace read, then a copy of the query, and
// the next deadline. An error ends the exchange.
func (u *udpUpstream) onDeadline(ctx context.Context, conn *net.UDPConn, p *prepared, now time.Time, st *udpWait, setHook func()) error {
	if st.resendAt.IsZero() || now.Before(st.resendAt) {
		if st.poll {
			// The first cancelPoll passed without a reply: from now on a
			// hook interrupts the read when ctx is cancelled.
			st.poll = false
			setHook()
		}
		if err := setDeadline(ctx, conn, u.readDeadline(ctx, now, st.resendAt, st.poll)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		return nil
	}
	if !st.graced {
		// A process that was not running when the RTO passed (a
		// collection, a busy core) finds the timeout before the reply that
		// may be queued: read once more, briefly, before sending a copy.
		st.graced = true
		if err := setDeadline(ctx, conn, now.Add(graceRead)); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		return nil
	}
	// No reply within the RTO: send the query again, and wait twice as
	// long for the next round.
	if _, err := conn.Write(p.wire()); err != nil {
		return fmt.Errorf("retransmit: %w", ctxErr(ctx, err))
	}
	st.resent, st.graced = true, false
	if u.resent != nil {
		u.resent.Inc()
	}
	st.rto *= 2
	u.rtt.backedOff(st.rto)
	var err error
	if st.resendAt, err = u.armRead(ctx, conn, now, st.rto, st.poll); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	return nil
}

// graceRead is how long a read whose retransmission time has passed waits
// for a reply that may already be queued before the copy is sent.
const graceRead = time.Millisecond

// defaultCancelPoll is how long an exchange waits for its reply before it
// sets a hook (context.AfterFunc) that interrupts the read when ctx is
// cancelled before its deadline (a prefetch when the cache closes); until
// then such a cancellation is noticed when the read wakes, which it does
// within cancelPoll every time. The hook, with the done channel and the
// parent's child map it needs, was a sixth of what a cache miss allocated,
// and nearly every answer comes well within cancelPoll. A ctx marked by
// withEarlyCancel (the racers of the parallel strategy, whose losers must
// give their upstream slot back at once) gets the hook from the start.
// Timeouts stay exact: a read's deadline is ctx's when that comes first.
const defaultCancelPoll = 50 * time.Millisecond

// armRead computes the time of the next retransmission, rto after now
// (zero when there is none: rto 0 turns retransmission off, and a
// retransmission is only worth sending with at least half its RTO left in
// the try for the reply to come back), and sets conn's read deadline for
// it (readDeadline). It fails when ctx has ended.
func (u *udpUpstream) armRead(ctx context.Context, conn *net.UDPConn, now time.Time, rto time.Duration, poll bool) (time.Time, error) {
	var at time.Time
	if rto > 0 {
		at = now.Add(rto)
		if dl, ok := ctx.Deadline(); ok && dl.Sub(at) < rto/2 {
			at = time.Time{}
		}
	}
	return at, setDeadline(ctx, conn, u.readDeadline(ctx, now, at, poll))
}

// readDeadline is when a read from now must return: at the retransmission
// time resendAt (zero: none) or ctx's deadline, whichever comes first, and
// with poll set within cancelPoll. It is zero (no deadline) only for a ctx
// without a deadline once the hook is set, which Exchange never passes (it
// adds the try timeout).
func (u *udpUpstream) readDeadline(ctx context.Context, now, resendAt time.Time, poll bool) time.Time {
	var d time.Time
	if poll {
		d = now.Add(u.cancelPoll)
	}
	if !resendAt.IsZero() && (d.IsZero() || resendAt.Before(d)) {
		d = resendAt
	}
	if dl, ok := ctx.Deadline(); ok && (d.IsZero() || dl.Before(d)) {
		d = dl
	}
	return d
}

// pastDeadline reports whether ctx's deadline, if any, is not after now.
func pastDeadline(ctx context.Context, now time.Time) bool {
	dl, ok := ctx.Deadline()
	return ok && !now.Before(dl)
}

// setDeadline sets conn's read deadline, then fails if ctx has ended: a
// cancellation hook may have set a past deadline that this one replaced.
func setDeadline(ctx context.Context, conn *net.UDPConn, deadline time.Time) error {
	_ = conn.SetReadDeadline(deadline)
	return ctx.Err()
}

// ctxErr adds ctx's error to an I/O error caused by the deadline or the
// cancellation hook, so callers can test for context.DeadlineExceeded.
func ctxErr(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if cerr == nil && errors.Is(err, os.ErrDeadlineExceeded) {
		// The socket deadline is ctx's deadline; it may fire just before
		// ctx's own timer does.
		cerr = context.DeadlineExceeded
	}
	if cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}
