package policy

import (
	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
)

// Names in the SOA of synthesized negative answers. ".invalid" (RFC 2606)
// can never resolve, so nothing will try to contact them.
const (
	soaMname = "dnsvalve.invalid."
	soaRname = "hostmaster.dnsvalve.invalid."
)

// ednsUDPSize is the EDNS0 buffer size advertised in block answers
// (DNS flag day 2020).
const ednsUDPSize = 1232

// Response returns the block response a blocking decision is answered with
// under policy: NODATA for a blocked query type (the name itself is not
// denied), the entry's own RPZ action (NXDOMAIN or NODATA) when it has
// one, otherwise the policy's block_response.
func (s *Snapshot) Response(policy string, d Decision) string {
	if d.Reason == ReasonQtype {
		return ResponseNoData
	}
	switch d.Match.Action {
	case lists.BlockNXDomain:
		return ResponseNXDomain
	case lists.BlockNoData:
		return ResponseNoData
	}
	return s.policy(policy).response
}

// BlockReply synthesizes the answer to req for a blocking decision d,
// following the block_response of d.Policy (see Response):
//
//   - nxdomain: NXDOMAIN with a SOA in the authority section;
//   - nodata: NOERROR, no answers, SOA in the authority section;
//   - refused: REFUSED, nothing else;
//   - sinkhole: A/AAAA answers with the configured IPv4/IPv6 sinkhole
//     addresses (TTL BlockTTL); other types, or a family with no sinkhole
//     address, get NODATA with a SOA.
//
// The SOA is owned by the query name, has TTL and minimum BlockTTL, so
// clients cache the denial for BlockTTL (RFC 2308). RecursionAvailable is
// set. If req has an OPT record the reply gets one too (UDP size 1232, DO
// copied) carrying an RFC 8914 Extended DNS Error with d.EDE and a text
// naming the list or the reason; without EDNS0 in req there is no OPT.
//
// req is only read. The returned message is new and owned by the caller.
// A req without a question gets a FORMERR reply.
func (s *Snapshot) BlockReply(req *dns.Msg, d Decision) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	m.Authoritative = false
	if len(req.Question) == 0 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := req.Question[0]
	resp := s.Response(d.Policy, d)
	switch resp {
	case ResponseRefused:
		m.Rcode = dns.RcodeRefused
	case ResponseNXDomain:
		m.Rcode = dns.RcodeNameError
		m.Ns = []dns.RR{s.soa(q.Name)}
	case ResponseSinkhole:
		m.Answer = s.sinkhole(q)
		if len(m.Answer) == 0 {
			m.Ns = []dns.RR{s.soa(q.Name)}
		}
	default: // nodata
		m.Ns = []dns.RR{s.soa(q.Name)}
	}
	if opt := req.IsEdns0(); opt != nil {
		o := new(dns.OPT)
		o.Hdr.Name = "."
		o.Hdr.Rrtype = dns.TypeOPT
		o.SetUDPSize(ednsUDPSize)
		o.SetDo(opt.Do())
		if d.EDE != 0 {
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: d.EDE, ExtraText: ExtraText(d)})
		}
		m.Extra = append(m.Extra, o)
	}
	return m
}

func (s *Snapshot) soa(owner string) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: owner, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.ttl},
		Ns:      soaMname,
		Mbox:    soaRname,
		Serial:  1,
		Refresh: 1800,
		Retry:   900,
		Expire:  604800,
		Minttl:  s.ttl,
	}
}

func (s *Snapshot) sinkhole(q dns.Question) []dns.RR {
	if q.Qclass != dns.ClassINET {
		return nil
	}
	var rrs []dns.RR
	switch q.Qtype {
	case dns.TypeA:
		for _, a := range s.sink4 {
			rrs = append(rrs, &dns.A{
				Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.ttl},
				A:   a.AsSlice(),
			})
		}
	case dns.TypeAAAA:
		for _, a := range s.sink6 {
			rrs = append(rrs, &dns.AAAA{
				Hdr:  dns.RR_Header{Name: q.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: s.ttl},
				AAAA: a.AsSlice(),
			})
		}
	}
	return rrs
}

// ExtraText is the EDE extra text for a blocking decision, e.g.
// "blocked by list malware (category malware)" or
// "not in allow list of policy sensitive".
func ExtraText(d Decision) string {
	var b []byte
	switch d.Reason {
	case ReasonCNAME:
		b = append(b, "CNAME target "...)
		b = append(b, d.CNAME...)
		b = append(b, ' ')
		if d.List == "" {
			b = append(b, "not in allow list of policy "...)
			b = append(b, d.Policy...)
			return string(b)
		}
		fallthrough
	case ReasonList:
		b = append(b, "blocked by list "...)
		b = append(b, d.List...)
		if d.Category != "" {
			b = append(b, " (category "...)
			b = append(b, d.Category...)
			b = append(b, ')')
		}
	case ReasonAllowlist:
		b = append(b, "not in allow list of policy "...)
		b = append(b, d.Policy...)
	case ReasonQtype:
		b = append(b, "query type "...)
		b = append(b, d.Match.Rule...)
		b = append(b, " blocked by policy "...)
		b = append(b, d.Policy...)
	case ReasonRebinding:
		b = append(b, "DNS rebinding: "...)
		b = append(b, d.CNAME...)
		b = append(b, " resolves to private address "...)
		b = d.Addr.AppendTo(b)
	default:
		b = append(b, "blocked by policy "...)
		b = append(b, d.Policy...)
		if d.Reason != "" {
			b = append(b, " ("...)
			b = append(b, d.Reason...)
			b = append(b, ')')
		}
	}
	return string(b)
}
