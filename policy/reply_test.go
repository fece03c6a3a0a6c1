package policy

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// replyConfig has one policy per block response, all blocking malware.
func replyConfig(defaultResponse string) Config {
	pol := func(resp string) PolicyConfig { return PolicyConfig{Block: []string{"malware"}, BlockResponse: resp} }
	return Config{
		BlockTTL: 90 * time.Second,
		Policies: map[string]PolicyConfig{
			"default":  pol(defaultResponse),
			"nxdomain": pol("nxdomain"),
			"nodata":   pol("NODATA"),
			"refused":  pol("refused"),
			"sinkhole": pol("sinkhole"),
			"strict":   {Mode: "allowlist", Allow: []string{"aws-endpoints"}},
			"notxt":    {Block: []string{"malware"}, BlockResponse: "sinkhole", BlockQtypes: []string{"TXT", "AAAA"}},
		},
	}
}

func TestBlockReply(t *testing.T) {
	ls := testLists(t)
	s := mustCompile(t, replyConfig(""), ls)
	custom := replyConfig("sinkhole")
	custom.Sinkhole = []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("::ffff:192.0.2.54"),
		netip.MustParseAddr("2001:db8::53")}
	sc := mustCompile(t, custom, ls)
	rpzLists := testLists(t)
	rpzLists["rpz"] = newListFormat(t, "rpz", "rpz", lists.FormatRPZ, `$TTL 60
@ IN SOA localhost. root.localhost. 1 3600 600 86400 60
nodata.rpz.example CNAME *.
nx.rpz.example CNAME .
`)
	rpzCfg := replyConfig("refused")
	rpzCfg.Policies["default"] = PolicyConfig{Block: []string{"rpz"}, BlockResponse: "refused"}
	sr := mustCompile(t, rpzCfg, rpzLists)
	v4only := replyConfig("sinkhole")
	v4only.Sinkhole = []netip.Addr{netip.MustParseAddr("192.0.2.53")}
	s4 := mustCompile(t, v4only, ls)

	const malwareText = "blocked by list malware (category malware)"
	tests := []struct {
		name     string
		snap     *Snapshot
		policy   string
		qname    string
		qtype    uint16
		edns     bool
		do       bool
		decision *Decision // nil: s.Decide(policy, qname)
		rcode    int
		answers  []string // RR strings in the answer section
		soa      bool
		ede      uint16 // 0: no EDE expected
		text     string
	}{
		{name: "nxdomain", snap: s, policy: "nxdomain", qname: "www.Evil.example.", qtype: dns.TypeA, edns: true,
			rcode: dns.RcodeNameError, soa: true, ede: 15, text: malwareText},
		{name: "nxdomain_is_default", snap: s, policy: "default", qname: "evil.example.", qtype: dns.TypeA, edns: true,
			rcode: dns.RcodeNameError, soa: true, ede: 15, text: malwareText},
		{name: "nxdomain_without_edns_has_no_opt", snap: s, policy: "nxdomain", qname: "evil.example.", qtype: dns.TypeA,
			rcode: dns.RcodeNameError, soa: true},
		{name: "nodata", snap: s, policy: "nodata", qname: "evil.example.", qtype: dns.TypeAAAA, edns: true, do: true,
			rcode: dns.RcodeSuccess, soa: true, ede: 15, text: malwareText},
		{name: "refused", snap: s, policy: "refused", qname: "evil.example.", qtype: dns.TypeA, edns: true,
			rcode: dns.RcodeRefused, ede: 15, text: malwareText},
		{name: "sinkhole_a_default", snap: s, policy: "sinkhole", qname: "evil.example.", qtype: dns.TypeA, edns: true,
			rcode: dns.RcodeSuccess, answers: []string{"evil.example.\t90\tIN\tA\t0.0.0.0"}, ede: 15, text: malwareText},
		{name: "sinkhole_aaaa_default", snap: s, policy: "sinkhole", qname: "evil.example.", qtype: dns.TypeAAAA, edns: true,
			rcode: dns.RcodeSuccess, answers: []string{"evil.example.\t90\tIN\tAAAA\t::"}, ede: 15, text: malwareText},
		{name: "sinkhole_txt_is_nodata", snap: s, policy: "sinkhole", qname: "evil.example.", qtype: dns.TypeTXT, edns: true,
			rcode: dns.RcodeSuccess, soa: true, ede: 15, text: malwareText},
		{name: "sinkhole_custom_a", snap: sc, policy: "default", qname: "EVIL.example.", qtype: dns.TypeA,
			rcode: dns.RcodeSuccess, answers: []string{"EVIL.example.\t90\tIN\tA\t192.0.2.53", "EVIL.example.\t90\tIN\tA\t192.0.2.54"}},
		{name: "sinkhole_custom_aaaa", snap: sc, policy: "default", qname: "evil.example.", qtype: dns.TypeAAAA,
			rcode: dns.RcodeSuccess, answers: []string{"evil.example.\t90\tIN\tAAAA\t2001:db8::53"}},
		{name: "sinkhole_no_v6_address_is_nodata", snap: s4, policy: "default", qname: "evil.example.", qtype: dns.TypeAAAA,
			edns: true, rcode: dns.RcodeSuccess, soa: true, ede: 15, text: malwareText},
		{name: "allowlist_mode_prohibited", snap: s, policy: "strict", qname: "example.org.", qtype: dns.TypeA, edns: true,
			rcode: dns.RcodeNameError, soa: true, ede: 18, text: "not in allow list of policy strict"},
		{name: "rpz_nodata_entry_overrides_policy", snap: sr, policy: "default", qname: "nodata.rpz.example.",
			qtype: dns.TypeA, edns: true, rcode: dns.RcodeSuccess, soa: true, ede: 15,
			text: "blocked by list rpz (category rpz)"},
		{name: "rpz_nxdomain_entry_overrides_policy", snap: sr, policy: "default", qname: "nx.rpz.example.",
			qtype: dns.TypeA, rcode: dns.RcodeNameError, soa: true},
		{name: "rpz_entry_action_in_decision", snap: s, policy: "refused", qname: "rpz.example.", qtype: dns.TypeA,
			decision: &Decision{Action: query.ActionBlock, Policy: "refused", List: "rpz",
				Match: lists.Match{Rule: "rpz.example CNAME .", Action: lists.BlockNXDomain}, EDE: 15, Reason: ReasonList},
			rcode: dns.RcodeNameError, soa: true},
		{name: "rebinding_filtered", snap: s, policy: "refused", qname: "rebind.example.", qtype: dns.TypeA, edns: true,
			decision: &Decision{Action: query.ActionBlock, Policy: "refused", EDE: 17, Reason: ReasonRebinding,
				CNAME: "rebind.example.", Addr: netip.MustParseAddr("10.0.0.1")},
			rcode: dns.RcodeRefused, ede: 17, text: "DNS rebinding: rebind.example. resolves to private address 10.0.0.1"},
		{name: "cname_target_blocked", snap: s, policy: "nxdomain", qname: "innocent.example.", qtype: dns.TypeA, edns: true,
			decision: &Decision{Action: query.ActionBlock, Policy: "nxdomain", List: "malware", Category: "malware",
				EDE: 15, Reason: ReasonCNAME, CNAME: "cloak.tracker.example."},
			rcode: dns.RcodeNameError, soa: true, ede: 15,
			text: "CNAME target cloak.tracker.example. blocked by list malware (category malware)"},
		{name: "other_stage_reason", snap: s, policy: "nodata", qname: "x7f3a.tunnel.example.", qtype: dns.TypeTXT,
			edns: true, decision: &Decision{Action: query.ActionBlock, Policy: "nodata", Category: "tunneling",
				EDE: 15, Reason: "tunneling"},
			rcode: dns.RcodeSuccess, soa: true, ede: 15, text: "blocked by policy nodata (tunneling)"},
		{name: "qtype_is_nodata_whatever_block_response", snap: s, policy: "notxt", qname: "evil.example.",
			qtype: dns.TypeAAAA, edns: true, rcode: dns.RcodeSuccess, soa: true, ede: 15,
			text: "query type AAAA blocked by policy notxt"},
		{name: "qtype_txt", snap: s, policy: "notxt", qname: "Data.Example.", qtype: dns.TypeTXT, edns: true,
			rcode: dns.RcodeSuccess, soa: true, ede: 15, text: "query type TXT blocked by policy notxt"},
		{name: "root_name", snap: s, policy: "strict", qname: ".", qtype: dns.TypeNS, edns: true,
			rcode: dns.RcodeNameError, soa: true, ede: 18, text: "not in allow list of policy strict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := new(dns.Msg)
			req.SetQuestion(tc.qname, tc.qtype)
			req.CheckingDisabled = true
			if tc.edns {
				req.SetEdns0(4096, tc.do)
			}
			orig := req.Copy()
			d := tc.snap.Decide(tc.policy, tc.qname, tc.qtype)
			if tc.decision != nil {
				d = *tc.decision
			}
			if d.Action != query.ActionBlock {
				t.Fatalf("Decide = %+v, want a block", d)
			}
			wire, err := tc.snap.BlockReply(req, d).Pack()
			if err != nil {
				t.Fatalf("Pack: %v", err)
			}
			if req.String() != orig.String() {
				t.Errorf("BlockReply modified the request")
			}
			m := new(dns.Msg)
			if err := m.Unpack(wire); err != nil {
				t.Fatalf("Unpack: %v", err)
			}
			if m.Id != req.Id || !m.Response || !m.RecursionAvailable || !m.RecursionDesired || !m.CheckingDisabled {
				t.Errorf("header: id %d (want %d) qr %v ra %v rd %v cd %v", m.Id, req.Id, m.Response,
					m.RecursionAvailable, m.RecursionDesired, m.CheckingDisabled)
			}
			if len(m.Question) != 1 || m.Question[0] != req.Question[0] {
				t.Errorf("question = %v, want %v", m.Question, req.Question)
			}
			if m.Rcode != tc.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tc.rcode])
			}
			var answers []string
			for _, rr := range m.Answer {
				answers = append(answers, rr.String())
			}
			if strings.Join(answers, "\n") != strings.Join(tc.answers, "\n") {
				t.Errorf("answers:\n%s\nwant:\n%s", strings.Join(answers, "\n"), strings.Join(tc.answers, "\n"))
			}
			checkSOA(t, m, tc.soa, tc.qname, 90)
			opt := m.IsEdns0()
			if tc.edns != (opt != nil) {
				t.Fatalf("OPT present = %v, want %v", opt != nil, tc.edns)
			}
			var ede *dns.EDNS0_EDE
			if opt != nil {
				if opt.UDPSize() != 1232 || opt.Do() != tc.do {
					t.Errorf("OPT udp size %d do %v, want 1232 %v", opt.UDPSize(), opt.Do(), tc.do)
				}
				for _, o := range opt.Option {
					if e, ok := o.(*dns.EDNS0_EDE); ok {
						ede = e
					}
				}
			}
			switch {
			case tc.ede == 0 && ede != nil:
				t.Errorf("unexpected EDE %d %q", ede.InfoCode, ede.ExtraText)
			case tc.ede != 0 && ede == nil:
				t.Errorf("no EDE, want %d %q", tc.ede, tc.text)
			case tc.ede != 0 && (ede.InfoCode != tc.ede || ede.ExtraText != tc.text):
				t.Errorf("EDE = %d %q, want %d %q", ede.InfoCode, ede.ExtraText, tc.ede, tc.text)
			}
		})
	}
}

