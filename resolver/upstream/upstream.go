// Package upstream sends DNS queries from dnsvalve to the resolvers it
// forwards to. New builds one Upstream from a configured address (plain UDP,
// TCP, DNS over TLS, DNS over HTTPS); Group spreads queries over several of
// them with a strategy (failover, random, parallel), tracks their health
// (MaxFails consecutive failures mark one down, a single in-flight background
// probe brings it back) and caps the number of concurrent upstream queries.
//
// Every transport validates replies: the ID and the question (name, type,
// class) must match what was sent, otherwise the reply is discarded and
// counted as invalid. Over UDP the client keeps reading until its deadline
// so a spoofed packet cannot win the race against the real answer. A UDP query
// without a reply is sent again after a retransmission timeout learnt from
// the upstream's round trip times (rto.go).
//
// Nothing in this package mutates a *dns.Msg it did not create: queries are
// packed from a shallow copy, replies are freshly unpacked messages owned by
// the caller.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// transientError is an error of a query that never reached an upstream (a
// local limit); its Transient method says so.
type transientError string

func (e transientError) Error() string   { return string(e) }
func (e transientError) Transient() bool { return true }

// Sentinel errors. Errors returned by this package wrap them; test with
// errors.Is.
var (
	// ErrAllFailed means no upstream produced a usable answer within the
	// budget (or all of them are marked down).
	ErrAllFailed = errors.New("all upstreams failed")
	// ErrOverloaded means GroupConfig.MaxConcurrent upstream queries were
	// already in flight; the query was not sent. It is Transient: it says
	// nothing about the name (the cache does not remember it).
	ErrOverloaded error = transientError("too many concurrent upstream queries")
	// ErrInvalidResponse means a reply did not match the query (ID,
	// question, QR bit) or could not be parsed.
	ErrInvalidResponse = errors.New("invalid upstream response")
	// ErrNoNameservers means a resolv.conf held no usable nameserver.
	ErrNoNameservers = errors.New("no usable nameservers")
)

// Upstream sends one query to one server.
//
// Exchange must be safe for concurrent use and must not modify m. The
// returned message is owned by the caller; its ID and question name are the
// caller's. Exchange honours ctx (deadline and cancellation) in addition to
// its own per-query timeout.
type Upstream interface {
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error)
	// String returns the address as configured; it is the metric label
	// and the name used in logs.
	String() string
}

// Options tune one Upstream. The zero value is usable.
type Options struct {
	// Timeout is the per-query timeout of this upstream; 0 means 2s.
	Timeout time.Duration
	// TLSConfig is used for tls:// and https:// (typically only RootCAs
	// is set). It is cloned; ServerName comes from the "#name" fragment
	// or, failing that, the host of the address.
	TLSConfig *tls.Config
	// Randomize0x20 enables DNS 0x20 case randomisation on udp://: the
	// query name's letters get random case, the reply must echo it
	// exactly, and the caller's case is restored in the reply.
	Randomize0x20 bool
	// SocketLifetime is how long a udp:// socket is reused for later
	// queries (one at a time) after an exchange that ended with a valid
	// reply; 0 opens a fresh socket, on a fresh random port, per query.
	SocketLifetime time.Duration
	// RetransmitMin is the floor of a udp:// upstream's retransmission
	// timeout (rto.go); 0 means the default, 100 ms, and a negative value
	// turns retransmission off: a query is sent once per try.
	RetransmitMin time.Duration
	// MaxIdleConns is the number of idle connections kept per tcp:// or
	// tls:// upstream; 0 means 4.
	MaxIdleConns int
	// Metrics, when set, counts replies the transport discarded
	// (dnsvalve_upstream_invalid_responses_total). Pass the same Metrics
	// to NewGroup.
	Metrics *Metrics
}

const (
	defaultTimeout      = 2 * time.Second
	defaultMaxIdleConns = 4
	// defaultUDPSize is the EDNS0 buffer size advertised upstream when the
	// caller sent no OPT record (DNS flag day 2020).
	defaultUDPSize = 1232
)

