package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

const dnsMessageType = "application/dns-message"

// dohUpstream is DNS over HTTPS (RFC 8484): POST of the wire message with
// ID 0, over HTTP/2 where the server offers it. Connections are reused by
// the HTTP transport.
type dohUpstream struct {
	addr      string // as configured
	url       string // without fragment
	timeout   time.Duration
	pools     *bufPools
	invalid   prometheus.Counter // nil when no Metrics
	transport *http.Transport
	client    *http.Client
}

func newDoH(addr string, opts Options) (*dohUpstream, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("parse url: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.Hostname() == "" {
		return nil, errors.New("want https://host[:port]/path")
	}
	if u.User != nil || u.RawQuery != "" {
		return nil, errors.New("user info and query string are not supported")
	}
	serverName := u.Hostname()
	if u.Fragment != "" {
		serverName = u.Fragment
	}
	u.Fragment, u.RawFragment = "", ""
	if u.Path == "" {
		u.Path = "/dns-query"
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	tr := &http.Transport{
		TLSClientConfig:     tlsClientConfig(opts.TLSConfig, serverName),
		ForceAttemptHTTP2:   true,
		Protocols:           &protos,
		MaxIdleConnsPerHost: opts.MaxIdleConns,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: opts.Timeout,
		// Ping idle HTTP/2 connections so a dead one is noticed before a
		// query waits on it.
		HTTP2: &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 5 * time.Second},
		// Proxy is deliberately nil: DNS must not depend on HTTP_PROXY.
	}
	d := &dohUpstream{
		addr:      addr,
		url:       u.String(),
		timeout:   opts.Timeout,
		pools:     newBufPools(),
		transport: tr,
		client:    &http.Client{Transport: tr, CheckRedirect: noRedirect},
	}
	if opts.Metrics != nil {
		d.invalid = opts.Metrics.InvalidResponses.WithLabelValues(addr)
	}
	return d, nil
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

func (d *dohUpstream) String() string { return d.addr }

func (d *dohUpstream) tryTimeout() time.Duration { return d.timeout }

// Close closes idle HTTP connections.
func (d *dohUpstream) Close() error {
	d.transport.CloseIdleConnections()
	return nil
}

// Exchange implements Upstream.
func (d *dohUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := withTimeout(ctx, d.timeout)
	defer cancel()
	// RFC 8484 4.1: ID 0 makes the request cacheable by HTTP caches.
	p, err := prepare(m, d.pools, 0, nil, false, false)
	if err != nil {
		return nil, fmt.Errorf("https %s: %w", d.addr, err)
	}
	defer p.release()
	r, err := d.exchange(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("https %s: %w", d.addr, err)
	}
	p.restore(ctx, r, m)
	return r, nil
}

func (d *dohUpstream) exchange(ctx context.Context, p *prepared) (*dns.Msg, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(p.wire()))
	if err != nil {
		return nil, fmt.Errorf("new request: %w", err)
	}
	req.Header.Set("Content-Type", dnsMessageType)
	req.Header.Set("Accept", dnsMessageType)
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096)) // let the connection be reused
		return nil, fmt.Errorf("http status %d", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != dnsMessageType {
		d.countInvalid()
		return nil, fmt.Errorf("content type %q: %w", resp.Header.Get("Content-Type"), ErrInvalidResponse)
	}
	bp := d.pools.read.Get().(*[]byte)
	defer d.pools.read.Put(bp)
	buf := *bp
	n, err := io.ReadFull(resp.Body, buf)
	switch {
	case err == nil:
		d.countInvalid()
		return nil, fmt.Errorf("body larger than %d bytes: %w", len(buf), ErrInvalidResponse)
	case !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF):
		return nil, fmt.Errorf("read body: %w", ctxErr(ctx, err))
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf[:n]); err != nil {
		d.countInvalid()
		return nil, fmt.Errorf("unpack: %w: %w", ErrInvalidResponse, err)
	}
	if err := p.validate(r); err != nil {
		d.countInvalid()
		return nil, err
	}
	return r, nil
}

func (d *dohUpstream) countInvalid() {
	if d.invalid != nil {
		d.invalid.Inc()
	}
}
