package policy

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Decision is the outcome of matching a name against a policy. The zero
// value (ActionNone) means no list had anything to say: answer normally.
type Decision struct {
	// Action is ActionNone, ActionAllow, ActionBlock or ActionAlert.
	Action query.Action
	// Policy is the policy that decided.
	Policy string
	// List and Category name the list whose entry matched ("" for
	// allowlist-mode and rebinding blocks).
	List, Category string
	// Match is the list entry: rule, source file or URL, line.
	Match lists.Match
	// EDE is the RFC 8914 info code for blocks: dns.ExtendedErrorCodeBlocked
	// (list), ExtendedErrorCodeProhibited (allowlist mode) or
	// ExtendedErrorCodeFiltered (rebinding). Zero otherwise.
	EDE uint16
	// Reason is ReasonList, ReasonAllowlist, ReasonCNAME or ReasonRebinding,
	// "" for ActionNone.
	Reason string
	// CNAME is, for response-side decisions, the CNAME/DNAME target that
	// matched, or for rebinding the owner name of the private address.
	CNAME string
	// Addr is the private address that triggered a rebinding block.
	Addr netip.Addr
}

// Snapshot is a compiled policy configuration. It is immutable after
// Compile and safe for concurrent use by any number of goroutines.
type Snapshot struct {
	groups      []group
	names       map[netip.Addr]string
	policies    map[string]*compiledPolicy
	policyNames []string // sorted
	def         *compiledPolicy
	blockTTL    time.Duration
	ttl         uint32 // blockTTL in seconds
	sink4       []netip.Addr
	sink6       []netip.Addr
	stripHints  bool // a policy blocks A or AAAA: StripHints has work
}

type group struct {
	name     string
	policy   string
	prefixes []netip.Prefix
}

type compiledPolicy struct {
	name         string
	mode         string
	response     string
	cname        string
	detect       string
	rebind       bool
	rebindExempt []string
	blockQtypes  []uint16 // sorted
	qtypeRules   []string // blockQtypes[i] as written in logs: "NULL", "TYPE65399"
	qtypeSource  string   // "policies.NAME.block_qtypes", the Source of its blocks
	strip4       bool     // A is blocked: strip ipv4hint from HTTPS/SVCB answers
	strip6       bool     // AAAA is blocked: strip ipv6hint
	allow        []Matcher
	block        []Matcher
	alert        []Matcher
}

// Identify returns the client group (first group whose CIDRs contain addr,
// "" for none), the policy that applies (the group's, or "default") and the
// workload name from clients.names ("" when unknown). IPv4-mapped IPv6
// addresses are treated as IPv4; zones are ignored.
func (s *Snapshot) Identify(addr netip.Addr) (group, policy, name string) {
	a := addr.Unmap().WithZone("")
	policy = DefaultPolicy
	for i := range s.groups {
		g := &s.groups[i]
		if g.contains(a) {
			group, policy = g.name, g.policy
			break
		}
	}
	return group, policy, s.names[a]
}

