package querylog

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// lineCounter counts the lines written to it.
type lineCounter struct{ lines int }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte{'\n'})
	return len(p), nil
}

// blockingSink blocks in Write until release is closed.
type blockingSink struct {
	entered chan struct{} // closed on the first Write
	release chan struct{}
	once    sync.Once
	writes  int
}

func newBlockingSink() *blockingSink {
	return &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
}

func (s *blockingSink) Name() string { return "blocking" }
func (s *blockingSink) Write(*Record) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	s.writes++
	return nil
}
func (s *blockingSink) Flush() error { return nil }
func (s *blockingSink) Close() error { return nil }

// flakySink fails every failEvery-th Write and every flushFailEvery-th
// Flush, and models a buffer: delivered counts what a successful Flush
// pushed out.
type flakySink struct {
	failEvery, flushFailEvery int
	writes, flushes           int
	buffered, delivered       int
}

func (s *flakySink) Name() string { return "flaky" }
func (s *flakySink) Write(*Record) error {
	s.writes++
	if s.writes%s.failEvery == 0 {
		s.buffered = 0
		return errors.New("write failed")
	}
	s.buffered++
	return nil
}
func (s *flakySink) Flush() error {
	s.flushes++
	if s.flushes%s.flushFailEvery == 0 {
		s.buffered = 0
		return errors.New("flush failed")
	}
	s.delivered += s.buffered
	s.buffered = 0
	return nil
}
func (s *flakySink) Close() error { return nil }

func closeLogger(tb testing.TB, l *Logger) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		tb.Fatalf("Close: %v", err)
	}
}

