package seen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	bolt "go.etcd.io/bbolt"

	"github.com/dnsvalve/dnsvalve/internal/logbuf"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func openT(tb testing.TB, spec string, retention time.Duration, c *clock) Store {
	tb.Helper()
	s, err := Open(spec, retention, c.now)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// openBoltT opens a file store at path ("": a new file) without its
// background flusher (tests flush by hand); the caller closes it.
func openBoltT(tb testing.TB, path string, retention time.Duration, c *clock, o FileOptions) *boltStore {
	tb.Helper()
	if path == "" {
		path = filepath.Join(tb.TempDir(), "seen.db")
	}
	s, err := openBolt(path, retention, c.now, o, false)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// recordInBackground records n new domains in s from another goroutine, as
// queries do; the channel closes when they are recorded.
func recordInBackground(tb testing.TB, s Store, n int) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if _, err := s.FirstSeen(context.Background(), fmt.Sprintf("d%d.example", i), t0); err != nil {
				tb.Error(err)
				return
			}
		}
	}()
	return done
}

func firstSeen(tb testing.TB, s Store, d string, at time.Time) bool {
	tb.Helper()
	ok, err := s.FirstSeen(context.Background(), d, at)
	if err != nil {
		tb.Fatal(err)
	}
	return ok
}

func TestRetention(t *testing.T) {
	for _, spec := range []string{"memory:", "file:" + filepath.Join(t.TempDir(), "seen.db")} {
		t.Run(map[bool]string{true: "memory", false: "file"}[spec == "memory:"], func(t *testing.T) {
			c := &clock{t: t0}
			s := openT(t, spec, 24*time.Hour, c)
			steps := []struct {
				at   time.Duration
				name string
				want bool
			}{
				{0, "example.com", true},
				{time.Minute, "example.com", false},
				{2 * time.Hour, "other.org", true},
				{20 * time.Hour, "example.com", false}, // within retention
				{60 * time.Hour, "example.com", true},  // expired: last seen 40h ago
				{61 * time.Hour, "example.com", false},
			}
			for _, st := range steps {
				c.set(t0.Add(st.at))
				if got := firstSeen(t, s, st.name, t0.Add(st.at)); got != st.want {
					t.Errorf("FirstSeen(%s at +%v) = %v, want %v", st.name, st.at, got, st.want)
				}
			}
			if !s.Fresh() || !s.Created().Equal(t0) {
				t.Errorf("Fresh, Created = %v, %v", s.Fresh(), s.Created())
			}
		})
	}
}

func TestFileSurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen.db")
	c := &clock{t: t0}
	s, err := Open("file:"+path, 30*24*time.Hour, c.now)
	if err != nil {
		t.Fatal(err)
	}
	firstSeen(t, s, "kept.com", t0)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.set(t0.Add(48 * time.Hour))
	s2 := openT(t, "file:"+path, 30*24*time.Hour, c)
	if s2.Fresh() || !s2.Created().Equal(t0) {
		t.Errorf("reopened store: Fresh=%v Created=%v, want false, %v", s2.Fresh(), s2.Created(), t0)
	}
	if firstSeen(t, s2, "kept.com", c.now()) {
		t.Errorf("domain recorded before restart reported as first seen")
	}
	if !firstSeen(t, s2, "new.com", c.now()) {
		t.Errorf("new domain not first seen")
	}
}

func TestFileSweepsExpiredOnOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seen.db")
	c := &clock{t: t0}
	s, err := Open("file:"+path, time.Hour, c.now)
	if err != nil {
		t.Fatal(err)
	}
	firstSeen(t, s, "old.com", t0)
	s.Close()
	c.set(t0.Add(3 * time.Hour))
	s2 := openT(t, "file:"+path, time.Hour, c).(*boltStore)
	n := 0
	s2.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketSeen).Stats().KeyN; return nil })
	if n != 0 {
		t.Errorf("%d expired keys left after open", n)
	}
}

func TestOpenErrors(t *testing.T) {
	c := &clock{t: t0}
	for _, tc := range []struct {
		name, spec string
		want       error
	}{
		{"redis_bad_url", "redis://127.0.0.1:notaport/0", nil},
		{"unknown_scheme", "s3://bucket", nil},
		{"empty_path", "file:", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.spec, 0, c.now)
			if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("Open(%q) = %v, want error %v", tc.spec, err, tc.want)
			}
		})
	}
	s := openT(t, "memory:", 0, c)
	s.Close()
	if _, err := s.FirstSeen(context.Background(), "x.com", t0); !errors.Is(err, ErrClosed) {
		t.Errorf("FirstSeen after Close = %v", err)
	}
}

