package seen

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/internal/logbuf"
	"github.com/dnsvalve/dnsvalve/internal/redistest"
)

// openRedisT opens a Redis store whose background rounds never fire (the
// test calls Sync).
func openRedisT(tb testing.TB, url string, c *clock, o RedisOptions) *RedisStore {
	tb.Helper()
	o.Sync = time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := OpenRedis(ctx, url, 24*time.Hour, c.now, o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func syncT(tb testing.TB, ss ...*RedisStore) {
	tb.Helper()
	for _, s := range ss {
		if err := s.Sync(context.Background()); err != nil {
			tb.Fatal(err)
		}
	}
}

func TestRedisFleetFirstSeen(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{})
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	if !a.Fresh() || b.Fresh() || !b.Created().Equal(a.Created()) {
		t.Errorf("Fresh a, b = %v, %v; Created %v, %v: want the first opener fresh, one creation time",
			a.Fresh(), b.Fresh(), a.Created(), b.Created())
	}
	steps := []struct {
		name   string
		store  *RedisStore
		domain string
		at     time.Duration
		want   bool
	}{
		{"new_on_a", a, "example.com", 0, true},
		{"known_on_b_after_sync", b, "example.com", time.Second, false},
		{"new_on_b", b, "other.org", 2 * time.Second, true},
		{"known_on_a", a, "other.org", 3 * time.Second, false},
		{"expired", a, "example.com", 30 * time.Hour, true},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			c.set(t0.Add(st.at))
			if got := firstSeen(t, st.store, st.domain, t0.Add(st.at)); got != st.want {
				t.Errorf("FirstSeen(%s) = %v, want %v", st.domain, got, st.want)
			}
			syncT(t, a, b, a) // either order: within two rounds
		})
	}
}

func TestRedisRestartKeepsKnowledge(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{Prefix: "x:"})
	firstSeen(t, a, "kept.example", t0)
	if err := a.Close(); err != nil { // flushes the queue
		t.Fatal(err)
	}
	b := openRedisT(t, r.URL(), c, RedisOptions{Prefix: "x:"})
	if b.Known() != 1 || firstSeen(t, b, "kept.example", t0.Add(time.Minute)) {
		t.Errorf("reopened store knows %d domains and calls kept.example new", b.Known())
	}
	other := openRedisT(t, r.URL(), c, RedisOptions{Prefix: "y:"})
	if !firstSeen(t, other, "kept.example", t0.Add(time.Minute)) {
		t.Error("a store with another prefix shares the set")
	}
}

func TestRedisDownKeepsAnswering(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "up"})
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"})
	a := openRedisT(t, r.URL(), c, RedisOptions{Up: up, Errors: errs})
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	r.Stop()
	if !firstSeen(t, a, "during.outage", t0) || firstSeen(t, a, "during.outage", t0) {
		t.Error("local knowledge wrong while Redis is down")
	}
	if err := a.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded with Redis down")
	}
	r.Restart()
	syncT(t, a, b)
	if testutil.ToFloat64(up) != 1 || !a.Up() {
		t.Error("store not up after Redis came back")
	}
	if firstSeen(t, b, "during.outage", t0.Add(time.Second)) {
		t.Error("a record queued during the outage did not reach the fleet")
	}
}

func TestRedisFirstSeenAllocatesNothingWhenKnown(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{})
	firstSeen(t, a, "known.example", t0)
	allocs := testing.AllocsPerRun(1000, func() {
		_, _ = a.FirstSeen(context.Background(), "known.example", t0)
	})
	if allocs != 0 {
		t.Errorf("FirstSeen of a known domain allocates %v times", allocs)
	}
}