// waitForRoom paces a producer to the sink: it yields while sink i's
// buffer is nearly full, as a server whose query rate the sink keeps up
// with would.
func waitForRoom(l *Logger, i int) {
	s := l.sinks[i]
	for len(s.ch) > cap(s.ch)*3/4 {
		runtime.Gosched()
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// checkAccounting asserts written + dropped + errors == sent for every sink,
// in Stats and in the metrics.
func checkAccounting(tb testing.TB, l *Logger, m *Metrics, sent uint64) {
	tb.Helper()
	for _, st := range l.Stats() {
		if st.Written+st.Dropped+st.Errors != sent {
			tb.Errorf("sink %s: written %d + dropped %d + errors %d != sent %d", st.Name, st.Written, st.Dropped, st.Errors, sent)
		}
		for _, c := range []struct {
			vec  *prometheus.CounterVec
			want uint64
		}{{m.Written, st.Written}, {m.Dropped, st.Dropped}, {m.Errors, st.Errors}} {
			if got := testutil.ToFloat64(c.vec.WithLabelValues(st.Name)); got != float64(c.want) {
				tb.Errorf("sink %s: metric = %v, stats = %d", st.Name, got, c.want)
			}
		}
	}
}

// TestLogNominal logs N records to two sinks that keep up and gets exactly
// N lines out of each after Close.
func TestLogNominal(t *testing.T) {
	const n = 100_000
	var a, b lineCounter
	m := NewMetrics(prometheus.NewRegistry())
	l := New([]Sink{NewWriterSink("a", &a), NewWriterSink("b", &b)}, 4096, m, discardLogger())
	r := testRecord(t, "cache_hit_a")
	for range n {
		waitForRoom(l, 0)
		waitForRoom(l, 1)
		l.Log(&r)
	}
	closeLogger(t, l)
	if a.lines != n || b.lines != n {
		t.Fatalf("lines out = %d, %d; want %d", a.lines, b.lines, n)
	}
	checkAccounting(t, l, m, n)
	for _, st := range l.Stats() {
		if st.Dropped != 0 || st.Errors != 0 || st.Written != n {
			t.Errorf("%+v", st)
		}
	}
}

// TestMillion pushes 1,000,000 records through the JSON-lines sink.
func TestMillion(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 records: skipped with -short")
	}
	const n = 1_000_000
	var c lineCounter
	m := NewMetrics(nil)
	l := New([]Sink{NewWriterSink("count", &c)}, 0, m, discardLogger())
	r := testRecord(t, "cache_hit_a")
	start := time.Now()
	for range n {
		waitForRoom(l, 0)
		l.Log(&r)
	}
	closeLogger(t, l)
	if c.lines != n {
		t.Fatalf("lines out = %d, want %d", c.lines, n)
	}
	checkAccounting(t, l, m, n)
	t.Logf("%d records in %v (%.0f lines/s)", n, time.Since(start), n/time.Since(start).Seconds())
}

// TestLogNeverBlocks logs 10x the buffer size to a sink that cannot keep
// up: the loop completes, and every record is written or counted dropped.
func TestLogNeverBlocks(t *testing.T) {
	const buffer = 256
	const sent = 10 * buffer
	tests := []struct {
		name string
		// setup returns the sink, a func to unblock it, and a func
		// returning the lines it got out (after Close).
		setup func(t *testing.T) (Sink, func(), func() int)
	}{
		{"fake_sink_waiting_on_channel", func(t *testing.T) (Sink, func(), func() int) {
			s := newBlockingSink()
			return s, func() { <-s.entered; close(s.release) }, func() int { return s.writes }
		}},
		{"pipe_nobody_reads", func(t *testing.T) (Sink, func(), func() int) {
			pr, pw, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { pr.Close(); pw.Close() })
			done := make(chan int, 1)
			unblock := func() {
				go func() {
					var c lineCounter
					_, _ = io.Copy(&c, pr)
					done <- c.lines
				}()
			}
			lines := func() int { pw.Close(); return <-done }
			return NewWriterSink("pipe", pw), unblock, lines
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink, unblock, lines := tt.setup(t)
			m := NewMetrics(prometheus.NewRegistry())
			l := New([]Sink{sink}, buffer, m, discardLogger())
			r := testRecord(t, "cache_hit_a")
			for range sent {
				l.Log(&r)
			}
			// The loop completed: Log did not block. The buffer is full and
			// the rest was dropped, minus what the sink took before stalling.
			st := l.Stats()[0]
			if st.Dropped == 0 || st.Dropped > sent-buffer {
				t.Errorf("dropped %d while blocked, want (0, %d]", st.Dropped, sent-buffer)
			}
			unblock()
			closeLogger(t, l)
			st = l.Stats()[0]
			if st.Dropped != sent-st.Written || st.Errors != 0 {
				t.Errorf("dropped %d, want sent %d - written %d (errors %d)", st.Dropped, sent, st.Written, st.Errors)
			}
			if got := lines(); uint64(got) != st.Written {
				t.Errorf("sink got %d lines, logger counted %d written", got, st.Written)
			}
			checkAccounting(t, l, m, sent)
		})
	}
}

// TestSinkErrorsCounted checks that records lost to Write and Flush errors
// are counted exactly.
func TestSinkErrorsCounted(t *testing.T) {
	const sent = 5000
	s := &flakySink{failEvery: 7, flushFailEvery: 3}
	m := NewMetrics(nil)
	l := NewWithOptions([]Sink{s}, Options{BufferSize: sent, FlushInterval: time.Microsecond}, m, discardLogger())
	r := testRecord(t, "refused")
	for range sent {
		l.Log(&r)
	}
	closeLogger(t, l)
	st := l.Stats()[0]
	if st.Written != uint64(s.delivered) {
		t.Errorf("written %d, sink delivered %d", st.Written, s.delivered)
	}
	if st.Errors == 0 {
		t.Error("no errors counted")
	}
	checkAccounting(t, l, m, sent)
}

// flushSink reports every Flush that had records on a channel.
type flushSink struct {
	writes  int
	flushed chan int
}

func (s *flushSink) Name() string        { return "flush" }
func (s *flushSink) Write(*Record) error { s.writes++; return nil }
func (s *flushSink) Flush() error        { s.flushed <- s.writes; return nil }
func (s *flushSink) Close() error        { return nil }

