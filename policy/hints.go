package policy

import "github.com/miekg/dns"

// StripHints removes from the HTTPS and SVCB records of resp (answer and
// additional sections) the address hints of a family whose type the
// policy blocks: ipv6hint when AAAA is in its block_qtypes, ipv4hint when
// A is. A client that finds no AAAA record would otherwise connect over
// IPv6 to the addresses the hint gives (RFC 9460 section 7.3), as AdGuard
// Home and Blocky also strip them. resp must be the caller's own: the
// records are modified in place, with new parameter lists. It reports
// whether it removed a hint; it does nothing for other policies.
func (s *Snapshot) StripHints(policy string, resp *dns.Msg) bool {
	p := s.policy(policy)
	if !p.strip4 && !p.strip6 {
		return false
	}
	stripped := false
	for _, sec := range [2][]dns.RR{resp.Answer, resp.Extra} {
		for _, rr := range sec {
			var svcb *dns.SVCB
			switch v := rr.(type) {
			case *dns.HTTPS:
				svcb = &v.SVCB
			case *dns.SVCB:
				svcb = v
			default:
				continue
			}
			if p.stripsAny(svcb.Value) {
				svcb.Value = p.keep(svcb.Value)
				stripped = true
			}
		}
	}
	return stripped
}

func (p *compiledPolicy) strips(kv dns.SVCBKeyValue) bool {
	switch kv.Key() {
	case dns.SVCB_IPV4HINT:
		return p.strip4
	case dns.SVCB_IPV6HINT:
		return p.strip6
	}
	return false
}

func (p *compiledPolicy) stripsAny(kvs []dns.SVCBKeyValue) bool {
	for _, kv := range kvs {
		if p.strips(kv) {
			return true
		}
	}
	return false
}

// keep returns a new list of the parameters of kvs that p does not strip.
func (p *compiledPolicy) keep(kvs []dns.SVCBKeyValue) []dns.SVCBKeyValue {
	out := make([]dns.SVCBKeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if !p.strips(kv) {
			out = append(out, kv)
		}
	}
	return out
}