func (g *group) contains(a netip.Addr) bool {
	for _, p := range g.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Decide matches qname (any case, trailing dot optional) and qtype against
// the policy. Precedence: a query type in the policy's block_qtypes blocks
// (EDE Blocked, answered NODATA); otherwise an allow list match allows;
// otherwise a block
// list match blocks (EDE Blocked) unless another block list has an
// exception for the name (adblock "@@", RPZ passthru) and no block entry is
// $important; otherwise an allowlist-mode policy blocks (EDE Prohibited);
// otherwise an alert list match alerts; otherwise an exception in a block
// list allows the name (open mode).
//
// An unknown policy name falls back to "default". Decide does not
// allocate for lower-case names.
func (s *Snapshot) Decide(policy string, qname string, qtype uint16) Decision {
	return s.policy(policy).decide(normalize(qname), qtype)
}

func (s *Snapshot) policy(name string) *compiledPolicy {
	if p, ok := s.policies[name]; ok {
		return p
	}
	return s.def
}

// DetectMode returns the policy's detect mode: off, observe or enforce.
// An unknown policy name falls back to "default".
func (s *Snapshot) DetectMode(policy string) string { return s.policy(policy).detect }

// Policies returns the policy names, sorted. The caller may modify the
// returned slice.
func (s *Snapshot) Policies() []string {
	return append([]string(nil), s.policyNames...)
}

// BlockTTL returns the TTL used for synthesized block answers.
func (s *Snapshot) BlockTTL() time.Duration { return s.blockTTL }

// decide evaluates a normalized name and its query type.
func (p *compiledPolicy) decide(name string, qtype uint16) Decision {
	if len(p.blockQtypes) > 0 {
		if i, blocked := slices.BinarySearch(p.blockQtypes, qtype); blocked {
			return Decision{Action: query.ActionBlock, Policy: p.name,
				Match: lists.Match{Rule: p.qtypeRules[i], Source: p.qtypeSource},
				EDE:   dns.ExtendedErrorCodeBlocked, Reason: ReasonQtype}
		}
	}
	if l, m, ok := p.allowed(name); ok {
		return Decision{Action: query.ActionAllow, Policy: p.name, List: l.Name(),
			Category: l.Category(), Match: m, Reason: ReasonList}
	}
	blk, exc := matchTier(p.block, name)
	if blk.list != nil {
		return Decision{Action: query.ActionBlock, Policy: p.name, List: blk.list.Name(),
			Category: blk.list.Category(), Match: blk.m, EDE: dns.ExtendedErrorCodeBlocked,
			Reason: ReasonList}
	}
	if p.mode == ModeAllowlist {
		return Decision{Action: query.ActionBlock, Policy: p.name,
			EDE: dns.ExtendedErrorCodeProhibited, Reason: ReasonAllowlist}
	}
	// An exception undoes blocks, not alerts: an ad list's "@@" rule must
	// not silence a security alert list.
	if alt, _ := matchTier(p.alert, name); alt.list != nil {
		return Decision{Action: query.ActionAlert, Policy: p.name, List: alt.list.Name(),
			Category: alt.list.Category(), Match: alt.m, Reason: ReasonList}
	}
	if exc.list != nil {
		return Decision{Action: query.ActionAllow, Policy: p.name, List: exc.list.Name(),
			Category: exc.list.Category(), Match: exc.m, Reason: ReasonList}
	}
	return Decision{Policy: p.name}
}

// allowed reports the first allow list that contains name. Every entry of
// an allow list allows, exceptions ("@@||name^") included: published allow
// lists (hagezi's, AdGuard's exceptions) are written as exceptions, and
// AdGuard Home reads them so.
func (p *compiledPolicy) allowed(name string) (Matcher, lists.Match, bool) {
	if name == "" {
		return nil, lists.Match{}, false
	}
	for _, l := range p.allow {
		if m, ok := l.Match(name); ok {
			return l, m, true
		}
	}
	return nil, lists.Match{}, false
}

type hit struct {
	list Matcher
	m    lists.Match
}

// matchTier evaluates block or alert lists as one rule set, whatever list
// each rule is in: the strongest match wins (by lists.Match.Rank: an
// $important exception beats everything, an $important entry beats plain
// exceptions, and any exception beats plain entries), the first list's
// among equals. It is returned as win, or as exc when it is an exception
// (win is then empty: the exception cancels the block entries).
func matchTier(ls []Matcher, name string) (win, exc hit) {
	if name == "" {
		return hit{}, hit{}
	}
	var best hit
	for _, l := range ls {
		m, ok := l.Match(name)
		if !ok || best.list != nil && m.Rank() <= best.m.Rank() {
			continue
		}
		best = hit{l, m}
		if m.Action == lists.Allow && m.Important {
			break // nothing beats it
		}
	}
	if best.m.Action == lists.Allow {
		return hit{}, best
	}
	return best, hit{}
}

// normalize lower-cases name and strips one trailing dot. It allocates only
// when name has upper-case ASCII letters.
func normalize(name string) string {
	name = strings.TrimSuffix(name, ".")
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(name)
		}
	}
	return name
}
