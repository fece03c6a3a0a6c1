package fleet

import (
	"context"
	"encoding/base32"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/internal/logbuf"
	"github.com/dnsvalve/dnsvalve/internal/redistest"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 30, 0, time.UTC)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// newSyncer returns a Syncer on url whose background rounds never fire
// (the test calls Sync), with its own registry.
func newSyncer(tb testing.TB, url string, c *clock, logw *logbuf.Buffer) (*Syncer, *Metrics) {
	tb.Helper()
	m := NewMetrics(prometheus.NewRegistry())
	logger := slog.New(slog.DiscardHandler)
	if logw != nil {
		logger = slog.New(slog.NewTextHandler(logw, nil))
	}
	s, err := New(Config{URL: url, Window: time.Minute, Sync: time.Hour, Now: c.now, Prefix: "t:"}, m, logger)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close(context.Background()) })
	return s, m
}

// touch marks pair h active now, as a query without a delta would, so the
// next round pulls it.
func touch(s *Syncer, h uint64) {
	sh := &s.shards[h>>60]
	sh.mu.Lock()
	sh.pairs[h].dirty, sh.pairs[h].last = true, s.cfg.Now().UnixNano()
	sh.mu.Unlock()
}

// remoteOf is pair h's remote view, without recording a query.
func remoteOf(s *Syncer, h uint64) detect.Remote {
	sh := &s.shards[h>>60]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.pairs[h].remote
}

func syncNow(tb testing.TB, ss ...*Syncer) {
	tb.Helper()
	for _, s := range ss {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		s.Sync(ctx)
		cancel()
	}
}

var (
	client = netip.MustParseAddr("10.0.3.7")
	dom    = "attacker.example"
)

func key(h uint64) detect.PairKey { return detect.PairKey{Hash: h, Addr: client, Domain: dom} }

func delta(at time.Time, i int) detect.Delta {
	return detect.Delta{Time: at.UnixNano(), Novel: true, SubHash: uint64(i)*0x9e3779b97f4a7c15 + 1, Bytes: 50, EncBytes: 45}
}

func TestSharedCounters(t *testing.T) {
	r := redistest.Start(t)
	for _, tc := range []struct {
		name          string
		aQueries      int
		bQueries      int
		wantQ, wantB  float64 // A's remote view (B's share) after both synced
		wantBQ, wantU float64 // B's remote view (A's share)
	}{
		{"a_only", 10, 0, 1, 0, 10, 10},
		{"both", 20, 5, 6, 250, 20, 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			_, _ = r.Do("FLUSHALL")
			a, _ := newSyncer(t, r.URL(), c, nil)
			b, _ := newSyncer(t, r.URL(), c, nil)
			for i := range tc.aQueries {
				a.Record(key(1), delta(t0, i))
			}
			for i := range tc.bQueries {
				b.Record(key(2), delta(t0, 1000+i)) // another process: another pair hash
			}
			b.Record(key(2), detect.Delta{Time: t0.UnixNano()})
			syncNow(t, a, b)
			touch(a, 1)
			syncNow(t, a)
			ra, rb := remoteOf(a, 1), remoteOf(b, 2)
			if ra.Cur.Queries != tc.wantQ || ra.Cur.Bytes != tc.wantB {
				t.Errorf("A sees others' queries, bytes = %v, %v; want %v, %v", ra.Cur.Queries, ra.Cur.Bytes, tc.wantQ, tc.wantB)
			}
			if rb.Cur.Queries != tc.wantBQ || rb.Cur.Unique < tc.wantU*0.95 || rb.Cur.Unique > tc.wantU*1.05 {
				t.Errorf("B sees others' queries, unique = %v, %v; want %v, ~%v", rb.Cur.Queries, rb.Cur.Unique, tc.wantBQ, tc.wantU)
			}
			if rb.DecEncBytes < float64(tc.aQueries)*45*0.99 || rb.DecEncBytes > float64(tc.aQueries)*45*1.01 {
				t.Errorf("B sees others' decayed encoded bytes %v, want %v", rb.DecEncBytes, tc.aQueries*45)
			}
		})
	}
}

