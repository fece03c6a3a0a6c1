package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// idleTimeout is how long an idle pooled connection is kept. Servers close
// idle connections themselves (Unbound: 30s); a connection the server has
// closed is detected on use and the query retried once on a fresh one.
const idleTimeout = 20 * time.Second

// streamUpstream is DNS over TCP (tls == nil) or DNS over TLS. It keeps a
// small pool of idle connections; a connection carries one query at a time.
type streamUpstream struct {
	addr    string // as configured
	server  string // ip:port
	tls     *tls.Config
	timeout time.Duration
	rnd     *randSource
	pools   *bufPools
	invalid prometheus.Counter // nil when no Metrics
	dialer  net.Dialer

	mu      sync.Mutex
	idle    []idleConn // LIFO
	maxIdle int
	closed  bool
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

func newStream(addr, server string, tlsConf *tls.Config, opts Options) *streamUpstream {
	s := &streamUpstream{
		addr:    addr,
		server:  server,
		tls:     tlsConf,
		timeout: opts.Timeout,
		rnd:     newRandSource(),
		pools:   newBufPools(),
		maxIdle: opts.MaxIdleConns,
	}
	if opts.Metrics != nil {
		s.invalid = opts.Metrics.InvalidResponses.WithLabelValues(addr)
	}
	return s
}

func (s *streamUpstream) String() string { return s.addr }

func (s *streamUpstream) tryTimeout() time.Duration { return s.timeout }

func (s *streamUpstream) proto() string {
	if s.tls != nil {
		return "tls"
	}
	return "tcp"
}

// Exchange implements Upstream.
func (s *streamUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := withTimeout(ctx, s.timeout)
	defer cancel()
	p, err := prepare(m, s.pools, uint16(s.rnd.Uint64()), s.rnd, false, false)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.proto(), s.addr, err)
	}
	defer p.release()
	r, err := s.exchangeWire(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", s.proto(), s.addr, err)
	}
	p.restore(ctx, r, m)
	return r, nil
}

// exchangeWire sends p over a pooled or new connection. A pooled
// connection that turns out to be broken (closed by the server while idle)
// is discarded and the query retried once on a newly dialled connection:
// the other pooled ones are likely closed too (a server's idle timeout
// closes them all).
func (s *streamUpstream) exchangeWire(ctx context.Context, p *prepared) (*dns.Msg, error) {
	for attempt := 0; ; attempt++ {
		c, pooled, err := s.get(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		r, err := s.roundTrip(ctx, c, p)
		if err == nil {
			s.put(c)
			return r, nil
		}
		_ = c.Close()
		if pooled && attempt == 0 && ctx.Err() == nil && !errors.Is(err, ErrInvalidResponse) && !isTimeout(err) {
			s.closeIdle()
			continue
		}
		return nil, err
	}
}

func (s *streamUpstream) roundTrip(ctx context.Context, c net.Conn, p *prepared) (*dns.Msg, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(p.framed); err != nil {
		return nil, fmt.Errorf("write: %w", ctxErr(ctx, err))
	}
	bp := s.pools.read.Get().(*[]byte)
	defer s.pools.read.Put(bp)
	buf := *bp
	if _, err := io.ReadFull(c, buf[:2]); err != nil {
		return nil, fmt.Errorf("read: %w", ctxErr(ctx, err))
	}
	n := int(buf[0])<<8 | int(buf[1])
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return nil, fmt.Errorf("read: %w", ctxErr(ctx, err))
	}
	r := new(dns.Msg)
	err := r.Unpack(buf[:n])
	if err != nil {
		err = fmt.Errorf("unpack: %w: %w", ErrInvalidResponse, err)
	} else {
		err = p.validate(r)
	}
	if err != nil {
		if s.invalid != nil {
			s.invalid.Inc()
		}
		return nil, err
	}
	return r, nil
}

// closeIdle closes the pooled connections: one found closed by the server
// says the others, idle as long or longer, likely are too.
func (s *streamUpstream) closeIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, ic := range idle {
		_ = ic.c.Close()
	}
}

// get returns an idle pooled connection (pooled == true) or, when there is
// none or fresh is set, dials a new one.
func (s *streamUpstream) get(ctx context.Context, fresh bool) (c net.Conn, pooled bool, err error) {
	now := time.Now()
	s.mu.Lock()
	for !fresh && len(s.idle) > 0 {
		ic := s.idle[len(s.idle)-1]
		s.idle = s.idle[:len(s.idle)-1]
		if now.Sub(ic.since) < idleTimeout {
			s.mu.Unlock()
			return ic.c, true, nil
		}
		_ = ic.c.Close()
	}
	s.mu.Unlock()
	if s.tls != nil {
		d := tls.Dialer{NetDialer: &s.dialer, Config: s.tls}
		c, err = d.DialContext(ctx, "tcp", s.server)
	} else {
		c, err = s.dialer.DialContext(ctx, "tcp", s.server)
	}
	if err != nil {
		return nil, false, fmt.Errorf("dial: %w", err)
	}
	return c, false, nil
}

func (s *streamUpstream) put(c net.Conn) {
	s.mu.Lock()
	if s.closed || len(s.idle) >= s.maxIdle {
		s.mu.Unlock()
		_ = c.Close()
		return
	}
	s.idle = append(s.idle, idleConn{c: c, since: time.Now()})
	s.mu.Unlock()
}

// Close closes the idle connections; connections in use are closed when
// their query finishes.
func (s *streamUpstream) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	var errs []error
	for _, ic := range idle {
		if err := ic.c.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
