package policy

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Defaults applied by Compile to zero values.
const (
	// DefaultPolicy is the policy for clients in no group. Compile adds an
	// open policy with no lists under this name when the config has none.
	DefaultPolicy = "default"

	// DefaultBlockTTL is the TTL of synthesized block answers and of the
	// SOA that lets clients cache the denial. AdGuard Home uses 10s,
	// Pi-hole 2s, Blocky 6h: one minute stops retry storms from blocked
	// clients while an allow-list change still takes effect within a minute.
	DefaultBlockTTL = 60 * time.Second
)

// Policy modes (PolicyConfig.Mode).
const (
	ModeOpen      = "open"      // allow unless blocked
	ModeAllowlist = "allowlist" // block unless allowed
)

// Block responses (PolicyConfig.BlockResponse).
const (
	ResponseNXDomain = "nxdomain"
	ResponseNoData   = "nodata"
	ResponseRefused  = "refused"
	ResponseSinkhole = "sinkhole"
)

// CNAME handling (PolicyConfig.CNAME).
const (
	CNAMEInspect = "inspect"
	CNAMETrust   = "trust"
)

// Detect modes (PolicyConfig.Detect), stored for the detect stage.
const (
	DetectOff     = "off"
	DetectObserve = "observe"
	DetectEnforce = "enforce"
)

// Decision reasons (Decision.Reason).
const (
	ReasonList      = "list"           // a list entry matched the query name
	ReasonAllowlist = "allowlist_mode" // allowlist mode and no allow list covers the name
	ReasonCNAME     = "cname"          // a CNAME/DNAME target in the answer was refused
	ReasonRebinding = "rebinding"      // a public name answered with a private address
	ReasonQtype     = "qtype"          // the query type is in the policy's block_qtypes
)

// ErrConfig is wrapped by every error Compile returns.
var ErrConfig = errors.New("invalid policy config")

// Config is the policy-relevant part of the dnsvalve configuration
// (sections clients and policies). The zero value is valid: every client
// gets an open "default" policy with no lists.
type Config struct {
	// Groups are the client groups (clients.groups); the first group whose
	// CIDRs contain the client wins.
	Groups []GroupConfig
	// Names maps a client IP to a workload name for logs (clients.names).
	Names map[string]string
	// FileNames are more workload names, read from clients.names_files
	// (see ParseNames); Names wins where both name an address.
	FileNames map[netip.Addr]string
	// Policies by name (policies). "default" applies to clients in no
	// group; Compile adds an open one if it is absent.
	Policies map[string]PolicyConfig
	// BlockTTL is the TTL of synthesized block answers and of their SOA
	// (also its minimum field). Zero means DefaultBlockTTL.
	BlockTTL time.Duration
	// Sinkhole holds the addresses sinkhole answers point to: IPv4 ones
	// answer A queries, IPv6 ones AAAA queries. Empty means 0.0.0.0 and ::.
	Sinkhole []netip.Addr
}

// GroupConfig is one entry of clients.groups.
type GroupConfig struct {
	Name string
	// CIDRs are prefixes ("10.0.8.0/24", "fd00::/8") or single addresses.
	// IPv4-mapped IPv6 prefixes are treated as the IPv4 prefix.
	CIDRs []string
	// Policy is the name of the policy for the group's clients; empty
	// means "default".
	Policy string
}

// PolicyConfig is one entry of policies. Zero values take the documented
// defaults.
type PolicyConfig struct {
	// Mode is "open" (default: allow unless blocked) or "allowlist"
	// (block unless allowed).
	Mode string
	// Allow, Block and Alert name lists or categories (every list with that
	// category). A name that is both a list and a category means both.
	Allow, Block, Alert []string
	// BlockResponse is nxdomain (default), nodata, refused or sinkhole. An
	// RPZ entry that says NXDOMAIN or NODATA explicitly overrides it.
	BlockResponse string
	// CNAME is "inspect" (default) or "trust". inspect: CNAME/DNAME
	// targets in upstream answers are checked against the block lists and,
	// in allowlist mode, must each be allowed. trust: the decision on the
	// query name covers the whole answer; targets are not checked.
	CNAME string
	// Rebinding (rebinding_protection) blocks answers that give a private,
	// loopback, link-local or unspecified address for a name that is not
	// itself in a private zone, in RebindingExempt, or in an allow list.
	Rebinding bool
	// RebindingExempt are domains (with their subdomains) that may resolve
	// to private addresses, e.g. "corp.example.com".
	RebindingExempt []string
	// Detect is off, observe (default) or enforce; stored for the detect
	// stage, see Snapshot.DetectMode.
	Detect string
	// BlockQtypes (block_qtypes) are query types, as dig names them
	// ("NULL", "TXT", "AAAA") or in RFC 3597 form ("TYPE65399"), that the
	// policy blocks for every name, before any list is consulted: an
	// allow list does not lift them. They are answered NODATA (the name
	// may exist with other types, and an NXDOMAIN would deny them all to
	// the client's cache) with EDE 15 Blocked.
	BlockQtypes []string
}

