package resolver

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// TestIPv6Listeners: a "[::1]:0" listen address serves UDP and TCP over
// IPv6, and the client is seen with its IPv6 address.
func TestIPv6Listeners(t *testing.T) {
	s := startWhoamiIPv6(t, "[::1]:0")
	addr := s.Addrs()[0].String()
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("whoami.test.", dns.TypeTXT)
			r, _, err := (&dns.Client{Net: network}).Exchange(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := identity(t, r); !strings.HasPrefix(got, "::1 ") {
				t.Errorf("client seen as %q, want ::1", got)
			}
		})
	}
}

// TestWildcardListenerAnswersFromDestination: bound to 0.0.0.0, a reply
// leaves from the address the query was sent to (IP_PKTINFO), so a client
// that asked 127.0.0.2 (a connected UDP socket) accepts it.
func TestWildcardListenerAnswersFromDestination(t *testing.T) {
	s := NewServer(ServerConfig{Listen: []string{"0.0.0.0:0"}}, whoami, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.53"} {
		t.Run(ip, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("whoami.test.", dns.TypeTXT)
			r, _, err := (&dns.Client{Net: "udp"}).Exchange(m, net.JoinHostPort(ip, port))
			if err != nil {
				t.Fatalf("query to %s: %v", ip, err)
			}
			if got := identity(t, r); !strings.HasPrefix(got, "127.0.0.") {
				t.Errorf("client seen as %q", got)
			}
		})
	}
}

// TestDualStackListenerIPv4Clients: a "[::]:0" listener answers IPv4
// clients (v4-mapped on the socket) from the address they asked, over the
// batched send path, and sees them as plain IPv4.
func TestDualStackListenerIPv4Clients(t *testing.T) {
	s := startWhoamiIPv6(t, "[::]:0")
	_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
	for _, tc := range []struct{ ip, wantPrefix string }{
		{"127.0.0.1", "127.0.0.1 "},
		{"127.0.0.2", "127.0.0.1 "}, // the source of a query to 127.0.0.2 is 127.0.0.1
		{"::1", "::1 "},
	} {
		t.Run(tc.ip, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("whoami.test.", dns.TypeTXT)
			r, _, err := (&dns.Client{Net: "udp"}).Exchange(m, net.JoinHostPort(tc.ip, port))
			if err != nil {
				t.Fatalf("query to %s: %v", tc.ip, err)
			}
			if got := identity(t, r); !strings.HasPrefix(got, tc.wantPrefix) {
				t.Errorf("client seen as %q, want prefix %q", got, tc.wantPrefix)
			}
		})
	}
}

// startWhoamiIPv6 starts a whoami server listening on the IPv6 address
// listen, skipping the test when this host cannot bind it.
func startWhoamiIPv6(t *testing.T, listen string) *Server {
	t.Helper()
	if c, err := net.ListenPacket("udp6", listen); err != nil {
		t.Skipf("no IPv6 for %s here: %v", listen, err)
	} else {
		c.Close()
	}
	s := NewServer(ServerConfig{Listen: []string{listen}}, whoami, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(t.Context()) })
	return s
}
