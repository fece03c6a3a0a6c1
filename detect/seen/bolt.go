package seen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

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

// boltStore keeps domain -> last-seen (unix nanoseconds, big endian) in a
// bbolt file. FirstSeen reads through the pending map, the map being
// flushed and a read-only transaction and never waits for a disk sync:
// writes are batched by a background goroutine every flushEvery and on
// Close.
type boltStore struct {
	db        *bolt.DB
	retention time.Duration
	now       func() time.Time
	created   time.Time
	fresh     bool

	mu       sync.Mutex
	pending  map[string]int64
	flushing map[string]int64 // records flush is writing, until they are committed (nil otherwise)
	closed   bool

	flushMu   sync.Mutex // one flush at a time; guards lastSweep and afterSwap
	lastSweep int64
	afterSwap func() // test hook: flush calls it between taking pending and the commit

	stop chan struct{}
	done chan struct{}
}

var _ Store = (*boltStore)(nil)

func openBolt(path string, retention time.Duration, now func() time.Time) (*boltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("seen: open %s: %w", path, err)
	}
	s := &boltStore{db: db, retention: retention, now: now, pending: map[string]int64{},
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
	go s.loop()
	return s, nil
}

func (s *boltStore) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	last, ok := s.pending[domain]
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
		s.pending[strings.Clone(domain)] = t
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
// their transaction has committed, or back in pending if it failed.
func (s *boltStore) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
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
		err := s.db.Update(func(tx *bolt.Tx) error {
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
			for d, t := range p { // keep them for the next attempt
				if _, ok := s.pending[d]; !ok {
					s.pending[d] = t
				}
			}
		}
		s.mu.Unlock()
		if err != nil {
			return fmt.Errorf("seen: flush: %w", err)
		}
	}
	if now := s.now().UnixNano(); now-s.lastSweep > int64(s.retention/8) {
		return s.sweep(now)
	}
	return nil
}

func (s *boltStore) sweep(now int64) error {
	s.lastSweep = now
	cut := now - int64(s.retention)
	err := s.db.Update(func(tx *bolt.Tx) error {
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
		return fmt.Errorf("seen: sweep: %w", err)
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
