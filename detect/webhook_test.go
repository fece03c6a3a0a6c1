package detect

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

func TestWebhook(t *testing.T) {
	tests := []struct {
		name     string
		failures int32 // first N requests answer 500
		wantOK   float64
		wantErr  float64
	}{
		{"delivered_first_try", 0, 1, 0},
		{"retried_after_errors", 2, 1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			got := make(chan querylog.Alert, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) <= tc.failures {
					w.WriteHeader(http.StatusInternalServerError)
					return
				}
				var a querylog.Alert
				if err := json.NewDecoder(r.Body).Decode(&a); err != nil || r.Header.Get("Content-Type") != "application/json" {
					t.Errorf("bad webhook request: %v", err)
				}
				got <- a
			}))
			t.Cleanup(srv.Close)
			m := NewMetrics(prometheus.NewRegistry())
			w := NewWebhook(srv.URL, srv.Client(), m, nil)
			w.backoff = time.Millisecond
			w.Alert(Alert{Time: t0, Client: netip.MustParseAddr("10.0.0.1"), Domain: "evil.com", Score: 0.93,
				Signals: []string{SignalEntropy}, SampleNames: []string{"abc.t.evil.com"}})
			a := <-got
			if a.Type != "alert" || a.Domain != "evil.com" || a.SrcAddr != "10.0.0.1" || a.Score != 0.93 {
				t.Errorf("alert = %+v", a)
			}
			if err := w.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if ok, bad := testutil.ToFloat64(m.WebhookSent.WithLabelValues("ok")), testutil.ToFloat64(m.WebhookSent.WithLabelValues("error")); ok != tc.wantOK || bad != tc.wantErr {
				t.Errorf("deliveries ok=%v error=%v, want %v %v", ok, bad, tc.wantOK, tc.wantErr)
			}
		})
	}
}

func TestWebhookNeverBlocks(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	m := NewMetrics(prometheus.NewRegistry())
	w := NewWebhook(srv.URL, srv.Client(), m, nil)
	for i := 0; i < webhookQueue+100; i++ {
		w.Alert(Alert{Domain: "evil.com"}) // returns at once even with a stuck receiver
	}
	if d := testutil.ToFloat64(m.WebhookDropped); d < 99 {
		t.Errorf("dropped = %v, want >= 99 with a full queue", d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // deadline already passed: Close drops the rest and returns
	if err := w.Close(ctx); err == nil {
		t.Errorf("Close with an expired context returned nil")
	}
}

// TestWebhookSecretNotLogged: a webhook URL usually holds its secret in
// the path or query (Slack, Teams, ?token=). A transport error used to
// put the whole URL in the "gave up" warning, and so in the log pipeline.
func TestWebhookSecretNotLogged(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens: connection refused
	const secret = "XoXb-SeCrEt-T0K3N"
	var out bytes.Buffer
	w := NewWebhook("http://user:pw@"+addr+"/services/T000/B000/"+secret+"?token="+secret, nil,
		NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewJSONHandler(&out, nil)))
	w.backoff, w.retries = time.Millisecond, 0
	w.Alert(Alert{Time: t0, Client: netip.MustParseAddr("10.0.0.1"), Domain: "evil.com", Score: 0.93})
	if err := w.Close(context.Background()); err != nil { // delivers what is queued first
		t.Fatal(err)
	}
	s := out.String()
	if !strings.Contains(s, "gave up") || !strings.Contains(s, "http://"+addr+"/...") {
		t.Fatalf("no warning naming the webhook's host:\n%s", s)
	}
	for _, leak := range []string{secret, "pw@", "T000"} {
		if strings.Contains(s, leak) {
			t.Errorf("%q in the log:\n%s", leak, s)
		}
	}
}

// TestWebhookSend: Send posts an alert record as is (a policy alert, or a
// detector alert whose action is BLOCK): the JSON encoding/json writes
// for it (without HTML escaping, as the query log's lines).
func TestWebhookSend(t *testing.T) {
	got := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(r.Body)
		got <- buf.Bytes()
	}))
	t.Cleanup(srv.Close)
	w := NewWebhook(srv.URL, srv.Client(), nil, nil)
	for _, rec := range []querylog.Alert{
		{Type: "alert", Timestamp: "2026-03-01T12:00:00.000Z", SrcAddr: "10.0.0.1", Domain: "evil.example", Action: "BLOCK",
			Signals: []string{}, SampleNames: []string{},
			Kind: "policy", QueryName: "c2.evil.example.", QueryType: "TXT", FirewallDomainListID: "urlhaus", Category: "malware",
			Rule: "||evil.example^", Source: "https://feed.example/list?a=1&b=<2>:3", Reason: "list"},
		AlertRecord(&Alert{Time: t0, Client: netip.MustParseAddr("10.0.0.2"), Domain: "t.example", Score: 0.95}, "BLOCK"),
	} {
		w.Send(rec)
		var want bytes.Buffer
		enc := json.NewEncoder(&want)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(rec); err != nil {
			t.Fatal(err)
		}
		if body := <-got; !bytes.Equal(body, bytes.TrimSuffix(want.Bytes(), []byte("\n"))) {
			t.Errorf("posted\n%s\nwant\n%s", body, want.Bytes())
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
