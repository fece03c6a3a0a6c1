package querylog

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Version is the value of the "version" field. Route 53 writes "1.100000"
// for its format 1.1; dnsvalve writes the same so parsers keyed on it work.
const Version = "1.100000"

// TimestampLayout is the layout of query_timestamp and alert_timestamp:
// RFC 3339 in UTC with millisecond precision.
const TimestampLayout = "2006-01-02T15:04:05.000Z"

// Record is what the resolver hands over per query. It is a plain value,
// cheap to build on the hot path: Logger.Log copies it, so the caller may
// reuse the Record itself after Log returns. The messages and slices it
// points to (Req, Resp, Info.Signals) are shared with the sinks, which only
// read them: the caller must not modify them after Log.
type Record struct {
	Time     time.Time      // when the query arrived
	Req      *dns.Msg       // the client's query (read-only); nil for malformed input
	Resp     *dns.Msg       // what was written to the client (read-only); nil when dropped
	Question dns.Question   // the query's question (valid even when Req is nil)
	Client   query.Client   // who asked
	Proto    query.Proto    // how it arrived
	Info     query.Info     // what the stages learned
	Latency  time.Duration  // from arrival to the write
	Instance string         // the dnsvalve instance (hostname) that answered
	Server   netip.AddrPort // listener address the query arrived on; zero when unknown (dnstap response_address)
	// Lease covers Req and Resp when the server lent them from its pool
	// (nil otherwise): Logger.Log retains it for every sink it queues
	// the record for, and releases it once that sink has written it.
	Lease *query.Lease
}

// NewEntry builds the Route 53 shaped Entry for r. It allocates; the sinks
// use AppendJSON, which writes the same JSON without building an Entry.
func NewEntry(r *Record) Entry {
	e := Entry{
		Version:        Version,
		QueryTimestamp: string(appendTimestamp(nil, r.Time)),
		QueryName:      r.Question.Name,
		QueryType:      TypeString(r.Question.Qtype),
		QueryClass:     ClassString(r.Question.Qclass),
		Rcode:          rcodeString(r.Resp),
		Answers:        []Answer{},
		SrcAddr:        addrString(r.Client.Addr),
		SrcPort:        strconv.FormatUint(uint64(r.Client.Port), 10),
		Transport:      r.Proto.String(),
		SrcIDs:         SrcIDs{Instance: r.Client.Name},
	}
	if r.Resp != nil {
		for _, rr := range r.Resp.Answer {
			h := rr.Header()
			e.Answers = append(e.Answers, Answer{
				Rdata: string(appendRdata(nil, rr)),
				Type:  TypeString(h.Rrtype),
				Class: ClassString(h.Class),
			})
		}
	}
	if r.Info.Action != query.ActionNone {
		e.FirewallRuleAction = r.Info.Action.String()
		e.FirewallRuleGroupID = r.Client.Policy
		e.FirewallDomainListID = r.Info.List
	}
	x := &e.DNSValve
	x.Group = r.Client.Group
	x.Policy = r.Client.Policy
	x.Category = r.Info.Category
	x.Rule = r.Info.Rule
	if r.Info.Source != "" {
		x.Source = RuleSource(r.Info.Source, r.Info.Line)
	}
	x.Cache = r.Info.Cache.String()
	x.Upstream = r.Info.Upstream
	x.LatencyUS = r.Latency.Microseconds()
	x.Score = finite(r.Info.Score)
	x.Signals = r.Info.Signals
	x.Alert = r.Info.Alert
	x.NewlySeen = r.Info.NewlySeen
	x.Reason = r.Info.Reason
	if sn := query.ECSOption(r.Req); sn != nil {
		x.ECS = string(appendECS(nil, sn))
	}
	if r.Client.Via.IsValid() {
		x.Forwarder = r.Client.Via.String()
	}
	x.Instance = r.Instance
	return e
}

// appendTimestamp appends t in TimestampLayout; hand-rolled because
// time.AppendFormat parses the layout on every call. Years outside
// 0..9999 take the slow path.
func appendTimestamp(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, TimestampLayout)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	dst = append(dst,
		byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-',
		byte('0'+int(month)/10), byte('0'+int(month)%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+sec/10), byte('0'+sec%10), '.',
		byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return dst
}

// RuleSource is a rule's place as the query log writes it: src, with
// ":line" when line is known.
func RuleSource(src string, line int) string { return string(appendSource(nil, src, line)) }