// TestFlushInterval: with the default options, a record is flushed within
// about a second without waiting for Close.
func TestFlushInterval(t *testing.T) {
	s := &flushSink{flushed: make(chan int, 16)}
	l := New([]Sink{s}, 8, nil, discardLogger())
	r := testRecord(t, "refused")
	start := time.Now()
	l.Log(&r)
	select {
	case n := <-s.flushed:
		if n != 1 {
			t.Errorf("flushed after %d writes, want 1", n)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("first flush after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no flush within 5s")
	}
	closeLogger(t, l)
	if st := l.Stats()[0]; st.Written != 1 {
		t.Errorf("written = %d, want 1", st.Written)
	}
}

// TestLogAlert sends alerts to the JSON sinks only.
func TestLogAlert(t *testing.T) {
	var buf bytes.Buffer
	block := &flakySink{failEvery: 1 << 30, flushFailEvery: 1 << 30}
	l := New([]Sink{NewWriterSink("json", &buf), block}, 16, nil, discardLogger())
	a := testAlert()
	a.Type = ""
	l.LogAlert(a)
	r := testRecord(t, "refused")
	l.Log(&r)
	closeLogger(t, l)
	sc := bufio.NewScanner(&buf)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	want := testAlert()
	if len(lines) != 2 || lines[0] != string(AppendAlert(nil, &want)) {
		t.Fatalf("lines = %q", lines)
	}
	if block.writes != 1 {
		t.Errorf("non-JSON sink got %d writes, want only the record", block.writes)
	}
}

func TestLoggerClosed(t *testing.T) {
	var c lineCounter
	m := NewMetrics(nil)
	l := New([]Sink{NewWriterSink("c", &c)}, 8, m, discardLogger())
	r := testRecord(t, "refused")
	l.Log(&r)
	closeLogger(t, l)
	l.Log(&r)
	l.LogAlert(testAlert())
	if err := l.Close(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("second Close = %v, want ErrClosed", err)
	}
	st := l.Stats()[0]
	if st.Written != 1 || st.Dropped != 2 || c.lines != 1 {
		t.Errorf("stats %+v lines %d", st, c.lines)
	}
}

// TestCloseContext: Close gives up on a stuck sink when ctx ends.
func TestCloseContext(t *testing.T) {
	s := newBlockingSink()
	l := New([]Sink{s}, 8, nil, discardLogger())
	r := testRecord(t, "refused")
	l.Log(&r)
	l.Log(&r)
	<-s.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.Close(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Close = %v, want context.Canceled", err)
	}
	close(s.release)
	<-l.sinks[0].done
}

// slogChan is a slog handler that sends every record to a channel.
type slogChan chan slog.Record

func (c slogChan) Enabled(context.Context, slog.Level) bool      { return true }
func (c slogChan) Handle(_ context.Context, r slog.Record) error { c <- r; return nil }
func (c slogChan) WithAttrs([]slog.Attr) slog.Handler            { return c }
func (c slogChan) WithGroup(string) slog.Handler                 { return c }

// TestDropReport: drops are reported with a warning carrying the count.
func TestDropReport(t *testing.T) {
	logs := make(slogChan, 64)
	s := newBlockingSink()
	l := NewWithOptions([]Sink{s}, Options{BufferSize: 4, DropReportInterval: time.Millisecond}, nil, slog.New(logs))
	r := testRecord(t, "refused")
	for range 20 {
		l.Log(&r)
	}
	<-s.entered
	var dropped int64
	timeout := time.After(10 * time.Second)
	for dropped == 0 {
		select {
		case rec := <-logs:
			if rec.Level != slog.LevelWarn || rec.Message != "query-log records lost" {
				continue
			}
			rec.Attrs(func(a slog.Attr) bool {
				if a.Key == "dropped_total" {
					dropped = int64(a.Value.Uint64())
				}
				return true
			})
		case <-timeout:
			t.Fatal("no drop report")
		}
	}
	st := l.Stats()[0]
	if uint64(dropped) > st.Dropped || dropped < 20-5 {
		t.Errorf("reported %d dropped, stats %+v", dropped, st)
	}
	close(s.release)
	closeLogger(t, l)
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	l := New([]Sink{NewWriterSink("stdout", io.Discard)}, 8, m, discardLogger())
	r := testRecord(t, "refused")
	l.Log(&r)
	closeLogger(t, l)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(reg)
	if err != nil || n != 4 {
		t.Errorf("gathered %d series (%v), want 4", n, err)
	}
}

// BenchmarkLog measures the cost of Log on the query's goroutine (the
// sink is fast; records the writer cannot take are dropped and counted).
func BenchmarkLog(b *testing.B) {
	l := New([]Sink{NewWriterSink("discard", io.Discard)}, 1<<16, nil, discardLogger())
	r := testRecord(b, "cache_hit_a")
	b.ReportAllocs()
	for b.Loop() {
		l.Log(&r)
	}
	b.StopTimer()
	closeLogger(b, l)
	st := l.Stats()[0]
	b.ReportMetric(float64(st.Dropped)/float64(b.N), "dropped/op")
}

// BenchmarkLogParallel is BenchmarkLog from GOMAXPROCS goroutines.
func BenchmarkLogParallel(b *testing.B) {
	l := New([]Sink{NewWriterSink("discard", io.Discard)}, 1<<16, nil, discardLogger())
	r := testRecord(b, "cache_hit_a")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		r := r
		for pb.Next() {
			l.Log(&r)
		}
	})
	b.StopTimer()
	closeLogger(b, l)
}

