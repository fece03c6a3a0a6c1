package seen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	// (maxQueued) already wait: for a disk that fails, or within one
	// second.
	Errors prometheus.Counter
	// Logger, when set, says when writes start failing and when they
	// recover (once each), and when the store first reaches MaxDomains.
	Logger *slog.Logger
	// MaxDomains bounds the domains the file holds (0: no bound). A flush
	// that leaves more evicts down to 1/64 under the bound: at random among
	// the domains asked for once, and when those are too few, also among
	// the domains asked for again, as the memory: store does.
	MaxDomains int
	// Evicted, when set, counts the evicted domains.
	Evicted prometheus.Counter
}

// record is what the file holds for a domain: when it was last asked for,
// and whether it was asked for more than once. On disk it is the 8 bytes
// dnsvalve always wrote there, the time in unix nanoseconds, big endian,
// with the flag in the lowest bit (1: again). So a file written by this
// version still reads right in an older one (the times 1 ns off), and one
// written before the flag existed reads with about half of its domains
// asked again: those whose time was odd.
type record struct {
	last  int64
	again bool
}

func decodeRecord(v []byte) (record, bool) {
	if len(v) != 8 {
		return record{}, false
	}
	t := binary.BigEndian.Uint64(v)
	return record{last: int64(t &^ 1), again: t&1 == 1}, true
}

func (r record) encode() []byte {
	t := uint64(r.last) &^ 1
	if r.again {
		t |= 1
	}
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), t)
}

