package querylog

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	dnstap "github.com/dnstap/golang-dnstap"
	framestream "github.com/farsightsec/golang-framestream"
	"google.golang.org/protobuf/proto"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// ErrDisconnected is returned by DnstapSink.Write while the collector is
// unreachable and the next reconnection attempt is not due yet; the
// record is counted as an error.
var ErrDisconnected = errors.New("dnstap collector not connected")

// DnstapOptions tune a DnstapSink. Zero values take the defaults.
type DnstapOptions struct {
	// Timeout bounds dialing, the Frame Streams handshake and each write
	// (default 2s).
	Timeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts, doubled after each failure (defaults 250ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// Identity is the dnstap identity of the records that carry no
	// Record.Instance (default: the host name).
	Identity string
	// Now is the clock for the backoff (default time.Now).
	Now func() time.Time
	// Logger gets connection events (default slog.Default()).
	Logger *slog.Logger
}

// DnstapSink sends CLIENT_QUERY and CLIENT_RESPONSE dnstap messages, with
// the wire-format DNS messages, over Frame Streams (bidirectional) to a
// collector on a unix socket or TCP. It connects on first use and
// reconnects by itself with exponential backoff when the collector goes
// away; records that arrive while it is disconnected fail with
// ErrDisconnected (the Logger counts them in errors_total, and its buffer
// absorbs a slow collector like any sink's). Records buffered in the
// kernel when a collector dies cannot be detected as lost: dnstap has no
// acknowledgements. Not safe for concurrent use: the Logger's writer
// goroutine is its only caller.
type DnstapSink struct {
	name, network, addr string
	o                   DnstapOptions
	logger              *slog.Logger

	conn     net.Conn
	w        *framestream.Writer
	backoff  time.Duration
	nextDial time.Time
	buf      []byte
	connects int
}

var _ Sink = (*DnstapSink)(nil)

// NewDnstapSink returns a sink for network "unix" (address: socket path)
// or "tcp" (address: host:port). It does not connect yet.
func NewDnstapSink(network, address string, o DnstapOptions) (*DnstapSink, error) {
	switch network {
	case "unix":
		if address == "" {
			return nil, errors.New("dnstap: empty socket path")
		}
	case "tcp":
		if _, _, err := net.SplitHostPort(address); err != nil {
			return nil, fmt.Errorf("dnstap: address %q: %w", address, err)
		}
	default:
		return nil, fmt.Errorf("dnstap: network %q: want unix or tcp", network)
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Identity == "" {
		o.Identity, _ = os.Hostname()
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &DnstapSink{
		name:    "dnstap:" + network + ":" + address,
		network: network,
		addr:    address,
		o:       o,
		logger:  logger.With("component", "querylog", "sink", "dnstap:"+network+":"+address),
	}, nil
}

// Name returns "dnstap:NETWORK:ADDRESS".
func (s *DnstapSink) Name() string { return s.name }

// Connects returns how many times the sink has (re)connected.
func (s *DnstapSink) Connects() int { return s.connects }

// Write sends r as a CLIENT_QUERY message (when r.Req is set) and a
// CLIENT_RESPONSE message (when r.Resp is set).
func (s *DnstapSink) Write(r *Record) error {
	if err := s.connect(); err != nil {
		return err
	}
	if r.Req != nil {
		if err := s.send(r, dnstap.Message_CLIENT_QUERY); err != nil {
			return err
		}
	}
	if r.Resp != nil {
		if err := s.send(r, dnstap.Message_CLIENT_RESPONSE); err != nil {
			return err
		}
	}
	return nil
}

func (s *DnstapSink) send(r *Record, typ dnstap.Message_Type) error {
	dt := s.message(r, typ)
	var err error
	s.buf, err = proto.MarshalOptions{}.MarshalAppend(s.buf[:0], dt)
	if err != nil {
		return fmt.Errorf("dnstap: marshal: %w", err)
	}
	if _, err := s.w.WriteFrame(s.buf); err != nil {
		s.disconnect(err)
		return fmt.Errorf("dnstap: write %s: %w", s.addr, err)
	}
	return nil
}

// message builds the dnstap message for r. The DNS messages are packed
// from a Copy: Pack writes the extended rcode into the OPT record, and
// the message is shared with other sinks.
// A message that does not pack is sent without its wire form.
func (s *DnstapSink) message(r *Record, typ dnstap.Message_Type) *dnstap.Dnstap {
	m := &dnstap.Message{Type: &typ}
	fam, sp := dnstap.SocketFamily_INET, socketProtocol(r.Proto)
	if r.Client.Addr.Is6() && !r.Client.Addr.Is4In6() {
		fam = dnstap.SocketFamily_INET6
	}
	m.SocketFamily, m.SocketProtocol = &fam, &sp
	if r.Client.Addr.IsValid() {
		m.QueryAddress = addrBytes(r.Client.Addr, fam)
		port := uint32(r.Client.Port)
		m.QueryPort = &port
	}
	// The message has one socket family: a listener address of the other
	// one (an IPv4 client on a dual-stack [::] listener is mapped) is
	// left out rather than misencoded.
	if srv := r.Server.Addr(); r.Server.IsValid() && (srv.Unmap().Is4() == (fam == dnstap.SocketFamily_INET)) {
		m.ResponseAddress = addrBytes(srv, fam)
		port := uint32(r.Server.Port())
		m.ResponsePort = &port
	}
	qs, qns := timeParts(r.Time)
	m.QueryTimeSec, m.QueryTimeNsec = &qs, &qns
	var err error
	if typ == dnstap.Message_CLIENT_QUERY {
		m.QueryMessage, err = r.Req.Copy().Pack()
	} else {
		rs, rns := timeParts(r.Time.Add(r.Latency))
		m.ResponseTimeSec, m.ResponseTimeNsec = &rs, &rns
		m.ResponseMessage, err = r.Resp.Copy().Pack()
	}
	if err != nil {
		s.logger.Debug("dnstap: message does not pack", "type", typ.String(), "err", err)
	}
	identity := r.Instance
	if identity == "" {
		identity = s.o.Identity
	}
	dtType := dnstap.Dnstap_MESSAGE
	return &dnstap.Dnstap{
		Identity: []byte(identity),
		Version:  []byte("dnsvalve"),
		Type:     &dtType,
		Message:  m,
	}
}

func socketProtocol(p query.Proto) dnstap.SocketProtocol {
	switch p {
	case query.TCP:
		return dnstap.SocketProtocol_TCP
	case query.DoT:
		return dnstap.SocketProtocol_DOT
	case query.DoH:
		return dnstap.SocketProtocol_DOH
	}
	return dnstap.SocketProtocol_UDP
}

func addrBytes(a netip.Addr, fam dnstap.SocketFamily) []byte {
	if fam == dnstap.SocketFamily_INET {
		b := a.Unmap().As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

func timeParts(t time.Time) (uint64, uint32) {
	return uint64(t.Unix()), uint32(t.Nanosecond())
}

// connect dials the collector if the sink is disconnected and the backoff
// allows; otherwise it returns ErrDisconnected.
func (s *DnstapSink) connect() error {
	if s.w != nil {
		return nil
	}
	now := s.o.Now()
	if now.Before(s.nextDial) {
		return ErrDisconnected
	}
	d := net.Dialer{Timeout: s.o.Timeout}
	conn, err := d.Dial(s.network, s.addr)
	if err != nil {
		s.fail(now)
		return fmt.Errorf("dnstap: dial %s: %w", s.addr, err)
	}
	w, err := framestream.NewWriter(conn, &framestream.WriterOptions{
		ContentTypes:  [][]byte{dnstap.FSContentType},
		Bidirectional: true,
		Timeout:       s.o.Timeout,
	})
	if err != nil {
		_ = conn.Close()
		s.fail(now)
		return fmt.Errorf("dnstap: handshake %s: %w", s.addr, err)
	}
	s.conn, s.w, s.backoff = conn, w, 0
	s.connects++
	s.logger.Info("dnstap collector connected", "connects", s.connects)
	return nil
}

func (s *DnstapSink) fail(now time.Time) {
	s.backoff = min(max(2*s.backoff, s.o.MinBackoff), s.o.MaxBackoff)
	s.nextDial = now.Add(s.backoff)
}

// disconnect drops the connection after an error; the next Write after
// the backoff reconnects.
func (s *DnstapSink) disconnect(err error) {
	if s.conn != nil {
		_ = s.conn.Close()
	}
	s.conn, s.w = nil, nil
	s.fail(s.o.Now())
	s.logger.Warn("dnstap collector lost", "err", err, "retry_in", s.backoff)
}

// Flush sends the buffered frames.
func (s *DnstapSink) Flush() error {
	if s.w == nil {
		return nil
	}
	if err := s.w.Flush(); err != nil {
		s.disconnect(err)
		return fmt.Errorf("dnstap: flush %s: %w", s.addr, err)
	}
	return nil
}

// Close flushes, ends the Frame Streams session (STOP, waiting for FINISH
// at most Timeout) and closes the connection.
func (s *DnstapSink) Close() error {
	if s.w == nil {
		return nil
	}
	err := s.w.Close() // flushes and sends STOP
	if cerr := s.conn.Close(); err == nil && cerr != nil {
		err = cerr
	}
	s.conn, s.w = nil, nil
	if err != nil {
		return fmt.Errorf("dnstap: close %s: %w", s.addr, err)
	}
	return nil
}
