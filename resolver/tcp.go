package resolver

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TCP serving with pipelined queries answered concurrently.
//
// miekg/dns's server reads a TCP connection's next query only once the
// handler has answered the previous one, so a cache hit pipelined behind a
// cache miss waited for the whole miss. RFC 7766 section 6.2.1.1: a server
// SHOULD process pipelined queries concurrently and MAY answer them out of
// order.
//
// Here a connection has one goroutine holding its reader role: it reads a
// length-prefixed message and answers it itself, so a cache hit costs no
// hand-off between goroutines. A query about to wait on an upstream
// (query.BeforeWait, as on UDP) passes the role on, to an idle goroutine
// of the connection or a new one, so the messages behind it are read and
// answered while it waits. Each goroutine keeps its grown stack while the
// connection lives. A stage that blocks without calling BeforeWait keeps
// the role while it does: that connection is then served one query after
// the other, as before. At most tcpPipeline queries of a connection are
// in flight (read and not yet answered); with that many, the connection
// is not read until one is answered, and TCP flow control holds the
// client back. A reply is written as one whole frame under the
// connection's write lock: replies may leave in any order but never
// interleave.
//
// A connection is idle when no query of it is in flight and it sent
// nothing for ServerConfig.TCPIdleTimeout since its last reply (or since
// it was accepted): the read deadline is moved on, not obeyed, while it is
// not idle. It is closed after ServerConfig.TCPMaxQueries queries were
// read and answered, when the client closes its side (once the queries it
// sent are answered), on a read error, and after a write error (a reply
// may have been written in part: nothing can follow it on the stream).

const (
	// tcpPipeline bounds the queries of one TCP connection in flight.
	tcpPipeline = 32
	// tcpWriteTimeout bounds the write of one reply: a client that does
	// not read its replies must not hold a goroutine (and, through the
	// write lock, the whole connection) forever.
	tcpWriteTimeout = 5 * time.Second
	// tcpReadBuf is the size of a connection's read buffer: a few
	// pipelined queries are read in one system call.
	tcpReadBuf = 2048
)

// errStopped is what a connection's reader gets once Shutdown began.
var errStopped = errors.New("server shutting down")

// aLongTimeAgo is a read deadline that unblocks a read at once.
var aLongTimeAgo = time.Unix(1, 0)

// tcpServer serves one TCP listener.
type tcpServer struct {
	s        *Server
	l        net.Listener
	addr     string
	maxq     int // queries per connection; 0 = unlimited
	pipeline int

	mu        sync.Mutex
	conns     map[*tcpConn]struct{}
	perClient map[netip.Prefix]int // open connections per client (IPv4 /32, IPv6 /64), trusted forwarders not counted
	stopping  bool
	stop      chan struct{} // closed by shutdown: ends an accept back-off
	// wg counts the accept loop and every goroutine of every connection.
	wg sync.WaitGroup
}

func newTCPServer(s *Server, l net.Listener, addr string) *tcpServer {
	t := &tcpServer{s: s, l: l, addr: addr, maxq: max(s.cfg.TCPMaxQueries, 0), pipeline: tcpPipeline,
		conns: make(map[*tcpConn]struct{}), perClient: make(map[netip.Prefix]int), stop: make(chan struct{})}
	if s.tcpPipeline > 0 {
		t.pipeline = s.tcpPipeline
	}
	return t
}

// start runs the accept loop in the background. The listener is bound
// already: connections made before the loop runs wait in its backlog.
func (t *tcpServer) start() {
	t.wg.Add(1)
	go t.accept()
}

