package querylog

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// stdJSON encodes v with encoding/json, HTML escaping off, no newline.
func stdJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		tb.Fatalf("encoding/json: %v", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func checkGolden(tb testing.TB, name string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", tb.Name(), name+".json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("read golden file (run with -update to create): %v", err)
	}
	if !bytes.Equal(got, want) {
		tb.Errorf("%s differs from golden file %s\n got: %s\nwant: %s", name, path, got, want)
	}
}

// TestEntryGolden pins the JSON schema: each case's line as the sinks
// write it. It also checks the hand-rolled encoder against encoding/json:
// same bytes as json.Marshal(NewEntry(r)), and the line decodes back to
// NewEntry(r).
func TestEntryGolden(t *testing.T) {
	for _, name := range recordCases {
		r := testRecord(t, name)
		line := append(AppendJSON(nil, &r), '\n')
		checkGolden(t, name, line)

		want := NewEntry(&r)
		if std := stdJSON(t, want); !bytes.Equal(std, line[:len(line)-1]) {
			t.Errorf("%s: AppendJSON differs from encoding/json of NewEntry\n got: %s\nwant: %s", name, line, std)
		}
		var got Entry
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%s: unmarshal: %v", name, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: round trip\n got: %+v\nwant: %+v", name, got, want)
		}
	}

	for name, a := range map[string]Alert{"alert": testAlert(), "alert_policy": testPolicyAlert(), "alert_cname": testCNAMEAlert()} {
		line := append(AppendAlert(nil, &a), '\n')
		checkGolden(t, name, line)
		if std := stdJSON(t, a); !bytes.Equal(std, line[:len(line)-1]) {
			t.Errorf("%s: AppendAlert differs from encoding/json\n got: %s\nwant: %s", name, line, std)
		}
		var got Alert
		if err := json.Unmarshal(line, &got); err != nil {
			t.Fatalf("%s: unmarshal: %v", name, err)
		}
		if !reflect.DeepEqual(got, a) {
			t.Errorf("%s: round trip\n got: %+v\nwant: %+v", name, got, a)
		}
	}
}

