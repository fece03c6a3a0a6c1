package policy

import (
	"testing"

	"github.com/miekg/dns"
)

func TestStripHints(t *testing.T) {
	s := mustCompile(t, Config{Policies: map[string]PolicyConfig{
		"no6":   {BlockQtypes: []string{"AAAA", "NULL"}},
		"no4":   {BlockQtypes: []string{"A"}},
		"none":  {BlockQtypes: []string{"A", "AAAA"}},
		"other": {BlockQtypes: []string{"TXT"}},
	}}, nil)
	const https = `svc.example. 300 IN HTTPS 1 . mandatory=alpn,ipv6hint alpn="h2" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`
	const svcb = `_dns.svc.example. 300 IN SVCB 1 dns.example. mandatory=ipv6hint alpn="dot" ipv6hint="2001:db8::53"`
	for _, tc := range []struct {
		policy        string
		answer, extra string // the records after the call
		stripped      bool
	}{
		{"no6", `svc.example.	300	IN	HTTPS	1 . mandatory="alpn" alpn="h2" ipv4hint="192.0.2.1"`,
			`_dns.svc.example.	300	IN	SVCB	1 dns.example. alpn="dot"`, true},
		{"no4", `svc.example.	300	IN	HTTPS	1 . mandatory="alpn,ipv6hint" alpn="h2" ipv6hint="2001:db8::1"`,
			`_dns.svc.example.	300	IN	SVCB	1 dns.example. mandatory="ipv6hint" alpn="dot" ipv6hint="2001:db8::53"`, true},
		{"none", `svc.example.	300	IN	HTTPS	1 . mandatory="alpn" alpn="h2"`,
			`_dns.svc.example.	300	IN	SVCB	1 dns.example. alpn="dot"`, true},
		{"other", `svc.example.	300	IN	HTTPS	1 . mandatory="alpn,ipv6hint" alpn="h2" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`,
			`_dns.svc.example.	300	IN	SVCB	1 dns.example. mandatory="ipv6hint" alpn="dot" ipv6hint="2001:db8::53"`, false},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			h, err := dns.NewRR(https)
			if err != nil {
				t.Fatal(err)
			}
			v, err := dns.NewRR(svcb)
			if err != nil {
				t.Fatal(err)
			}
			a, _ := dns.NewRR("svc.example. 300 IN A 192.0.2.1")
			m := &dns.Msg{Answer: []dns.RR{h, a}, Extra: []dns.RR{v}}
			m.AuthenticatedData = true
			if got := s.StripHints(tc.policy, m); got != tc.stripped {
				t.Errorf("StripHints = %v, want %v", got, tc.stripped)
			}
			if got := m.Answer[0].String(); got != tc.answer {
				t.Errorf("answer\n%s\nwant\n%s", got, tc.answer)
			}
			if got := m.Extra[0].String(); got != tc.extra {
				t.Errorf("additional\n%s\nwant\n%s", got, tc.extra)
			}
			if m.AuthenticatedData == tc.stripped {
				t.Errorf("AD = %v after stripping %v: want it cleared only when a hint went", m.AuthenticatedData, tc.stripped)
			}
			// What a client gets must still pack and parse.
			m.SetQuestion("svc.example.", dns.TypeHTTPS)
			wire, err := m.Pack()
			if err != nil {
				t.Fatalf("Pack: %v", err)
			}
			if err := new(dns.Msg).Unpack(wire); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
		})
	}
}