func TestConcurrentFirstSeen(t *testing.T) {
	c := &clock{t: t0}
	s := openT(t, "file:"+filepath.Join(t.TempDir(), "seen.db"), 0, c)
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := s.FirstSeen(context.Background(), "race.com", t0); ok {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firsts != 1 {
		t.Errorf("%d goroutines saw race.com first, want 1", firsts)
	}
}

// TestBoltFirstSeenDuringFlush: records flush is writing stay visible to
// FirstSeen until their transaction commits (and come back to pending if
// it fails), so a domain is newly seen once, not again while its record is
// between the pending map and the file.
func TestBoltFirstSeenDuringFlush(t *testing.T) {
	tests := []struct {
		name    string
		wantErr bool // the disk refuses the write
	}{
		{"commit", false},
		{"failed_write", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			s := openBoltT(t, "", 24*time.Hour, c, FileOptions{})
			t.Cleanup(func() { s.Close() })
			if !firstSeen(t, s, "a.example", t0) {
				t.Fatal("a.example not newly seen on first sight")
			}
			if tc.wantErr {
				s.update = func(func(*bolt.Tx) error) error { return errDiskFull }
			}
			var during, fresh bool
			s.flushMu.Lock() // flush reads the hook under flushMu
			s.afterSwap = func() {
				during = firstSeen(t, s, "a.example", t0.Add(time.Millisecond))
				fresh = firstSeen(t, s, "b.example", t0.Add(time.Millisecond))
			}
			s.flushMu.Unlock()
			err := s.flush()
			s.flushMu.Lock()
			s.afterSwap = nil
			s.flushMu.Unlock()
			if (err != nil) != tc.wantErr {
				t.Fatalf("flush() = %v, want error %v", err, tc.wantErr)
			}
			if during {
				t.Error("a.example newly seen again while its record was being flushed")
			}
			if !fresh {
				t.Error("b.example, never asked for, not newly seen during a flush")
			}
			if firstSeen(t, s, "a.example", t0.Add(2*time.Millisecond)) {
				t.Error("a.example newly seen again after the flush")
			}
			s.mu.Lock()
			flushing, pending := len(s.flushing), len(s.pending)
			s.mu.Unlock()
			if flushing != 0 {
				t.Errorf("%d records still marked flushing after flush returned", flushing)
			}
			// b.example, and a.example asked for again (which the failed
			// batch's record of a.example does not overwrite).
			if pending != 2 {
				t.Errorf("%d records pending after the flush, want 2", pending)
			}
		})
	}
}

// TestMemoryBound checks the memory store's bound: past maxDomains each
// new domain evicts one (counted, the full callback once), the store never
// holds more, domains still held are not new, and an evicted one is new
// again.
func TestMemoryBound(t *testing.T) {
	for _, tt := range []struct {
		name       string
		maxDomains int
		add        int
		wantHeld   int
	}{
		{"unbounded", 0, 50, 50},
		{"under", 10, 5, 5},
		{"at", 10, 10, 10},
		{"over", 10, 50, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted"})
			fulls := 0
			s := OpenMemory(time.Hour, tt.maxDomains, evicted, func() { fulls++ }, func() time.Time { return at })
			defer s.Close()
			for i := range tt.add {
				if !firstSeen(t, s, fmt.Sprintf("d%d.example", i), at) {
					t.Fatalf("d%d.example: not new on its first query", i)
				}
			}
			m := s.(*memory)
			if n := m.set.size(); n != tt.wantHeld {
				t.Errorf("holds %d domains, want %d", n, tt.wantHeld)
			}
			wantEvicted := tt.add - tt.wantHeld
			if got := testutil.ToFloat64(evicted); got != float64(wantEvicted) {
				t.Errorf("evictions %v, want %d", got, wantEvicted)
			}
			if want := min(wantEvicted, 1); fulls != want {
				t.Errorf("full callback called %d times, want %d", fulls, want)
			}
			held, gone := 0, ""
			for i := range tt.add {
				d := fmt.Sprintf("d%d.example", i)
				if !m.holds(d) {
					gone = d
					continue
				}
				held++
				if firstSeen(t, s, d, at.Add(time.Minute)) {
					t.Errorf("%s: held, yet new on its second query", d)
				}
			}
			if gone != "" && !firstSeen(t, s, gone, at.Add(time.Minute)) {
				t.Errorf("%s: evicted, yet not new when it comes back", gone)
			}
			if held != tt.wantHeld {
				t.Errorf("%d of the added domains held, want %d", held, tt.wantHeld)
			}
		})
	}
}