func appendSource(dst []byte, src string, line int) []byte {
	dst = append(dst, src...)
	if line > 0 {
		dst = append(dst, ':')
		dst = strconv.AppendInt(dst, int64(line), 10)
	}
	return dst
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func appendAddr(dst []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return dst
	}
	return a.AppendTo(dst)
}

// TypeString prints an RR type as Route 53 does: "A", "TXT", "TYPE65399".
func TypeString(t uint16) string {
	switch t { // the common ones without a map lookup
	case dns.TypeA:
		return "A"
	case dns.TypeAAAA:
		return "AAAA"
	case dns.TypeCNAME:
		return "CNAME"
	case dns.TypeHTTPS:
		return "HTTPS"
	case dns.TypePTR:
		return "PTR"
	case dns.TypeTXT:
		return "TXT"
	case dns.TypeMX:
		return "MX"
	case dns.TypeSOA:
		return "SOA"
	}
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.FormatUint(uint64(t), 10)
}

// ClassString names a DNS class as the query log writes it: the
// mnemonic ("IN", "CH", "ANY"), or "CLASS" and its number.
func ClassString(c uint16) string {
	if c == dns.ClassINET {
		return "IN"
	}
	if s, ok := dns.ClassToString[c]; ok {
		return s
	}
	return "CLASS" + strconv.FormatUint(uint64(c), 10)
}

// RcodeDropped is the rcode logged when nothing was written to the client
// (Record.Resp nil); dnsvalve.reason says why. It matches the "DROPPED"
// rcode label of dnsvalve_server_queries_total.
const RcodeDropped = "DROPPED"

// rcodeString is the response's rcode name ("NOERROR", "NXDOMAIN",
// "RCODE3841" for unknown ones), or RcodeDropped when Resp is nil.
func rcodeString(m *dns.Msg) string {
	if m == nil {
		return RcodeDropped
	}
	if s := query.RcodeString(m.Rcode); s != "" {
		return s
	}
	return "RCODE" + strconv.Itoa(m.Rcode)
}

// appendRdata appends rr's data in presentation format, as Route 53 prints
// it: A "192.0.2.1", CNAME "target.example.", MX "10 mx.example.", TXT
// "\"v=spf1 -all\"". The common types take an allocation-free path; the
// rest go through rr.String() minus the header.
func appendRdata(dst []byte, rr dns.RR) []byte {
	switch v := rr.(type) {
	case *dns.A:
		if a, ok := netip.AddrFromSlice(v.A); ok {
			return a.Unmap().AppendTo(dst)
		}
	case *dns.AAAA:
		if len(v.AAAA) == 16 {
			return netip.AddrFrom16([16]byte(v.AAAA)).AppendTo(dst)
		}
	case *dns.CNAME:
		if plainName(v.Target) {
			return append(dst, v.Target...)
		}
	case *dns.PTR:
		if plainName(v.Ptr) {
			return append(dst, v.Ptr...)
		}
	case *dns.NS:
		if plainName(v.Ns) {
			return append(dst, v.Ns...)
		}
	case *dns.DNAME:
		if plainName(v.Target) {
			return append(dst, v.Target...)
		}
	case *dns.MX:
		if plainName(v.Mx) {
			dst = strconv.AppendUint(dst, uint64(v.Preference), 10)
			dst = append(dst, ' ')
			return append(dst, v.Mx...)
		}
	}
	return appendRdataSlow(dst, rr)
}

// plainName reports whether name has no escapes, so it prints as stored
// (miekg normalises escapes such as \032 when printing).
func plainName(name string) bool {
	return strings.IndexByte(name, '\\') < 0
}

func appendRdataSlow(dst []byte, rr dns.RR) []byte {
	s, h := rr.String(), rr.Header().String()
	if len(s) >= len(h) && s[:len(h)] == h {
		return append(dst, s[len(h):]...)
	}
	return append(dst, s...)
}

// appendECS appends "192.0.2.0/24" for an EDNS0 client-subnet option.
func appendECS(dst []byte, sn *dns.EDNS0_SUBNET) []byte {
	a, ok := netip.AddrFromSlice(sn.Address)
	if !ok {
		return dst
	}
	if sn.Family == 1 {
		a = a.Unmap()
	}
	dst = a.AppendTo(dst)
	dst = append(dst, '/')
	return strconv.AppendUint(dst, uint64(sn.SourceNetmask), 10)
}
