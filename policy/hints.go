package policy

import (
	"slices"

	"github.com/miekg/dns"
)

// StripHints removes from the HTTPS and SVCB records of resp (answer and
// additional sections) the address hints of a family whose type the
// policy blocks: ipv6hint when AAAA is in its block_qtypes, ipv4hint when
// A is. A client that finds no AAAA record would otherwise connect over
// IPv6 to the addresses the hint gives (RFC 9460 section 7.3); Blocky
// strips ipv6hint the same way. A "mandatory" parameter loses the keys
// removed (and goes when it is left empty), since RFC 9460 section 8 has
// clients drop a record that lacks a key its mandatory list names.
//
// The records are modified in place, so resp must be the caller's own
// down to its records (the cache's replies are deep copies). When a hint
// goes, resp loses its AD bit: the records are no longer the ones the
// signatures cover, and a validating client (DO, CD) sees them fail
// validation, as with any filtered answer. It reports whether it removed
// a hint; it does nothing for other policies.
func (s *Snapshot) StripHints(policy string, resp *dns.Msg) bool {
	if !s.stripHints { // no policy lookup on the hit path of the usual config
		return false
	}
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
			if slices.ContainsFunc(svcb.Value, p.strips) {
				svcb.Value = p.keep(svcb.Value)
				stripped = true
			}
		}
	}
	if stripped {
		resp.AuthenticatedData = false
	}
	return stripped
}

// strips reports whether p removes the parameter kv.
func (p *compiledPolicy) strips(kv dns.SVCBKeyValue) bool {
	switch kv.Key() {
	case dns.SVCB_IPV4HINT:
		return p.strip4
	case dns.SVCB_IPV6HINT:
		return p.strip6
	}
	return false
}

// keep returns the parameters of kvs that p does not strip, with the
// stripped keys gone from a mandatory list too (the list dropped when
// nothing is left of it).
func (p *compiledPolicy) keep(kvs []dns.SVCBKeyValue) []dns.SVCBKeyValue {
	out := make([]dns.SVCBKeyValue, 0, len(kvs))
	for _, kv := range kvs {
		if p.strips(kv) {
			continue
		}
		if m, ok := kv.(*dns.SVCBMandatory); ok {
			codes := slices.DeleteFunc(slices.Clone(m.Code), func(k dns.SVCBKey) bool {
				return k == dns.SVCB_IPV4HINT && p.strip4 || k == dns.SVCB_IPV6HINT && p.strip6
			})
			if len(codes) == 0 {
				continue
			}
			kv = &dns.SVCBMandatory{Code: codes}
		}
		out = append(out, kv)
	}
	return out
}
