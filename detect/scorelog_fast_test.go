package detect

import (
	"bytes"
	"context"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// scoreBoth runs in through the fast and the encoding/json-only paths with
// fresh detectors and fails unless output and stats are identical.
func scoreBoth(tb testing.TB, in []byte, format string) []byte {
	tb.Helper()
	var outs [2]bytes.Buffer
	var stats [2]ScoreStats
	for i, slow := range []bool{false, true} {
		d, err := New(Config{}, nil, nil, nil, nil)
		if err != nil {
			tb.Fatal(err)
		}
		stats[i], err = scoreLog(context.Background(), d, bytes.NewReader(in), &outs[i], format, slow)
		d.Close()
		if err != nil {
			tb.Fatal(err)
		}
	}
	if stats[0] != stats[1] {
		tb.Errorf("stats differ: fast %+v, encoding/json %+v", stats[0], stats[1])
	}
	if !bytes.Equal(outs[0].Bytes(), outs[1].Bytes()) {
		got, want := strings.Split(outs[0].String(), "\n"), strings.Split(outs[1].String(), "\n")
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				tb.Fatalf("line %d differs:\n fast %s\n json %s", i+1, got[i], want[i])
			}
		}
		tb.Fatalf("fast path wrote %d lines, encoding/json %d", len(got), len(want))
	}
	return outs[0].Bytes()
}

func TestScoreLogFastMatchesEncodingJSON(t *testing.T) {
	route53 := route53Log(t, append(corpus.Tunnels(13, 1), corpus.Benign(13, 1)...))
	tests := []struct {
		name, format string
		in           []byte
	}{
		{"route53_corpus", "route53", route53},
		{"tricky_lines", "auto", []byte(strings.Join(trickyLines, "\n"))},
		{"dnsvalve_own_output", "dnsvalve", nil}, // filled below
	}
	tests[2].in = scoreBoth(t, route53[:len(route53)/4], "route53")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			scoreBoth(t, tc.in, tc.format)
		})
	}
}

// TestScoreLogKeepsForwarder: dnsvalve.forwarder (a query relayed by a
// trusted forwarder or load balancer) comes out of ScoreLog as it went in,
// on the fast path as with encoding/json.
func TestScoreLogKeepsForwarder(t *testing.T) {
	line := `{"version":"1.100000","account_id":"","region":"","vpc_id":"","query_timestamp":"2026-03-01T12:00:00.000Z",` +
		`"query_name":"api.example.com.","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[],` +
		`"srcaddr":"10.0.8.5","srcport":"40000","transport":"UDP","srcids":{},` +
		`"dnsvalve":{"cache":"miss","latency_us":12,"score":0,"alert":false,"newly_seen":false,"forwarder":"10.0.0.2"}}` + "\n"
	out := scoreBoth(t, []byte(line), FormatDNSValve)
	if !strings.Contains(string(out), `"forwarder":"10.0.0.2"`) {
		t.Errorf("scored line lost dnsvalve.forwarder:\n%s", out)
	}
}

// TestScanFieldsMatchSchema: the fast path knows every key of the
// query-log schema, in querylog's field order (a key it does not know is
// skipped and lost from its output, while encoding/json keeps it).
func TestScanFieldsMatchSchema(t *testing.T) {
	tests := []struct {
		name   string
		typ    reflect.Type
		extra  []string // keys inRecord adds
		fields []string
	}{
		{"entry", reflect.TypeFor[querylog.Entry](), []string{"type"}, topFields},
		{"answer", reflect.TypeFor[querylog.Answer](), nil, answerFields},
		{"srcids", reflect.TypeFor[querylog.SrcIDs](), nil, srcidsFields},
		{"dnsvalve", reflect.TypeFor[querylog.Extra](), nil, extraFields},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for f := range tc.typ.Fields() {
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				want = append(want, name)
			}
			want = append(want, tc.extra...)
			if !slices.Equal(tc.fields, want) {
				t.Errorf("scanner fields %q, schema %q", tc.fields, want)
			}
		})
	}
}
func TestParseFastShapes(t *testing.T) {
	tests := []struct {
		name, line string
		fast       bool
	}{
		{"route53_record", `{"version":"1.100000","query_timestamp":"2026-03-01T13:00:00.000Z","query_name":"a.example.com.","answers":[{"Rdata":"192.0.2.1","Type":"A","Class":"IN"}],"srcids":{"instance":"i-1"}}`, true},
		{"unknown_keys_skipped", `{"query_name":"a.","x":{"y":[1,-2.5E+3,"\u00e9\"",true,false,null]}}`, true},
		{"nulls", `{"query_name":null,"answers":null,"srcids":null,"dnsvalve":null}`, true},
		{"escape_in_value", `{"query_name":"a\u0062."}`, false},
		{"non_ascii_value", `{"query_name":"é."}`, false},
		{"key_case_variant", `{"QUERY_NAME":"a."}`, false},
		{"duplicate_key", `{"query_name":"a.","query_name":"b."}`, false},
		{"number_for_string", `{"srcport":53}`, false},
		{"float_latency", `{"dnsvalve":{"latency_us":1.5}}`, false},
		{"null_answer", `{"answers":[null]}`, false},
		{"trailing_garbage", `{"query_name":"a."}x`, false},
		{"top_level_null", `null`, false},
		{"unterminated", `{"query_name":"a.`, false},
		{"bad_number", `{"x":01}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r fastRecord
			if got := parseFast([]byte(tc.line), &r); got != tc.fast {
				t.Errorf("parseFast = %v, want %v", got, tc.fast)
			}
		})
	}
}

func FuzzScoreLogLine(f *testing.F) {
	for _, l := range trickyLines {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\n") {
			return
		}
		scoreBoth(t, []byte(line+"\n"+line+"\n"), "route53")
	})
}