// accept accepts connections until the listener is closed. A failing
// Accept (out of file descriptors) is retried after a growing pause.
func (t *tcpServer) accept() {
	defer t.wg.Done()
	var pause time.Duration
	for {
		nc, err := t.l.Accept()
		if err != nil {
			if t.isStopping() {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				t.s.logger.Error("listener stopped", "addr", t.addr, "err", err)
				return
			}
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			t.s.logger.Warn("accept failed, retrying", "addr", t.addr, "err", fmt.Errorf("accept tcp: %w", err), "pause", pause)
			timer := time.NewTimer(pause)
			select {
			case <-t.stop:
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		pause = 0
		c := &tcpConn{t: t, conn: nc, idle: t.s.cfg.TCPIdleTimeout, maxq: t.maxq,
			slots: make(chan struct{}, t.pipeline), role: make(chan struct{}), done: make(chan struct{})}
		peer, trusted := t.peer(nc)
		if !trusted && !t.s.allowed(peer) {
			if t.s.cfg.DropOutsiders {
				t.s.metrics.tcpRejected("not_allowed")
				_ = nc.Close()
				continue
			}
			c.maxq = 1 // its REFUSED, then the connection closes
		}
		t.mu.Lock()
		if t.stopping {
			t.mu.Unlock()
			_ = nc.Close()
			return
		}
		if reason := t.admit(c, peer, trusted); reason != "" {
			t.mu.Unlock()
			t.s.metrics.tcpRejected(reason)
			_ = nc.Close()
			continue
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		c.r = bufio.NewReaderSize(nc, tcpReadBuf) // admitted connections only: rejects come in floods
		go c.run()
	}
}

// peer returns the address a connection comes from (a trusted
// forwarder's own, whatever client its PROXY header will announce) and
// whether that is a trusted forwarder.
func (t *tcpServer) peer(nc net.Conn) (netip.Addr, bool) {
	if pc, ok := nc.(*proxiedConn); ok {
		return pc.from.Addr(), true
	}
	ta, ok := nc.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}, false
	}
	a := ta.AddrPort().Addr().Unmap()
	return a, containsAddr(t.s.cfg.TrustedForwarders, a)
}

// admit checks the connection limits for c from peer and, when it may
// stay, counts it; it returns the reason to close it otherwise. t.mu is
// held.
func (t *tcpServer) admit(c *tcpConn, peer netip.Addr, trusted bool) string {
	if limit := t.s.cfg.TCPMaxConns; limit > 0 && len(t.conns) >= limit {
		return "max_connections"
	}
	if limit := t.s.cfg.TCPMaxConnsPerClient; limit > 0 && !trusted && peer.IsValid() {
		bits := 32
		if peer.Is6() {
			bits = 64
		}
		key := netip.PrefixFrom(peer, bits).Masked()
		if t.perClient[key] >= limit {
			return "max_per_client"
		}
		t.perClient[key]++
		c.client, c.counted = key, true
	}
	return ""
}

func (t *tcpServer) isStopping() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopping
}

// shutdown closes the listener, stops reading every connection (queries
// in flight are answered, then the connection is closed; idle ones close
// at once) and waits, until ctx is done, for all of them to be closed.
// Those still open then are closed without waiting further.
func (t *tcpServer) shutdown(ctx context.Context) error {
	t.mu.Lock()
	if !t.stopping {
		t.stopping = true
		close(t.stop)
		_ = t.l.Close()
		for c := range t.conns {
			c.stop()
		}
	}
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	n := len(t.conns)
	for c := range t.conns {
		_ = c.conn.Close()
	}
	t.mu.Unlock()
	return fmt.Errorf("shutdown tcp %s: %d connections with queries in flight closed: %w", t.addr, n, ctx.Err())
}

func (t *tcpServer) forget(c *tcpConn) {
	t.mu.Lock()
	delete(t.conns, c)
	if c.counted {
		if t.perClient[c.client]--; t.perClient[c.client] <= 0 {
			delete(t.perClient, c.client)
		}
	}
	t.mu.Unlock()
}

