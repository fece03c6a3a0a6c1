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
func ScoreLog(ctx context.Context, d *Detector, r io.Reader, w io.Writer, format string) (ScoreStats, error) {
	var st ScoreStats
	switch format {
	case "", FormatAuto:
		format = FormatAuto
	case FormatDNSValve, FormatRoute53:
	default:
		return st, fmt.Errorf("score log: %w %q (want auto, dnsvalve or route53)", ErrFormat, format)
	}
	br := bufio.NewReaderSize(r, 1<<20)
	bw := bufio.NewWriterSize(w, 1<<20)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	var (
		rec      inRecord
		lastAddr string
		addr     netip.Addr
	)
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
			rec = inRecord{}
			if err := json.Unmarshal(line, &rec); err != nil || rec.Type != "" || rec.QueryName == "" {
				st.Skipped++
			} else {
				st.Records++
				if rec.SrcAddr != lastAddr {
					addr, _ = netip.ParseAddr(rec.SrcAddr)
					lastAddr = rec.SrcAddr
				}
				if err := scoreRecord(d, &rec.Entry, addr, bw, enc, &st); err != nil {
					return st, err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
	}
	st.Format = format
	if err := bw.Flush(); err != nil {
		return st, fmt.Errorf("score log: write: %w", err)
	}
	return st, nil
}

func scoreRecord(d *Detector, e *querylog.Entry, addr netip.Addr, bw *bufio.Writer, enc *json.Encoder, st *ScoreStats) error {
	ts, err := time.Parse(time.RFC3339Nano, e.QueryTimestamp)
	if err != nil {
		st.Skipped++
		st.Records--
		return nil
	}
	c := Client{Addr: addr, Name: e.SrcIDs.Instance, Group: e.DNSValve.Group, Policy: e.DNSValve.Policy}
	res, alert := d.observe(ts, c, e.QueryName, qtypeFromString(e.QueryType))
	if rc, ok := dns.StringToRcode[e.Rcode]; ok && !res.Ignored {
		d.ObserveRcode(ts, addr, e.QueryName, rc)
	}
	d.m.ScoredRecords.Inc()
	if !res.Ignored {
		st.Scored++
	}
	if res.NewlySeen {
		st.NewlySeen++
	}
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
	if err := enc.Encode(e); err != nil {
		return fmt.Errorf("score log: write: %w", err)
	}
	if alert != nil {
		st.Alerts++
		if d.sink != nil {
			d.sink.Alert(*alert)
		}
		if err := enc.Encode(AlertRecord(alert, "ALERT")); err != nil {
			return fmt.Errorf("score log: write: %w", err)
		}
	}
	return nil
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
	}
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
