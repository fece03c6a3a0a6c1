package detect

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// trickyLines are query-log lines off the usual shape: escapes, non-ASCII,
// keys in another case, duplicates, nulls, unknown keys, bad values.
var trickyLines = []string{
	`{"version":"1.100000","query_timestamp":"2026-03-01T13:00:00.000Z","query_name":"a\u0062c.example.com.","query_type":"A","rcode":"NOERROR","srcaddr":"10.9.0.1","srcport":"5353","transport":"UDP","srcids":{"instance":"i-1"}}`,
	`{"query_timestamp":"2026-03-01T13:00:00.100Z","query_name":"x.example.com.","query_type":"AAAA","rcode":"NOERROR","srcaddr":"10.9.0.1","extra":{"a":[1,2.5e3,{"b":null,"c":"d\"e"}],"t":true},"srcids":{"instance":"i-1","other":"x"}}`,
	`{"query_timestamp":"2026-03-01T13:00:00.200Z","Query_Name":"y.example.com.","query_type":"A","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"2026-03-01T13:00:00.300Z","query_name":"z.example.com.","query_name":"w.example.com.","query_type":"A","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"2026-03-01T13:00:00.400Z","query_name":"n.example.com.","query_type":null,"answers":null,"srcids":null,"dnsvalve":null,"srcaddr":"10.9.0.1"}`,
	`{"version":"1.100000","account_id":"1","region":"eu-west-1","vpc_id":"vpc-2","query_timestamp":"2026-03-01T13:00:00.5Z","query_name":"api.example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[{"Rdata":"192.0.2.1","Type":"A","Class":"IN"},{"Rdata":"192.0.2.2","Type":"A","Class":"IN","Extra":1}],"srcaddr":"10.9.0.2","srcport":"1","transport":"TCP","srcids":{}}`,
	`{"type":"alert","alert_timestamp":"2026-03-01T13:00:00.000Z","srcaddr":"10.9.0.1","srcids":{},"domain":"example.com","score":0.9,"signals":[],"queries":1,"unique_subdomains":1,"bytes":1,"sample_names":[],"action":"ALERT"}`,
	`{"query_name":`,
	`{"query_timestamp":"2026-03-01T13:00:01.000Z","query_name":"b.example.com.","query_type":"TXT","rcode":"NXDOMAIN","srcaddr":"10.9.0.1","firewall_rule_action":"BLOCK","firewall_rule_group_id":"default","firewall_domain_list_id":"malware","dnsvalve":{"group":"g","policy":"p","category":"malware","rule":"b.example.com","source":"lists/m.txt:3","cache":"miss","upstream":"udp://127.0.0.1:53","latency_us":-0,"score":1e-3,"signals":["entropy"],"alert":true,"newly_seen":false,"reason":"r","ecs":"10.0.0.0/24","instance":"dnsvalve-1","future":{}}}`,
	`{"query_timestamp":"2026-03-01T13:00:01.100Z","query_name":"c.example.com.","srcaddr":"10.9.0.1","dnsvalve":{"latency_us":1.5}}`,
	`{"query_timestamp":"2026-03-01T13:00:01.200Z","query_name":"d.example.com.","srcaddr":"10.9.0.1","answers":[{"Rdata":"caf\u00e9 é \u2028","Type":"TXT","Class":"IN"}]}`,
	`{"query_timestamp":"2026-03-01T15:00:01.300+02:00","query_name":"e.example.com.","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"2026-03-01T13:00:02Z","query_name":"f.example.com.","srcaddr":"10.9.0.1"}`,
	`null`,
	`[1,2]`,
	`{"query_timestamp":"2026-03-01T13:00:02.100Z","query_name":"g.example.com.","srcaddr":"10.9.0.1"} x`,
	`{"query_timestamp":"2026-03-01T13:00:02.200Z","query_name":"","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"yesterday","query_name":"h.example.com.","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"2026-02-30T13:00:02.300Z","query_name":"h.example.com.","srcaddr":"10.9.0.1"}`,
	`{"query_timestamp":"2026-03-01T13:00:02.400Z","query_name":"WWW.Example.COM.","query_type":"TYPE65399","srcaddr":"::1","srcport":"53"}`,
	`{"query_timestamp":"2026-03-01T13:00:02.500Z","query_name":"k.example.com.","srcaddr":"10.9.0.1","srcport":53}`,
	`{"query_timestamp":"2026-03-01T13:00:02.600Z","query_name":"l.example.com.","srcaddr":"10.9.0.1","dnsvalve":{"score":1e999}}`,
	`{"query_timestamp":"2026-03-01T13:00:02.700Z","query_name":"m.example.com.","srcaddr":"10.9.0.1","dnsvalve":{"signals":[1]}}`,
	"\t{ \"query_timestamp\" : \"2026-03-01T13:00:02.800Z\" ,\r\"query_name\":\"o.example.com.\" , \"srcaddr\":\"10.9.0.3\" }  ",
}

// goldenInput is a Route 53 log (the start of a tunnel session and of
// benign sessions) followed by trickyLines.
func goldenInput(tb testing.TB) []byte {
	tb.Helper()
	sessions := append(corpus.Tunnels(11, 1)[:1], corpus.Benign(11, 1)[:4]...)
	for i := range sessions {
		n := 20
		if i == 0 {
			n = 110
		}
		sessions[i].Queries = sessions[i].Queries[:min(n, len(sessions[i].Queries))]
	}
	in := route53Log(tb, sessions)
	for _, l := range trickyLines {
		in = append(in, l...)
		in = append(in, '\n')
	}
	return in
}

// TestScoreLogGolden pins ScoreLog's output for a Route 53 log. The golden
// file was written by the encoding/json implementation ScoreLog had before
// its hand-written scanner and encoder: the output is byte-identical.
func TestScoreLogGolden(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{}, nil)
	var out bytes.Buffer
	st, err := ScoreLog(context.Background(), d, bytes.NewReader(goldenInput(t)), &out, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if st.Alerts == 0 || st.Skipped == 0 || st.Format != FormatRoute53 {
		t.Errorf("stats %+v: want alerts and skipped lines", st)
	}
	path := filepath.Join("testdata", t.Name(), "output.jsonl")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		got, wl := bytes.Split(out.Bytes(), []byte("\n")), bytes.Split(want, []byte("\n"))
		for i := range min(len(got), len(wl)) {
			if !bytes.Equal(got[i], wl[i]) {
				t.Fatalf("line %d differs:\n got %s\nwant %s", i+1, got[i], wl[i])
			}
		}
		t.Fatalf("output has %d lines, golden %d", len(got), len(wl))
	}
}
