package resolver

import (
	"context"
	"net"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// whereTo answers TXT with the address the query was sent to, as the
// server saw it (Request.Server).
var whereTo = HandlerFunc(func(_ context.Context, req *query.Request) (*dns.Msg, error) {
	r := rcodeReply(req.Msg, dns.RcodeSuccess)
	r.Answer = []dns.RR{&dns.TXT{Hdr: dns.RR_Header{Name: req.Msg.Question[0].Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET},
		Txt: []string{req.Server.String()}}}
	return r, nil
})

// TestServerAddressSeen: Request.Server (the query log's dnstap
// response_address) is the address the client sent to: the listener's,
// or on a wildcard listener the packet's destination (UDP, from
// IP_PKTINFO) or the connection's local address (TCP), IPv4 unmapped on a
// dual-stack socket.
func TestServerAddressSeen(t *testing.T) {
	for _, tc := range []struct {
		listen string
		dialIP string // "": the listener's own address
		want   string // "": the listener's own address; otherwise the IP, with the listener's port
	}{
		{"127.0.0.1:0", "", ""},
		{"0.0.0.0:0", "127.0.0.2", "127.0.0.2"},
		{"0.0.0.0:0", "127.0.0.53", "127.0.0.53"},
		{"[::]:0", "127.0.0.3", "127.0.0.3"},
		{"[::]:0", "::1", "::1"},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.listen+"_"+tc.dialIP+"_"+network, func(t *testing.T) {
				if tc.listen == "[::]:0" {
					if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
						t.Skipf("no IPv6 here: %v", err)
					} else {
						c.Close()
					}
				}
				s := NewServer(ServerConfig{Listen: []string{tc.listen}}, whereTo, nil, nil, nil, nil)
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
				addr := s.Addrs()[0].String()
				host, port, _ := net.SplitHostPort(addr)
				if tc.dialIP != "" {
					addr = net.JoinHostPort(tc.dialIP, port)
				}
				want := net.JoinHostPort(host, port)
				if tc.want != "" {
					want = net.JoinHostPort(tc.want, port)
				}
				m := new(dns.Msg)
				m.SetQuestion("whereto.test.", dns.TypeTXT)
				r, _, err := (&dns.Client{Net: network}).Exchange(m, addr)
				if err != nil {
					t.Fatal(err)
				}
				if got := identity(t, r); got != want {
					t.Errorf("server address seen as %q, want %q", got, want)
				}
			})
		}
	}
}
