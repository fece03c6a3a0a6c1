// Package corpus generates a labelled, deterministic DNS query corpus for
// evaluating the tunneling detector: tunnel sessions in the encodings of
// iodine, dnscat2, dns2tcp, DNSExfiltrator, dnstt and the Cobalt Strike DNS
// beacon at bulk and low-and-slow rates, and benign hard negatives (CDN
// hashes, DNSBL and AV lookups, DKIM, ACME, SRV, PTR, Kubernetes search-path
// expansions, cloud host names, UUID telemetry). Benign traffic from a
// popular-domains list is added by LegitSessions.
package corpus

import (
	"bufio"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"
)

// DNS query types used in the corpus.
const (
	TypeA       uint16 = 1
	TypeCNAME   uint16 = 5
	TypeNULL    uint16 = 10
	TypePTR     uint16 = 12
	TypeMX      uint16 = 15
	TypeTXT     uint16 = 16
	TypeAAAA    uint16 = 28
	TypeSRV     uint16 = 33
	TypeKEY     uint16 = 25
	TypeHTTPS   uint16 = 65
	TypePRIVATE uint16 = 65399
)

// Query is one query at offset At from the session start.
type Query struct {
	At    time.Duration
	Name  string
	Qtype uint16
	NX    bool // the answer would be NXDOMAIN
}

// Session is the traffic of one client to one registered domain.
type Session struct {
	Kind    string // tool or benign class, e.g. "dnscat2", "dkim"
	Tunnel  bool
	Slow    bool // low-and-slow tunnel
	Client  netip.Addr
	Queries []Query
}

// Duration is the offset of the last query.
func (s *Session) Duration() time.Duration {
	if len(s.Queries) == 0 {
		return 0
	}
	return s.Queries[len(s.Queries)-1].At
}

type gen struct {
	r      *rand.Rand
	client uint32
}

func (g *gen) nextClient() netip.Addr {
	g.client++
	c := g.client
	return netip.AddrFrom4([4]byte{10, byte(c >> 16), byte(c >> 8), byte(c)})
}

func (g *gen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.r.UintN(256))
	}
	return b
}

func (g *gen) word() string {
	words := []string{"alpha", "blue", "cloud", "delta", "echo", "fox", "gate", "hub", "ion", "jet", "kilo", "lake", "mint", "nova", "orbit", "pixel", "quartz", "river", "solar", "terra"}
	return words[g.r.IntN(len(words))]
}

// tunnelDomain is a fresh attacker domain (the registered domain plus a
// delegated zone label, as tools are configured).
func (g *gen) tunnelDomain() string {
	tlds := []string{"com", "net", "org", "io", "xyz", "info"}
	return fmt.Sprintf("%s.%s%d.%s", []string{"t", "ns", "d", "x", "tun"}[g.r.IntN(5)], g.word(), g.r.IntN(10000), tlds[g.r.IntN(len(tlds))])
}

// splitLabels cuts s into labels of at most max characters.
func splitLabels(s string, max int) string {
	var b strings.Builder
	for len(s) > max {
		b.WriteString(s[:max])
		b.WriteByte('.')
		s = s[max:]
	}
	b.WriteString(s)
	return b.String()
}

var (
	b32iodine = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz012345").WithPadding(base32.NoPadding)
	b32std    = base32.StdEncoding.WithPadding(base32.NoPadding)
	b64iodine = base64.NewEncoding("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-+").WithPadding(base64.NoPadding)
)

// base128 mimics iodine's Base128: a-z, A-Z, 0-9 and high bytes 0xbc-0xfd.
func (g *gen) base128(n int) string {
	const lo = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	for i := range b {
		if v := g.r.IntN(128); v < len(lo) {
			b[i] = lo[v]
		} else {
			b[i] = byte(0xbc + v - len(lo))
		}
	}
	return string(b)
}

// encoder builds one query name carrying a payload chunk of ~n raw bytes.
type encoder func(g *gen, seq int, n int, domain string) (string, uint16)