// tcpConn is one TCP connection and its goroutines.
type tcpConn struct {
	t    *tcpServer
	conn net.Conn
	r    *bufio.Reader // the reader role's
	read int           // messages read; the reader role's
	maxq int           // messages it may read; 0 = unlimited
	idle time.Duration
	// client is the prefix its connection is counted under in
	// tcpServer.perClient, when counted.
	client  netip.Prefix
	counted bool

	// mu orders the reader's read deadlines against stop's: once
	// stopped, no deadline undoes the one that unblocks the reader.
	mu      sync.Mutex
	stopped bool

	// slots holds a token for every query read and not yet answered
	// (the reader takes one before it reads): at most cap(slots).
	slots chan struct{}
	// role hands the reader role to an idle goroutine of the connection.
	role chan struct{}
	// done is closed once the connection is closed: idle goroutines leave.
	done chan struct{}
	// queries counts the queries read and not yet answered, for the
	// reader that ends the connection to wait for.
	queries   sync.WaitGroup
	lastReply atomic.Int64 // unix nanoseconds of the last query answered; 0: none yet

	wmu  sync.Mutex // one reply frame at a time
	werr error      // the first write error; under wmu
}

// run is one goroutine of the connection; the first one starts with the
// reader role. Holding it, the goroutine reads a message and answers it;
// without it (passed on in beforeWait), it waits for it again or for the
// connection's end. The holder that finds the connection done (closed by
// the client, a read error, Shutdown, tcp_max_queries) waits for the
// queries still in flight, then closes it.
func (c *tcpConn) run() {
	defer c.t.wg.Done()
	w := &tcpWriter{c: c, buf: make([]byte, 0, 2+512), reading: true}
	w.ctx = query.WithBeforeWait(context.Background(), w.beforeWait)
	for {
		if !w.reading {
			select {
			case <-c.role:
				w.reading = true
			case <-c.done:
				return
			}
		}
		if !c.next(w) {
			c.queries.Wait()
			_ = c.conn.Close()
			close(c.done)
			c.t.forget(c)
			return
		}
	}
}

// next reads one message and answers it with w. It reports false, having
// read nothing, when the connection is done.
func (c *tcpConn) next(w *tcpWriter) bool {
	if c.maxq > 0 && c.read >= c.maxq {
		return false
	}
	select {
	case c.slots <- struct{}{}:
	default:
		// As many queries in flight as allowed: reading pauses.
		if h := c.t.s.tcpFullHook; h != nil {
			h()
		}
		c.slots <- struct{}{}
	}
	m, err := c.readMsg()
	if err != nil {
		<-c.slots
		c.t.s.logger.Debug("tcp connection done", "client", c.conn.RemoteAddr(), "err", err)
		return false
	}
	c.read++
	c.queries.Add(1)
	c.t.s.servePacket(w, m)
	// Recorded before the query gives its slot back, so that the reader's
	// idle check sees one or the other.
	c.lastReply.Store(time.Now().UnixNano())
	c.queries.Done()
	<-c.slots
	return true
}

// readMsg reads one length-prefixed message, under the idle timeout.
func (c *tcpConn) readMsg() ([]byte, error) {
	if !c.setReadDeadline(time.Now().Add(c.idle)) {
		return nil, errStopped
	}
	var l [2]byte
	if err := c.readFull(l[:]); err != nil {
		return nil, err
	}
	m := make([]byte, binary.BigEndian.Uint16(l[:]))
	if err := c.readFull(m); err != nil {
		return nil, err
	}
	return m, nil
}

// readFull fills b. A read deadline that passes while the connection is
// not idle (a query in flight, or a reply written less than the idle
// timeout ago) is moved on.
func (c *tcpConn) readFull(b []byte) error {
	for n := 0; n < len(b); {
		k, err := c.r.Read(b[n:])
		n += k
		if err == nil || n == len(b) {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if until, busy := c.busyUntil(time.Now()); busy && c.setReadDeadline(until) {
				continue
			}
		}
		return fmt.Errorf("read query: %w", err)
	}
	return nil
}

// busyUntil reports whether the connection is not idle at now, and until
// when it is not at least.
// Only the reader calls it, holding one slot: a query in flight holds
// another.
func (c *tcpConn) busyUntil(now time.Time) (time.Time, bool) {
	if len(c.slots) > 1 {
		return now.Add(c.idle), true
	}
	if last := c.lastReply.Load(); last != 0 {
		if until := time.Unix(0, last).Add(c.idle); until.After(now) {
			return until, true
		}
	}
	return time.Time{}, false
}