func TestBucketsRollAndDecay(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a, _ := newSyncer(t, r.URL(), c, nil)
	b, _ := newSyncer(t, r.URL(), c, nil)
	for i := range 30 {
		a.Record(key(1), delta(t0, i))
	}
	syncNow(t, a)
	// One window later the pushed bucket is the previous one; 30 minutes
	// (one half-life) later the decayed total halves.
	for _, tc := range []struct {
		name           string
		after          time.Duration
		wantCur        float64
		wantPrev       float64
		wantDecEncHalf float64
	}{
		{"same_bucket", 0, 30, 0, 30 * 45},
		{"next_bucket", time.Minute, 0, 30, 30 * 45 * 0.9772},
		{"half_life", 30 * time.Minute, 0, 0, 30 * 45 / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := t0.Add(tc.after)
			c.set(at)
			if tc.after == 0 {
				b.Record(key(9), detect.Delta{Time: at.UnixNano()})
			}
			touch(b, 9)
			syncNow(t, b)
			rm := remoteOf(b, 9)
			// Shift the view to the bucket of at, as the detector does.
			g := at.UnixNano() / int64(time.Minute)
			cur, prev := rm.Cur.Queries, rm.Prev.Queries
			if rm.Bucket != g {
				t.Fatalf("remote bucket %d, want %d", rm.Bucket, g)
			}
			if cur != tc.wantCur || prev != tc.wantPrev {
				t.Errorf("others' queries cur, prev = %v, %v; want %v, %v", cur, prev, tc.wantCur, tc.wantPrev)
			}
			if d := rm.DecEncBytes; d < tc.wantDecEncHalf*0.99 || d > tc.wantDecEncHalf*1.01 {
				t.Errorf("others' decayed encoded bytes = %v, want %v", d, tc.wantDecEncHalf)
			}
		})
	}
}

// TestRedisDownAndBack: rounds fail while Redis is down (counted, logged
// once), Record keeps answering from memory, and the first good round
// pushes what piled up.
func TestRedisDownAndBack(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	var logs logbuf.Buffer
	a, m := newSyncer(t, r.URL(), c, &logs)
	b, _ := newSyncer(t, r.URL(), c, nil)
	syncNow(t, a)
	if !a.Up() || testutil.ToFloat64(m.Up.WithLabelValues(ComponentCounters)) != 1 {
		t.Fatal("syncer not up with Redis running")
	}
	r.Stop()
	for i := range 3 {
		for j := range 5 {
			a.Record(key(1), delta(t0, 10*i+j))
		}
		syncNow(t, a)
	}
	if a.Up() || testutil.ToFloat64(m.Up.WithLabelValues(ComponentCounters)) != 0 {
		t.Error("syncer up with Redis stopped")
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues(ComponentCounters)); got != 3 {
		t.Errorf("errors = %v, want 3", got)
	}
	if n := logs.Count("shared detector state unavailable"); n != 1 {
		t.Errorf("degradation logged %d times, want once:\n%s", n, logs.String())
	}
	r.Restart()
	syncNow(t, a, b)
	if !a.Up() {
		t.Fatal("syncer did not recover")
	}
	if n := logs.Count("shared detector state recovered"); n != 1 {
		t.Errorf("recovery logged %d times, want once", n)
	}
	b.Record(key(2), detect.Delta{Time: t0.UnixNano()})
	syncNow(t, b)
	if rm := remoteOf(b, 2); rm.Cur.Queries != 15 {
		t.Errorf("after recovery B sees %v of A's queries, want the 15 recorded during the outage", rm.Cur.Queries)
	}
}

func TestRecordAllocatesNothing(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	a, _ := newSyncer(t, r.URL(), c, nil)
	a.Record(key(1), delta(t0, 0))
	syncNow(t, a)
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		i++
		a.Record(key(1), detect.Delta{Time: t0.UnixNano(), Novel: i%2 == 0, Bytes: 10})
	})
	if allocs != 0 {
		t.Errorf("Record allocates %v times per call", allocs)
	}
}

func TestBadURL(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"wrong_scheme", "http://127.0.0.1:6379"},
		{"bad_port", "redis://127.0.0.1:x/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(Config{URL: tc.url, Window: time.Minute}, nil, nil); err == nil {
				t.Errorf("New(%q) succeeded", tc.url)
			}
		})
	}
}

// tunnelName is query i of a tunnel session: a 52-character base32 label.
func tunnelName(rng *rand.Rand) string {
	var b [32]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(b[:]), "=")) + ".t.attacker.example."
}

// firstAlert drives one tunnel session of n queries 200 ms apart through
// the detectors in turn (one detector: all of it), syncing every shared
// state after each query, and returns the index of the first alerting query.
func firstAlert(tb testing.TB, ds []*detect.Detector, ss []*Syncer, c *clock, n int) int {
	tb.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	cl := detect.Client{Addr: client}
	for i := range n {
		at := t0.Add(time.Duration(i) * 200 * time.Millisecond)
		c.set(at)
		res := ds[i%len(ds)].Observe(at, cl, tunnelName(rng), 16)
		if res.Alert {
			return i
		}
		syncNow(tb, ss...)
	}
	return -1
}

