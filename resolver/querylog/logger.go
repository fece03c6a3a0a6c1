// Package querylog is dnsvalve's query log: one JSON object per query, with
// the field names of AWS Route 53 Resolver query logs plus a "dnsvalve"
// object (see Entry), written to sinks (stdout, stderr, rotated files,
// dnstap) by a Logger that never blocks DNS and never loses a record
// without counting it.
//
// Each sink gets its own bounded buffer and writer goroutine. Log copies
// the Record into every sink's buffer without blocking; when a buffer is
// full the record is dropped for that sink and counted
// (dnsvalve_querylog_dropped_total{sink}), and drops are reported with a
// slog warning at most once a minute. For every sink, once the Logger is
// closed, written + dropped + errors equals the number of records logged.
package querylog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Sink receives query-log records. Its methods are called only from the
// Logger's writer goroutine for that sink, never concurrently, so a Sink
// needs no locking of its own (unless it offers other methods, such as
// FileSink.Rotate).
//
// A sink may buffer: a record counts as written only once a later Flush
// succeeds. An error from Write or Flush means every record written since
// the last successful Flush is lost (the Logger counts them in errors_total);
// the sink must be usable again afterwards (reconnect, reset its buffer).
// Write must not retain r or anything it points to after returning.
type Sink interface {
	Name() string // metric label and log name; unique per Logger
	Write(r *Record) error
	Flush() error
	Close() error
}

// AlertSink is implemented by sinks that also carry alert records (the
// JSON sinks). Alerts are sent only to sinks that implement it.
type AlertSink interface {
	Sink
	WriteAlert(a *Alert) error
}

// ErrClosed is returned by Close when the Logger is already closed.
var ErrClosed = errors.New("querylog: logger closed")

// Options tune a Logger. Zero values take the defaults.
type Options struct {
	// BufferSize is the number of records each sink's buffer holds
	// (default 16384). A Record is about 350 bytes.
	BufferSize int
	// FlushInterval is how often each sink is flushed while records keep
	// coming (default 1s); sinks are also flushed on Close.
	FlushInterval time.Duration
	// DropReportInterval is how often drops and write errors are reported
	// with a slog warning, when there were any (default 1m).
	DropReportInterval time.Duration
}

// DefaultBufferSize is the per-sink buffer size used when none is given.
const DefaultBufferSize = 16384

// Logger fans query-log records out to sinks. Log and LogAlert are safe for
// concurrent use and never block; Close flushes and closes the sinks.
type Logger struct {
	mu     sync.RWMutex // guards closed and sending on the channels
	closed bool
	sinks  []*runner
	opts   Options
	logger *slog.Logger
	stop   chan struct{}
	hkDone chan struct{}
}

// SinkStats are a sink's counters, as in the metrics.
type SinkStats struct {
	Name    string
	Written uint64 // flushed
	Dropped uint64 // buffer full or logger closed
	Errors  uint64 // lost to write or flush errors
	Queued  int    // waiting in the buffer now
}

type item struct {
	rec   Record
	alert *Alert
}

// runner is one sink, its buffer and its writer goroutine.
type runner struct {
	sink    Sink
	alerts  bool // sink implements AlertSink
	ch      chan item
	done    chan struct{}
	cerr    error // from sink.Close, read after done
	pending uint64
	failing bool // last write or flush failed (writer goroutine only)

	written, dropped, errs atomic.Uint64
	reportedDrops          uint64 // housekeeping goroutine only
	reportedErrs           uint64

	mWritten, mDropped, mErrors prometheus.Counter
	mQueue                      prometheus.Gauge
}

// New starts a Logger with one buffer of bufferSize records (0: default)
// and one writer goroutine per sink. m may be nil (metrics not recorded
// anywhere); logger may be nil (slog.Default()). Sink names must be unique.
// The Logger owns the sinks: Close closes them.
func New(sinks []Sink, bufferSize int, m *Metrics, logger *slog.Logger) *Logger {
	return NewWithOptions(sinks, Options{BufferSize: bufferSize}, m, logger)
}

