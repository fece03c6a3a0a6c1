package seen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta = []byte("meta")
	bucketSeen = []byte("seen")
	keyCreated = []byte("created")
)

// flushEvery is how often pending first-seen records are written to disk.
const flushEvery = time.Second

// refreshEvery bounds disk writes for domains queried all the time: a
// domain's last-seen time is rewritten at most this often.
const refreshEvery = time.Hour

// FileOptions are OpenFile's optional settings.
type FileOptions struct {
	// Errors, when set, counts failed writes (one per failed flush or
	// sweep) and first-seen records dropped because 200,000 of them
	// (maxQueued) already wait for a disk that fails.
	Errors prometheus.Counter
	// Logger, when set, says when writes start failing and when they
	// recover (once each).
	Logger *slog.Logger
}

// boltStore keeps domain -> last-seen (unix nanoseconds, big endian) in a
// bbolt file. FirstSeen reads through the pending map, the map being
// flushed and a read-only transaction and never waits for a disk sync:
// writes are batched by a background goroutine every flushEvery and on
// Close.
//
// A failed write (a full or broken disk) keeps its records pending for the
// next flush, at most maxPending of them: past that, new records are
// dropped and counted, so a disk that stays broken costs bounded memory.
// A dropped domain is new again when it comes back.
type boltStore struct {
	db         *bolt.DB
	path       string
	retention  time.Duration
	now        func() time.Time
	created    time.Time
	fresh      bool
	errs       prometheus.Counter // may be nil
	logger     *slog.Logger
	maxPending int // maxQueued; lower in tests

	mu       sync.Mutex
	pending  map[string]int64
	flushing map[string]int64 // records flush is writing, until they are committed (nil otherwise)
	dropped  int              // records dropped since flush last counted them
	closed   bool

	// flushMu: one flush at a time; it guards the fields below it.
	flushMu      sync.Mutex
	lastSweep    int64
	failingSince time.Time                           // zero while writes succeed
	afterSwap    func()                              // test hook: flush calls it between taking pending and the commit
	update       func(func(tx *bolt.Tx) error) error // db.Update; tests make it fail

	stop chan struct{}
	done chan struct{}
}

var _ Store = (*boltStore)(nil)

// OpenFile opens the bbolt file at path (creating it), a store that
// survives restarts. Retention is how long a domain stays "seen" after its
// last query (0 means 30 days); now is the clock.
func OpenFile(path string, retention time.Duration, now func() time.Time, o FileOptions) (Store, error) {
	if retention <= 0 {
		retention = defaultRetention
	}
	if now == nil {
		now = time.Now
	}
	if path == "" {
		return nil, errors.New("seen: open file store: empty path")
	}
	s, err := openBolt(path, retention, now, o, true)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// openBolt opens the store; with flushing, a goroutine flushes it every
// flushEvery (tests flush by hand).
func openBolt(path string, retention time.Duration, now func() time.Time, o FileOptions, flushing bool) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("seen: open %s: %w", path, err)
	}
	logger := o.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &boltStore{db: db, path: path, retention: retention, now: now, errs: o.Errors, logger: logger,
		maxPending: maxQueued, pending: map[string]int64{}, update: db.Update,
		stop: make(chan struct{}), done: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(bucketSeen); err != nil {
			return err
		}
		if v := meta.Get(keyCreated); len(v) == 8 {
			s.created = time.Unix(0, int64(binary.BigEndian.Uint64(v)))
			return nil
		}
		s.created, s.fresh = now(), true
		return meta.Put(keyCreated, binary.BigEndian.AppendUint64(nil, uint64(s.created.UnixNano())))
	})
	if err == nil {
		err = s.sweep(now().UnixNano())
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("seen: init %s: %w", path, err)
	}
	if flushing {
		go s.loop()
	} else {
		close(s.done)
	}
	return s, nil
}

// errBadKey is FirstSeen's answer for a name bbolt cannot store: none of
// them is a registered domain, and one in a batch would fail every write.
var errBadKey = errors.New("seen: empty or oversized domain")