func TestFleetAlertsLikeOneResolver(t *testing.T) {
	r := redistest.Start(t)
	c := &clock{t: t0}
	newDet := func(sh detect.Shared) *detect.Detector {
		cfg := detect.Config{Window: time.Minute, Learn: -1}
		if sh != nil {
			cfg.Shared = sh
		}
		d, err := detect.New(cfg, nil, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	one := firstAlert(t, []*detect.Detector{newDet(nil)}, nil, c, 400)
	if one < 0 {
		t.Fatal("tunnel did not alert on one detector")
	}
	a, _ := newSyncer(t, r.URL(), c, nil)
	b, _ := newSyncer(t, r.URL(), c, nil)
	two := firstAlert(t, []*detect.Detector{newDet(a), newDet(b)}, []*Syncer{a, b}, c, 400)
	// Without sharing each detector sees half the session.
	c2 := &clock{t: t0}
	split := firstAlert(t, []*detect.Detector{newDet(nil), newDet(nil)}, nil, c2, 400)
	t.Logf("first alert at query %d on one resolver, %d on two sharing state, %d on two without", one, two, split)
	if two < 0 || float64(two) > 1.1*float64(one)+1 || float64(two) < 0.9*float64(one)-1 {
		t.Errorf("two resolvers sharing state alert at query %d, one resolver at %d (want within 10%%)", two, one)
	}
	if split >= 0 && split < one*3/2 {
		t.Errorf("without sharing the split session alerted at query %d, not clearly later than %d: the test no longer shows what sharing buys", split, one)
	}
}

// TestPairsBoundedWhileRedisDown: while Redis is down, a pending bucket
// older than the previous window (read by nobody) is dropped, and a pair
// two windows after its last query is forgotten with what it still holds,
// both counted in shared_dropped_total; otherwise every pair of an outage
// (a flood of distinct registered domains) would stay in the table.
func TestPairsBoundedWhileRedisDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a loopback port nothing answers on
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const n = 2000
	client := netip.MustParseAddr("10.0.0.66")
	pk := func(i int) detect.PairKey {
		return detect.PairKey{Hash: uint64(i+1) * 0x9e3779b97f4a7c15, Addr: client, Domain: fmt.Sprintf("r%d.example", i)}
	}
	tests := []struct {
		name        string
		later       time.Duration // from the outage's queries to the next round
		wantPairs   int
		wantPending int // pending buckets of pair 0, queried again at later
		wantDropped float64
	}{
		// pair 0's first bucket is the previous window: kept, as every pair
		{"previous_window", time.Minute, n, 2, 0},
		// every idle pair goes with its bucket; pair 0 keeps only its new one
		{"three_hours", 3 * time.Hour, 1, 1, n},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: t0}
			s, m := newSyncer(t, "redis://"+addr, c, nil)
			for i := range n {
				s.Record(pk(i), detect.Delta{Time: t0.UnixNano(), Novel: true, SubHash: uint64(i) + 1, Bytes: 40, EncBytes: 30})
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Sync(ctx) // fails: Redis down
			if s.Up() {
				t.Fatal("syncer up without Redis")
			}
			c.set(t0.Add(tc.later))
			s.Record(pk(0), detect.Delta{Time: c.now().UnixNano(), Novel: true, SubHash: 1 << 40, Bytes: 40, EncBytes: 30})
			s.Sync(ctx) // still down
			total := 0
			for i := range s.shards {
				s.shards[i].mu.Lock()
				total += len(s.shards[i].pairs)
				s.shards[i].mu.Unlock()
			}
			if total != tc.wantPairs {
				t.Errorf("%d pairs held %v after their last query (Redis down), want %d", total, tc.later, tc.wantPairs)
			}
			h := pk(0).Hash
			sh := &s.shards[h>>60]
			sh.mu.Lock()
			pending := sh.pairs[h].pendingDeltas()
			sh.mu.Unlock()
			if pending != tc.wantPending {
				t.Errorf("active pair holds %d pending buckets, want %d", pending, tc.wantPending)
			}
			if got := testutil.ToFloat64(m.Dropped); got != tc.wantDropped {
				t.Errorf("shared_dropped_total = %v, want %v", got, tc.wantDropped)
			}
		})
	}
}