// New returns the Upstream for addr. Accepted forms:
//
//	udp://1.2.3.4:53   tcp://1.2.3.4:53   tls://1.2.3.4:853#dns.example
//	https://dns.example/dns-query   1.2.3.4   1.2.3.4:53   [::1]:53   ::1
//
// A bare address means udp. The port defaults to 53 (853 for tls, 443 for
// https). udp, tcp and tls need an IP literal (resolving the upstream's
// name would need an upstream); https may use a host name, resolved by the
// Go resolver. Invalid addresses return an error naming addr.
func New(addr string, opts Options) (Upstream, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxIdleConns <= 0 {
		opts.MaxIdleConns = defaultMaxIdleConns
	}
	scheme, rest := "udp", addr
	if i := strings.Index(addr, "://"); i >= 0 {
		scheme, rest = strings.ToLower(addr[:i]), addr[i+3:]
	}
	switch scheme {
	case "https":
		u, err := newDoH(addr, opts)
		if err != nil {
			return nil, fmt.Errorf("upstream %q: %w", addr, err)
		}
		return u, nil
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("upstream %q: unsupported scheme %q (want udp, tcp, tls or https)", addr, scheme)
	}
	host, serverName := rest, ""
	if scheme == "tls" {
		if i := strings.IndexByte(rest, '#'); i >= 0 {
			host, serverName = rest[:i], rest[i+1:]
			if serverName == "" {
				return nil, fmt.Errorf("upstream %q: empty server name after '#'", addr)
			}
		}
	}
	if strings.ContainsAny(host, "#/?@") {
		return nil, fmt.Errorf("upstream %q: unexpected characters in %q", addr, host)
	}
	port := uint16(53)
	if scheme == "tls" {
		port = 853
	}
	ap, err := parseHostPort(host, port)
	if err != nil {
		return nil, fmt.Errorf("upstream %q: %w", addr, err)
	}
	server := ap.String()
	switch scheme {
	case "tcp":
		return newStream(addr, server, nil, opts), nil
	case "tls":
		if serverName == "" {
			serverName = ap.Addr().String()
		}
		return newStream(addr, server, tlsClientConfig(opts.TLSConfig, serverName), opts), nil
	}
	return newUDP(addr, ap, opts), nil
}

// parseHostPort parses "IP", "IP:port" or "[IPv6]:port".
func parseHostPort(s string, defPort uint16) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, errors.New("missing address")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a.Unmap(), defPort), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want an IP address with optional port: %w", err)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, errors.New("port 0")
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// tlsClientConfig clones base (may be nil) and sets the server name and
// sane defaults.
func tlsClientConfig(base *tls.Config, serverName string) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	c.ServerName = serverName
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.ClientSessionCache == nil {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(8)
	}
	return c
}

// Compile-time interface checks.
var (
	_ Upstream = (*udpUpstream)(nil)
	_ Upstream = (*streamUpstream)(nil)
	_ Upstream = (*dohUpstream)(nil)
)

type earlyCancelKey struct{}

// withEarlyCancel marks ctx as one that is likely to be cancelled before
// its deadline (the parallel strategy cancels its losers), so an exchange
// under it prepares for that from the start (udp.go, defaultCancelPoll).
func withEarlyCancel(ctx context.Context) context.Context {
	return context.WithValue(ctx, earlyCancelKey{}, true)
}

// cancelsEarly reports whether ctx was marked by withEarlyCancel.
func cancelsEarly(ctx context.Context) bool {
	v, _ := ctx.Value(earlyCancelKey{}).(bool)
	return v
}

// withTimeout is context.WithTimeout(ctx, d), except that when ctx already
// ends no later than d from now it returns ctx itself: on a cache miss the
// cache, the group and the transport each bound the exchange, and the
// timer and child context of each level cost a few percent of the miss.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