var tools = map[string]encoder{
	"iodine_b32": func(g *gen, seq, n int, d string) (string, uint16) {
		return splitLabels(string("0123456789abcdef"[seq%16])+b32iodine.EncodeToString(g.bytes(n)), 57) + "." + d,
			[]uint16{TypeNULL, TypePRIVATE, TypeTXT}[seq%3]
	},
	"iodine_b64": func(g *gen, seq, n int, d string) (string, uint16) {
		return splitLabels("s"+b64iodine.EncodeToString(g.bytes(n)), 57) + "." + d, TypeNULL
	},
	"iodine_b128": func(g *gen, seq, n int, d string) (string, uint16) {
		return splitLabels("z"+g.base128(n*8/7), 57) + "." + d, TypePRIVATE
	},
	"dnscat2": func(g *gen, seq, n int, d string) (string, uint16) {
		name := splitLabels(hex.EncodeToString(g.bytes(n/2+9)), 63) + "." + d
		if seq%2 == 0 {
			name = "dnscat." + name
		}
		return name, []uint16{TypeTXT, TypeMX, TypeCNAME}[seq%3]
	},
	"dns2tcp": func(g *gen, seq, n int, d string) (string, uint16) {
		return splitLabels(base64.RawStdEncoding.EncodeToString(g.bytes(n)), 63) + "." + d, []uint16{TypeTXT, TypeKEY}[seq%2]
	},
	"dnsexfiltrator_b64u": func(g *gen, seq, n int, d string) (string, uint16) {
		return fmt.Sprintf("%d.", seq) + splitLabels(base64.RawURLEncoding.EncodeToString(g.bytes(n)), 63) + "." + d, TypeTXT
	},
	"dnsexfiltrator_b32": func(g *gen, seq, n int, d string) (string, uint16) {
		return fmt.Sprintf("%d.", seq) + splitLabels(strings.ToLower(b32std.EncodeToString(g.bytes(n))), 63) + "." + d, TypeTXT
	},
	"dnstt": func(g *gen, seq, n int, d string) (string, uint16) {
		// 8-byte client id + length prefix + padding + data, base32, 63-char labels.
		return splitLabels(strings.ToLower(b32std.EncodeToString(g.bytes(n+11))), 63) + "." + d, TypeTXT
	},
	"cobaltstrike": func(g *gen, seq, n int, d string) (string, uint16) {
		// put_output: post.<seq>.<hex data labels>.<nonce>.<beacon id>.domain
		return fmt.Sprintf("post.%x.", seq) + splitLabels(hex.EncodeToString(g.bytes(n/2+4)), 56) +
			fmt.Sprintf(".%x.%x.", g.r.Uint32(), g.r.Uint32()&0xfffffff) + d, []uint16{TypeA, TypeTXT}[seq%2]
	},
}

