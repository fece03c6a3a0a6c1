package resolver

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// proxyHeader builds a PROXY v2 header announcing src → dst.
func proxyHeader(src, dst netip.AddrPort, proto byte, local bool) []byte {
	b := append([]byte(nil), proxySig...)
	cmd := byte(0x21)
	if local {
		cmd = 0x20
	}
	var addrs []byte
	fam := byte(0x10)
	if src.Addr().Is4() {
		s4, d4 := src.Addr().As4(), dst.Addr().As4()
		addrs = append(append(addrs, s4[:]...), d4[:]...)
	} else {
		fam = 0x20
		s16, d16 := src.Addr().As16(), dst.Addr().As16()
		addrs = append(append(addrs, s16[:]...), d16[:]...)
	}
	addrs = binary.BigEndian.AppendUint16(addrs, src.Port())
	addrs = binary.BigEndian.AppendUint16(addrs, dst.Port())
	addrs = append(addrs, 0x04, 0x00, 0x01, 0x00) // a TLV (NOOP) to skip
	b = append(b, cmd, fam|proto)
	b = binary.BigEndian.AppendUint16(b, uint16(len(addrs)))
	return append(b, addrs...)
}

func TestParseProxyV2(t *testing.T) {
	src4 := netip.MustParseAddrPort("10.0.8.5:40000")
	src6 := netip.MustParseAddrPort("[fd00:8::5]:40001")
	dst := netip.MustParseAddrPort("10.0.0.2:53")
	dst6 := netip.MustParseAddrPort("[fd00::2]:53")
	for _, tc := range []struct {
		name    string
		in      []byte
		want    netip.AddrPort
		wantErr bool
	}{
		{"ipv4_udp", proxyHeader(src4, dst, 2, false), src4, false},
		{"ipv4_tcp", proxyHeader(src4, dst, 1, false), src4, false},
		{"ipv6_tcp", proxyHeader(src6, dst6, 1, false), src6, false},
		{"local_command", proxyHeader(src4, dst, 1, true), netip.AddrPort{}, false},
		{"no_signature", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), netip.AddrPort{}, true},
		{"short", proxySig, netip.AddrPort{}, true},
		{"truncated_addresses", proxyHeader(src4, dst, 1, false)[:20], netip.AddrPort{}, true},
		{"version_1", append(append([]byte(nil), proxySig...), 0x11, 0x11, 0, 0), netip.AddrPort{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, n, err := parseProxyV2(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && (got != tc.want || n != len(tc.in)) {
				t.Errorf("got %v, %d bytes; want %v, %d", got, n, tc.want, len(tc.in))
			}
		})
	}
}

// whoami answers TXT "addr via" with the client identity the server saw.
var whoami = HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
	r := rcodeReply(req.Msg, dns.RcodeSuccess)
	via := "-"
	if req.Client.Via.IsValid() {
		via = req.Client.Via.String()
	}
	r.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: req.Msg.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: []string{req.Client.Addr.String(), via}}}
	return r, nil
})

func startIdentityServer(t *testing.T, cfg ServerConfig) string {
	t.Helper()
	cfg.Listen = []string{"127.0.0.1:0"}
	s := NewServer(cfg, whoami, nil, nil, nil, nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return s.Addrs()[0].String()
}

func identity(t *testing.T, r *dns.Msg) string {
	t.Helper()
	if r == nil || len(r.Answer) != 1 {
		t.Fatalf("no identity answer: %v", r)
	}
	return strings.Join(r.Answer[0].(*dns.TXT).Txt, " ")
}

// readTCPReply reads one length-prefixed DNS message from c.
func readTCPReply(t *testing.T, c net.Conn) *dns.Msg {
	t.Helper()
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("no reply: %v", err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil {
		t.Fatal(err)
	}
	return r
}

// identityECS is identity, followed by the reply's ECS option as
// "ecs ADDRESS/SOURCE/SCOPE" when it has one.
func identityECS(t *testing.T, r *dns.Msg) string {
	t.Helper()
	id := identity(t, r)
	if opt := r.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if sn, ok := o.(*dns.EDNS0_SUBNET); ok {
				id += fmt.Sprintf(" ecs %s/%d/%d", sn.Address, sn.SourceNetmask, sn.SourceScope)
			}
		}
	}
	return id
}

