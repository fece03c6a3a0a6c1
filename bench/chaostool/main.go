// Command chaostool is the chaos run's helper (bench/chaos/run.sh): query files
// for dnsperf, an answer verifier, malformed traffic and the query-log check.
//
//	chaostool gen -dir D                  write dnsperf data files
//	chaostool verify -dur 720s ...        probe answers for correctness in a loop
//	chaostool malformed -dur 720s ...     send malformed UDP/TCP traffic in a loop
//	chaostool analyze FILES...            check every query-log record
//	chaostool q -src IP -name N -type T   one query, print "RCODE n_answers EDE..."
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chaostool gen|verify|malformed|analyze|q ...")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "gen":
		gen(os.Args[2:])
	case "verify":
		verify(os.Args[2:])
	case "malformed":
		malformed(os.Args[2:])
	case "analyze":
		analyze(os.Args[2:])
	case "q":
		oneQuery(os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, "unknown subcommand")
		os.Exit(2)
	}
}

// ---------------------------------------------------------------- names

const (
	nAllowed = 5000 // www-N.ok.test
	nLStable = 500  // stable-N.lblock.test (local hosts list)
	nUStable = 500  // stable-N.ublock.test (URL list)
	nAlert   = 100  // stable-N.alert.test
	nCorp    = 200  // ok-N.corp.test (corp-allow list)
)

var b32 = "abcdefghijklmnopqrstuvwxyz234567"

func randLabel(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = b32[r.Intn(len(b32))]
	}
	return string(b)
}

func gen(args []string) {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	dir := fs.String("dir", ".", "output dir")
	n := fs.Int("n", 1000000, "lines of the main file")
	_ = fs.Parse(args)
	r := rand.New(rand.NewSource(42))
	z := rand.NewZipf(r, 1.1, 1, nAllowed-1)
	w := func(name string) *bufio.Writer {
		f, err := os.Create(*dir + "/" + name)
		must(err)
		return bufio.NewWriterSize(f, 1<<20)
	}
	m := w("mix.txt")
	for i := 0; i < *n; i++ {
		p := r.Intn(100)
		switch {
		case p < 48:
			t := "A"
			if r.Intn(4) == 0 {
				t = "AAAA"
			}
			fmt.Fprintf(m, "www-%d.ok.test %s\n", z.Uint64(), t)
		case p < 60:
			if r.Intn(3) == 0 {
				fmt.Fprintf(m, "sub%d.stable-%d.lblock.test A\n", r.Intn(50), r.Intn(nLStable))
			} else {
				fmt.Fprintf(m, "stable-%d.lblock.test A\n", r.Intn(nLStable))
			}
		case p < 70:
			fmt.Fprintf(m, "stable-%d.ublock.test A\n", r.Intn(nUStable))
		case p < 74:
			fmt.Fprintf(m, "g%d-%d.lrot.test A\n", r.Intn(200), r.Intn(100))
		case p < 76:
			fmt.Fprintf(m, "g%d-%d.urot.test A\n", r.Intn(200), r.Intn(100))
		case p < 81:
			fmt.Fprintf(m, "stable-%d.alert.test A\n", r.Intn(nAlert))
		case p < 91:
			fmt.Fprintf(m, "%s.%s.t.tunnel.test TXT\n", randLabel(r, 50), randLabel(r, 20))
		case p < 95:
			fmt.Fprintf(m, "q-%d.nxdomain.ok.test A\n", r.Intn(100000))
		case p < 97:
			fmt.Fprintf(m, "www-%d.ok.test NULL\n", r.Intn(nAllowed))
		default:
			fmt.Fprintf(m, "www-%d.ok.test MX\n", r.Intn(nAllowed))
		}
	}
	must(m.Flush())
	s := w("sens.txt") // from 127.0.0.2 (allowlist mode)
	for i := 0; i < 200000; i++ {
		p := r.Intn(100)
		switch {
		case p < 50:
			fmt.Fprintf(s, "ok-%d.corp.test A\n", r.Intn(nCorp))
		case p < 75:
			fmt.Fprintf(s, "www-%d.ok.test A\n", r.Intn(nAllowed))
		case p < 85:
			fmt.Fprintf(s, "stable-%d.lblock.test A\n", r.Intn(nLStable))
		case p < 95:
			fmt.Fprintf(s, "%s.t.corp.test TXT\n", randLabel(r, 50)) // allowed by corp-allow, tunneling-like
		default:
			fmt.Fprintf(s, "%s.t.tunnel2.test TXT\n", randLabel(r, 50))
		}
	}
	must(s.Flush())
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// ---------------------------------------------------------------- fake upstream's answers

func nameHash(name string) uint32 {
	f := fnv.New32a()
	_, _ = io.WriteString(f, name)
	return f.Sum32()
}

// expectedA returns the sorted A rdata the fake upstream gives name (lower-case, fqdn).
func expectedA(name string) []string {
	h := nameHash(strings.ToLower(name))
	first := h % 254
	out := []string{fmt.Sprintf("192.0.2.%d", first+1)}
	if h&(1<<20) != 0 {
		out = append(out, fmt.Sprintf("192.0.2.%d", (first+1)%254+1))
	}
	sort.Strings(out)
	return out
}

// ---------------------------------------------------------------- one query

func exchange(server, src, proto, name string, qtype uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: proto, Timeout: timeout}
	if src != "" {
		ip := net.ParseIP(src)
		if proto == "tcp" {
			c.Dialer = &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: timeout}
		} else {
			c.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}, Timeout: timeout}
		}
	}
	r, _, err := c.Exchange(m, server)
	return r, err
}

