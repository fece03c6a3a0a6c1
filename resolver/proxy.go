package resolver

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
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

// proxyListener reads a PROXY v2 header from connections from trusted
// forwarders before handing them to the DNS server.
type proxyListener struct {
	net.Listener
	trusted []netip.Prefix
	timeout time.Duration
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
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
		pc, err := readProxyHeader(c, from, l.timeout)
		if err != nil {
			c.Close() // a trusted forwarder that speaks no PROXY v2 is misconfigured
			continue
		}
		return pc, nil
	}
}

func readProxyHeader(c net.Conn, from netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	hdr := make([]byte, 16, 16+216)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, err
	}
	n := 16 + int(binary.BigEndian.Uint16(hdr[14:16]))
	if n > 16+2048 {
		return nil, fmt.Errorf("%w: header of %d bytes", errProxy, n)
	}
	hdr = append(hdr, make([]byte, n-16)...)
	if _, err := io.ReadFull(c, hdr[16:]); err != nil {
		return nil, err
	}
	src, _, err := parseProxyV2(hdr)
	if err != nil {
		return nil, err
	}
	if !src.IsValid() {
		return c, nil // LOCAL: the forwarder itself
	}
	return &proxiedConn{Conn: c, addr: proxiedAddr{src: src, via: from}}, nil
}

type proxiedConn struct {
	net.Conn
	addr proxiedAddr
}

func (c *proxiedConn) RemoteAddr() net.Addr { return c.addr }
