package querylog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// athenaRow mirrors the columns of the Athena table AWS publishes for Route
// 53 Resolver query logs (r53_rlogs, anchors.md §2.1): version, account_id,
// region, vpc_id, query_timestamp, query_name, query_type, query_class,
// rcode, answers array<struct<Rdata,Type,Class>>, srcaddr, srcport int,
// transport, srcids struct<instance, resolver_endpoint>,
// firewall_rule_action, firewall_rule_group_id, firewall_domain_list_id.
// srcport is an int column that Route 53 itself writes as a JSON string
// ("56067"); ",string" decodes it the same way.
type athenaRow struct {
	Version        string `json:"version"`
	AccountID      string `json:"account_id"`
	Region         string `json:"region"`
	VPCID          string `json:"vpc_id"`
	QueryTimestamp string `json:"query_timestamp"`
	QueryName      string `json:"query_name"`
	QueryType      string `json:"query_type"`
	QueryClass     string `json:"query_class"`
	Rcode          string `json:"rcode"`
	Answers        []struct {
		Rdata string `json:"Rdata"`
		Type  string `json:"Type"`
		Class string `json:"Class"`
	} `json:"answers"`
	SrcAddr   string `json:"srcaddr"`
	SrcPort   int    `json:"srcport,string"`
	Transport string `json:"transport"`
	SrcIDs    struct {
		Instance         string `json:"instance"`
		ResolverEndpoint string `json:"resolver_endpoint"`
	} `json:"srcids"`
	FirewallRuleAction   string `json:"firewall_rule_action"`
	FirewallRuleGroupID  string `json:"firewall_rule_group_id"`
	FirewallDomainListID string `json:"firewall_domain_list_id"`
}

// JSON kinds of the r53_rlogs columns. The firewall columns are present
// only with a firewall action, as in Route 53 (Athena reads absent keys as
// NULL); every other column is always present.
var athenaColumns = []struct {
	name     string
	kind     byte // first byte of the JSON value
	optional bool
}{
	{"version", '"', false}, {"account_id", '"', false}, {"region", '"', false}, {"vpc_id", '"', false},
	{"query_timestamp", '"', false}, {"query_name", '"', false}, {"query_type", '"', false},
	{"query_class", '"', false}, {"rcode", '"', false}, {"answers", '[', false},
	{"srcaddr", '"', false}, {"srcport", '"', false}, {"transport", '"', false}, {"srcids", '{', false},
	{"firewall_rule_action", '"', true}, {"firewall_rule_group_id", '"', true}, {"firewall_domain_list_id", '"', true},
}

// dayOfRecords generates one record a minute for a day, cycling through
// query types, outcomes, transports and clients.
func dayOfRecords(tb testing.TB) []Record {
	tb.Helper()
	qtypes := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT, dns.TypeMX, dns.TypeCNAME, dns.TypeHTTPS, dns.TypePTR, 65399}
	protos := []query.Proto{query.UDP, query.TCP, query.DoT, query.DoH}
	clients := []query.Client{
		{Addr: netip.MustParseAddr("10.0.8.5"), Port: 53211, Name: "payments-db-1", Group: "payments", Policy: "sensitive"},
		{Addr: netip.MustParseAddr("fd00::17"), Port: 1, Policy: "default"},
		{Addr: netip.MustParseAddr("192.168.1.20"), Port: 65535, Name: "laptop \"7\"", Group: "office", Policy: "default"},
	}
	day := time.Date(2025, 3, 14, 0, 0, 0, 0, time.UTC)
	out := make([]Record, 0, 24*60)
	for i := range 24 * 60 {
		qt := qtypes[i%len(qtypes)]
		name := fmt.Sprintf("host%d.example.com.", i)
		req := new(dns.Msg)
		req.SetQuestion(name, qt)
		resp := new(dns.Msg)
		resp.SetReply(req)
		r := Record{
			Time: day.Add(time.Duration(i)*time.Minute + time.Duration(i)*time.Millisecond), Req: req, Resp: resp,
			Question: req.Question[0], Client: clients[i%len(clients)], Proto: protos[i%len(protos)],
			Latency: time.Duration(i) * time.Microsecond, Instance: "dnsvalve-0",
		}
		switch i % 6 {
		case 0: // answered from upstream
			switch qt {
			case dns.TypeA:
				resp.Answer = append(resp.Answer, mustRR(tb, name+" 60 IN A 192.0.2."+strconv.Itoa(i%250)))
			case dns.TypeAAAA:
				resp.Answer = append(resp.Answer, mustRR(tb, name+" 60 IN AAAA 2001:db8::"+strconv.FormatInt(int64(i), 16)))
			case dns.TypeTXT:
				resp.Answer = append(resp.Answer, mustRR(tb, name+` 60 IN TXT "k=v; \"quoted\"" "second"`))
			case dns.TypeMX:
				resp.Answer = append(resp.Answer, mustRR(tb, name+" 60 IN MX 10 mx.example.com."))
			default:
				resp.Answer = append(resp.Answer, mustRR(tb, name+" 60 IN CNAME target.example.net."))
			}
			r.Info = query.Info{Cache: query.CacheMiss, Upstream: "udp://127.0.0.1:53"}
		case 1:
			r.Info = query.Info{Cache: query.CacheHit}
		case 2:
			resp.Rcode = dns.RcodeNameError
			r.Info = query.Info{Action: query.ActionBlock, List: "malware", Category: "malware", Rule: "*.example.com", Source: "lists/malware.txt", Line: i}
		case 3:
			r.Info = query.Info{Action: query.ActionAlert, List: "file-sharing", Category: "file-sharing", Score: float64(i%100) / 100, Signals: []string{"entropy"}, Alert: true}
		case 4:
			resp.Rcode = dns.RcodeServerFailure
			r.Info = query.Info{Cache: query.CacheMiss, Reason: "upstream_failed"}
		case 5:
			r.Resp = nil
			r.Info = query.Info{Reason: "rate_limited"}
		}
		out = append(out, r)
	}
	return out
}

