package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// route53Log renders sessions as Route 53 Resolver query-log lines.
func route53Log(tb testing.TB, sessions []corpus.Session) []byte {
	tb.Helper()
	var b bytes.Buffer
	for _, s := range sessions {
		for _, q := range s.Queries {
			rc := "NOERROR"
			if q.NX {
				rc = "NXDOMAIN"
			}
			fmt.Fprintf(&b, `{"version":"1.100000","account_id":"123456789012","region":"us-east-1","vpc_id":"vpc-1","query_timestamp":%q,"query_name":%q,"query_type":%q,"query_class":"IN","rcode":%q,"answers":[],"srcaddr":%q,"srcport":"53211","transport":"UDP","srcids":{"instance":"i-0abc"}}`+"\n",
				t0.Add(q.At).Format(time.RFC3339Nano), q.Name+".", qtypeName(q.Qtype), rc, s.Client.String())
		}
	}
	return b.Bytes()
}

func qtypeName(t uint16) string {
	switch t {
	case corpus.TypePRIVATE:
		return "TYPE65399"
	}
	return map[uint16]string{1: "A", 5: "CNAME", 10: "NULL", 12: "PTR", 15: "MX", 16: "TXT", 25: "KEY", 28: "AAAA", 33: "SRV", 65: "HTTPS"}[t]
}

func TestScoreLog(t *testing.T) {
	tunnel := corpus.Tunnels(11, 1)[:1]
	benign := corpus.Benign(11, 1)[:3]
	tests := []struct {
		name, format string
		in           func(tb testing.TB) []byte
		wantAlerts   bool
	}{
		{"route53_tunnel", "auto", func(tb testing.TB) []byte { return route53Log(tb, tunnel) }, true},
		{"route53_benign", "route53", func(tb testing.TB) []byte { return route53Log(tb, benign) }, false},
		{"dnsvalve_tunnel", "dnsvalve", func(tb testing.TB) []byte {
			// a dnsvalve log: our own output format, with an alert line to skip
			var out bytes.Buffer
			d, _, _ := newTestDetector(tb, Config{}, nil)
			if _, err := ScoreLog(context.Background(), d, bytes.NewReader(route53Log(tb, tunnel)), &out, "route53"); err != nil {
				tb.Fatal(err)
			}
			return out.Bytes()
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _ := newTestDetector(t, Config{}, nil)
			in := tc.in(t)
			var out bytes.Buffer
			st, err := ScoreLog(context.Background(), d, bytes.NewReader(in), &out, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			var entries, alerts int
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				if strings.Contains(line, `"type":"alert"`) {
					var a querylog.Alert
					if err := json.Unmarshal([]byte(line), &a); err != nil || a.Domain == "" || len(a.SampleNames) == 0 || a.Action != "ALERT" {
						t.Errorf("bad alert line %s: %v", line, err)
					}
					alerts++
					continue
				}
				var e querylog.Entry
				if err := json.Unmarshal([]byte(line), &e); err != nil || e.QueryName == "" || e.QueryTimestamp == "" {
					t.Fatalf("bad entry line %s: %v", line, err)
				}
				if e.SrcIDs.Instance != "i-0abc" {
					t.Errorf("srcids.instance lost: %s", line)
				}
				entries++
			}
			if int64(entries) != st.Records || int64(alerts) != st.Alerts {
				t.Errorf("wrote %d entries and %d alerts, stats %+v", entries, alerts, st)
			}
			if (alerts > 0) != tc.wantAlerts {
				t.Errorf("alerts = %d, want alerts: %v", alerts, tc.wantAlerts)
			}
			if tc.format == "auto" && st.Format != FormatRoute53 || tc.name == "dnsvalve_tunnel" && st.Skipped == 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
	if _, err := ScoreLog(context.Background(), nil, strings.NewReader(""), &bytes.Buffer{}, "csv"); err == nil {
		t.Errorf("unknown format accepted")
	}
}

func BenchmarkScoreLog(b *testing.B) {
	in := route53Log(b, append(corpus.Tunnels(5, 1), corpus.Benign(5, 1)...))
	lines := bytes.Count(in, []byte("\n"))
	d, err := New(Config{}, nil, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := ScoreLog(context.Background(), d, bytes.NewReader(in), discard{}, "route53"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