// BenchmarkFileSink measures lines/s through the file sink (encode +
// buffered write to a file in b.TempDir()).
func BenchmarkFileSink(b *testing.B) {
	o := DefaultFileOptions()
	o.Compress = false
	s, err := NewFileSink(filepath.Join(b.TempDir(), "query.log"), o)
	if err != nil {
		b.Fatal(err)
	}
	r := testRecord(b, "cache_hit_a")
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Write(&r); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}

// TestLogLease: a record's Lease is retained for every sink it is queued
// for and released once that sink wrote it, or at once when it was
// dropped (a full buffer, a closed Logger): each lent record comes back
// exactly once, and never while a sink still holds it.
func TestLogLease(t *testing.T) {
	const buffer = 4
	const sent = 20
	blocked := newBlockingSink()
	l := New([]Sink{blocked, NewWriterSink("discard", io.Discard)}, buffer, NewMetrics(prometheus.NewRegistry()), discardLogger())
	freed := make([]atomic.Int32, sent+1)
	leases := make([]*query.Lease, sent+1)
	for i := range leases {
		leases[i] = new(query.Lease)
		leases[i].Lend(func() { freed[i].Add(1) })
	}
	back := func() (n int) {
		for i := range sent {
			n += int(freed[i].Load())
		}
		return n
	}
	r := testRecord(t, "cache_hit_a")
	for i := range sent {
		r.Lease = leases[i]
		l.Log(&r)
		leases[i].Release() // the server's own reference, as once the query is over
	}
	<-blocked.entered
	// The blocked sink holds one record in Write and its buffer's: those
	// may not have come back, whatever the other sink did with them.
	if held := 1 + l.Stats()[0].Queued; back() > sent-held {
		t.Errorf("%d leases came back while the blocked sink holds %d of %d records", back(), held, sent)
	}
	close(blocked.release)
	closeLogger(t, l)
	for i := range sent {
		if n := freed[i].Load(); n != 1 {
			t.Errorf("record %d came back %d times, want once", i, n)
		}
	}
	// A closed Logger takes no reference: the caller's is the last.
	r.Lease = leases[sent]
	l.Log(&r)
	leases[sent].Release()
	if n := freed[sent].Load(); n != 1 {
		t.Errorf("after Log on a closed Logger the lease came back %d times, want once", n)
	}
}