// TestClientIdentityBehindForwarders: the client's identity from a trusted
// forwarder's full-length ECS option or PROXY v2 header, and nothing from
// others. An ECS option that named the client is echoed with a scope of
// its full length, so that a caching forwarder keeps the answer for that
// client only (RFC 7871 section 7.3: no option would mean for everyone).
func TestClientIdentityBehindForwarders(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	addr := startIdentityServer(t, ServerConfig{TrustedForwarders: trusted, ECSClient: true, ProxyProtocol: true})
	untrustedAddr := startIdentityServer(t, ServerConfig{TrustedForwarders: []netip.Prefix{netip.MustParsePrefix("10.9.9.9/32")}, ECSClient: true, ProxyProtocol: true})
	src := netip.MustParseAddrPort("10.0.8.5:40000")
	dst := netip.MustParseAddrPort("10.0.0.2:53")

	q := func(ecs string, mask uint8) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("whoami.test.", dns.TypeTXT)
		if ecs != "" {
			m.SetEdns0(1232, false)
			ip := net.ParseIP(ecs)
			fam := uint16(1)
			if ip.To4() == nil {
				fam = 2
			} else {
				ip = ip.To4()
			}
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: fam, SourceNetmask: mask, Address: ip})
		}
		return m
	}
	udpRaw := func(t *testing.T, to string, prefix []byte, m *dns.Msg) *dns.Msg {
		t.Helper()
		wire, _ := m.Pack()
		c, err := net.Dial("udp", to)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(append(append([]byte(nil), prefix...), wire...)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("no reply: %v", err)
		}
		r := new(dns.Msg)
		if err := r.Unpack(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tcpRaw := func(t *testing.T, to string, prefix []byte, m *dns.Msg) *dns.Msg {
		t.Helper()
		c := dialConn(t, to)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		wire, _ := m.Pack()
		out := append(append([]byte(nil), prefix...), byte(len(wire)>>8), byte(len(wire)))
		if _, err := c.Write(append(out, wire...)); err != nil {
			t.Fatal(err)
		}
		return readTCPReply(t, c)
	}
	for _, tc := range []struct {
		name string
		do   func(t *testing.T) *dns.Msg
		want string
	}{
		{"plain_udp", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, nil, q("", 0)) }, "127.0.0.1 -"},
		// An ID whose first byte is '\r', like the PROXY signature's: 1 in
		// 256 random IDs; such queries used to be dropped as bad headers.
		{"plain_udp_id_0d", func(t *testing.T) *dns.Msg { m := q("", 0); m.Id = 0x0D0A; return udpRaw(t, addr, nil, m) }, "127.0.0.1 -"},
		{"ecs_full_length", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, nil, q("10.0.8.5", 32)) }, "10.0.8.5 127.0.0.1 ecs 10.0.8.5/32/32"},
		{"ecs_ipv6", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, nil, q("fd00:8::5", 128)) }, "fd00:8::5 127.0.0.1 ecs fd00:8::5/128/128"},
		{"ecs_subnet_ignored", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, nil, q("10.0.8.0", 24)) }, "127.0.0.1 -"},
		{"proxy_udp", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, proxyHeader(src, dst, 2, false), q("", 0)) }, "10.0.8.5 127.0.0.1"},
		{"proxy_udp_local", func(t *testing.T) *dns.Msg { return udpRaw(t, addr, proxyHeader(src, dst, 2, true), q("", 0)) }, "127.0.0.1 -"},
		{"proxy_tcp", func(t *testing.T) *dns.Msg { return tcpRaw(t, addr, proxyHeader(src, dst, 1, false), q("", 0)) }, "10.0.8.5 127.0.0.1"},
		{"untrusted_ecs_ignored", func(t *testing.T) *dns.Msg { return udpRaw(t, untrustedAddr, nil, q("10.0.8.5", 32)) }, "127.0.0.1 -"},
		{"untrusted_tcp_plain", func(t *testing.T) *dns.Msg { return tcpRaw(t, untrustedAddr, nil, q("", 0)) }, "127.0.0.1 -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := identityECS(t, tc.do(t)); got != tc.want {
				t.Errorf("server saw %q, want %q", got, tc.want)
			}
		})
	}
}

