package detect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// Log formats accepted by ScoreLog.
const (
	FormatAuto     = "auto"
	FormatDNSValve = "dnsvalve"
	FormatRoute53  = "route53"
)

// ErrFormat is returned for an unknown format name.
var ErrFormat = errors.New("detect: unknown log format")

// ScoreStats summarises a ScoreLog run.
type ScoreStats struct {
	Format    string // the format used (auto resolved)
	Records   int64  // query records read
	Scored    int64  // records scored (not ignored)
	Skipped   int64  // lines that were not query records (bad JSON, alert records, no name)
	Alerts    int64  // alert records written
	NewlySeen int64
}

// inRecord is a query-log line: dnsvalve's Entry, which is a superset of
// the Route 53 Resolver query-log record, plus "type" to skip alert records.
type inRecord struct {
	querylog.Entry
	Type string `json:"type"`
}

// ScoreLog scores query-log records from r with d, using each record's
// query_timestamp as the clock, and writes one dnsvalve query-log line per
// record to w with dnsvalve.score/signals/newly_seen/alert filled, plus an
// alert record ("type":"alert") when a pair alerts (also handed to the
// detector's sink). format is auto, dnsvalve or route53 (Route 53 Resolver
// query logs: srcids.instance becomes the client name). Records are
// expected in time order; lines that do not parse are counted and skipped.
//
// Lines of the usual shape are parsed by a strict hand-written scanner and
// written by a hand-rolled encoder; any other line (escaped strings,
// non-ASCII, keys in another case, unexpected types) goes through
// encoding/json. Both give the same output, byte for byte.
func ScoreLog(ctx context.Context, d *Detector, r io.Reader, w io.Writer, format string) (ScoreStats, error) {
	return scoreLog(ctx, d, r, w, format, false)
}