func (s *boltStore) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	if domain == "" || len(domain) > bolt.MaxKeySize {
		return false, errBadKey
	}
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	last, inPending := s.pending[domain]
	ok := inPending
	if !ok {
		last, ok = s.flushing[domain]
	}
	if !ok {
		err := s.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketSeen).Get([]byte(domain)); len(v) == 8 {
				last, ok = int64(binary.BigEndian.Uint64(v)), true
			}
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("seen: read %q: %w", domain, err)
		}
	}
	if !ok || t-last >= int64(refreshEvery) {
		switch {
		case inPending:
			s.pending[domain] = t
		case len(s.pending) < s.maxPending:
			s.pending[strings.Clone(domain)] = t
		default:
			s.dropped++ // the disk fails; the next flush counts it
		}
	}
	return !ok || t-last > int64(s.retention), nil
}

func (s *boltStore) Fresh() bool        { return s.fresh }
func (s *boltStore) Created() time.Time { return s.created }

func (s *boltStore) loop() {
	defer close(s.done)
	tick := time.NewTicker(flushEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			_ = s.flush() // retried on the next tick; Close reports the final error
		}
	}
}

// flush writes pending records and, at most every retention/8, deletes
// expired ones. The records stay visible to FirstSeen (as flushing) until
// their transaction has committed, or back in pending if it failed (up to
// maxPending). Failures and dropped records are counted, and logged when
// writes start failing and when they recover.
func (s *boltStore) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	err := s.write()
	if err == nil {
		if now := s.now().UnixNano(); now-s.lastSweep > int64(s.retention/8) {
			err = s.sweep(now)
		}
	}
	s.mu.Lock()
	dropped := s.dropped
	s.dropped = 0
	s.mu.Unlock()
	s.noteWrite(err, dropped)
	return err
}

// noteWrite counts a flush's failure and the records dropped since the
// last one, and logs the first failure and the recovery. Called under
// flushMu.
func (s *boltStore) noteWrite(err error, dropped int) {
	n := dropped
	if err != nil {
		n++
	}
	if s.errs != nil && n > 0 {
		s.errs.Add(float64(n))
	}
	switch {
	case err != nil && s.failingSince.IsZero():
		s.failingSince = s.now()
		s.logger.Warn("newly-seen file store: writes failing; first-seen records wait in memory and are retried every second, "+
			"up to max_waiting of them: past that they are dropped (counted in dnsvalve_detect_seen_store_errors_total) "+
			"and their domains are new again when they come back",
			"path", s.path, "err", err, "max_waiting", s.maxPending)
	case err == nil && !s.failingSince.IsZero():
		s.logger.Info("newly-seen file store: writes recovered", "path", s.path,
			"failing_for", s.now().Sub(s.failingSince).Round(time.Millisecond), "records_dropped_since_last_flush", dropped)
		s.failingSince = time.Time{}
	}
}

// write commits the pending records. Called under flushMu.
func (s *boltStore) write() error {
	s.mu.Lock()
	p := s.pending
	if len(p) > 0 {
		s.pending = make(map[string]int64, len(p))
		s.flushing = p
	}
	s.mu.Unlock()
	if len(p) > 0 {
		if s.afterSwap != nil {
			s.afterSwap()
		}
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSeen)
			for d, t := range p {
				if err := b.Put([]byte(d), binary.BigEndian.AppendUint64(nil, uint64(t))); err != nil {
					return err
				}
			}
			return nil
		})
		s.mu.Lock()
		s.flushing = nil
		if err != nil {
			// Keep them for the next attempt, behind what was recorded
			// meanwhile (a domain recorded again has its newer time).
			for d, t := range p {
				if _, ok := s.pending[d]; ok {
					continue
				}
				if len(s.pending) < s.maxPending {
					s.pending[d] = t
				} else {
					s.dropped++
				}
			}
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("seen: write %s: %w", s.path, err)
		}
	}
	return nil
}

func (s *boltStore) sweep(now int64) error {
	s.lastSweep = now
	cut := now - int64(s.retention)
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		var expired [][]byte // deleting under a cursor can skip keys
		err := b.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < cut {
				expired = append(expired, k)
			}
			return nil
		})
		for _, k := range expired {
			if err == nil {
				err = b.Delete(k)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("seen: sweep %s: %w", s.path, err)
	}
	return nil
}

// Close flushes pending records and closes the file.
func (s *boltStore) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	return errors.Join(s.flush(), s.db.Close())
}
