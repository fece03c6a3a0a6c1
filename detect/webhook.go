package detect

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/dnsvalve/dnsvalve/internal/redact"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// Webhook is an AlertSink that POSTs each alert as a JSON query-log alert
// record to a URL: a detector alert (Alert), or any record as is (Send),
// such as a policy alert. Neither blocks: alerts go to a bounded queue (full
// queue: dropped and counted) drained by one goroutine that retries failed
// deliveries with exponential backoff.
type Webhook struct {
	url     string
	client  *http.Client
	m       *Metrics
	log     *slog.Logger
	queue   chan querylog.Alert
	stop    chan struct{} // Close: stop taking from the queue
	abort   chan struct{} // Close's deadline passed: cancel in-flight delivery
	done    chan struct{}
	retries int
	backoff time.Duration
}

var _ AlertSink = (*Webhook)(nil)

const webhookQueue = 1024

// NewWebhook starts a webhook sink. client nil means a client with a 10 s
// timeout; m and logger may be nil.
func NewWebhook(url string, client *http.Client, m *Metrics, logger *slog.Logger) *Webhook {
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{url: url, client: client, m: m, log: logger, queue: make(chan querylog.Alert, webhookQueue),
		stop: make(chan struct{}), abort: make(chan struct{}), done: make(chan struct{}), retries: 5, backoff: 500 * time.Millisecond}
	go w.loop()
	return w
}

// Alert queues a detector alert, as an ALERT record, for delivery.
func (w *Webhook) Alert(a Alert) { w.Send(AlertRecord(&a, "ALERT")) }

// Send queues rec for delivery as it is; it drops (and counts) when the
// queue is full.
func (w *Webhook) Send(rec querylog.Alert) {
	select {
	case w.queue <- rec:
	default:
		w.m.WebhookDropped.Inc()
	}
}

func (w *Webhook) loop() {
	defer close(w.done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-w.abort:
		case <-w.done:
		}
		cancel()
	}()
	for {
		select {
		case a := <-w.queue:
			w.deliver(ctx, a)
		case <-w.stop:
			return
		}
	}
}

// deliver posts a, retrying with exponential backoff until success, the
// retry budget is spent, or ctx is done.
func (w *Webhook) deliver(ctx context.Context, a querylog.Alert) bool {
	body := querylog.AppendAlert(nil, &a) // the query log's line, byte for byte
	delay := w.backoff
	for attempt := 0; ; attempt++ {
		err := w.post(ctx, body)
		if err == nil {
			w.m.WebhookSent.WithLabelValues("ok").Inc()
			return true
		}
		w.m.WebhookSent.WithLabelValues("error").Inc()
		if attempt >= w.retries {
			w.m.WebhookDropped.Inc()
			w.log.Warn("alert webhook gave up", "domain", a.Domain, "attempts", attempt+1, "err", err)
			return false
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			w.m.WebhookDropped.Inc()
			return false
		}
		delay *= 2
	}
}

func (w *Webhook) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := w.client.Do(req)
	if err != nil {
		// A *url.Error names the whole URL, whose path or query is often
		// the webhook's secret (Slack, Teams, ?token=): keep it out of
		// the error, and so out of the log.
		return fmt.Errorf("webhook: post to %s: %w", redactURL(w.url), redact.URLError(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: post: status %s", resp.Status)
	}
	return nil
}

// Close stops the background sender and delivers what is still queued
// until ctx is done; undelivered alerts are counted as dropped. Alert must
// not be called after Close.
func (w *Webhook) Close(ctx context.Context) error {
	close(w.stop)
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
			close(w.abort)
		case <-finished:
		}
	}()
	<-w.done // the in-flight delivery finishes or is aborted by ctx
	for {
		select {
		case a := <-w.queue:
			if ctx.Err() != nil {
				w.m.WebhookDropped.Inc()
				continue
			}
			w.deliver(ctx, a)
		default:
			return ctx.Err()
		}
	}
}

// redactURL returns the scheme and host of raw, without the path, query or
// credentials that may hold a secret.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Scheme + "://" + u.Host + "/..."
}
