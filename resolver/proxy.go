package resolver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
)

// Client identity behind forwarders and load balancers.
//
// A query relayed by a trusted forwarder (server.trusted_forwarders) may
// carry the real client's address: in an EDNS Client Subnet option with a
// full-length source prefix (a /32 or /128, as Blocky's useAsClient and
// Pi-hole do), or in a PROXY protocol v2 header in front of the TCP stream
// or the UDP datagram (network load balancers). The Server then treats
// that address as the client (access control, groups, the query log) and
// records the forwarder as Client.Via. From untrusted senders both are
// ignored: a PROXY header from them is just a malformed DNS message.

// proxySig is the PROXY protocol v2 signature.
var proxySig = []byte("\r\n\r\n\x00\r\nQUIT\n")

var errProxy = errors.New("proxy protocol v2")

// parseProxyV2 parses a PROXY protocol v2 header at the start of b. It
// returns the source address it announces (invalid for LOCAL commands and
// unknown families) and the header's length.
func parseProxyV2(b []byte) (netip.AddrPort, int, error) {
	if len(b) < 16 || !bytes.Equal(b[:12], proxySig) {
		return netip.AddrPort{}, 0, fmt.Errorf("%w: no signature", errProxy)
	}
	if b[12]>>4 != 2 {
		return netip.AddrPort{}, 0, fmt.Errorf("%w: version %d", errProxy, b[12]>>4)
	}
	n := 16 + int(binary.BigEndian.Uint16(b[14:16]))
	if len(b) < n {
		return netip.AddrPort{}, 0, fmt.Errorf("%w: header of %d bytes, have %d", errProxy, n, len(b))
	}
	if b[12]&0xF == 0 { // LOCAL: health check from the balancer itself
		return netip.AddrPort{}, n, nil
	}
	body := b[16:n]
	switch b[13] >> 4 {
	case 1: // AF_INET
		if len(body) < 12 {
			return netip.AddrPort{}, 0, fmt.Errorf("%w: short IPv4 addresses", errProxy)
		}
		a := netip.AddrFrom4([4]byte(body[0:4]))
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[8:10])), n, nil
	case 2: // AF_INET6
		if len(body) < 36 {
			return netip.AddrPort{}, 0, fmt.Errorf("%w: short IPv6 addresses", errProxy)
		}
		a := netip.AddrFrom16([16]byte(body[0:16])).Unmap()
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(body[32:34])), n, nil
	}
	return netip.AddrPort{}, n, nil
}

// proxiedAddr is the RemoteAddr of a connection whose client came from a
// PROXY header: the announced source, relayed by via.
type proxiedAddr struct {
	src netip.AddrPort
	via netip.AddrPort
}

func (a proxiedAddr) Network() string { return "tcp" }
func (a proxiedAddr) String() string  { return a.src.String() }

// proxyListener hands connections to the DNS server at once; those from
// trusted forwarders are wrapped to read their PROXY v2 header first.
//
// The header is read on the connection's first Read, by the connection's
// reader goroutine (tcpConn.serve), not in Accept: connections are
// accepted one at a time in a single loop, so a forwarder slow to send its
// header would hold up every other client's connection. The header read
// runs under the read deadline set before reading the first message
// (ServerConfig.TCPIdleTimeout), which Shutdown moves into the past to
// unblock it. RemoteAddr is asked for only for messages read after the
// header, so the handler sees the announced client.
type proxyListener struct {
	net.Listener
	trusted []netip.Prefix
}

func (l *proxyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return c, nil
	}
	from := ta.AddrPort()
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if !containsAddr(l.trusted, from.Addr()) {
		return c, nil
	}
	return &proxiedConn{Conn: c, from: from}, nil
}

// proxiedConn is a connection from a trusted forwarder: its first Read
// reads the PROXY v2 header, and from then on RemoteAddr is the client it
// announced (the forwarder's own address for a LOCAL header).
type proxiedConn struct {
	net.Conn
	from netip.AddrPort
	// hdrDone and hdrErr belong to the reading goroutine.
	hdrDone bool
	hdrErr  error
	addr    atomic.Pointer[proxiedAddr]
}

func (c *proxiedConn) Read(b []byte) (int, error) {
	if !c.hdrDone {
		c.hdrDone = true
		if c.hdrErr = c.readHeader(); c.hdrErr != nil {
			// A trusted forwarder that speaks no PROXY v2 is
			// misconfigured: the server closes the connection.
			c.hdrErr = fmt.Errorf("PROXY header from %s: %w", c.from, c.hdrErr)
		}
	}
	if c.hdrErr != nil {
		return 0, c.hdrErr
	}
	return c.Conn.Read(b)
}

// readHeader reads exactly one PROXY v2 header, nothing of the DNS stream
// behind it.
func (c *proxiedConn) readHeader() error {
	hdr := make([]byte, 16, 16+216)
	if _, err := io.ReadFull(c.Conn, hdr); err != nil {
		return err
	}
	if !bytes.Equal(hdr[:12], proxySig) {
		return fmt.Errorf("%w: no signature", errProxy)
	}
	n := 16 + int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > 16+2048 {
		return fmt.Errorf("%w: header of %d bytes", errProxy, n)
	}
	hdr = append(hdr, make([]byte, n-16)...)
	if _, err := io.ReadFull(c.Conn, hdr[16:]); err != nil {
		return err
	}
	src, _, err := parseProxyV2(hdr)
	if err != nil {
		return err
	}
	if src.IsValid() { // not LOCAL (the forwarder itself)
		c.addr.Store(&proxiedAddr{src: src, via: c.from})
	}
	return nil
}

// RemoteAddr is the client the PROXY header announced, once it was read;
// the forwarder's address before that and for a LOCAL header.
func (c *proxiedConn) RemoteAddr() net.Addr {
	if a := c.addr.Load(); a != nil {
		return *a
	}
	return c.Conn.RemoteAddr()
}