// TestMemoryBoundFlood fills a bounded memory store with domains asked for
// twice (the network's own), then floods it with names asked for once:
// the flood's names replace each other, not the network's domains.
func TestMemoryBoundFlood(t *testing.T) {
	const known, flood = 1000, 5000
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted"})
	s := OpenMemory(time.Hour, known, evicted, nil, func() time.Time { return at })
	defer s.Close()
	for round := range 2 {
		for i := range known {
			firstSeen(t, s, fmt.Sprintf("k%d.example", i), at.Add(time.Duration(round)*time.Second))
		}
	}
	for i := range flood {
		if !firstSeen(t, s, fmt.Sprintf("f%d.example", i), at.Add(time.Minute)) {
			t.Fatalf("f%d.example: not new", i)
		}
	}
	m := s.(*memory)
	kept := 0
	for i := range known {
		if m.holds(fmt.Sprintf("k%d.example", i)) {
			kept++
		}
	}
	// The first flood name found no name asked for once to replace and
	// took a known domain's place; every later one replaced a flood name.
	if m.set.size() != known || kept != known-1 {
		t.Errorf("store holds %d (want %d); %d of the %d known domains kept, want %d", m.set.size(), known, kept, known, known-1)
	}
	if got := testutil.ToFloat64(evicted); got != flood {
		t.Errorf("evictions %v, want %d", got, flood)
	}
}

func (m *memory) holds(d string) bool {
	_, once := m.set.once[d]
	_, again := m.set.again[d]
	return once || again
}

var errDiskFull = errors.New("write seen.db: no space left on device")