// TestRedisRequeueDropsAreCounted: records of a failed round go back to
// the queue behind those queued meanwhile; past the bound they are
// dropped, and each one is counted as an error, as FirstSeen counts the
// ones it cannot queue. (They were dropped silently.)
func TestRedisRequeueDropsAreCounted(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "errors"})
	s := openRedisT(t, r.URL(), c, RedisOptions{Errors: errs})
	s.maxQueued = 3
	for _, d := range []string{"a.example", "b.example", "c.example"} {
		firstSeen(t, s, d, t0)
	}
	before := testutil.ToFloat64(errs)
	firstSeen(t, s, "full.example", t0) // the queue is full: counted at once
	if got := testutil.ToFloat64(errs) - before; got != 1 {
		t.Fatalf("a record past a full queue counted %v times, want 1", got)
	}
	// While the round is out, two more domains and a newer sighting of
	// one in flight are queued; then the round fails.
	s.afterTake = func() {
		firstSeen(t, s, "d.example", t0.Add(time.Second))
		firstSeen(t, s, "e.example", t0.Add(time.Second))
		s.mu.Lock()
		s.queue["a.example"] = t0.Add(2 * time.Second).UnixNano()
		s.mu.Unlock()
	}
	r.Stop()
	before = testutil.ToFloat64(errs)
	if err := s.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded with Redis down")
	}
	s.afterTake = nil
	// Queue after the failure: d, e, a (newer, kept) and room for none of
	// b and c: both dropped and counted.
	s.mu.Lock()
	q := len(s.queue)
	_, bKept := s.queue["b.example"]
	_, cKept := s.queue["c.example"]
	aAt := s.queue["a.example"]
	s.mu.Unlock()
	if q != 3 || bKept || cKept || aAt != t0.Add(2*time.Second).UnixNano() {
		t.Errorf("queue after the failed round: %d records (b kept %v, c kept %v, a at %v)", q, bKept, cKept, aAt)
	}
	if got := testutil.ToFloat64(errs) - before; got != 2 {
		t.Errorf("dropped records counted %v times, want 2", got)
	}
}

// A store opened while Redis is down reports its opening as Created (so a
// detector learns instead of calling every domain new) and takes the
// fleet's creation time and domains once Redis answers.
func TestRedisDownAtOpenLearnsCreation(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	c := &clock{t: t0.Add(2 * time.Hour)}
	opened := c.now()
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	if !b.Created().Equal(opened) || b.Fresh() || b.Known() != 0 {
		t.Fatalf("opened with Redis down: Created %v, Fresh %v, %d known; want %v, false, 0", b.Created(), b.Fresh(), b.Known(), opened)
	}
	if err := b.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded with Redis down")
	}
	// Redis comes back with the set another instance created at t0.
	r.Restart()
	c.set(t0)
	a := openRedisT(t, r.URL(), c, RedisOptions{})
	firstSeen(t, a, "known.example", t0)
	if err := a.Close(); err != nil { // flushes the queue
		t.Fatal(err)
	}
	c.set(opened.Add(time.Minute))
	syncT(t, b)
	if !b.Created().Equal(t0) || b.Fresh() {
		t.Errorf("after Redis came back: Created %v, Fresh %v; want the set's creation %v, false", b.Created(), b.Fresh(), t0)
	}
	if firstSeen(t, b, "known.example", c.now()) {
		t.Error("a domain the fleet knew is new after Redis came back")
	}
}

// A store that opened while Redis was down and then finds no set creates it
// with its own opening as the creation time, not the moment Redis came
// back: the outage does not move the learning period.
func TestRedisDownAtOpenCreatesAtOpening(t *testing.T) {
	r := redistest.Start(t)
	r.Stop()
	c := &clock{t: t0}
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	r.Restart()
	c.set(t0.Add(20 * time.Hour))
	syncT(t, b)
	if !b.Created().Equal(t0) || !b.Fresh() {
		t.Errorf("Created %v, Fresh %v; want the opening %v, true", b.Created(), b.Fresh(), t0)
	}
}

// The set's creation time is published only once its members are loaded:
// a store that reported an old creation (no more learning) while it knew
// no domains would call every domain new.
func TestRedisCreationPublishedAfterLoad(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{})
	firstSeen(t, a, "known.example", t0)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	// The set's key holds a string: loading it fails.
	if _, err := r.Do("RENAME", "dnsvalve:seen", "dnsvalve:seen:saved"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Do("SET", "dnsvalve:seen", "not-a-sorted-set"); err != nil {
		t.Fatal(err)
	}
	opened := t0.Add(time.Hour)
	c.set(opened)
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	if err := b.Sync(context.Background()); err == nil {
		t.Fatal("Sync loaded a set of the wrong type")
	}
	if !b.Created().Equal(opened) || b.Known() != 0 {
		t.Fatalf("load failed: Created %v with %d known; want the opening %v until the set loads", b.Created(), b.Known(), opened)
	}
	if _, err := r.Do("RENAME", "dnsvalve:seen:saved", "dnsvalve:seen"); err != nil {
		t.Fatal(err)
	}
	syncT(t, b)
	if !b.Created().Equal(t0) || b.Known() != 1 || b.Fresh() {
		t.Errorf("after the load: Created %v, %d known, Fresh %v; want %v, 1, false", b.Created(), b.Known(), b.Fresh(), t0)
	}
}