// setReadDeadline sets the read deadline unless the connection was
// stopped (whose deadline must stay in the past); it reports whether it
// did.
func (c *tcpConn) setReadDeadline(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return false
	}
	_ = c.conn.SetReadDeadline(t)
	return true
}

// stop unblocks the reader and keeps it from reading again.
func (c *tcpConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopped = true
	_ = c.conn.SetReadDeadline(aLongTimeAgo)
}

// writeFrame writes one length-prefixed reply. After a failed write the
// connection is closed: part of a reply may be on the stream.
func (c *tcpConn) writeFrame(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr != nil {
		return c.werr
	}
	_ = c.conn.SetWriteDeadline(time.Now().Add(tcpWriteTimeout))
	if _, err := c.conn.Write(frame); err != nil {
		c.werr = fmt.Errorf("write tcp reply: %w", err)
		_ = c.conn.Close()
		return c.werr
	}
	return nil
}

// tcpWriter is the dns.ResponseWriter of one goroutine of a connection:
// it packs into a buffer it keeps, behind room for the length prefix.
type tcpWriter struct {
	c       *tcpConn
	buf     []byte
	reading bool            // its goroutine holds the reader role
	ctx     context.Context // carries beforeWait
}

// queryContext is the context the chain runs in for this writer's queries.
func (w *tcpWriter) queryContext() context.Context { return w.ctx }

// beforeWait runs when a stage is about to wait on an upstream: the
// reader role goes to an idle goroutine of the connection, or a new one,
// so that the messages behind this query are read and answered while it
// waits. A goroutine without the role has nothing to pass on.
func (w *tcpWriter) beforeWait() {
	if !w.reading {
		return
	}
	w.reading = false
	select {
	case w.c.role <- struct{}{}:
	default:
		// No goroutine is idle: every other one is answering a query, so
		// there are at most as many as the pipeline bound.
		w.c.t.wg.Add(1)
		go w.c.run()
	}
}

var _ dns.ResponseWriter = (*tcpWriter)(nil)

// errTooLarge is a reply beyond what a length prefix can carry. It is no
// net.Error: Server.write answers SERVFAIL instead.
var errTooLarge = errors.New("reply larger than 65535 bytes")

func (w *tcpWriter) LocalAddr() net.Addr { return w.c.conn.LocalAddr() }

// RemoteAddr is the client: for a trusted forwarder's connection, the one
// its PROXY header announced (read before the first query).
func (w *tcpWriter) RemoteAddr() net.Addr { return w.c.conn.RemoteAddr() }

func (w *tcpWriter) WriteMsg(m *dns.Msg) error {
	b, ok := packReply(m, w.buf[2:cap(w.buf)])
	if !ok {
		var err error
		if b, err = m.PackBuffer(w.buf[2:cap(w.buf)]); err != nil {
			return err
		}
	}
	if len(b) > dns.MaxMsgSize {
		return errTooLarge
	}
	var frame []byte
	if len(b) > 0 && &b[0] == &w.buf[2:cap(w.buf)][0] {
		frame = w.buf[:2+len(b)]
	} else {
		// PackBuffer needed a larger buffer: keep one that fits.
		frame = make([]byte, 2+len(b), 2+cap(b))
		copy(frame[2:], b)
		if cap(frame) <= 2+dns.MaxMsgSize+1 {
			w.buf = frame[:0]
		}
	}
	binary.BigEndian.PutUint16(frame, uint16(len(b)))
	return w.c.writeFrame(frame)
}

func (w *tcpWriter) Write(b []byte) (int, error) {
	if len(b) > dns.MaxMsgSize {
		return 0, errTooLarge
	}
	frame := make([]byte, 2+len(b))
	binary.BigEndian.PutUint16(frame, uint16(len(b)))
	copy(frame[2:], b)
	if err := w.c.writeFrame(frame); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (w *tcpWriter) Close() error        { return nil }
func (w *tcpWriter) TsigStatus() error   { return nil }
func (w *tcpWriter) TsigTimersOnly(bool) {}
func (w *tcpWriter) Hijack()             {}
