package policy

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// golden compares got with testdata/<TestName>/<file>, rewriting it with -update.
func golden(tb testing.TB, file string, got []byte) {
	tb.Helper()
	path := filepath.Join("testdata", strings.Split(tb.Name(), "/")[0], file)
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
		tb.Errorf("%s differs from golden file (run with -update if intended)\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}

func TestExplain(t *testing.T) {
	s := mustCompile(t, testConfig(), testLists(t))
	queries := []struct {
		client string
		qname  string
		qtype  uint16
	}{
		{"192.0.2.1", "WWW.Evil.Example", dns.TypeA},
		{"192.0.2.1", "safe.evil.example.", dns.TypeA},
		{"192.0.2.1", "files.share.example.", dns.TypeAAAA},
		{"192.0.2.1", "x.ok.ads.example.", dns.TypeHTTPS},
		{"192.0.2.1", "example.org.", dns.TypeA},
		{"10.0.8.5", "example.org.", dns.TypeA},
		{"fd00:8::5", "bucket.s3.amazonaws.com.", dns.TypeAAAA},
		{"10.1.2.3", "github.com.", 65280},
		{"", "1.0.0.10.in-addr.arpa.", dns.TypePTR},
		{"::ffff:10.0.8.9", ".", dns.TypeNS},
		{"10.0.8.5", "bucket.s3.amazonaws.com.", dns.TypeNULL},
	}
	var ex []Explanation
	for _, q := range queries {
		var addr netip.Addr
		if q.client != "" {
			addr = mustAddr(t, q.client)
		}
		ex = append(ex, s.Explain(addr, q.qname, q.qtype))
	}
	t.Run("table", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteExplanations(&buf, ex, false); err != nil {
			t.Fatal(err)
		}
		golden(t, "table.golden", buf.Bytes())
	})
	t.Run("json", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteExplanations(&buf, ex, true); err != nil {
			t.Fatal(err)
		}
		golden(t, "json.golden", buf.Bytes())
		var back []Explanation
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
			t.Fatalf("JSON does not round-trip: %v", err)
		}
		if len(back) != len(ex) || back[0] != ex[0] {
			t.Errorf("round trip: got %+v, want %+v", back, ex)
		}
	})
	t.Run("empty_json_is_array", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteExplanations(&buf, nil, true); err != nil {
			t.Fatal(err)
		}
		if got := buf.String(); got != "[]\n" {
			t.Errorf("got %q, want []", got)
		}
	})
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	s := mustCompile(t, testConfig(), testLists(t))
	for _, q := range []struct{ policy, qname string }{
		{"default", "evil.example."},
		{"default", "ads.example."},
		{"default", "www.evil.example."},
		{"default", "example.org."},
		{"sensitive", "example.org."},
		{"default", "share.example."},
		{"sensitive", "null.example."}, // below: type NULL
	} {
		qt := dns.TypeA
		if strings.HasPrefix(q.qname, "null.") {
			qt = dns.TypeNULL
		}
		m.Observe(s.Decide(q.policy, q.qname, qt))
	}
	want := `
# HELP dnsvalve_policy_decisions_total Policy decisions by action (allow, block, alert, none), list category, policy and reason (list, allowlist_mode, qtype, cname, rebinding; empty for none).
# TYPE dnsvalve_policy_decisions_total counter
dnsvalve_policy_decisions_total{action="alert",category="sharing",policy="default",reason="list"} 1
dnsvalve_policy_decisions_total{action="block",category="",policy="sensitive",reason="allowlist_mode"} 1
dnsvalve_policy_decisions_total{action="block",category="",policy="sensitive",reason="qtype"} 1
dnsvalve_policy_decisions_total{action="block",category="ads",policy="default",reason="list"} 1
dnsvalve_policy_decisions_total{action="block",category="malware",policy="default",reason="list"} 2
dnsvalve_policy_decisions_total{action="none",category="",policy="default",reason=""} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	if n := testing.AllocsPerRun(100, func() {
		m.Observe(Decision{Action: query.ActionBlock, Category: "ads", Policy: "default", Reason: ReasonList})
	}); n != 0 {
		t.Errorf("Observe allocates %.0f times per call", n)
	}
}
