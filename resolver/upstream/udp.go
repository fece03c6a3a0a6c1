package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// udpUpstream is a plain DNS over UDP upstream. Each query gets a fresh
// random ID and a fresh connected socket (so a fresh random source port),
// and truncated replies are retried over TCP to the same server.
//
// EDNS0: the caller's OPT record is forwarded as is. When the caller sent
// none, the upstream copy carries one advertising 1232 bytes so that large
// answers still come over UDP, and it is stripped from the reply again;
// fitting the reply to the client's own limit is the server's job.
type udpUpstream struct {
	addr    string // as configured
	server  string // ip:port
	timeout time.Duration
	x20     bool
	rnd     *randSource
	pools   *bufPools
	invalid prometheus.Counter // nil when no Metrics
	raddr   *net.UDPAddr
	tcp     *streamUpstream // for truncated replies
}

func newUDP(addr string, server netip.AddrPort, opts Options) *udpUpstream {
	u := &udpUpstream{
		addr:    addr,
		server:  server.String(),
		raddr:   net.UDPAddrFromAddrPort(server),
		timeout: opts.Timeout,
		x20:     opts.Randomize0x20,
		rnd:     newRandSource(),
		pools:   newBufPools(),
	}
	if opts.Metrics != nil {
		u.invalid = opts.Metrics.InvalidResponses.WithLabelValues(addr)
	}
	// The TCP fallback shares the label, counters and random source.
	u.tcp = newStream(addr, u.server, nil, opts)
	u.tcp.rnd, u.tcp.pools = u.rnd, u.pools
	return u
}

func (u *udpUpstream) String() string { return u.addr }

// Close closes the pooled TCP connections of the fallback path.
func (u *udpUpstream) Close() error { return u.tcp.Close() }

// Exchange implements Upstream.
func (u *udpUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	defer cancel()
	p, err := prepare(m, u.pools, uint16(u.rnd.Uint64()), u.rnd, u.x20, true)
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
	p.restore(r, m)
	return r, nil
}

// exchange sends p on a new connected UDP socket and reads until a valid
// reply arrives or ctx ends. Packets that do not match the query are
// counted and ignored, so a spoofed reply cannot displace the real one.
func (u *udpUpstream) exchange(ctx context.Context, p *prepared) (*dns.Msg, error) {
	// Connecting a UDP socket does not block, so no ctx is needed; the
	// pre-parsed address skips the resolver path of net.Dialer.
	conn, err := net.DialUDP("udp", nil, u.raddr)
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	if _, err := conn.Write(p.wire()); err != nil {
		return nil, fmt.Errorf("write: %w", ctxErr(ctx, err))
	}
	bp := u.pools.read.Get().(*[]byte)
	defer u.pools.read.Put(bp)
	buf := *bp
	invalid := 0
	for {
		n, err := conn.Read(buf)
		if err != nil {
			err = ctxErr(ctx, err)
			if invalid > 0 {
				return nil, fmt.Errorf("read: %d invalid replies and no valid one: %w: %w", invalid, ErrInvalidResponse, err)
			}
			return nil, fmt.Errorf("read: %w", err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err == nil {
			if err = p.validate(r); err == nil {
				return r, nil
			}
		}
		invalid++
		if u.invalid != nil {
			u.invalid.Inc()
		}
	}
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