func aSet(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	sort.Strings(out)
	return out
}

func edes(r *dns.Msg) string {
	var s []string
	if o := r.IsEdns0(); o != nil {
		for _, opt := range o.Option {
			if e, ok := opt.(*dns.EDNS0_EDE); ok {
				s = append(s, fmt.Sprintf("%d:%q", e.InfoCode, e.ExtraText))
			}
		}
	}
	return strings.Join(s, ",")
}

func oneQuery(args []string) {
	fs := flag.NewFlagSet("q", flag.ExitOnError)
	server := fs.String("server", "127.0.0.1:5353", "")
	src := fs.String("src", "", "")
	proto := fs.String("proto", "udp", "")
	name := fs.String("name", "", "")
	qt := fs.String("type", "A", "")
	_ = fs.Parse(args)
	r, err := exchange(*server, *src, *proto, *name, dns.StringToType[strings.ToUpper(*qt)], 3*time.Second)
	if err != nil {
		fmt.Println("ERROR", strings.ReplaceAll(err.Error(), " ", "_"))
		os.Exit(1)
	}
	fmt.Println(dns.RcodeToString[r.Rcode], len(r.Answer), strings.Join(aSet(r), ","), edes(r))
}

// ---------------------------------------------------------------- verify loop

func verify(args []string) {
	fs := flag.NewFlagSet("verify", flag.ExitOnError)
	server := fs.String("server", "127.0.0.1:5353", "")
	dur := fs.Duration("dur", 720*time.Second, "")
	every := fs.Duration("every", 50*time.Millisecond, "")
	_ = fs.Parse(args)
	r := rand.New(rand.NewSource(time.Now().UnixNano()))
	end := time.Now().Add(*dur)
	var ok, fail, timeouts int
	counts := map[string][2]int{}
	report := func(kind, msg string) {
		fail++
		fmt.Printf("%s FAIL %s %s\n", time.Now().Format("15:04:05.000"), kind, msg)
	}
	for time.Now().Before(end) {
		kind := r.Intn(9)
		var name, src, proto = "", "127.0.0.1", "udp"
		qtype := dns.TypeA
		if r.Intn(5) == 0 {
			proto = "tcp"
		}
		var check func(m *dns.Msg) string
		switch kind {
		case 0, 1: // allowed: answer equals the fake upstream's
			name = fmt.Sprintf("www-%d.ok.test.", r.Intn(nAllowed))
			check = func(m *dns.Msg) string {
				want := expectedA(name)
				if m.Rcode != dns.RcodeSuccess || fmt.Sprint(aSet(m)) != fmt.Sprint(want) {
					return fmt.Sprintf("rcode=%s a=%v want %v", dns.RcodeToString[m.Rcode], aSet(m), want)
				}
				for _, rr := range m.Answer {
					if rr.Header().Ttl > 30 {
						return fmt.Sprintf("ttl %d > upstream ttl", rr.Header().Ttl)
					}
				}
				return ""
			}
		case 2:
			name = fmt.Sprintf("stable-%d.lblock.test.", r.Intn(nLStable))
			check = wantBlocked(dns.RcodeNameError)
		case 3:
			name = fmt.Sprintf("stable-%d.ublock.test.", r.Intn(nUStable))
			check = wantBlocked(dns.RcodeNameError)
		case 4:
			name = fmt.Sprintf("stable-%d.alert.test.", r.Intn(nAlert))
			check = func(m *dns.Msg) string {
				if m.Rcode != dns.RcodeSuccess || fmt.Sprint(aSet(m)) != fmt.Sprint(expectedA(name)) {
					return fmt.Sprintf("rcode=%s a=%v", dns.RcodeToString[m.Rcode], aSet(m))
				}
				return ""
			}
		case 5: // allowlist group: allowed name
			src = "127.0.0.2"
			name = fmt.Sprintf("ok-%d.corp.test.", r.Intn(nCorp))
			check = func(m *dns.Msg) string {
				if m.Rcode != dns.RcodeSuccess || fmt.Sprint(aSet(m)) != fmt.Sprint(expectedA(name)) {
					return fmt.Sprintf("rcode=%s a=%v", dns.RcodeToString[m.Rcode], aSet(m))
				}
				return ""
			}
		case 6: // allowlist group: anything else is refused
			src = "127.0.0.2"
			name = fmt.Sprintf("www-%d.ok.test.", r.Intn(nAllowed))
			check = wantBlocked(dns.RcodeRefused)
		case 7:
			name = fmt.Sprintf("www-%d.ok.test.", r.Intn(nAllowed))
			qtype = dns.TypeNULL
			check = func(m *dns.Msg) string {
				if m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
					return fmt.Sprintf("NULL: rcode=%s answers=%d", dns.RcodeToString[m.Rcode], len(m.Answer))
				}
				return ""
			}
		case 8:
			name = fmt.Sprintf("q-%d.nxdomain.ok.test.", r.Intn(100000))
			check = func(m *dns.Msg) string {
				if m.Rcode != dns.RcodeNameError || edes(m) != "" && strings.Contains(edes(m), "15:") {
					return fmt.Sprintf("nx: rcode=%s ede=%s", dns.RcodeToString[m.Rcode], edes(m))
				}
				return ""
			}
		}
		key := fmt.Sprintf("k%d/%s", kind, proto)
		m, err := exchange(*server, src, proto, name, qtype, 3*time.Second)
		c := counts[key]
		if err != nil {
			timeouts++
			report(key, fmt.Sprintf("%s %s: %v", src, name, err))
			c[1]++
		} else if msg := check(m); msg != "" {
			report(key, fmt.Sprintf("%s %s %s: %s ede=%s", src, proto, name, msg, edes(m)))
			c[1]++
		} else {
			ok++
			c[0]++
		}
		counts[key] = c
		time.Sleep(*every)
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("verify %s ok=%d fail=%d\n", k, counts[k][0], counts[k][1])
	}
	fmt.Printf("verify total ok=%d fail=%d (errors/timeouts %d)\n", ok, fail, timeouts)
}