// boltStore keeps domain -> record (see record) in a bbolt file. FirstSeen reads through the pending map, the map being
// flushed and a read-only transaction and never waits for a disk sync:
// writes are batched by a background goroutine every flushEvery and on
// Close.
//
// A failed write (a full or broken disk) keeps its records pending for the
// next flush, at most maxPending of them: past that, new records are
// dropped and counted, so a disk that stays broken costs bounded memory
// (twice maxPending records at most: those being written and those
// waiting). The same bound drops records when more arrive between two
// flushes.
// A dropped domain is new again when it comes back.
//
// With a bound (FileOptions.MaxDomains), a flush that leaves more domains
// in the file evicts down to lowWater: a random share of those asked for
// once, so a flood's names replace each other and the domains the network
// keeps using stay. FirstSeen is called once per new (client, domain)
// pair of the detector's pair table, so a domain is asked again when a
// second client asks for it, or the same one once its pair has left the
// table.
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
	maxDomains int
	evicted    prometheus.Counter // may be nil

	mu       sync.Mutex
	pending  map[string]record
	flushing map[string]record // records flush is writing, until they are committed (nil otherwise)
	dropped  int               // records dropped since flush last counted them
	closed   bool

	// flushMu: one flush at a time; it guards the fields below it.
	flushMu      sync.Mutex
	lastSweep    int64
	count        int   // domains in the file
	recount      bool  // a failed write may have changed the file: count it again
	fullSweep    int64 // earliest next sweep before an eviction
	warnedFull   bool
	warnedDrops  bool                                // dropped records logged (writes succeeding) since the last flush without drops
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
		maxPending: maxQueued, maxDomains: max(o.MaxDomains, 0), evicted: o.Evicted,
		pending: map[string]record{}, update: db.Update,
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
		err = s.sweep(now().UnixNano()) // it also counts the domains
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
	r, inPending := s.pending[domain]
	ok := inPending
	if !ok {
		r, ok = s.flushing[domain]
	}
	if !ok {
		err := s.db.View(func(tx *bolt.Tx) error {
			r, ok = decodeRecord(tx.Bucket(bucketSeen).Get([]byte(domain)))
			return nil
		})
		if err != nil {
			return false, fmt.Errorf("seen: read %q: %w", domain, err)
		}
	}
	first := !ok || t-r.last > int64(s.retention)
	var next record
	switch {
	case first:
		next = record{last: t}
	case !r.again || t-r.last >= int64(refreshEvery):
		next = record{last: max(t, r.last), again: true}
	default:
		return false, nil
	}
	switch {
	case inPending:
		s.pending[domain] = next
	case len(s.pending) < s.maxPending:
		s.pending[strings.Clone(domain)] = next
	default:
		s.dropped++ // a failing disk, or too many in a second; the next flush counts it
	}
	return first, nil
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
	if err == nil && s.recount {
		err = s.db.View(func(tx *bolt.Tx) error {
			s.count, s.recount = tx.Bucket(bucketSeen).Stats().KeyN, false
			return nil
		})
	}
	if err == nil {
		if now := s.now().UnixNano(); now-s.lastSweep > int64(s.retention/8) {
			err = s.sweep(now)
		}
	}
	if err == nil && s.maxDomains > 0 && s.count > s.maxDomains {
		err = s.evict()
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
	case err == nil && dropped > 0 && !s.warnedDrops && s.failingSince.IsZero():
		s.warnedDrops = true
		s.logger.Warn("newly-seen file store: more first-seen records arrived between two writes than wait for one (max_waiting); "+
			"the others were dropped (counted in dnsvalve_detect_seen_store_errors_total) and their domains are new again when they come back",
			"path", s.path, "dropped", dropped, "max_waiting", s.maxPending)
	case err == nil && dropped == 0:
		s.warnedDrops = false
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
		s.pending = make(map[string]record, len(p))
		s.flushing = p
	} else {
		p = nil // still s.pending, which FirstSeen writes to: not to be read unlocked
	}
	s.mu.Unlock()
	if len(p) > 0 {
		if s.afterSwap != nil {
			s.afterSwap()
		}
		added := 0
		err := s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketSeen)
			added = 0
			for d, r := range p {
				k := []byte(d)
				if b.Get(k) == nil {
					added++
				}
				if err := b.Put(k, r.encode()); err != nil {
					return err
				}
			}
			return nil
		})
		if err == nil {
			s.count += added
		} else {
			// The commit may have reached the file though it failed (a
			// failed sync): count the file again once writes succeed.
			s.recount = true
		}
		s.mu.Lock()
		s.flushing = nil
		if err != nil {
			// Keep them for the next attempt, behind what was recorded
			// meanwhile (a domain recorded again has its newer time).
			for d, r := range p {
				if _, ok := s.pending[d]; ok {
					continue
				}
				if len(s.pending) < s.maxPending {
					s.pending[d] = r
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

// sweep deletes the expired domains, and sets the count from its scan. A
// failed sweep is tried again a minute later. Called under flushMu.
func (s *boltStore) sweep(now int64) error {
	cut := now - int64(s.retention)
	left := 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		var expired [][]byte // deleting under a cursor can skip keys
		all := 0
		err := b.ForEach(func(k, v []byte) error {
			all++
			if r, ok := decodeRecord(v); !ok || r.last < cut {
				expired = append(expired, k)
			}
			return nil
		})
		for _, k := range expired {
			if err == nil {
				err = b.Delete(k)
			}
		}
		left = all - len(expired)
		return err
	})
	if err != nil {
		s.lastSweep = now - int64(s.retention/8) + int64(time.Minute)
		s.recount = true
		return fmt.Errorf("seen: sweep %s: %w", s.path, err)
	}
	s.lastSweep, s.count, s.recount = now, left, false
	return nil
}

// lowWater is where an eviction brings a full store: 1/64 under its bound,
// so a store that stays full scans its file at most once per flush and per
// maxDomains/64 new domains.
func (s *boltStore) lowWater() int { return s.maxDomains - s.maxDomains/64 }

// evict brings the file down to lowWater domains: by sweeping the expired
// ones first (at most once a minute), then at random among the domains
// asked for once, and among those asked for again only for what is still
// over. Called under flushMu.
func (s *boltStore) evict() error {
	now := s.now().UnixNano()
	if now >= s.fullSweep {
		s.fullSweep = now + int64(time.Minute)
		if err := s.sweep(now); err != nil {
			return err
		}
	}
	if s.count <= s.maxDomains {
		return nil
	}
	deleted, all := 0, 0
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSeen)
		once := 0
		all = 0
		err := b.ForEach(func(_, v []byte) error {
			all++
			if askedOnce(v) {
				once++
			}
			return nil
		})
		if err != nil {
			return err
		}
		need := all - s.lowWater()
		// Selection sampling (Knuth's algorithm S) per kind: each domain
		// is taken with probability wanted/left of its kind, which takes
		// exactly the wanted number, uniformly.
		again := all - once
		wantOnce := min(max(need, 0), once)
		wantAgain := min(need-wantOnce, again)
		var victims [][]byte
		err = b.ForEach(func(k, v []byte) error {
			if askedOnce(v) {
				if wantOnce > 0 && rand.IntN(once) < wantOnce {
					victims = append(victims, k)
					wantOnce--
				}
				once--
			} else {
				if wantAgain > 0 && rand.IntN(again) < wantAgain {
					victims = append(victims, k)
					wantAgain--
				}
				again--
			}
			return nil
		})
		for _, k := range victims {
			if err == nil {
				err = b.Delete(k)
			}
		}
		deleted = len(victims)
		return err
	})
	if err != nil {
		s.recount = true
		return fmt.Errorf("seen: evict %s: %w", s.path, err)
	}
	s.count, s.recount = all-deleted, false
	if s.evicted != nil {
		s.evicted.Add(float64(deleted))
	}
	if !s.warnedFull {
		s.warnedFull = true
		s.logger.Warn("newly-seen file store full: a write that leaves it over the bound now evicts down to 1/64 under it, at random among domains asked for only once "+
			"(evicted ones are new again); raise detect.newly_seen.max_domains if this is normal traffic",
			"path", s.path, "max_domains", s.maxDomains, "evicted", deleted)
	}
	return nil
}

// askedOnce reports whether a stored value is of a domain asked for once
// (a value that does not decode counts as asked again: kept longest).
func askedOnce(v []byte) bool {
	r, ok := decodeRecord(v)
	return ok && !r.again
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