// Matcher is a compiled domain list as the policy engine consumes it.
// *lists.List implements it. Match must be safe for concurrent use, must
// accept lower-case names without a trailing dot, and report subdomain
// matches itself (a list entry example.com matching a.example.com is the
// list's business).
type Matcher interface {
	// Match reports the entry matching name. An exception entry
	// (Action lists.Allow) means the list explicitly excludes the name.
	Match(name string) (lists.Match, bool)
	Name() string
	Category() string
}

var _ Matcher = (*lists.List)(nil)

// Compile validates cfg against the loaded lists (keyed by list name) and
// builds an immutable Snapshot. Every problem is reported, joined with
// errors.Join, each naming the offending config key, e.g.
//
//	policies.payments.block: unknown list or category "malwar"
//
// All returned errors wrap ErrConfig. Compile keeps references to the
// matchers, which must not change afterwards.
func Compile(cfg Config, lists map[string]Matcher) (*Snapshot, error) {
	c := compiler{lists: lists, categories: map[string][]string{}}
	s := &Snapshot{
		policies: map[string]*compiledPolicy{},
		names:    map[netip.Addr]string{},
		blockTTL: cfg.BlockTTL,
	}

	for _, name := range sortedKeys(lists) {
		m := lists[name]
		if m == nil {
			c.errf("lists.%s: nil list", name)
			continue
		}
		if cat := m.Category(); cat != "" {
			c.categories[cat] = append(c.categories[cat], name)
		}
	}

	switch {
	case s.blockTTL == 0:
		s.blockTTL = DefaultBlockTTL
	case s.blockTTL < time.Second:
		c.errf("block_ttl: %s is below one second", s.blockTTL)
	case s.blockTTL > time.Duration(math.MaxInt32)*time.Second:
		c.errf("block_ttl: %s is too large", s.blockTTL)
	}
	s.ttl = uint32(s.blockTTL / time.Second)

	if len(cfg.Sinkhole) == 0 {
		s.sink4 = []netip.Addr{netip.IPv4Unspecified()}
		s.sink6 = []netip.Addr{netip.IPv6Unspecified()}
	}
	for i, a := range cfg.Sinkhole {
		a = a.Unmap()
		switch {
		case !a.IsValid():
			c.errf("sinkhole[%d]: invalid address", i)
		case a.Zone() != "":
			c.errf("sinkhole[%d]: address %q must not have a zone", i, a)
		case a.Is4():
			s.sink4 = append(s.sink4, a)
		default:
			s.sink6 = append(s.sink6, a)
		}
	}

	pcfgs := cfg.Policies
	if _, ok := pcfgs[DefaultPolicy]; !ok {
		pcfgs = make(map[string]PolicyConfig, len(cfg.Policies)+1)
		for k, v := range cfg.Policies {
			pcfgs[k] = v
		}
		pcfgs[DefaultPolicy] = PolicyConfig{}
	}
	for _, name := range sortedKeys(pcfgs) {
		p := c.policy(name, pcfgs[name])
		s.policies[name] = p
		s.stripHints = s.stripHints || p.strip4 || p.strip6
		s.policyNames = append(s.policyNames, name)
	}
	s.def = s.policies[DefaultPolicy]

	seen := map[string]int{}
	for i, g := range cfg.Groups {
		key := fmt.Sprintf("clients.groups[%d]", i)
		cg := group{name: g.Name, policy: g.Policy}
		if g.Name == "" {
			c.errf("%s.name: required", key)
		} else if j, dup := seen[g.Name]; dup {
			c.errf("%s.name: duplicate group %q (also clients.groups[%d])", key, g.Name, j)
		} else {
			seen[g.Name] = i
		}
		if cg.policy == "" {
			cg.policy = DefaultPolicy
		}
		if _, ok := s.policies[cg.policy]; !ok {
			c.errf("%s.policy: unknown policy %q", key, g.Policy)
		}
		if len(g.CIDRs) == 0 {
			c.errf("%s.cidrs: at least one CIDR required", key)
		}
		for j, str := range g.CIDRs {
			p, err := parsePrefix(str)
			if err != nil {
				c.errf("%s.cidrs[%d]: %v", key, j, err)
				continue
			}
			cg.prefixes = append(cg.prefixes, p)
		}
		s.groups = append(s.groups, cg)
	}

	for _, ip := range sortedKeys(cfg.Names) {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			c.errf("clients.names[%q]: invalid IP address", ip)
			continue
		}
		a = a.Unmap().WithZone("")
		if prev, dup := s.names[a]; dup {
			c.errf("clients.names[%q]: address %s already named %q", ip, a, prev)
			continue
		}
		s.names[a] = cfg.Names[ip]
	}
	if len(cfg.FileNames) > 0 {
		names := make(map[netip.Addr]string, len(s.names)+len(cfg.FileNames))
		for a, n := range cfg.FileNames {
			names[a] = n
		}
		for a, n := range s.names {
			names[a] = n
		}
		s.names = names
	}

	if len(c.errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(c.errs...))
	}
	return s, nil
}