// TestFileWriteFailures checks the file store while its disk refuses
// writes: every failed flush and every record dropped past the bound is
// counted, the failure and the recovery are logged once each, the records
// kept in memory are written on recovery, and a dropped domain is new
// again.
func TestFileWriteFailures(t *testing.T) {
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "seen.db")
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total"})
	var logs logbuf.Buffer
	s := openBoltT(t, path, 24*time.Hour, c, FileOptions{Errors: errs, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.maxPending = 3
	s.update = func(func(*bolt.Tx) error) error { return errDiskFull }

	steps := []struct {
		name     string
		domains  []string // asked for, in order, each checked for want
		want     bool
		flush    bool // then flush, expecting failing
		failing  bool
		errs     float64 // the counter after the step
		warnings int
	}{
		{"first_failure", []string{"a.example", "b.example"}, true, true, true, 1, 1},
		{"known_while_failing", []string{"a.example", "b.example"}, false, false, true, 1, 1},
		// c fills the bound; d and e are dropped, counted by the next flush.
		{"past_the_bound", []string{"c.example", "d.example", "e.example"}, true, true, true, 1 + 1 + 2, 1},
		{"dropped_is_new_again", []string{"d.example"}, true, false, true, 4, 1},
		{"kept_is_known", []string{"c.example"}, false, false, true, 4, 1},
		// The disk is back: a, b and c are written; d's second drop counts.
		{"recovery", nil, false, true, false, 5, 1},
	}
	for _, st := range steps {
		if st.name == "recovery" {
			s.flushMu.Lock()
			s.update = s.db.Update
			s.flushMu.Unlock()
		}
		for _, d := range st.domains {
			if got := firstSeen(t, s, d, t0); got != st.want {
				t.Errorf("%s: FirstSeen(%s) = %v, want %v", st.name, d, got, st.want)
			}
		}
		if st.flush {
			if err := s.flush(); (err != nil) != st.failing || err != nil && !errors.Is(err, errDiskFull) {
				t.Errorf("%s: flush() = %v, want failing %v", st.name, err, st.failing)
			}
		}
		if got := testutil.ToFloat64(errs); got != st.errs {
			t.Errorf("%s: errors counter = %v, want %v", st.name, got, st.errs)
		}
		if got := strings.Count(logs.String(), "level=WARN"); got != st.warnings {
			t.Errorf("%s: %d warnings logged, want %d:\n%s", st.name, got, st.warnings, logs.String())
		}
	}
	if got := strings.Count(logs.String(), "writes recovered"); got != 1 {
		t.Errorf("recovery logged %d times, want once:\n%s", got, logs.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openBoltT(t, path, 24*time.Hour, c, FileOptions{})
	defer s2.Close()
	for d, want := range map[string]bool{"a.example": false, "b.example": false, "c.example": false, "d.example": true} {
		if got := firstSeen(t, s2, d, t0.Add(time.Minute)); got != want {
			t.Errorf("after reopening: FirstSeen(%s) = %v, want %v", d, got, want)
		}
	}
}

// TestFileRejectsBadKeys checks that names bbolt cannot store are refused
// at FirstSeen, so that none can enter a batch and fail every later write.
func TestFileRejectsBadKeys(t *testing.T) {
	c := &clock{t: t0}
	s := openBoltT(t, "", 24*time.Hour, c, FileOptions{})
	defer s.Close()
	for _, d := range []string{"", strings.Repeat("a", bolt.MaxKeySize+1)} {
		if _, err := s.FirstSeen(context.Background(), d, t0); !errors.Is(err, errBadKey) {
			t.Errorf("FirstSeen(%d bytes) error = %v, want errBadKey", len(d), err)
		}
	}
	firstSeen(t, s, "a.example", t0)
	if err := s.flush(); err != nil {
		t.Fatalf("flush after refused keys: %v", err)
	}
}

// TestFileBound checks the file store's bound: a flood of names asked for
// once never leaves more than MaxDomains in the file after a flush, evicts
// only flood names while there are enough of them (the domains asked for
// twice stay, and of those written before the asked-again flag existed,
// the one whose time reads as asked again), counts every eviction, warns
// once, and a reopened file knows its size.
func TestFileBound(t *testing.T) {
	const bound = 128 // low water 126
	c := &clock{t: t0}
	path := filepath.Join(t.TempDir(), "seen.db")
	// Two domains as an older dnsvalve wrote them: the time alone, odd
	// (read as asked again) and even (asked once).
	old, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketSeen)
		for i, d := range []string{"legacy1.example", "legacy2.example"} {
			if err == nil {
				err = b.Put([]byte(d), binary.BigEndian.AppendUint64(nil, uint64(t0.UnixNano()+1-int64(i))))
			}
		}
		return err
	})
	if err != nil || old.Close() != nil {
		t.Fatal(err)
	}

	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted_total"})
	var logs logbuf.Buffer
	s := openBoltT(t, path, 24*time.Hour, c, FileOptions{MaxDomains: bound, Evicted: evicted, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if s.count != 2 {
		t.Fatalf("count at open = %d, want the 2 legacy domains", s.count)
	}
	keep := make([]string, 98)
	for i := range keep {
		keep[i] = fmt.Sprintf("keep%d.example", i)
		firstSeen(t, s, keep[i], t0)
		if firstSeen(t, s, keep[i], t0.Add(time.Second)) {
			t.Fatalf("%s newly seen when asked for the second time", keep[i])
		}
	}
	keep = append(keep, "legacy1.example")
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		if !firstSeen(t, s, fmt.Sprintf("flood%d.example", i), t0.Add(time.Minute)) {
			t.Fatalf("flood%d.example not newly seen", i)
		}
		if i%50 == 49 {
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
			if s.count > bound {
				t.Fatalf("after flushing flood name %d: %d domains in the file, bound %d", i, s.count, bound)
			}
		}
	}
	if s.count != bound-bound/64 {
		t.Errorf("%d domains after the flood, want the low water %d", s.count, bound-bound/64)
	}
	if got, want := testutil.ToFloat64(evicted), float64(100+1000-s.count); got != want {
		t.Errorf("evicted counter = %v, want %v", got, want)
	}
	if got := strings.Count(logs.String(), "newly-seen file store full"); got != 1 {
		t.Errorf("full warning logged %d times, want once:\n%s", got, logs.String())
	}
	for _, d := range keep {
		if firstSeen(t, s, d, t0.Add(2*time.Minute)) {
			t.Errorf("%s evicted by the flood", d)
		}
	}
	n := s.count
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := openBoltT(t, path, 24*time.Hour, c, FileOptions{MaxDomains: bound})
	defer s2.Close()
	if s2.count != n {
		t.Errorf("count after reopening = %d, want %d", s2.count, n)
	}
}

// TestFileDropsWithoutFailure checks the bound on waiting records when the
// disk is fine but more new domains arrive between two writes than it
// holds: the extra ones are counted and warned about once per run of
// flushes that drop.
func TestFileDropsWithoutFailure(t *testing.T) {
	c := &clock{t: t0}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors_total"})
	var logs logbuf.Buffer
	s := openBoltT(t, "", 24*time.Hour, c, FileOptions{Errors: errs, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	defer s.Close()
	s.maxPending = 3
	n := 0
	for _, st := range []struct {
		asked    int // new domains before the flush
		errs     float64
		warnings int
	}{
		{5, 2, 1},
		{5, 4, 1}, // still dropping: no new warning
		{2, 4, 1}, // no drops: the next ones warn again
		{4, 5, 2},
	} {
		for range st.asked {
			firstSeen(t, s, fmt.Sprintf("d%d.example", n), t0)
			n++
		}
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(errs); got != st.errs {
			t.Errorf("after %d domains: errors counter = %v, want %v", n, got, st.errs)
		}
		if got := strings.Count(logs.String(), "more first-seen records arrived"); got != st.warnings {
			t.Errorf("after %d domains: %d warnings, want %d:\n%s", n, got, st.warnings, logs.String())
		}
	}
}

// TestFileEvictsUniformly checks that eviction picks uniformly among the
// domains asked for once (never those asked for again): over many rounds
// of 12 such domains, 4 asked for twice and a bound of 12, each of the 12
// survives about 8 rounds in 12.
func TestFileEvictsUniformly(t *testing.T) {
	const rounds = 400
	c := &clock{t: t0}
	survived := map[string]int{}
	for range rounds {
		s := openBoltT(t, "", 24*time.Hour, c, FileOptions{MaxDomains: 12})
		s.db.NoSync = true
		for i := range 4 {
			d := fmt.Sprintf("again%d.example", i)
			firstSeen(t, s, d, t0)
			firstSeen(t, s, d, t0)
		}
		for i := range 12 {
			firstSeen(t, s, fmt.Sprintf("once%02d.example", i), t0)
		}
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
		_ = s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketSeen).ForEach(func(k, _ []byte) error { survived[string(k)]++; return nil })
		})
		if s.count != 12 {
			t.Fatalf("count after eviction = %d, want 12", s.count)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Binomial(400, 2/3): mean 266.7, sd 9.4; allow five sd.
	for i := range 4 {
		if d := fmt.Sprintf("again%d.example", i); survived[d] != rounds {
			t.Errorf("%s survived %d of %d rounds, want all", d, survived[d], rounds)
		}
	}
	for i := range 12 {
		if d, got := fmt.Sprintf("once%02d.example", i), survived[fmt.Sprintf("once%02d.example", i)]; got < 220 || got > 314 {
			t.Errorf("%s survived %d of %d rounds, want about 267", d, got, rounds)
		}
	}
}

// TestFileCountFollowsTheFile checks the count of domains the bound works
// from: after a sweep of expired ones, and after a write that reached the
// file though it reported failure (a failed sync), it matches the file.
func TestFileCountFollowsTheFile(t *testing.T) {
	c := &clock{t: t0}
	s := openBoltT(t, "", time.Hour, c, FileOptions{MaxDomains: 1000})
	defer s.Close()
	inFile := func() (n int) {
		_ = s.db.View(func(tx *bolt.Tx) error { n = tx.Bucket(bucketSeen).Stats().KeyN; return nil })
		return n
	}
	for i := range 10 {
		firstSeen(t, s, fmt.Sprintf("old%d.example", i), t0)
	}
	if err := s.flush(); err != nil || s.count != 10 {
		t.Fatalf("flush: %v, count %d, want 10", err, s.count)
	}
	// Committed, then reported failed.
	s.update = func(fn func(*bolt.Tx) error) error {
		if err := s.db.Update(fn); err != nil {
			return err
		}
		return errDiskFull
	}
	for i := range 5 {
		firstSeen(t, s, fmt.Sprintf("synced%d.example", i), t0)
	}
	if err := s.flush(); err == nil {
		t.Fatal("flush did not report the failure")
	}
	s.update = s.db.Update
	// The failed batch is written again (already in the file).
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if s.count != inFile() || s.count != 15 {
		t.Errorf("after a failed sync: count %d, file %d, want 15", s.count, inFile())
	}
	// Past the retention the old ones are swept on the next flush.
	c.set(t0.Add(2 * time.Hour))
	firstSeen(t, s, "new.example", c.now())
	if err := s.flush(); err != nil {
		t.Fatal(err)
	}
	if s.count != inFile() || s.count != 1 {
		t.Errorf("after the sweep: count %d, file %d, want 1", s.count, inFile())
	}
}

// TestRecordEncoding: a record is 8 bytes with the asked-again flag in the
// time's lowest bit, so older versions read it as the time they wrote.
func TestRecordEncoding(t *testing.T) {
	for _, r := range []record{{last: 1_800_000_000_000_000_000}, {last: 1_800_000_000_000_000_000, again: true}} {
		v := r.encode()
		got, ok := decodeRecord(v)
		if len(v) != 8 || !ok || got != r {
			t.Errorf("%+v: encoded %x, decoded %+v %v", r, v, got, ok)
		}
		if old := int64(binary.BigEndian.Uint64(v)); old-r.last > 1 || old < r.last {
			t.Errorf("%+v: an older version reads the time %d", r, old)
		}
	}
	if _, ok := decodeRecord(make([]byte, 9)); ok {
		t.Error("a 9-byte value decoded")
	}
}

// TestFileFlushWhileRecording flushes while queries record domains (run it
// under -race): a flush that finds nothing pending must not read the map
// FirstSeen keeps writing to.
func TestFileFlushWhileRecording(t *testing.T) {
	c := &clock{t: t0}
	s := openBoltT(t, "", 24*time.Hour, c, FileOptions{})
	defer s.Close()
	s.db.NoSync = true
	done := recordInBackground(t, s, 2000)
	for range 200 {
		if err := s.flush(); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	if err := s.flush(); err != nil || s.count != 2000 {
		t.Errorf("after the last flush: %v, %d domains in the file, want 2000", err, s.count)
	}
}

// TestMemorySweepInBackground: the sweep of expired domains runs beside
// the queries (in chunks, yielding the lock), frees what expired, and
// keeps what did not; run it under -race.
func TestMemorySweepInBackground(t *testing.T) {
	const old, fresh = 3 * sweepChunk, 1000
	c := &clock{t: t0}
	s := OpenMemory(time.Hour, 0, nil, nil, c.now)
	defer s.Close()
	m := s.(*memory)
	for i := range old {
		firstSeen(t, s, fmt.Sprintf("old%d.example", i), t0)
	}
	// Past retention/8 a query starts the sweep; the domains asked for
	// from then on, some of them while it runs, stay.
	later := t0.Add(2 * time.Hour)
	for i := range fresh {
		if !firstSeen(t, s, fmt.Sprintf("new%d.example", i), later) {
			t.Fatalf("new%d.example not new", i)
		}
	}
	waitLastSweep(t, &m.mu, &m.set.sweeps)
	m.mu.Lock()
	n := m.set.size()
	m.mu.Unlock()
	if n != fresh {
		t.Errorf("after the sweep the store holds %d domains, want the %d fresh ones", n, fresh)
	}
	if !firstSeen(t, s, "old1.example", later) {
		t.Error("an expired domain is not new again")
	}
}

// TestMemoryFullOfExpired: a store full of expired domains takes a new one
// in an expired one's place: no eviction counted, no "full" warning.
func TestMemoryFullOfExpired(t *testing.T) {
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted"})
	fulls := 0
	s := OpenMemory(time.Hour, 100, evicted, func() { fulls++ }, func() time.Time { return t0 })
	defer s.Close()
	for i := range 100 {
		firstSeen(t, s, fmt.Sprintf("d%d.example", i), t0)
	}
	later := t0.Add(2 * time.Hour)
	for i := range 50 {
		if !firstSeen(t, s, fmt.Sprintf("new%d.example", i), later) {
			t.Fatalf("new%d.example not new", i)
		}
	}
	if got := testutil.ToFloat64(evicted); got != 0 || fulls != 0 {
		t.Errorf("evictions %v, full warnings %d; want none (expired domains made the room)", got, fulls)
	}
}

// waitLastSweep waits for the latest sweep a store (lock mu) started, and
// fails the test if it started none.
func waitLastSweep(tb testing.TB, mu *sync.Mutex, sw *sweeper) {
	tb.Helper()
	mu.Lock()
	last := sw.last
	mu.Unlock()
	if last == nil {
		tb.Fatal("no sweep started")
	}
	<-last
}