// TestRedisBound checks the Redis store's bound: past MaxDomains each new
// domain replaces a known one (counted, warned once), pulls from the fleet
// add domains only while there is room, and the shared set keeps the
// 2*MaxDomains written last.
func TestRedisBound(t *testing.T) {
	const bound = 10
	r := redistest.Start(t)
	c := &clock{t: t0}
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted_total"})
	var logs logbuf.Buffer
	a := openRedisT(t, r.URL(), c, RedisOptions{MaxDomains: bound, Evicted: evicted,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	b := openRedisT(t, r.URL(), c, RedisOptions{}) // unbounded: the fleet's other instance
	for i := range 30 {
		at := t0.Add(time.Duration(i) * time.Second)
		if !firstSeen(t, a, fmt.Sprintf("d%d.example", i), at) {
			t.Fatalf("d%d.example not newly seen", i)
		}
		if a.Known() > bound {
			t.Fatalf("%d domains known after d%d.example, bound %d", a.Known(), i, bound)
		}
	}
	if got := testutil.ToFloat64(evicted); got != 20 {
		t.Errorf("evicted = %v, want 20", got)
	}
	syncT(t, a)
	if n, err := r.Do("ZCARD", "dnsvalve:seen"); err != nil || n != fmt.Sprintf(":%d", 2*bound) {
		t.Errorf("ZCARD of the shared set = %q (%v), want %d", n, err, 2*bound)
	}
	// The shared set keeps the twenty written last.
	for i, want := range map[int]bool{9: false, 10: true, 29: true} {
		if score, err := r.Do("ZSCORE", "dnsvalve:seen", fmt.Sprintf("d%d.example", i)); err != nil || (score != "") != want {
			t.Errorf("d%d.example in the shared set: score %q (%v), want present %v", i, score, err, want)
		}
	}
	// Domains pulled from the fleet (its own pushes included) do not
	// displace the ones this instance was asked for.
	for i := range 5 {
		firstSeen(t, b, fmt.Sprintf("fleet%d.example", i), t0.Add(2*time.Minute))
	}
	syncT(t, b, a)
	if a.Known() != bound {
		t.Errorf("%d domains known after a pull, want the bound %d", a.Known(), bound)
	}
	if got := testutil.ToFloat64(evicted); got != 20 {
		t.Errorf("evicted after the pull = %v, want still 20", got)
	}
	if !firstSeen(t, a, "fleet0.example", t0.Add(3*time.Minute)) {
		t.Error("fleet0.example, pulled into a full set, not new to it")
	}
	if n := strings.Count(logs.String(), "newly-seen redis store full"); n != 1 {
		t.Errorf("full warning logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestRedisBoundLoad checks that a bounded store opened on a shared set
// larger than its bound loads the newest domains.
func TestRedisBoundLoad(t *testing.T) {
	const bound = 10
	r := redistest.Start(t)
	c := &clock{t: t0}
	b := openRedisT(t, r.URL(), c, RedisOptions{}) // unbounded
	for i := range 3 * bound {
		firstSeen(t, b, fmt.Sprintf("d%d.example", i), t0.Add(time.Duration(i)*time.Second))
	}
	syncT(t, b)
	c.set(t0.Add(time.Minute))
	a := openRedisT(t, r.URL(), c, RedisOptions{MaxDomains: bound})
	if a.Known() != bound {
		t.Fatalf("%d domains loaded, want the bound %d", a.Known(), bound)
	}
	// The known ones first: a new one evicts one.
	for _, tc := range []struct {
		i    int
		want bool
	}{{20, false}, {29, false}, {19, true}, {0, true}} {
		if got := firstSeen(t, a, fmt.Sprintf("d%d.example", tc.i), t0.Add(time.Minute)); got != tc.want {
			t.Errorf("after loading: FirstSeen(d%d.example) = %v, want %v (the newest %d loaded)", tc.i, got, tc.want, bound)
		}
	}
}

// TestRedisSyncWhileRecording runs rounds while queries record domains (run
// it under -race): a round that finds the queue empty must not read the
// map FirstSeen keeps writing to.
func TestRedisSyncWhileRecording(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	s := openRedisT(t, r.URL(), c, RedisOptions{})
	done := recordInBackground(t, s, 2000)
	for range 200 {
		syncT(t, s)
	}
	<-done
	syncT(t, s)
	if n, err := r.Do("ZCARD", "dnsvalve:seen"); err != nil || n != ":2000" {
		t.Errorf("ZCARD = %q (%v), want every recorded domain pushed", n, err)
	}
}

// TestRedisReloadIntoExpiredSet: a bounded copy full of expired domains
// that reloads the shared set after an outage ends up knowing the fleet's
// domains: merge waits for the sweep instead of dropping them for want of
// room that expired domains hold.
func TestRedisReloadIntoExpiredSet(t *testing.T) {
	const bound = 10
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{MaxDomains: bound})
	for i := range bound {
		firstSeen(t, a, fmt.Sprintf("old%d.example", i), t0)
	}
	syncT(t, a)
	c.set(t0.Add(25 * time.Hour)) // past the 24h retention: all expired
	r.Stop()
	if err := a.Sync(context.Background()); err == nil {
		t.Fatal("Sync succeeded with Redis down")
	}
	r.Restart()
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	for i := range 5 {
		// Recorded 3h ago: the reload finds them; the round's pull, which
		// reaches back one sync interval (1h in these tests) and a few
		// seconds, does not.
		firstSeen(t, b, fmt.Sprintf("fleet%d.example", i), c.now().Add(-3*time.Hour))
	}
	syncT(t, b, a) // a reloads the set
	for i := range 5 {
		if firstSeen(t, a, fmt.Sprintf("fleet%d.example", i), c.now()) {
			t.Errorf("fleet%d.example, loaded after the outage, is new to the full copy", i)
		}
	}
}

// TestRedisBoundFlood: a bounded copy filled with domains asked for twice
// (the network's own), then flooded with names asked for once, keeps the
// network's domains: the flood's names replace each other.
func TestRedisBoundFlood(t *testing.T) {
	const known, flood = 100, 500
	r := redistest.Start(t)
	c := &clock{t: t0}
	a := openRedisT(t, r.URL(), c, RedisOptions{MaxDomains: known})
	for round := range 2 {
		for i := range known {
			firstSeen(t, a, fmt.Sprintf("k%d.example", i), t0.Add(time.Duration(round)*time.Second))
		}
	}
	for i := range flood {
		if !firstSeen(t, a, fmt.Sprintf("f%d.example", i), t0.Add(time.Minute)) {
			t.Fatalf("f%d.example: not new", i)
		}
	}
	kept := 0
	for i := range known {
		if !firstSeen(t, a, fmt.Sprintf("k%d.example", i), t0.Add(2*time.Minute)) {
			kept++
		}
	}
	// The first flood name found none asked for once and took a known
	// domain's place; asked for again below, that one takes the last flood
	// name's.
	if kept != known-1 || a.Known() != known {
		t.Errorf("%d of the %d domains asked for twice kept (want %d), %d known", kept, known, known-1, a.Known())
	}
}

// TestRedisBoundPulledFirst: a full copy evicts the domains it only pulled
// from the fleet before those it was asked for twice, and takes an expired
// domain's place, asked for twice or not, without counting an eviction; the
// sweep forgets both kinds.
func TestRedisBoundPulledFirst(t *testing.T) {
	const bound = 10
	r := redistest.Start(t)
	c := &clock{t: t0}
	evicted := prometheus.NewCounter(prometheus.CounterOpts{Name: "evicted_total"})
	a := openRedisT(t, r.URL(), c, RedisOptions{MaxDomains: bound, Evicted: evicted})
	b := openRedisT(t, r.URL(), c, RedisOptions{})
	for round := range 2 {
		for i := range bound / 2 {
			firstSeen(t, a, fmt.Sprintf("local%d.example", i), t0.Add(time.Duration(round)*time.Second))
		}
	}
	for i := range bound / 2 {
		firstSeen(t, b, fmt.Sprintf("fleet%d.example", i), t0.Add(time.Minute))
	}
	syncT(t, b, a)
	if a.Known() != bound {
		t.Fatalf("%d known after the pull, want the bound %d", a.Known(), bound)
	}
	for i := range bound / 2 {
		firstSeen(t, a, fmt.Sprintf("new%d.example", i), t0.Add(2*time.Minute))
	}
	for i := range bound / 2 {
		if firstSeen(t, a, fmt.Sprintf("local%d.example", i), t0.Add(3*time.Minute)) {
			t.Errorf("local%d.example, asked for twice, was evicted before the pulled domains", i)
		}
	}
	// A day later (past the 24h retention) everything has expired: seven
	// new domains take expired ones' places, the five asked for once, then
	// two asked for twice; the sweep forgets the other three.
	const day2 = 7
	waitLastSweep(t, &a.mu, &a.known.sweeps) // the full copy's (nothing expired then)
	before := testutil.ToFloat64(evicted)
	later := t0.Add(25 * time.Hour)
	c.set(later)
	for i := range day2 {
		firstSeen(t, a, fmt.Sprintf("day2-%d.example", i), later)
	}
	if got := testutil.ToFloat64(evicted) - before; got != 0 {
		t.Errorf("%v evictions counted while expired domains made the room", got)
	}
	waitLastSweep(t, &a.mu, &a.known.sweeps)
	if a.Known() != day2 {
		t.Errorf("%d known after the sweep, want the %d of day two", a.Known(), day2)
	}
}