func wantBlocked(rcode int) func(m *dns.Msg) string {
	return func(m *dns.Msg) string {
		if m.Rcode != rcode || len(m.Answer) != 0 {
			return fmt.Sprintf("rcode=%s answers=%d want %s", dns.RcodeToString[m.Rcode], len(m.Answer), dns.RcodeToString[rcode])
		}
		return ""
	}
}

// ---------------------------------------------------------------- malformed traffic

func malformed(args []string) {
	fs := flag.NewFlagSet("malformed", flag.ExitOnError)
	server := fs.String("server", "127.0.0.1:5353", "")
	dur := fs.Duration("dur", 720*time.Second, "")
	_ = fs.Parse(args)
	r := rand.New(rand.NewSource(7))
	end := time.Now().Add(*dur)
	var sent = map[string]int{}
	var mu sync.Mutex
	count := func(k string) { mu.Lock(); sent[k]++; mu.Unlock() }
	raddr, _ := net.ResolveUDPAddr("udp", *server)
	uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.4")})
	must(err)
	var replies atomic.Int64
	go func() {
		buf := make([]byte, 65535)
		for {
			if _, _, err := uc.ReadFromUDP(buf); err != nil {
				return
			}
			replies.Add(1)
		}
	}()
	// query packs a query for name and qtype, after edit (nil: none).
	query := func(name string, qtype uint16, edit func(*dns.Msg)) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		if edit != nil {
			edit(m)
		}
		b, _ := m.Pack()
		return b
	}
	valid := func() []byte { return query(fmt.Sprintf("mal-%d.ok.test.", r.Intn(1000)), dns.TypeA, nil) }
	udpKinds := []struct {
		name string
		f    func() []byte
	}{
		{"random", func() []byte { b := make([]byte, r.Intn(600)); r.Read(b); return b }},
		{"empty", func() []byte { return []byte{} }},
		{"short5", func() []byte { b := make([]byte, 5); r.Read(b); return b }},
		{"header_only_qd1", func() []byte { b := valid(); return b[:12] }},
		{"truncated_question", func() []byte { b := valid(); return b[:len(b)-3] }},
		{"qr_set", func() []byte { b := valid(); b[2] |= 0x80; return b }},
		{"qdcount5", func() []byte { b := valid(); b[5] = 5; return b }},
		{"qdcount0", func() []byte { b := valid(); return append(b[:4], 0, 0, 0, 0, 0, 0, 0, 0) }},
		{"ancount_garbage", func() []byte { b := valid(); b[7] = 200; return append(b, 1, 2, 3) }},
		{"compression_loop", func() []byte {
			b := valid()[:12]
			return append(b, 0xc0, 12, 0, 1, 0, 1)
		}},
		{"label_too_long", func() []byte {
			b := valid()[:12]
			b = append(b, 63)
			b = append(b, make([]byte, 63)...)
			for i := 0; i < 5; i++ {
				b = append(b, 63)
				b = append(b, []byte(strings.Repeat("a", 63))...)
			}
			return append(b, 0, 0, 1, 0, 1)
		}},
		{"opcode_update", func() []byte { b := valid(); b[2] = (b[2] &^ 0x78) | (5 << 3); return b }},
		{"opcode_notify", func() []byte { b := valid(); b[2] = (b[2] &^ 0x78) | (4 << 3); return b }},
		{"two_opt", func() []byte {
			return query("twoopt.ok.test.", dns.TypeA, func(m *dns.Msg) {
				m.SetEdns0(1232, false)
				m.Extra = append(m.Extra, m.Extra[0])
			})
		}},
		{"edns_badvers", func() []byte {
			return query("badvers.ok.test.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false).IsEdns0().SetVersion(3) })
		}},
		{"edns_bogus_option", func() []byte {
			b := query("bogusopt.ok.test.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
			// append an option with a length past the end
			b = append(b, 0, 8, 0, 200, 1, 2)
			binary.BigEndian.PutUint16(b[len(b)-8-6:], uint16(6)) // rdlen (best effort; may be garbage)
			return b
		}},
		{"class_chaos", func() []byte {
			return query("version.bind.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
		}},
		{"axfr", func() []byte { return query("ok.test.", dns.TypeAXFR, nil) }},
		{"meta_type_opt", func() []byte { return query("meta.ok.test.", dns.TypeOPT, nil) }},
		{"qtype_any", func() []byte { return query("any.ok.test.", dns.TypeANY, nil) }},
		{"bitflip", func() []byte {
			b := valid()
			for i := 0; i < 1+r.Intn(4); i++ {
				b[r.Intn(len(b))] ^= byte(1 << r.Intn(8))
			}
			return b
		}},
		{"huge_65k_random", func() []byte { b := make([]byte, 60000); r.Read(b); return b }},
	}
	tcpAttacks := 0
	var tcpMu sync.Mutex
	tcpResults := map[string][]time.Duration{}
	tcpRun := func(kind string, f func(c net.Conn)) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.3")}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", *server)
		if err != nil {
			count("tcp_dial_error_" + kind)
			return
		}
		defer c.Close()
		start := time.Now()
		f(c)
		// wait until the server closes it (max 40 s)
		_ = c.SetReadDeadline(time.Now().Add(40 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
		tcpMu.Lock()
		tcpResults[kind] = append(tcpResults[kind], time.Since(start))
		tcpMu.Unlock()
	}
	var wg sync.WaitGroup
	tick := 0
	for time.Now().Before(end) {
		for i := 0; i < 20; i++ {
			k := udpKinds[r.Intn(len(udpKinds))]
			_, _ = uc.WriteToUDP(k.f(), raddr)
			count("udp_" + k.name)
		}
		if tick%10 == 0 {
			tcpAttacks++
			kinds := map[string]func(c net.Conn){
				"nothing":          func(c net.Conn) {},
				"len_prefix_stall": func(c net.Conn) { _, _ = c.Write([]byte{0xff, 0xff, 1, 2, 3}) },
				"one_byte":         func(c net.Conn) { _, _ = c.Write([]byte{0}) },
				"zero_len":         func(c net.Conn) { _, _ = c.Write([]byte{0, 0}) },
				"trickle": func(c net.Conn) {
					_, _ = c.Write([]byte{0x01, 0x00})
					for i := 0; i < 6; i++ {
						time.Sleep(4 * time.Second)
						if _, err := c.Write([]byte{byte(i)}); err != nil {
							return
						}
					}
				},
				"query_then_close": func(c net.Conn) {
					b := valid()
					_, _ = c.Write(append([]byte{byte(len(b) >> 8), byte(len(b))}, b...))
					_ = c.(*net.TCPConn).CloseWrite()
				},
				"pipeline100_close": func(c net.Conn) {
					var out []byte
					for i := 0; i < 100; i++ {
						b := valid()
						out = append(out, byte(len(b)>>8), byte(len(b)))
						out = append(out, b...)
					}
					_, _ = c.Write(out)
					_ = c.(*net.TCPConn).SetLinger(0)
				},
				"garbage_framed": func(c net.Conn) {
					b := make([]byte, 300)
					r.Read(b)
					_, _ = c.Write(append([]byte{1, 44}, b...))
				},
			}
			for k, f := range kinds {
				count("tcp_" + k)
				wg.Add(1)
				go func() { defer wg.Done(); tcpRun(k, f) }()
			}
			if tick%60 == 0 { // exceed the per-client connection cap
				for i := 0; i < 40; i++ {
					count("tcp_flood_idle")
					wg.Add(1)
					go func() { defer wg.Done(); tcpRun("flood_idle", func(c net.Conn) {}) }()
				}
			}
		}
		tick++
		time.Sleep(1 * time.Second)
	}
	wg.Wait()
	keys := make([]string, 0, len(sent))
	for k := range sent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := 0
	for _, k := range keys {
		fmt.Printf("malformed sent %s %d\n", k, sent[k])
		if strings.HasPrefix(k, "udp_") {
			total += sent[k]
		}
	}
	fmt.Printf("malformed udp total sent %d, replies received %d\n", total, replies.Load())
	for k, ds := range tcpResults {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		fmt.Printf("tcp %s n=%d close-after min=%v median=%v max=%v\n", k, len(ds), ds[0].Round(time.Millisecond), ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
}

// ---------------------------------------------------------------- query-log analysis

type record struct {
	Type    string `json:"type"`
	Kind    string `json:"kind"`
	TS      string `json:"query_timestamp"`
	Name    string `json:"query_name"`
	QType   string `json:"query_type"`
	Rcode   string `json:"rcode"`
	Src     string `json:"srcaddr"`
	Trans   string `json:"transport"`
	Action  string `json:"firewall_rule_action"`
	ListID  string `json:"firewall_domain_list_id"`
	Answers []struct {
		Rdata string `json:"Rdata"`
		Type  string `json:"Type"`
	} `json:"answers"`
	SrcIDs struct {
		Instance string `json:"instance"`
	} `json:"srcids"`
	DV struct {
		Group  string `json:"group"`
		Policy string `json:"policy"`
		Reason string `json:"reason"`
		Cache  string `json:"cache"`
	} `json:"dnsvalve"`
}

func analyze(files []string) {
	stats := map[string]int{}
	viol := map[string]int{}
	examples := map[string][]string{}
	instances := map[string]map[string]int{}
	bad := func(kind, line string) {
		viol[kind]++
		if len(examples[kind]) < 3 {
			if len(line) > 600 {
				line = line[:600]
			}
			examples[kind] = append(examples[kind], line)
		}
	}
	for _, fn := range files {
		f, err := os.Open(fn)
		must(err)
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			line := sc.Text()
			var rec record
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				bad("unparsable_line", line)
				continue
			}
			if rec.Type == "alert" {
				stats["alert_records_"+rec.Kind]++
				continue
			}
			stats["query_records"]++
			stats["rcode_"+rec.Src+"_"+rec.Rcode]++
			if rec.Rcode == "SERVFAIL" {
				bad("servfail", line)
			}
			if instances[rec.Src] == nil {
				instances[rec.Src] = map[string]int{}
			}
			instances[rec.Src][rec.SrcIDs.Instance]++
			if (rec.Src == "127.0.0.1" || rec.Src == "127.0.0.2") && rec.SrcIDs.Instance == "" {
				bad("missing_instance_"+rec.Src, line)
			}
			n := strings.ToLower(rec.Name)
			ansA := []string{}
			for _, a := range rec.Answers {
				if a.Type == "A" {
					ansA = append(ansA, a.Rdata)
				}
			}
			sort.Strings(ansA)
			switch rec.Src {
			case "127.0.0.1":
				if rec.DV.Policy != "default" && rec.DV.Policy != "" {
					bad("wrong_policy_127.0.0.1", line)
				}
				switch {
				case rec.QType == "NULL":
					if rec.Rcode != "NOERROR" || len(rec.Answers) != 0 {
						bad("NULL_not_nodata", line)
					}
				case strings.HasSuffix(n, ".lblock.test.") && strings.Contains(n, "stable-"):
					if rec.Rcode != "NXDOMAIN" || rec.Action != "BLOCK" {
						bad("stable_local_not_blocked", line)
					}
				case strings.HasSuffix(n, ".ublock.test."):
					if rec.Rcode != "NXDOMAIN" || rec.Action != "BLOCK" {
						bad("stable_url_not_blocked", line)
					}
				case strings.HasSuffix(n, ".alert.test."):
					if rec.Rcode != "NOERROR" || rec.Action != "ALERT" || fmt.Sprint(ansA) != fmt.Sprint(expectedA(n)) {
						bad("alert_name_wrong", line)
					}
				case strings.HasSuffix(n, ".nxdomain.ok.test."):
					if rec.Rcode != "NXDOMAIN" || rec.Action == "BLOCK" {
						bad("nx_wrong", line)
					}
				case strings.HasPrefix(n, "www-") && strings.HasSuffix(n, ".ok.test."):
					if rec.Rcode != "NOERROR" || rec.Action == "BLOCK" {
						bad("allowed_not_noerror", line)
					} else if rec.QType == "A" && fmt.Sprint(ansA) != fmt.Sprint(expectedA(n)) {
						bad("allowed_wrong_answer", line)
					}
				case strings.HasSuffix(n, ".t.tunnel.test."):
					if rec.Rcode != "NOERROR" || len(rec.Answers) != 1 {
						bad("tunnel_observe_not_answered", line)
					}
				}
			case "127.0.0.2":
				if rec.DV.Policy != "sensitive" {
					bad("wrong_policy_127.0.0.2", line)
				}
				switch {
				case strings.HasPrefix(n, "ok-") && strings.HasSuffix(n, ".corp.test."):
					if rec.Rcode != "NOERROR" || fmt.Sprint(ansA) != fmt.Sprint(expectedA(n)) {
						bad("sens_allowed_wrong", line)
					}
				case strings.HasSuffix(n, ".t.corp.test."):
					if rec.Rcode != "NOERROR" {
						bad("sens_corp_tunnel_blocked_despite_allow", line)
					}
				default:
					if rec.Rcode != "REFUSED" || len(rec.Answers) != 0 {
						bad("sens_not_refused", line)
					}
				}
			}
		}
		must(sc.Err())
		f.Close()
	}
	keys := make([]string, 0, len(stats))
	for k := range stats {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("stat %s %d\n", k, stats[k])
	}
	for src, m := range instances {
		type kv struct {
			k string
			v int
		}
		var l []kv
		for k, v := range m {
			l = append(l, kv{k, v})
		}
		sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
		if len(l) > 5 {
			l = l[:5]
		}
		fmt.Printf("instances %s distinct=%d top=%v\n", src, len(m), l)
	}
	vk := make([]string, 0, len(viol))
	for k := range viol {
		vk = append(vk, k)
	}
	sort.Strings(vk)
	for _, k := range vk {
		fmt.Printf("VIOLATION %s %d\n", k, viol[k])
		for _, e := range examples[k] {
			fmt.Printf("   e.g. %s\n", e)
		}
	}
	if len(vk) == 0 {
		fmt.Println("no violations")
	}
}