// TestAthenaShape writes a day of lines through the JSON-lines sink and
// checks that every line has every r53_rlogs column with the JSON type
// Athena's JSON SerDe expects, and decodes into the table's row.
func TestAthenaShape(t *testing.T) {
	records := dayOfRecords(t)
	var buf bytes.Buffer
	s := NewWriterSink("athena", &buf)
	for i := range records {
		if err := s.Write(&records[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	sc := bufio.NewScanner(&buf)
	n := 0
	actions := map[string]int{}
	for sc.Scan() {
		line := sc.Bytes()
		rec := &records[n]
		n++
		var cols map[string]json.RawMessage
		if err := json.Unmarshal(line, &cols); err != nil {
			t.Fatalf("line %d: %v\n%s", n, err, line)
		}
		for _, c := range athenaColumns {
			v, ok := cols[c.name]
			if !ok {
				if !c.optional || rec.Info.Action != query.ActionNone {
					t.Errorf("line %d: column %s missing: %s", n, c.name, line)
				}
				continue
			}
			if len(v) == 0 || v[0] != c.kind {
				t.Errorf("line %d: column %s = %s, want JSON %q", n, c.name, v, c.kind)
			}
		}
		var row athenaRow
		if err := json.Unmarshal(line, &row); err != nil {
			t.Fatalf("line %d: decode as r53_rlogs row: %v\n%s", n, err, line)
		}
		if row.SrcPort != int(rec.Client.Port) || row.SrcAddr != rec.Client.Addr.String() || row.Transport != rec.Proto.String() {
			t.Errorf("line %d: srcaddr/srcport/transport = %s %d %s", n, row.SrcAddr, row.SrcPort, row.Transport)
		}
		if row.SrcIDs.Instance != rec.Client.Name {
			t.Errorf("line %d: srcids.instance = %q, want %q", n, row.SrcIDs.Instance, rec.Client.Name)
		}
		ts, err := time.Parse(time.RFC3339Nano, row.QueryTimestamp)
		if err != nil || !ts.Equal(rec.Time.Truncate(time.Millisecond)) || len(row.QueryTimestamp) != len(TimestampLayout) {
			t.Errorf("line %d: query_timestamp %q (%v), want %v", n, row.QueryTimestamp, err, rec.Time)
		}
		if row.QueryName != rec.Question.Name || row.Version != Version || row.QueryClass != "IN" {
			t.Errorf("line %d: %+v", n, row)
		}
		wantAnswers := 0
		if rec.Resp != nil {
			wantAnswers = len(rec.Resp.Answer)
		}
		if len(row.Answers) != wantAnswers {
			t.Errorf("line %d: %d answers, want %d", n, len(row.Answers), wantAnswers)
		}
		for _, a := range row.Answers {
			if a.Rdata == "" || a.Type == "" || a.Class != "IN" {
				t.Errorf("line %d: answer %+v", n, a)
			}
		}
		actions[row.FirewallRuleAction]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(records) {
		t.Fatalf("%d lines, want %d", n, len(records))
	}
	if actions["BLOCK"] != 240 || actions["ALERT"] != 240 || actions[""] != 960 {
		t.Errorf("firewall_rule_action counts = %v", actions)
	}
}
