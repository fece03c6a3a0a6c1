package seen

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
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