// TestProxyHeaderDoesNotBlockAccept: a trusted forwarder's connection whose
// PROXY header has not (all) arrived must not keep the server from
// accepting and answering other connections. The header used to be read
// inside Accept, and miekg/dns accepts in one loop: one silent connection
// held up every new TCP client for up to tcp_idle_timeout. Each case
// leaves the first connection stalled at some point, has a second one
// answered (it would wait a minute before the fix: the client gives up
// after 10 s), then completes the first, which is answered as the client
// its header announces.
func TestProxyHeaderDoesNotBlockAccept(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	addr := startIdentityServer(t, ServerConfig{TrustedForwarders: trusted, ProxyProtocol: true, TCPIdleTimeout: time.Minute})
	dst := netip.MustParseAddrPort("10.0.0.2:53")
	stream := func(src netip.AddrPort) []byte {
		m := new(dns.Msg)
		m.SetQuestion("whoami.test.", dns.TypeTXT)
		wire, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out := append(proxyHeader(src, dst, 1, false), byte(len(wire)>>8), byte(len(wire)))
		return append(out, wire...)
	}
	hdrLen := len(proxyHeader(netip.MustParseAddrPort("10.0.8.1:1"), dst, 1, false))
	for i, tc := range []struct {
		name  string
		stall int // bytes of its stream the first connection sends before it stalls
	}{
		{"silent", 0},
		{"partial_signature", 5},
		{"partial_addresses", 20},
		{"header_without_query", hdrLen},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first, second := netip.MustParseAddrPort(fmt.Sprintf("10.0.8.%d:40000", 2*i+1)), netip.MustParseAddrPort(fmt.Sprintf("10.0.8.%d:40000", 2*i+2))
			firstStream := stream(first)
			// Connected first, so first in the listener's accept queue.
			stalled := dialConn(t, addr)
			_ = stalled.SetDeadline(time.Now().Add(20 * time.Second))
			if _, err := stalled.Write(firstStream[:tc.stall]); err != nil {
				t.Fatal(err)
			}

			c := dialConn(t, addr)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(stream(second)); err != nil {
				t.Fatal(err)
			}
			if got, want := identity(t, readTCPReply(t, c)), second.Addr().String()+" 127.0.0.1"; got != want {
				t.Errorf("second connection: server saw %q, want %q", got, want)
			}

			if _, err := stalled.Write(firstStream[tc.stall:]); err != nil {
				t.Fatal(err)
			}
			if got, want := identity(t, readTCPReply(t, stalled)), first.Addr().String()+" 127.0.0.1"; got != want {
				t.Errorf("stalled connection: server saw %q, want %q", got, want)
			}
		})
	}
}

// TestProxyHeaderMissing: a trusted forwarder's connection that does not
// start with a PROXY v2 header is closed without an answer; the server
// goes on answering others.
func TestProxyHeaderMissing(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	addr := startIdentityServer(t, ServerConfig{TrustedForwarders: trusted, ProxyProtocol: true})
	m := new(dns.Msg)
	m.SetQuestion("whoami.test.", dns.TypeTXT)
	wire, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	plain := append([]byte{byte(len(wire) >> 8), byte(len(wire))}, wire...)
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"plain_dns", plain},
		{"bad_signature", append(append([]byte("\r\n\r\n\x00\r\nQUIX\n"), 0x21, 0x11, 0, 0), plain...)},
		{"version_1", append(append(append([]byte(nil), proxySig...), 0x11, 0x11, 0, 0), plain...)},
		{"eof_in_header", proxySig[:6]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialConn(t, addr)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write(tc.in); err != nil {
				t.Fatal(err)
			}
			if tc.name == "eof_in_header" {
				_ = c.(*net.TCPConn).CloseWrite()
			}
			if n, err := c.Read(make([]byte, 512)); err == nil {
				t.Errorf("got %d bytes, want the connection closed", n)
			}
		})
	}
	src := netip.MustParseAddrPort("10.0.8.5:40000")
	c := dialConn(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(proxyHeader(src, netip.MustParseAddrPort("10.0.0.2:53"), 1, false), plain...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Errorf("no reply after the bad connections: %v", err)
	}
}

// TestShutdownWithStalledProxyHeader: Shutdown does not wait for a
// trusted forwarder's connection still waiting for its PROXY header.
func TestShutdownWithStalledProxyHeader(t *testing.T) {
	cfg := ServerConfig{Listen: []string{"127.0.0.1:0"}, TrustedForwarders: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		ProxyProtocol: true, TCPIdleTimeout: time.Minute}
	s := NewServer(cfg, whoami, nil, nil, nil, nil)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := s.Addrs()[0].String()
	for _, stall := range []int{0, 5} { // silent, part of the signature
		c := dialConn(t, addr)
		if _, err := c.Write(proxySig[:stall]); err != nil {
			t.Fatal(err)
		}
	}
	// Answered: both stalled connections were accepted (and are read).
	c := dialConn(t, addr)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	m := new(dns.Msg)
	m.SetQuestion("whoami.test.", dns.TypeTXT)
	wire, _ := m.Pack()
	out := append(proxyHeader(netip.MustParseAddrPort("10.0.8.5:40000"), netip.MustParseAddrPort("10.0.0.2:53"), 1, false), byte(len(wire)>>8), byte(len(wire)))
	if _, err := c.Write(append(out, wire...)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatalf("no reply: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with connections waiting for their PROXY header: %v", err)
	}
}
