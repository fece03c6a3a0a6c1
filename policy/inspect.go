package policy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// privateZones are zones whose names may legitimately resolve to private
// addresses: RFC 6761 special-use names, RFC 8375 home.arpa, the ICANN
// reserved .internal, common LAN suffixes and the reverse-mapping trees.
// Single-label names (no dot) count as private too.
var privateZones = [...]string{
	"localhost", "local", "internal", "lan", "home", "home.arpa",
	"in-addr.arpa", "ip6.arpa", "test",
}

// InspectResponse checks an upstream answer to qname (which Decide already
// let through) against the policy and reports whether it must be blocked.
// resp is only read.
//
// CNAME and DNAME targets in resp.Answer (CNAME cloaking), when the
// policy's cname is "inspect": a target in an allow list is fine; a target
// a block list blocks blocks the answer (EDE Blocked); in allowlist mode
// every target must be allowed (EDE Prohibited); a target in an alert list
// makes the result an alert. A query name that an allow list explicitly
// allows in open mode vouches for its whole chain. With cname "trust" the
// targets are not checked.
//
// Rebinding, when rebinding_protection is on: an A/AAAA record with a
// private, loopback, link-local or unspecified address, or an HTTPS/SVCB
// record with one among its ipv4hint/ipv6hint addresses, blocks the answer
// (EDE Filtered), unless the query name is in a private zone (.local,
// .internal, .lan, home.arpa, in-addr.arpa, single-label names, ...), in
// the policy's rebinding_exempt domains, or in one of its allow lists.
//
// The result has Reason ReasonCNAME or ReasonRebinding and CNAME set to
// the offending name; ActionNone means the answer is fine.
func (s *Snapshot) InspectResponse(policy string, qname string, resp *dns.Msg) Decision {
	p := s.policy(policy)
	ok := Decision{Policy: p.name}
	if resp == nil || len(resp.Answer) == 0 {
		return ok
	}
	name := normalize(qname)
	_, _, qAllowed := p.allowed(name)

	var alert Decision
	if p.cname == CNAMEInspect && (p.mode == ModeAllowlist || !qAllowed) {
		for _, rr := range resp.Answer {
			var target string
			switch v := rr.(type) {
			case *dns.CNAME:
				target = v.Target
			case *dns.DNAME:
				target = v.Target
			default:
				continue
			}
			t := normalize(target)
			if _, _, allowed := p.allowed(t); allowed {
				continue
			}
			if blk, _ := matchTier(p.block, t); blk.list != nil {
				return Decision{Action: query.ActionBlock, Policy: p.name, List: blk.list.Name(),
					Category: blk.list.Category(), Match: blk.m, EDE: dns.ExtendedErrorCodeBlocked,
					Reason: ReasonCNAME, CNAME: target}
			}
			if p.mode == ModeAllowlist {
				return Decision{Action: query.ActionBlock, Policy: p.name,
					EDE: dns.ExtendedErrorCodeProhibited, Reason: ReasonCNAME, CNAME: target}
			}
			if alert.Action != query.ActionNone {
				continue
			}
			if alt, _ := matchTier(p.alert, t); alt.list != nil {
				alert = Decision{Action: query.ActionAlert, Policy: p.name, List: alt.list.Name(),
					Category: alt.list.Category(), Match: alt.m, Reason: ReasonCNAME, CNAME: target}
			}
		}
	}

	if p.rebind && !qAllowed && !isPrivateName(name) && !p.rebindingExempt(name) {
		for _, rr := range resp.Answer {
			var a netip.Addr
			switch v := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(v.A)
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA)
			case *dns.HTTPS:
				a = privateHint(v.Value)
			case *dns.SVCB:
				a = privateHint(v.Value)
			default:
				continue
			}
			if a = a.Unmap(); isPrivateAddr(a) {
				return Decision{Action: query.ActionBlock, Policy: p.name,
					EDE: dns.ExtendedErrorCodeFiltered, Reason: ReasonRebinding,
					CNAME: rr.Header().Name, Addr: a}
			}
		}
	}
	if alert.Action != query.ActionNone {
		return alert
	}
	return ok
}

// privateHint returns the first private address among the ipv4hint and
// ipv6hint parameters of an HTTPS or SVCB record (a client may connect to
// a hint before, or instead of, the A/AAAA answer: RFC 9460 section 7.3),
// or the zero Addr.
func privateHint(kvs []dns.SVCBKeyValue) netip.Addr {
	for _, kv := range kvs {
		var ips []net.IP
		switch h := kv.(type) {
		case *dns.SVCBIPv4Hint:
			ips = h.Hint
		case *dns.SVCBIPv6Hint:
			ips = h.Hint
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok && isPrivateAddr(a.Unmap()) {
				return a
			}
		}
	}
	return netip.Addr{}
}

func (p *compiledPolicy) rebindingExempt(name string) bool {
	for _, z := range p.rebindExempt {
		if inZone(name, z) {
			return true
		}
	}
	return false
}

// isPrivateName reports whether a normalized name is in a private zone.
func isPrivateName(name string) bool {
	if !strings.Contains(name, ".") {
		return true
	}
	for _, z := range privateZones {
		if inZone(name, z) {
			return true
		}
	}
	return false
}

// inZone reports whether name equals zone or is below it (both normalized).
func inZone(name, zone string) bool {
	return name == zone || (len(name) > len(zone) && name[len(name)-len(zone)-1] == '.' &&
		name[len(name)-len(zone):] == zone)
}

// isPrivateAddr reports addresses a public name must not resolve to:
// RFC 1918 / RFC 4193 private, loopback, link-local and unspecified
// (including 0.0.0.0/8).
func isPrivateAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	if a.Is4() && a.As4()[0] == 0 {
		return true
	}
	return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() || a.IsUnspecified()
}