// compiler accumulates errors while compiling a Config.
type compiler struct {
	lists      map[string]Matcher
	categories map[string][]string // category -> list names, sorted
	errs       []error
}

func (c *compiler) errf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

func (c *compiler) policy(name string, pc PolicyConfig) *compiledPolicy {
	key := "policies." + name
	p := &compiledPolicy{
		name:     name,
		mode:     pc.Mode,
		response: pc.BlockResponse,
		cname:    pc.CNAME,
		detect:   pc.Detect,
		rebind:   pc.Rebinding,
	}
	if name == "" {
		c.errf("policies: empty policy name")
	}
	p.mode = c.oneOf(key+".mode", p.mode, ModeOpen, ModeOpen, ModeAllowlist)
	p.response = c.oneOf(key+".block_response", p.response, ResponseNXDomain,
		ResponseNXDomain, ResponseNoData, ResponseRefused, ResponseSinkhole)
	p.cname = c.oneOf(key+".cname", p.cname, CNAMEInspect, CNAMEInspect, CNAMETrust)
	p.detect = c.oneOf(key+".detect", p.detect, DetectObserve, DetectOff, DetectObserve, DetectEnforce)
	p.allow = c.resolve(key+".allow", pc.Allow)
	p.block = c.resolve(key+".block", pc.Block)
	p.alert = c.resolve(key+".alert", pc.Alert)
	p.blockQtypes = c.qtypes(key+".block_qtypes", pc.BlockQtypes)
	p.qtypeSource = key + ".block_qtypes"
	for _, t := range p.blockQtypes {
		p.qtypeRules = append(p.qtypeRules, qtypeString(t))
	}
	_, p.strip4 = slices.BinarySearch(p.blockQtypes, dns.TypeA)
	_, p.strip6 = slices.BinarySearch(p.blockQtypes, dns.TypeAAAA)
	for i, d := range pc.RebindingExempt {
		n := normalize(d)
		if n == "" {
			c.errf("%s.rebinding_exempt[%d]: empty domain", key, i)
			continue
		}
		p.rebindExempt = append(p.rebindExempt, n)
	}
	return p
}

// qtypes parses block_qtypes into a sorted set, see ParseQtype.
func (c *compiler) qtypes(key string, names []string) []uint16 {
	var out []uint16
	for i, v := range names {
		t, err := ParseQtype(v)
		if err != nil {
			c.errf("%s[%d]: %v", key, i, err)
			continue
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// TypeFromString returns the RR type a mnemonic names as dig writes it
// ("AAAA", "null"; any case) or in RFC 3597 form ("TYPE65399"), and
// whether it names one.
func TypeFromString(v string) (uint16, bool) {
	u := strings.ToUpper(v)
	if t, ok := dns.StringToType[u]; ok {
		return t, true
	}
	if num, found := strings.CutPrefix(u, "TYPE"); found {
		if n, err := strconv.ParseUint(num, 10, 16); err == nil && n > 0 {
			return uint16(n), true
		}
	}
	return 0, false
}

// ParseQtype parses a query type of block_qtypes: a mnemonic as dig
// writes it ("NULL", "txt") or RFC 3597's "TYPE65399". A type dnsvalve
// never forwards (zone transfers, meta types) is an error: the server
// answers those itself, before any policy.
func ParseQtype(v string) (uint16, error) {
	t, ok := TypeFromString(v)
	switch {
	case v == "":
		return 0, errors.New(`empty query type (YAML reads a bare NULL as null: write "NULL", quoted)`)
	case !ok:
		return 0, fmt.Errorf("unknown query type %q (want a type such as NULL, TXT or TYPE65399)", v)
	case query.Unservable(dns.ClassINET, t) != "":
		return 0, fmt.Errorf("%s queries are never forwarded (dnsvalve answers them itself, before any policy)", v)
	}
	return t, nil
}

// oneOf validates an enumerated value, returning def for "".
func (c *compiler) oneOf(key, v, def string, valid ...string) string {
	if v == "" {
		return def
	}
	lv := strings.ToLower(v)
	if slices.Contains(valid, lv) {
		return lv
	}
	c.errf("%s: invalid value %q (want %s)", key, v, strings.Join(valid, " | "))
	return def
}

// resolve turns list names and categories into matchers, without
// duplicates, in configuration order (categories expand in list-name order).
func (c *compiler) resolve(key string, names []string) []Matcher {
	var out []Matcher
	seen := map[string]bool{}
	add := func(list string) {
		if !seen[list] {
			seen[list] = true
			out = append(out, c.lists[list])
		}
	}
	for _, n := range names {
		m, isList := c.lists[n]
		cat, isCat := c.categories[n]
		if (!isList || m == nil) && !isCat {
			c.errf("%s: unknown list or category %q", key, n)
			continue
		}
		if isList && m != nil {
			add(n)
		}
		for _, l := range cat {
			add(l)
		}
	}
	return out
}

// parsePrefix accepts a CIDR or a single address, unmapping IPv4-mapped
// IPv6 prefixes (::ffff:10.0.0.0/104 is 10.0.0.0/8).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: IPv4-mapped prefix shorter than /96", s)
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