// NewWithOptions is New with all options.
func NewWithOptions(sinks []Sink, o Options, m *Metrics, logger *slog.Logger) *Logger {
	if o.BufferSize <= 0 {
		o.BufferSize = DefaultBufferSize
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.DropReportInterval <= 0 {
		o.DropReportInterval = time.Minute
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	l := &Logger{
		opts:   o,
		logger: logger.With("component", "querylog"),
		stop:   make(chan struct{}),
		hkDone: make(chan struct{}),
	}
	for _, s := range sinks {
		name := s.Name()
		_, alerts := s.(AlertSink)
		r := &runner{
			sink:     s,
			alerts:   alerts,
			ch:       make(chan item, o.BufferSize),
			done:     make(chan struct{}),
			mWritten: m.Written.WithLabelValues(name),
			mDropped: m.Dropped.WithLabelValues(name),
			mErrors:  m.Errors.WithLabelValues(name),
			mQueue:   m.QueueLength.WithLabelValues(name),
		}
		l.sinks = append(l.sinks, r)
		go l.run(r)
	}
	go l.housekeep()
	return l
}

// Log queues r for every sink and returns at once. Log copies *r: the
// caller may reuse the Record, but not modify the messages or slices it
// points to (Req, Resp, Info.Signals), which the sinks read later; when
// r.Lease is set, Log retains it for each sink the record is queued for,
// and the caller may give the messages back (its own Release) as soon as
// Log returns. When a sink's buffer is full the record is dropped for
// that sink and counted. Log on a closed Logger counts the record as
// dropped.
func (l *Logger) Log(r *Record) {
	if len(l.sinks) == 0 {
		return
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		for _, s := range l.sinks {
			s.drop()
		}
		return
	}
	for _, s := range l.sinks {
		r.Lease.Retain() // before the send: the sink may write and release it at once
		select {
		case s.ch <- item{rec: *r}:
		default:
			r.Lease.Release()
			s.drop()
		}
	}
	l.mu.RUnlock()
}

// LogAlert queues an alert record ("type":"alert") for the sinks that
// carry alerts (the JSON sinks), without blocking. An empty a.Type is
// written as "alert".
func (l *Logger) LogAlert(a Alert) {
	if a.Type == "" {
		a.Type = "alert"
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	for _, s := range l.sinks {
		if !s.alerts {
			continue
		}
		if l.closed {
			s.drop()
			continue
		}
		select {
		case s.ch <- item{alert: &a}:
		default:
			s.drop()
		}
	}
}

// Close stops accepting records, waits until every sink has written and
// flushed its buffer, and closes the sinks. If ctx ends first, Close
// returns ctx's error naming the sinks still draining (their goroutines
// finish in the background). Closing twice returns ErrClosed.
func (l *Logger) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	for _, s := range l.sinks {
		close(s.ch)
	}
	l.mu.Unlock()

	var errs []error
	for _, s := range l.sinks {
		select {
		case <-s.done:
			if s.cerr != nil {
				errs = append(errs, fmt.Errorf("querylog: close sink %s: %w", s.sink.Name(), s.cerr))
			}
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("querylog: close sink %s: %d records still queued: %w",
				s.sink.Name(), len(s.ch), ctx.Err()))
		}
	}
	close(l.stop)
	<-l.hkDone
	return errors.Join(errs...)
}

// Stats returns each sink's counters, in the order the sinks were given.
func (l *Logger) Stats() []SinkStats {
	out := make([]SinkStats, len(l.sinks))
	for i, s := range l.sinks {
		out[i] = SinkStats{
			Name:    s.sink.Name(),
			Written: s.written.Load(),
			Dropped: s.dropped.Load(),
			Errors:  s.errs.Load(),
			Queued:  len(s.ch),
		}
	}
	return out
}

func (s *runner) drop() {
	s.dropped.Add(1)
	s.mDropped.Inc()
}

// run is the sink's writer goroutine.
func (l *Logger) run(s *runner) {
	defer close(s.done)
	t := time.NewTicker(l.opts.FlushInterval)
	defer t.Stop()
	// One item, reused: sinks do not retain what Write gets, and a fresh
	// one per record would be a heap allocation per query.
	it := new(item)
	for {
		select {
		case v, ok := <-s.ch:
			if !ok {
				l.flush(s)
				s.cerr = s.sink.Close()
				return
			}
			*it = v
			l.write(s, it)
			// Drain what is already queued with plain receives, cheaper
			// than a select per record under load.
			for n := len(s.ch); n > 0; n-- {
				v, ok := <-s.ch
				if !ok {
					break // closed: the select above sees it next
				}
				*it = v
				l.write(s, it)
			}
			*it = item{} // don't keep the last messages alive
		case <-t.C:
			l.flush(s)
		}
	}
}

func (l *Logger) write(s *runner, it *item) {
	var err error
	if it.alert != nil {
		err = s.sink.(AlertSink).WriteAlert(it.alert)
	} else {
		err = s.sink.Write(&it.rec)
		// Sinks do not retain what Write gets: the record's messages
		// go back to the server's pool once every sink has written.
		it.rec.Lease.Release()
		it.rec.Lease = nil
	}
	if err != nil {
		l.lose(s, s.pending+1, err)
		return
	}
	s.pending++
}

func (l *Logger) flush(s *runner) {
	if s.pending == 0 {
		return
	}
	if err := s.sink.Flush(); err != nil {
		l.lose(s, s.pending, err)
		return
	}
	s.written.Add(s.pending)
	s.mWritten.Add(float64(s.pending))
	s.pending = 0
	if s.failing {
		s.failing = false
		l.logger.Info("query-log sink recovered", "sink", s.sink.Name())
	}
}

// lose counts n records lost to err; the first error after a success is
// logged, the rest are summed into the periodic report.
func (l *Logger) lose(s *runner, n uint64, err error) {
	s.errs.Add(n)
	s.mErrors.Add(float64(n))
	s.pending = 0
	if !s.failing {
		s.failing = true
		l.logger.Warn("query-log sink failing", "sink", s.sink.Name(), "err", err)
	}
}

// housekeep updates the queue gauges and reports drops and errors.
func (l *Logger) housekeep() {
	defer close(l.hkDone)
	gauge := time.NewTicker(l.opts.FlushInterval)
	defer gauge.Stop()
	report := time.NewTicker(l.opts.DropReportInterval)
	defer report.Stop()
	for {
		select {
		case <-l.stop:
			l.report()
			for _, s := range l.sinks {
				s.mQueue.Set(float64(len(s.ch)))
			}
			return
		case <-gauge.C:
			for _, s := range l.sinks {
				s.mQueue.Set(float64(len(s.ch)))
			}
		case <-report.C:
			l.report()
		}
	}
}

func (l *Logger) report() {
	for _, s := range l.sinks {
		d, e := s.dropped.Load(), s.errs.Load()
		if d == s.reportedDrops && e == s.reportedErrs {
			continue
		}
		l.logger.Warn("query-log records lost", "sink", s.sink.Name(),
			"dropped", d-s.reportedDrops, "errors", e-s.reportedErrs,
			"dropped_total", d, "errors_total", e)
		s.reportedDrops, s.reportedErrs = d, e
	}
}
