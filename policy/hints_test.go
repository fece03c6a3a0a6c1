package policy

import (
	"testing"

	"github.com/miekg/dns"
)

func TestStripHints(t *testing.T) {
	s := mustCompile(t, Config{Policies: map[string]PolicyConfig{
		"no6":   {BlockQtypes: []string{"AAAA", "NULL"}},
		"no4":   {BlockQtypes: []string{"A"}},
		"other": {BlockQtypes: []string{"TXT"}},
	}}, nil)
	const https = `svc.example. 300 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`
	const svcb = `_dns.svc.example. 300 IN SVCB 1 dns.example. alpn="dot" ipv6hint="2001:db8::53"`
	for _, tc := range []struct {
		policy       string
		answer, extr string // the records after the call
		stripped     bool
	}{
		{"no6", "svc.example.\t300\tIN\tHTTPS\t1 . alpn=\"h2\" ipv4hint=\"192.0.2.1\"",
			"_dns.svc.example.\t300\tIN\tSVCB\t1 dns.example. alpn=\"dot\"", true},
		{"no4", "svc.example.\t300\tIN\tHTTPS\t1 . alpn=\"h2\" ipv6hint=\"2001:db8::1\"",
			"_dns.svc.example.\t300\tIN\tSVCB\t1 dns.example. alpn=\"dot\" ipv6hint=\"2001:db8::53\"", true},
		{"other", "svc.example.\t300\tIN\tHTTPS\t1 . alpn=\"h2\" ipv4hint=\"192.0.2.1\" ipv6hint=\"2001:db8::1\"",
			"_dns.svc.example.\t300\tIN\tSVCB\t1 dns.example. alpn=\"dot\" ipv6hint=\"2001:db8::53\"", false},
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
			orig := h.(*dns.HTTPS).Value
			a, _ := dns.NewRR("svc.example. 300 IN A 192.0.2.1")
			m := &dns.Msg{Answer: []dns.RR{h, a}, Extra: []dns.RR{v}}
			if got := s.StripHints(tc.policy, m); got != tc.stripped {
				t.Errorf("StripHints = %v, want %v", got, tc.stripped)
			}
			if got := m.Answer[0].String(); got != tc.answer {
				t.Errorf("answer\n%s\nwant\n%s", got, tc.answer)
			}
			if got := m.Extra[0].String(); got != tc.extr {
				t.Errorf("additional\n%s\nwant\n%s", got, tc.extr)
			}
			if len(orig) != 3 || orig[2].Key() != dns.SVCB_IPV6HINT {
				t.Errorf("the record's former parameter list was modified: %v", orig)
			}
		})
	}
}