// scoreLog is ScoreLog; slowOnly sends every line through encoding/json
// (the reference the fast path is tested against).
func scoreLog(ctx context.Context, d *Detector, r io.Reader, w io.Writer, format string, slowOnly bool) (ScoreStats, error) {
	var st ScoreStats
	switch format {
	case "", FormatAuto:
		format = FormatAuto
	case FormatDNSValve, FormatRoute53:
	default:
		return st, fmt.Errorf("score log: %w %q (want auto, dnsvalve or route53)", ErrFormat, format)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	sw := &scoreWriter{d: d, w: w, st: &st, strs: map[string]string{}, addrs: map[string]netip.Addr{},
		buf: make([]byte, 0, 1<<16)}
	sw.enc = json.NewEncoder(&sw.jbuf)
	sw.enc.SetEscapeHTML(false)
	var fr fastRecord
	for n := 0; ; n++ {
		if n&1023 == 0 {
			if err := ctx.Err(); err != nil {
				return st, fmt.Errorf("score log: %w", err)
			}
		}
		line, rerr := br.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull { // very long line: collect it
			full := append([]byte(nil), line...)
			for rerr == bufio.ErrBufferFull {
				line, rerr = br.ReadSlice('\n')
				full = append(full, line...)
			}
			line = full
		}
		if rerr != nil && rerr != io.EOF {
			return st, fmt.Errorf("score log: read: %w", rerr)
		}
		line = bytes.TrimSpace(line)
		if len(line) > 0 {
			if format == FormatAuto {
				format = FormatRoute53
				if bytes.Contains(line, []byte(`"dnsvalve"`)) {
					format = FormatDNSValve
				}
			}
			if !slowOnly && parseFast(line, &fr) {
				sw.fast(&fr)
			} else {
				sw.slow(line)
			}
			if len(sw.buf) >= 1<<16 {
				if err := sw.flush(); err != nil {
					return st, err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	st.Format = format
	if err := sw.flush(); err != nil {
		return st, err
	}
	return st, nil
}

// scoreWriter scores records and collects their output lines in buf.
type scoreWriter struct {
	d     *Detector
	w     io.Writer
	st    *ScoreStats
	buf   []byte
	jbuf  bytes.Buffer // encoding/json output of the slow path
	enc   *json.Encoder
	strs  map[string]string     // interned client names, groups, policies
	addrs map[string]netip.Addr // parsed srcaddr values
	ts    tsCache
}

// internMax bounds the intern tables; they start over when full.
const internMax = 1 << 14

func (sw *scoreWriter) flush() error {
	if len(sw.buf) == 0 {
		return nil
	}
	_, err := sw.w.Write(sw.buf)
	sw.buf = sw.buf[:0]
	if err != nil {
		return fmt.Errorf("score log: write: %w", err)
	}
	return nil
}

func (sw *scoreWriter) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := sw.strs[string(b)]; ok {
		return s
	}
	if len(sw.strs) >= internMax {
		clear(sw.strs)
	}
	s := string(b)
	sw.strs[s] = s
	return s
}

func (sw *scoreWriter) addr(b []byte) netip.Addr {
	if a, ok := sw.addrs[string(b)]; ok {
		return a
	}
	if len(sw.addrs) >= internMax {
		clear(sw.addrs)
	}
	a, _ := netip.ParseAddr(string(b))
	sw.addrs[string(b)] = a
	return a
}

// score runs the detector on one record (rcode -1 when unknown) and
// counts it.
func (sw *scoreWriter) score(ts time.Time, c Client, qname string, qtype uint16, rcode int) (Result, *Alert) {
	res, alert := sw.d.observe(ts, c, qname, qtype, rcode)
	sw.d.m.ScoredRecords.Inc()
	if !res.Ignored {
		sw.st.Scored++
	}
	if res.NewlySeen {
		sw.st.NewlySeen++
	}
	return res, alert
}

func (sw *scoreWriter) alert(a *Alert) {
	sw.st.Alerts++
	if sw.d.sink != nil {
		sw.d.sink.Alert(*a)
	}
	rec := AlertRecord(a, "ALERT")
	sw.buf = querylog.AppendAlert(sw.buf, &rec)
	sw.buf = append(sw.buf, '\n')
}

// fast scores and writes a record parsed by parseFast.
func (sw *scoreWriter) fast(r *fastRecord) {
	if len(r.typ) > 0 || len(r.qname) == 0 {
		sw.st.Skipped++
		return
	}
	ts, ok := sw.ts.parse(r.ts)
	if !ok {
		sw.st.Skipped++
		return
	}
	sw.st.Records++
	c := Client{Addr: sw.addr(r.srcaddr), Name: sw.intern(r.instance), Group: sw.intern(r.group), Policy: sw.intern(r.policy)}
	res, alert := sw.score(ts, c, string(r.qname), qtypeFromBytes(r.qtype), rcodeFromBytes(r.rcode))
	sw.buf = appendEntry(sw.buf, r, &res)
	if alert != nil {
		sw.alert(alert)
	}
}

// slow decodes a line with encoding/json and writes it back with it.
func (sw *scoreWriter) slow(line []byte) {
	var rec inRecord
	if err := json.Unmarshal(line, &rec); err != nil || rec.Type != "" || rec.QueryName == "" {
		sw.st.Skipped++
		return
	}
	e := &rec.Entry
	ts, err := time.Parse(time.RFC3339Nano, e.QueryTimestamp)
	if err != nil {
		sw.st.Skipped++
		return
	}
	sw.st.Records++
	addr, _ := netip.ParseAddr(e.SrcAddr)
	c := Client{Addr: addr, Name: e.SrcIDs.Instance, Group: e.DNSValve.Group, Policy: e.DNSValve.Policy}
	res, alert := sw.score(ts, c, e.QueryName, qtypeFromString(e.QueryType), rcodeFromBytes([]byte(e.Rcode)))
	if e.Version == "" {
		e.Version = "1.100000"
	}
	if e.Answers == nil {
		e.Answers = []querylog.Answer{}
	}
	e.DNSValve.Score = math2(res.Score)
	e.DNSValve.Signals = res.Signals
	e.DNSValve.Alert = res.Alert
	e.DNSValve.NewlySeen = res.NewlySeen
	sw.jbuf.Reset()
	if err := sw.enc.Encode(e); err != nil {
		// an Entry of strings always encodes; count it rather than stop
		sw.st.Skipped++
		sw.st.Records--
		return
	}
	sw.buf = append(sw.buf, sw.jbuf.Bytes()...)
	if alert != nil {
		sw.alert(alert)
	}
}

// appendEntry writes r with the detector's verdict as encoding/json
// writes the querylog.Entry that the slow path decodes from the same line
// (field order, omitempty, number format). r's strings need no escaping
// (parseFast admits only printable ASCII without quotes or backslashes).
func appendEntry(dst []byte, r *fastRecord, res *Result) []byte {
	version := r.version
	if len(version) == 0 {
		version = []byte("1.100000")
	}
	dst = appendField(dst, `{"version":"`, version)
	dst = appendField(dst, `","account_id":"`, r.accountID)
	dst = appendField(dst, `","region":"`, r.region)
	dst = appendField(dst, `","vpc_id":"`, r.vpcID)
	dst = appendField(dst, `","query_timestamp":"`, r.ts)
	dst = appendField(dst, `","query_name":"`, r.qname)
	dst = appendField(dst, `","query_type":"`, r.qtype)
	dst = appendField(dst, `","query_class":"`, r.qclass)
	dst = appendField(dst, `","rcode":"`, r.rcode)
	dst = append(dst, `","answers":[`...)
	for i, a := range r.answers {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendField(dst, `{"Rdata":"`, a[0])
		dst = appendField(dst, `","Type":"`, a[1])
		dst = appendField(dst, `","Class":"`, a[2])
		dst = append(dst, `"}`...)
	}
	dst = appendField(dst, `],"srcaddr":"`, r.srcaddr)
	dst = appendField(dst, `","srcport":"`, r.srcport)
	dst = appendField(dst, `","transport":"`, r.transport)
	dst = append(dst, `","srcids":{`...)
	if len(r.instance) > 0 {
		dst = appendField(dst, `"instance":"`, r.instance)
		dst = append(dst, '"')
	}
	dst = append(dst, '}')
	dst = appendOpt(dst, `,"firewall_rule_action":"`, r.fwAction)
	dst = appendOpt(dst, `,"firewall_rule_group_id":"`, r.fwGroup)
	dst = appendOpt(dst, `,"firewall_domain_list_id":"`, r.fwList)
	dst = append(dst, `,"dnsvalve":{`...)
	n := len(dst)
	dst = appendOpt(dst, `,"group":"`, r.group)
	dst = appendOpt(dst, `,"policy":"`, r.policy)
	dst = appendOpt(dst, `,"category":"`, r.category)
	dst = appendOpt(dst, `,"rule":"`, r.rule)
	dst = appendOpt(dst, `,"source":"`, r.source)
	dst = appendOpt(dst, `,"cache":"`, r.cache)
	dst = appendOpt(dst, `,"upstream":"`, r.upstream)
	dst = append(dst, `,"latency_us":`...)
	dst = strconv.AppendInt(dst, r.latency, 10)
	dst = append(dst, `,"score":`...)
	dst = querylog.AppendFloat(dst, math2(res.Score))
	if len(res.Signals) > 0 {
		dst = append(dst, `,"signals":[`...)
		for i, s := range res.Signals {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '"')
			dst = append(dst, s...) // fixed signal names: plain ASCII
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	}
	dst = append(dst, `,"alert":`...)
	dst = strconv.AppendBool(dst, res.Alert)
	dst = append(dst, `,"newly_seen":`...)
	dst = strconv.AppendBool(dst, res.NewlySeen)
	dst = appendOpt(dst, `,"reason":"`, r.reason)
	dst = appendOpt(dst, `,"ecs":"`, r.ecs)
	dst = appendOpt(dst, `,"forwarder":"`, r.forwarder)
	dst = appendOpt(dst, `,"instance":"`, r.dvInstance)
	dst = append(dst[:n], dst[n+1:]...) // the comma before the first key
	return append(dst, "}}\n"...)
}

func appendField(dst []byte, prefix string, v []byte) []byte {
	return append(append(dst, prefix...), v...)
}

// appendOpt writes an omitempty string field (prefix ends in the quote).
func appendOpt(dst []byte, prefix string, v []byte) []byte {
	if len(v) == 0 {
		return dst
	}
	return append(appendField(dst, prefix, v), '"')
}

// tsCache parses query timestamps. Records come in time order, so most
// share their second with the one before: for the form
// YYYY-MM-DDTHH:MM:SS[.fffffffff]Z the second is parsed once (by
// time.Parse) and the fraction added; every other form goes to time.Parse.
type tsCache struct {
	prefix [19]byte
	base   time.Time
	valid  bool
}

func (c *tsCache) parse(b []byte) (time.Time, bool) {
	frac, ok := fracZ(b)
	if !ok {
		t, err := time.Parse(time.RFC3339Nano, string(b))
		return t, err == nil
	}
	if !c.valid || string(b[:19]) != string(c.prefix[:]) {
		t, err := time.Parse(time.RFC3339Nano, string(b))
		if err != nil {
			return t, false
		}
		copy(c.prefix[:], b[:19])
		c.base, c.valid = t.Add(-frac), true
		return t, true
	}
	return c.base.Add(frac), true
}

// fracZ returns the fraction of a timestamp of the form
// ....................[.fffffffff]Z (19 characters, 0-9 digits, Z).
func fracZ(b []byte) (time.Duration, bool) {
	if len(b) < 20 || b[len(b)-1] != 'Z' {
		return 0, false
	}
	if len(b) == 20 {
		return 0, true
	}
	digits := b[20 : len(b)-1]
	if b[19] != '.' || len(digits) == 0 || len(digits) > 9 {
		return 0, false
	}
	var ns int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, false
		}
		ns = ns*10 + int64(c-'0')
	}
	for i := len(digits); i < 9; i++ {
		ns *= 10
	}
	return time.Duration(ns), true
}

// math2 rounds a score to 3 decimals for the log.
func math2(f float64) float64 {
	return float64(int64(f*1000+0.5)) / 1000
}

// AlertRecord converts an Alert to the query-log alert record; action is
// ALERT, or BLOCK when the resolver enforces.
func AlertRecord(a *Alert, action string) querylog.Alert {
	sig := a.Signals
	if sig == nil {
		sig = []string{}
	}
	samples := a.SampleNames
	if samples == nil {
		samples = []string{}
	}
	return querylog.Alert{
		Type: "alert", Timestamp: a.Time.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		SrcAddr: a.Client.String(), SrcIDs: querylog.SrcIDs{Instance: a.ClientName},
		Group: a.Group, Policy: a.Policy, Domain: a.Domain, Score: math2(a.Score), Signals: sig,
		Queries: a.Queries, Unique: a.Unique, Bytes: a.Bytes, SampleNames: samples, Action: action,
		Kind: "tunneling",
	}
}

// rcodeFromBytes maps "NXDOMAIN" to 3, and unknown names to -1.
func rcodeFromBytes(b []byte) int {
	if rc, ok := dns.StringToRcode[string(b)]; ok {
		return rc
	}
	return -1
}

// qtypeFromBytes is qtypeFromString without converting b.
func qtypeFromBytes(b []byte) uint16 {
	if t, ok := dns.StringToType[string(b)]; ok {
		return t
	}
	return qtypeFromString(string(b))
}

// qtypeFromString maps "TXT" or "TYPE65399" to the numeric type (0 if unknown).
func qtypeFromString(s string) uint16 {
	if t, ok := dns.StringToType[s]; ok {
		return t
	}
	if rest, ok := strings.CutPrefix(s, "TYPE"); ok {
		if n, err := strconv.ParseUint(rest, 10, 16); err == nil {
			return uint16(n)
		}
	}
	return 0
}