// ToolNames lists the tunnel encoders, sorted.
func ToolNames() []string {
	n := make([]string, 0, len(tools))
	for k := range tools {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// Tunnels generates perTool bulk and perTool low-and-slow sessions per
// tool. Bulk sessions run 2-20 queries/s for 2-5 minutes; low-and-slow ones
// 1-4 queries/minute for 2 hours, with smaller chunks.
func Tunnels(seed uint64, perTool int) []Session {
	g := &gen{r: rand.New(rand.NewPCG(seed, 1)), client: 1 << 16}
	var out []Session
	for _, tool := range ToolNames() {
		enc := tools[tool]
		for i := 0; i < perTool; i++ {
			d := g.tunnelDomain()
			s := Session{Kind: tool, Tunnel: true, Client: g.nextClient()}
			rate := 2 + g.r.Float64()*18
			dur := time.Duration(120+g.r.IntN(180)) * time.Second
			var at time.Duration
			for seq := 0; at < dur; seq++ {
				n := 20 + g.r.IntN(100) // raw bytes per query; polls are short
				name, qt := enc(g, seq, n, d)
				s.Queries = append(s.Queries, Query{At: at, Name: name, Qtype: qt})
				at += time.Duration(g.r.ExpFloat64() / rate * float64(time.Second))
			}
			out = append(out, s)
		}
		for i := 0; i < perTool; i++ {
			d := g.tunnelDomain()
			s := Session{Kind: tool, Tunnel: true, Slow: true, Client: g.nextClient()}
			perMin := 1 + g.r.Float64()*3
			var at time.Duration
			for seq := 0; at < 2*time.Hour; seq++ {
				n := 12 + g.r.IntN(30)
				name, qt := enc(g, seq, n, d)
				s.Queries = append(s.Queries, Query{At: at, Name: name, Qtype: qt})
				at += time.Duration(g.r.ExpFloat64() / perMin * float64(time.Minute))
			}
			out = append(out, s)
		}
	}
	return out
}

// Benign generates hard-negative sessions, n of each kind (scaled per kind).
func Benign(seed uint64, n int) []Session {
	g := &gen{r: rand.New(rand.NewPCG(seed, 2)), client: 2 << 16}
	var out []Session
	add := func(kind string, q []Query) {
		out = append(out, Session{Kind: kind, Client: g.nextClient(), Queries: q})
	}
	// steady spreads count queries over dur, returning offsets.
	steady := func(count int, dur time.Duration) []time.Duration {
		t := make([]time.Duration, count)
		for i := range t {
			t[i] = time.Duration(g.r.Int64N(int64(dur)))
		}
		sort.Slice(t, func(a, b int) bool { return t[a] < t[b] })
		return t
	}
	hexs := func(k int) string { return hex.EncodeToString(g.bytes(k)) }
	for i := 0; i < n; i++ {
		// CDN hash names (default-ignored domains), many per client.
		var q []Query
		cdn := []string{"cloudfront.net", "akamaiedge.net", "fastly.net", "azureedge.net"}[i%4]
		for _, at := range steady(300, 10*time.Minute) {
			q = append(q, Query{At: at, Name: "d" + strings.ToLower(b32std.EncodeToString(g.bytes(8)))[:13] + "." + cdn, Qtype: TypeA})
		}
		add("cdn_hash", q)

		// DNSBL lookups: reversed IPs under a default-ignored and a non-listed DNSBL.
		q = nil
		bl := []string{"zen.spamhaus.org", "bl.mailrbl.example.org", "dnsbl.corp-mail.net"}[i%3]
		for _, at := range steady(500, 30*time.Minute) {
			ip := g.bytes(4)
			q = append(q, Query{At: at, Name: fmt.Sprintf("%d.%d.%d.%d.%s", ip[3], ip[2], ip[1], ip[0], bl), Qtype: TypeA, NX: g.r.IntN(10) > 0})
		}
		add("dnsbl", q)

		// AV reputation lookups with hashes.
		q = nil
		av := []string{"sophosxl.net", "avqs.mcafee.com"}[i%2]
		for _, at := range steady(200, 20*time.Minute) {
			q = append(q, Query{At: at, Name: hexs(16) + ".x.v3." + av, Qtype: TypeA})
		}
		add("av_lookup", q)

		// DKIM: a mail server verifying signatures; one lookup per sender domain.
		for j := 0; j < 20; j++ {
			dom := fmt.Sprintf("%s%d.com", g.word(), g.r.IntN(100000))
			sel := []string{"selector1", "google", "s1", "k1", fmt.Sprintf("s%d", 2000+g.r.IntN(30)), "mandrill"}[g.r.IntN(6)]
			add("dkim", []Query{{At: 0, Name: sel + "._domainkey." + dom, Qtype: TypeTXT}, {At: 3 * time.Second, Name: sel + "._domainkey." + dom, Qtype: TypeTXT}})
		}

		// ACME DNS-01: cert-manager checking challenges for many hosts of one domain.
		q = nil
		zone := fmt.Sprintf("%s%d.com", g.word(), i)
		for j, at := range steady(60, 5*time.Minute) {
			q = append(q, Query{At: at, Name: fmt.Sprintf("_acme-challenge.%s-%d.%s", g.word(), j%20, zone), Qtype: TypeTXT})
		}
		add("acme", q)

		// SRV discovery.
		q = nil
		for j, at := range steady(40, 10*time.Minute) {
			srv := []string{"_ldap._tcp.dc._msdcs", "_kerberos._udp", "_sip._tls", "_xmpp-server._tcp", "_ldap._tcp.default-first-site-name._sites"}[j%5]
			q = append(q, Query{At: at, Name: srv + ".corp" + fmt.Sprint(i) + ".example.com", Qtype: TypeSRV})
		}
		add("srv", q)

		// PTR lookups (ignored reverse zones).
		q = nil
		for _, at := range steady(300, 10*time.Minute) {
			ip := g.bytes(4)
			q = append(q, Query{At: at, Name: fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa", ip[3], ip[2], ip[1], ip[0]), Qtype: TypePTR})
		}
		add("ptr", q)

		// Kubernetes search-path expansions: ndots:5 turns each lookup into
		// up to five queries, most of them NXDOMAIN.
		q = nil
		ns := []string{"default", "payments", "kube-system", "monitoring"}[i%4]
		for j, at := range steady(200, 5*time.Minute) {
			var name string
			switch j % 3 {
			case 0:
				name = fmt.Sprintf("%s-%d.%s.svc.cluster.local", g.word(), j%50, ns)
			case 1:
				name = fmt.Sprintf("api.%s%d.com.%s.svc.cluster.local", g.word(), j, ns)
			default:
				name = fmt.Sprintf("%s.%s-%d.svc.cluster.local", g.word(), g.word(), j)
			}
			q = append(q, Query{At: at, Name: name, Qtype: []uint16{TypeA, TypeAAAA}[j%2], NX: j%3 != 0})
		}
		add("k8s_search", q)

		// Cloud host names: a monitoring host resolving many instances.
		q = nil
		for j, at := range steady(400, 10*time.Minute) {
			ip := g.bytes(2)
			var name string
			switch j % 3 {
			case 0:
				name = fmt.Sprintf("ip-10-0-%d-%d.ec2.internal", ip[0], ip[1])
			case 1:
				name = fmt.Sprintf("ip-10-1-%d-%d.us-west-2.compute.internal", ip[0], ip[1])
			default:
				name = fmt.Sprintf("ec2-54-%d-%d-%d.compute-1.amazonaws.com", ip[0], ip[1], g.r.IntN(256))
			}
			q = append(q, Query{At: at, Name: name, Qtype: TypeA})
		}
		add("cloud_hosts", q)

		// Telemetry with a UUID per event, one a minute for two hours.
		q = nil
		tel := fmt.Sprintf("events.%s-telemetry%d.com", g.word(), i)
		for j := 0; j < 120; j++ {
			u := g.bytes(16)
			q = append(q, Query{At: time.Duration(j) * time.Minute, Name: fmt.Sprintf("%x-%x-%x-%x-%x.%s", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16], tel), Qtype: TypeA})
		}
		add("uuid_telemetry", q)

		// A few hashed asset hosts on a non-listed CDN.
		q = nil
		for j, at := range steady(8, time.Minute) {
			q = append(q, Query{At: at, Name: hexs(16) + ".assets.cdn-" + fmt.Sprint(i) + ".com", Qtype: []uint16{TypeA, TypeAAAA, TypeHTTPS}[j%3]})
		}
		add("hashed_assets", q)
	}
	return out
}

// LegitSessions turns a popular-domain list (one FQDN per line) into benign
// sessions: clients, each taking a slice of perClient names, resolve
// them (A, AAAA, sometimes HTTPS, repeated) over an hour. Each client's
// names are grouped into one session per registered domain by the caller;
// here a session is per client.
func LegitSessions(seed uint64, r io.Reader, perClient, maxNames int) ([]Session, error) {
	g := &gen{r: rand.New(rand.NewPCG(seed, 3)), client: 3 << 16}
	sc := bufio.NewScanner(r)
	var names []string
	for sc.Scan() && (maxNames <= 0 || len(names) < maxNames) {
		if n := strings.TrimSpace(sc.Text()); n != "" && !strings.HasPrefix(n, "#") {
			names = append(names, n)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("corpus: read legit list: %w", err)
	}
	var out []Session
	for i := 0; i < len(names); i += perClient {
		slice := names[i:min(i+perClient, len(names))]
		s := Session{Kind: "legit", Client: g.nextClient()}
		for _, n := range slice {
			reps := 1 + g.r.IntN(3)
			for k := 0; k < reps; k++ {
				at := time.Duration(g.r.Int64N(int64(time.Hour)))
				s.Queries = append(s.Queries, Query{At: at, Name: n, Qtype: TypeA}, Query{At: at, Name: n, Qtype: TypeAAAA})
				if g.r.IntN(4) == 0 {
					s.Queries = append(s.Queries, Query{At: at, Name: n, Qtype: TypeHTTPS})
				}
			}
		}
		sort.SliceStable(s.Queries, func(a, b int) bool { return s.Queries[a].At < s.Queries[b].At })
		out = append(out, s)
	}
	return out, nil
}