func checkSOA(tb testing.TB, m *dns.Msg, want bool, owner string, ttl uint32) {
	tb.Helper()
	if !want {
		if len(m.Ns) != 0 {
			tb.Errorf("authority = %v, want empty", m.Ns)
		}
		return
	}
	if len(m.Ns) != 1 {
		tb.Fatalf("authority = %v, want one SOA", m.Ns)
	}
	soa, ok := m.Ns[0].(*dns.SOA)
	if !ok {
		tb.Fatalf("authority = %v, want a SOA", m.Ns[0])
	}
	if soa.Hdr.Name != owner || soa.Hdr.Ttl != ttl || soa.Minttl != ttl || soa.Ns != "dnsvalve.invalid." {
		tb.Errorf("SOA = %v, want owner %s ttl/minimum %d mname dnsvalve.invalid.", soa, owner, ttl)
	}
}

func TestBlockReplyNoQuestion(t *testing.T) {
	s := mustCompile(t, Config{}, nil)
	m := s.BlockReply(new(dns.Msg), Decision{Action: query.ActionBlock})
	if m.Rcode != dns.RcodeFormatError {
		t.Errorf("rcode = %d, want FORMERR", m.Rcode)
	}
}

// startBlockServer serves DNS on 127.0.0.1:0/udp: clients are identified
// and decided by the snapshot in st; blocked queries get BlockReply, the
// rest an A 192.0.2.1 answer. It returns the port.
func startBlockServer(tb testing.TB, st *Store) int {
	tb.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{
		PacketConn:        pc,
		NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
			snap := st.Load()
			ap, _ := netip.ParseAddrPort(w.RemoteAddr().String())
			_, policy, _ := snap.Identify(ap.Addr())
			q := r.Question[0]
			d := snap.Decide(policy, q.Name, q.Qtype)
			if d.Action == query.ActionBlock {
				_ = w.WriteMsg(snap.BlockReply(r, d))
				return
			}
			m := new(dns.Msg)
			m.SetReply(r)
			m.RecursionAvailable = true
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300},
				A: net.IPv4(192, 0, 2, 1)}}
			_ = w.WriteMsg(m)
		}),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ActivateAndServe() }()
	select {
	case <-started:
	case err := <-errc:
		tb.Fatalf("dns server: %v", err)
	}
	tb.Cleanup(func() {
		_ = srv.Shutdown()
		<-errc
	})
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// TestBlockReplyDig queries a real server with the dig binary for each
// block response and checks what dig prints.
func TestBlockReplyDig(t *testing.T) {
	digPath, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig not installed")
	}
	ls := testLists(t)
	st := NewStore(nil)
	port := startBlockServer(t, st)

	const malwareEDE = "; EDE: 15 (Blocked): (blocked by list malware (category malware))"
	soaLine := regexp.MustCompile(`(?m)^evil\.example\.\s+90\s+IN\s+SOA\s+dnsvalve\.invalid\. hostmaster\.dnsvalve\.invalid\. 1 1800 900 604800 90$`)
	tests := []struct {
		name     string
		response string   // default policy's block_response
		qtypes   []string // default policy's block_qtypes
		args     []string
		status   string
		ede      string // "" means no EDE line
		soa      bool
		answer   string // regexp an answer line must match, "" for none
	}{
		{name: "nxdomain", response: "nxdomain", args: []string{"evil.example", "A"}, status: "NXDOMAIN", ede: malwareEDE, soa: true},
		{name: "nodata", response: "nodata", args: []string{"evil.example", "AAAA"}, status: "NOERROR", ede: malwareEDE, soa: true},
		{name: "refused", response: "refused", args: []string{"evil.example", "A"}, status: "REFUSED", ede: malwareEDE},
		{name: "sinkhole_a", response: "sinkhole", args: []string{"evil.example", "A"}, status: "NOERROR", ede: malwareEDE,
			answer: `(?m)^evil\.example\.\s+90\s+IN\s+A\s+0\.0\.0\.0$`},
		{name: "sinkhole_aaaa", response: "sinkhole", args: []string{"evil.example", "AAAA"}, status: "NOERROR", ede: malwareEDE,
			answer: `(?m)^evil\.example\.\s+90\s+IN\s+AAAA\s+::$`},
		{name: "sinkhole_mx_nodata", response: "sinkhole", args: []string{"evil.example", "MX"}, status: "NOERROR",
			ede: malwareEDE, soa: true},
		{name: "no_edns_no_ede", response: "nxdomain", args: []string{"+noedns", "evil.example", "A"}, status: "NXDOMAIN", soa: true},
		{name: "allowed_passes", response: "nxdomain", args: []string{"fine.example", "A"}, status: "NOERROR",
			answer: `(?m)^fine\.example\.\s+300\s+IN\s+A\s+192\.0\.2\.1$`},
		{name: "blocked_qtype_nodata", response: "nxdomain", qtypes: []string{"NULL", "TXT"},
			args: []string{"evil.example", "NULL"}, status: "NOERROR", soa: true,
			ede: "; EDE: 15 (Blocked): (query type NULL blocked by policy default)"},
		{name: "blocked_qtype_rfc3597", response: "refused", qtypes: []string{"TYPE65399"},
			args: []string{"evil.example", "TYPE65399"}, status: "NOERROR", soa: true,
			ede: "; EDE: 15 (Blocked): (query type TYPE65399 blocked by policy default)"},
		{name: "other_qtype_passes", response: "nxdomain", qtypes: []string{"NULL", "TXT"},
			args: []string{"fine.example", "A"}, status: "NOERROR",
			answer: `(?m)^fine\.example\.\s+300\s+IN\s+A\s+192\.0\.2\.1$`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := replyConfig(tc.response)
			pc := cfg.Policies["default"]
			pc.BlockQtypes = tc.qtypes
			cfg.Policies["default"] = pc
			st.Swap(mustCompile(t, cfg, ls))
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			args := append([]string{"@127.0.0.1", "-p", strconv.Itoa(port), "+tries=1", "+time=3"}, tc.args...)
			out, err := exec.CommandContext(ctx, digPath, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("dig %v: %v\n%s", args, err, out)
			}
			text := string(out)
			if !strings.Contains(text, "status: "+tc.status+",") {
				t.Errorf("dig status is not %s:\n%s", tc.status, text)
			}
			if tc.ede != "" && !strings.Contains(text, tc.ede) {
				t.Errorf("dig output lacks %q:\n%s", tc.ede, text)
			}
			if tc.ede == "" && strings.Contains(text, "; EDE:") {
				t.Errorf("dig shows an EDE:\n%s", text)
			}
			if got := soaLine.MatchString(text); got != tc.soa {
				t.Errorf("SOA in authority = %v, want %v:\n%s", got, tc.soa, text)
			}
			if tc.answer != "" && !regexp.MustCompile(tc.answer).MatchString(text) {
				t.Errorf("dig output lacks answer %s:\n%s", tc.answer, text)
			}
			if tc.answer == "" && strings.Contains(text, "ANSWER SECTION") {
				t.Errorf("unexpected answer section:\n%s", text)
			}
			if !strings.Contains(text, "flags: qr rd ra") {
				t.Errorf("dig flags lack qr rd ra:\n%s", text)
			}
		})
	}
}