func TestEntryFields(t *testing.T) {
	tests := []struct {
		name  string
		check func(t *testing.T, e Entry)
	}{
		{"cache_hit_a", func(t *testing.T, e Entry) {
			want := []Answer{{"edge.example.net.", "CNAME", "IN"}, {"93.184.216.34", "A", "IN"}, {"93.184.216.35", "A", "IN"}}
			want[0].Rdata = "edge.example.net."
			if !reflect.DeepEqual(e.Answers, want) {
				t.Errorf("answers = %+v, want %+v", e.Answers, want)
			}
			if e.QueryTimestamp != "2025-03-14T15:09:26.535Z" {
				t.Errorf("query_timestamp = %q", e.QueryTimestamp)
			}
			if e.SrcAddr != "10.0.8.5" || e.SrcPort != "53211" || e.Transport != "UDP" || e.SrcIDs.Instance != "payments-db-1" {
				t.Errorf("client fields = %q %q %q %+v", e.SrcAddr, e.SrcPort, e.Transport, e.SrcIDs)
			}
			if e.DNSValve.Group != "payments" || e.DNSValve.Policy != "sensitive" || e.DNSValve.Cache != "hit" {
				t.Errorf("dnsvalve = %+v", e.DNSValve)
			}
			if e.DNSValve.ECS != "10.0.8.0/24" || e.DNSValve.LatencyUS != 85 || e.DNSValve.Instance != "dnsvalve-0" {
				t.Errorf("dnsvalve = %+v", e.DNSValve)
			}
			if e.FirewallRuleAction != "" {
				t.Errorf("firewall_rule_action = %q, want none", e.FirewallRuleAction)
			}
		}},
		{"blocked_nxdomain", func(t *testing.T, e Entry) {
			if e.Rcode != "NXDOMAIN" || len(e.Answers) != 0 || e.Answers == nil {
				t.Errorf("rcode %q answers %#v", e.Rcode, e.Answers)
			}
			if e.FirewallRuleAction != "BLOCK" || e.FirewallDomainListID != "malware" || e.FirewallRuleGroupID != "default" {
				t.Errorf("firewall = %q %q %q", e.FirewallRuleAction, e.FirewallDomainListID, e.FirewallRuleGroupID)
			}
			if e.DNSValve.Rule != "*.evil.example" || e.DNSValve.Source != "testdata/lists/malware.txt:12" || e.DNSValve.Category != "malware" {
				t.Errorf("dnsvalve = %+v", e.DNSValve)
			}
			if e.SrcAddr != "fd00::17" || e.Transport != "TCP" || e.QueryType != "AAAA" {
				t.Errorf("srcaddr %q transport %q qtype %q", e.SrcAddr, e.Transport, e.QueryType)
			}
		}},
		{"txt_answer", func(t *testing.T, e Entry) {
			want := `"v=spf1 include:_spf.example.com ~all" "say \"hi\" \\ caf\195\169 \009tab"`
			if len(e.Answers) != 1 || e.Answers[0].Rdata != want || e.Answers[0].Type != "TXT" {
				t.Errorf("answers = %+v, want Rdata %s", e.Answers, want)
			}
			if e.Transport != "DoH" || !e.DNSValve.Alert || !e.DNSValve.NewlySeen || e.DNSValve.Score != 0.7312 {
				t.Errorf("entry = %+v", e)
			}
		}},
		{"mx_dot_stale", func(t *testing.T, e Entry) {
			if e.Answers[0].Rdata != "10 mx1.example.com." || e.Transport != "DoT" || e.DNSValve.Cache != "stale" {
				t.Errorf("entry = %+v", e)
			}
			if e.QueryName != "Example.COM." || e.SrcIDs.Instance != "" {
				t.Errorf("query_name %q srcids %+v", e.QueryName, e.SrcIDs)
			}
		}},
		{"dropped_rate_limited", func(t *testing.T, e Entry) {
			if e.Rcode != RcodeDropped || e.DNSValve.Reason != "rate_limited" || e.QueryType != "ANY" {
				t.Errorf("entry = %+v", e)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := testRecord(t, tt.name)
			tt.check(t, NewEntry(&r))
		})
	}
}

// TestAppendRdata checks the allocation-free rdata path against miekg's
// own presentation format.
func TestAppendRdata(t *testing.T) {
	for _, s := range []string{
		"a.example. 60 IN A 192.0.2.1",
		"a.example. 60 IN AAAA 2001:db8::1",
		"a.example. 60 IN AAAA ::ffff:192.0.2.1",
		"a.example. 60 IN CNAME b.example.",
		"a.example. 60 IN CNAME we\\.ird\\032name.example.",
		"1.2.0.192.in-addr.arpa. 60 IN PTR host.example.",
		"a.example. 60 IN NS ns1.example.",
		"a.example. 60 IN DNAME b.example.",
		"a.example. 60 IN MX 0 .",
		"a.example. 60 IN SRV 10 5 443 svc.example.",
		"a.example. 60 IN SOA ns.example. host.example. 1 2 3 4 5",
		"a.example. 60 IN CAA 0 issue \"letsencrypt.org\"",
		"a.example. 60 IN HTTPS 1 . alpn=h2,h3",
		"a.example. 60 IN TYPE65399 \\# 2 abcd",
	} {
		rr := mustRR(t, s)
		got := string(appendRdata(nil, rr))
		want := string(appendRdataSlow(nil, rr))
		if got != want {
			t.Errorf("%s: appendRdata = %q, miekg = %q", s, got, want)
		}
		if got == "" {
			t.Errorf("%s: empty rdata", s)
		}
	}
	if got := TypeString(65399); got != "TYPE65399" {
		t.Errorf("TypeString(65399) = %q", got)
	}
	if got := ClassString(dns.ClassCHAOS); got != "CH" {
		t.Errorf("ClassString(CH) = %q", got)
	}
}

// TestAppendString compares the JSON string escaper with encoding/json on
// awkward input.
func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain.example.", `quo"te`, `back\slash`, "ctl\x00\x01\x1f\x7f", "\b\f\n\r\t",
		"<html>&amp;", "caf\u00e9 \u2028 \u2029 \U0001F600", "bad\xffutf8\xc3", strings.Repeat("x", 300),
	} {
		got := appendString(nil, s)
		if want := stdJSON(t, s); !bytes.Equal(got, want) {
			t.Errorf("appendString(%q) = %s, encoding/json = %s", s, got, want)
		}
		tail := escapeTail(append([]byte(`"`), s...), 1)
		if want := stdJSON(t, s); !bytes.Equal(append(tail, '"'), want) {
			t.Errorf("escapeTail(%q) = %s, encoding/json = %s", s, tail, want)
		}
	}
	for _, f := range []float64{0, 1, 0.5, 0.7312, 1e-7, 1.5e-9, 1e21, 123456789, -0.25} {
		if got, want := appendFloat(nil, f), stdJSON(t, f); !bytes.Equal(got, want) {
			t.Errorf("appendFloat(%v) = %s, encoding/json = %s", f, got, want)
		}
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := testRecord(b, "cache_hit_a")
	buf := make([]byte, 0, 2048)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], &r)
	}
	b.SetBytes(int64(len(buf)))
}

func BenchmarkEncodingJSON(b *testing.B) {
	r := testRecord(b, "cache_hit_a")
	b.ReportAllocs()
	for b.Loop() {
		e := NewEntry(&r)
		if _, err := json.Marshal(&e); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAppendTimestamp(t *testing.T) {
	for _, ts := range []time.Time{
		baseTime, time.Time{}, time.Date(9999, 12, 31, 23, 59, 59, 999_999_999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 2, 29, 1, 2, 3, 4_000_000, time.FixedZone("x", -7*3600)),
	} {
		if got, want := string(appendTimestamp(nil, ts)), ts.UTC().Format(TimestampLayout); got != want {
			t.Errorf("appendTimestamp(%v) = %s, want %s", ts, got, want)
		}
	}
}

// TestEntryRcodeBadVers: rcode 16 in a reply is BADVERS (its OPT meaning),
// not miekg/dns's "BADSIG" (its TSIG one).
func TestEntryRcodeBadVers(t *testing.T) {
	req := new(dns.Msg).SetQuestion("example.", dns.TypeA)
	resp := new(dns.Msg).SetRcode(req, dns.RcodeBadVers)
	if e := NewEntry(&Record{Req: req, Resp: resp, Question: req.Question[0]}); e.Rcode != "BADVERS" {
		t.Errorf("rcode %q, want BADVERS", e.Rcode)
	}
}
