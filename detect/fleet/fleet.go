// Package fleet shares the detector's per-(client, registered domain)
// window counters between dnsvalve instances through Redis, so a tunnel
// whose queries are spread over several resolvers (a VPC's DHCP options
// list two or more) scores as if one resolver saw it all.
//
// Syncer implements detect.Shared. The query path only touches memory:
// Record adds the query's delta to the pair's pending counters and returns
// the other instances' contribution as last fetched. A background
// goroutine, every Config.Sync, pipelines the pending deltas of the pairs
// active since the previous round to Redis and reads back the fleet totals
// of those pairs; the other instances' share is the total minus what this
// instance pushed. When Redis is down or slow, rounds fail (counted, logged
// once), deltas stay pending (at most two window buckets per pair; a bucket
// older than the previous window, which nobody reads, is dropped and
// counted, and so is a pair's pending data when the pair is forgotten two
// windows after its last query) and scoring goes on with local state and
// the last fetched totals; the first good round catches up.
//
// Keys (PREFIX defaults to "dnsvalve:"; IP|DOMAIN names the pair):
//
//	PREFIX p:IP|DOMAIN        hash, TTL max(2 windows, 2 h):
//	                          qB bB eB   queries, subdomain bytes, encoded
//	                                     bytes of window bucket B (unix ns / window)
//	                          dE fE      decayed encoded bytes and bytes,
//	                                     scaled to the start of 8 h epoch E
//	PREFIX u:B:IP|DOMAIN      HyperLogLog of the bucket's distinct
//	                          subdomains (PFADD / PFCOUNT), TTL 2 windows
//
// Decayed totals (half-life detect.HalfLife) are summed exactly across
// instances: each adds v·2^((t-E)/HalfLife) to its epoch's field, readers
// multiply by 2^(-(now-E)/HalfLife); the two newest epochs are read.
package fleet

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/detect/internal/redisconn"
)

// ErrClosed is returned by Close after the first call.
var ErrClosed = errors.New("fleet: closed")

const (
	numShards  = 16
	epochLen   = 8 * time.Hour
	maxHashes  = 1024 // distinct-subdomain hashes kept per pending bucket
	chunkPairs = 512  // pairs per pipeline
	decayTTL   = 2 * time.Hour
	pullRounds = 4 // rounds an idle pair seen by others is still pulled
)

// Config configures a Syncer. Zero fields take the documented defaults.
type Config struct {
	// URL is redis://[user:password@]host:port[/db] or rediss://... (TLS).
	URL string
	// CAFile, for rediss://, is a PEM file of CAs trusted in addition to
	// the system roots.
	CAFile string
	// Prefix starts every key (default "dnsvalve:").
	Prefix string
	// Window is the detector's window (required; all instances must agree).
	Window time.Duration
	// Sync is the push/pull interval (default 500ms).
	Sync time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Syncer shares pair counters through Redis. It is safe for concurrent use.
type Syncer struct {
	cfg    Config
	window int64
	client *redis.Client
	m      *Metrics
	log    *slog.Logger
	health *redisconn.Health
	shards [numShards]shard

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	syncMu    sync.Mutex // one round at a time (own counters belong to the round)
}

var _ detect.Shared = (*Syncer)(nil)

type shard struct {
	mu    sync.Mutex
	pairs map[uint64]*entry
	_     [64]byte
}

// pending is one bucket's not yet pushed counters.
type pending struct {
	bucket  int64 // 0: unused
	q, b, e float64
	novel   float64
	hashes  []uint64
}

// own is what this instance pushed to one bucket.
type own struct {
	bucket        int64
	q, b, e, uniq float64
}

type entry struct {
	h      uint64 // the detector's pair hash (picks the shard)
	addr   netip.Addr
	domain string
	name   string // "IP|DOMAIN", built by the sync goroutine
	dirty  bool
	last   int64 // unix ns of the last Record
	pend   [2]pending
	// pending decayed sums, as of pdAt
	pdE, pdB float64
	pdAt     int64
	own      [2]own
	// own pushed decayed sums, as of odAt
	odE, odB float64
	odAt     int64
	epoch    int64 // newest epoch pushed to (sync goroutine only)
	remote   detect.Remote
}

// New returns a running Syncer (it does not wait for Redis: a Redis that is
// down at start is just a degraded state). Only a bad URL or CA file is an
// error. m and logger may be nil.
func New(cfg Config, m *Metrics, logger *slog.Logger) (*Syncer, error) {
	if cfg.Window < time.Second {
		return nil, fmt.Errorf("fleet: window %v must be at least 1s", cfg.Window)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "dnsvalve:"
	}
	if cfg.Sync <= 0 {
		cfg.Sync = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	opts, err := redisconn.Options(cfg.URL, cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	s := &Syncer{cfg: cfg, window: int64(cfg.Window), client: redis.NewClient(opts), m: m, log: logger,
		stop: make(chan struct{}), done: make(chan struct{})}
	s.health = redisconn.NewHealth(ComponentCounters, m.Up.WithLabelValues(ComponentCounters),
		m.Errors.WithLabelValues(ComponentCounters), logger)
	for i := range s.shards {
		s.shards[i].pairs = map[uint64]*entry{}
	}
	go s.loop()
	return s, nil
}

// Record implements detect.Shared: it queues d for the pair and returns the
// other instances' counters as last fetched. Memory only.
func (s *Syncer) Record(k detect.PairKey, d detect.Delta) detect.Remote {
	sh := &s.shards[k.Hash>>(64-4)]
	sh.mu.Lock()
	e := sh.pairs[k.Hash]
	if e == nil || e.addr != k.Addr || e.domain != k.Domain {
		e = &entry{h: k.Hash, addr: k.Addr, domain: k.Domain}
		sh.pairs[k.Hash] = e
	}
	p := e.pendFor(d.Time/s.window, s.m)
	p.q++
	if d.Novel {
		p.b += d.Bytes
		p.e += d.EncBytes
		p.novel++
		if d.SubHash != 0 && len(p.hashes) < maxHashes {
			p.hashes = append(p.hashes, d.SubHash)
		}
		e.pdE = decay(e.pdE, e.pdAt, d.Time) + d.EncBytes
		e.pdB = decay(e.pdB, e.pdAt, d.Time) + d.Bytes
		e.pdAt = d.Time
	}
	e.dirty, e.last = true, d.Time
	r := e.remote
	sh.mu.Unlock()
	return r
}

// shared reports whether the last pull found other instances' counters.
func (e *entry) shared() bool {
	r := &e.remote
	return r.Cur.Queries > 0 || r.Prev.Queries > 0 || r.DecBytes > 0
}

// pendFor returns the pending slot of bucket b, dropping the older slot
// when both hold other buckets (Redis unreachable for over a window).
func (e *entry) pendFor(b int64, m *Metrics) *pending {
	for i := range e.pend {
		if e.pend[i].bucket == b {
			return &e.pend[i]
		}
	}
	for i := range e.pend {
		if e.pend[i].bucket == 0 {
			e.pend[i].bucket = b
			return &e.pend[i]
		}
	}
	i := 0
	if e.pend[1].bucket < e.pend[0].bucket {
		i = 1
	}
	m.Dropped.Inc()
	e.pend[i] = pending{bucket: b, hashes: e.pend[i].hashes[:0]}
	return &e.pend[i]
}

// dropStale drops the pair's pending buckets before bucket oldest and
// returns how many it dropped. Fleet totals are read for the current and
// the previous window only: an older bucket would be pushed for nobody.
func (e *entry) dropStale(oldest int64) int {
	n := 0
	for i := range e.pend {
		if b := e.pend[i].bucket; b != 0 && b < oldest {
			e.pend[i] = pending{hashes: e.pend[i].hashes[:0]}
			n++
		}
	}
	return n
}

// pendingDeltas is the number of deltas the pair holds for Redis: its
// pending buckets, or 1 for pending decayed sums alone.
func (e *entry) pendingDeltas() int {
	n := 0
	for i := range e.pend {
		if e.pend[i].bucket != 0 {
			n++
		}
	}
	if n == 0 && e.pdAt != 0 {
		n = 1
	}
	return n
}

func decay(v float64, at, t int64) float64 {
	if v == 0 || t <= at {
		return v
	}
	return v * math.Exp2(-float64(t-at)/float64(detect.HalfLife))
}

// Up reports whether the last round with Redis succeeded.
func (s *Syncer) Up() bool { return s.health.Up() }

// Status is the counters' shared-state health, for /readyz.
func (s *Syncer) Status() redisconn.Status { return s.health.Status() }

func (s *Syncer) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.cfg.Sync)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), max(s.cfg.Sync, time.Second))
			s.Sync(ctx)
			cancel()
		}
	}
}

// work is one pair's share of a round.
type work struct {
	e        *entry
	pend     [2]pending
	pdE, pdB float64
	pdAt     int64
	hget     *redis.SliceCmd
	pf       [2]*redis.IntCmd
}

// Sync runs one push/pull round now; the background goroutine calls it
// every Config.Sync. Exported for tests and for a final flush.
func (s *Syncer) Sync(ctx context.Context) {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	start := time.Now()
	now := s.cfg.Now().UnixNano()
	g := now / s.window
	var ws []work
	n, dropped := 0, 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for h, e := range sh.pairs {
			if now-e.last > 2*s.window {
				// Idle for two windows: its window counters are read by
				// nobody any more. With Redis up it has nothing pending;
				// with Redis down what it still holds goes too, or the
				// table would grow with every pair of the outage.
				dropped += e.pendingDeltas()
				delete(sh.pairs, h)
				continue
			}
			dropped += e.dropStale(g - 1)
			if !e.dirty {
				// A pair other instances also see stays pulled for a few
				// rounds after its last local query, so its next query
				// here scores with fresh totals; a pair only this instance
				// sees is not pulled while idle.
				if !e.shared() || now-e.last > pullRounds*int64(s.cfg.Sync) {
					continue
				}
			}
			if e.name == "" {
				e.name = e.addr.String() + "|" + e.domain
			}
			e.dirty = false
			ws = append(ws, work{e: e, pend: e.pend, pdE: e.pdE, pdB: e.pdB, pdAt: e.pdAt})
			e.pend = [2]pending{}
			e.pdE, e.pdB, e.pdAt = 0, 0, 0
		}
		n += len(sh.pairs)
		sh.mu.Unlock()
	}
	s.m.Pairs.Set(float64(n))
	s.m.Dropped.Add(float64(dropped))
	var err error
	if len(ws) == 0 {
		err = s.client.Ping(ctx).Err()
	}
	for i := 0; i < len(ws) && err == nil; i += chunkPairs {
		err = s.round(ctx, ws[i:min(i+chunkPairs, len(ws))], now)
		if err != nil {
			s.requeue(ws[i:], g-1)
		}
	}
	if err != nil {
		s.health.Fail(s.cfg.Now(), err)
		return
	}
	s.health.OK(s.cfg.Now())
	s.m.SyncDuration.Observe(time.Since(start).Seconds())
}

// requeue gives failed work's deltas back to their pairs, except buckets
// before oldest (counted as dropped).
func (s *Syncer) requeue(ws []work, oldest int64) {
	for i := range ws {
		w := &ws[i]
		e := w.e
		sh := &s.shards[e.h>>(64-4)]
		sh.mu.Lock()
		for _, p := range w.pend {
			if p.bucket == 0 {
				continue
			}
			if p.bucket < oldest {
				s.m.Dropped.Inc()
				continue
			}
			dst := e.pendFor(p.bucket, s.m)
			dst.q += p.q
			dst.b += p.b
			dst.e += p.e
			dst.novel += p.novel
			dst.hashes = append(dst.hashes, p.hashes[:min(len(p.hashes), maxHashes-len(dst.hashes))]...)
		}
		if w.pdAt != 0 {
			t := max(e.pdAt, w.pdAt)
			e.pdE = decay(e.pdE, e.pdAt, t) + decay(w.pdE, w.pdAt, t)
			e.pdB = decay(e.pdB, e.pdAt, t) + decay(w.pdB, w.pdAt, t)
			e.pdAt = t
		}
		e.dirty = true
		sh.mu.Unlock()
	}
}

// round pushes the pending deltas of ws and pulls the fleet totals of
// their pairs in one pipeline.
func (s *Syncer) round(ctx context.Context, ws []work, now int64) error {
	g := now / s.window
	ep := epochOf(now)
	pfx := s.cfg.Prefix
	ttl := max(2*s.cfg.Window, decayTTL)
	hllTTL := 2*s.cfg.Window + s.cfg.Sync
	pipe := s.client.Pipeline()
	var buf []byte
	for i := range ws {
		w := &ws[i]
		key := pfx + "p:" + w.e.name
		pushed := false
		for _, p := range w.pend {
			if p.bucket == 0 {
				continue
			}
			b := strconv.FormatInt(p.bucket, 10)
			if old := w.e.evicts(p.bucket); old != 0 && old < g-1 {
				// The pair's own slot for an old bucket goes: drop the
				// bucket's fields (nobody reads buckets before g-1).
				o := strconv.FormatInt(old, 10)
				pipe.HDel(ctx, key, "q"+o, "b"+o, "e"+o)
			}
			pipe.HIncrBy(ctx, key, "q"+b, int64(p.q))
			if p.novel > 0 {
				pipe.HIncrByFloat(ctx, key, "b"+b, p.b)
				pipe.HIncrByFloat(ctx, key, "e"+b, p.e)
			}
			if len(p.hashes) > 0 {
				hk := pfx + "u:" + b + ":" + w.e.name
				els := make([]any, len(p.hashes))
				for j, h := range p.hashes {
					buf = binary.LittleEndian.AppendUint64(buf[:0], h)
					els[j] = string(buf)
				}
				pipe.PFAdd(ctx, hk, els...)
				pipe.Expire(ctx, hk, hllTTL)
			}
			pushed = true
		}
		if w.pdAt != 0 {
			we := epochOf(w.pdAt)
			k := math.Exp2(float64(w.pdAt-we*int64(epochLen)) / float64(detect.HalfLife))
			es := strconv.FormatInt(we, 10)
			if w.e.epoch != we {
				// First push to this epoch: drop the one before the previous.
				o := strconv.FormatInt(we-2, 10)
				pipe.HDel(ctx, key, "d"+o, "f"+o)
				w.e.epoch = we
			}
			pipe.HIncrByFloat(ctx, key, "d"+es, w.pdE*k)
			pipe.HIncrByFloat(ctx, key, "f"+es, w.pdB*k)
		}
		if pushed {
			pipe.Expire(ctx, key, ttl)
		}
		gs, ps := strconv.FormatInt(g, 10), strconv.FormatInt(g-1, 10)
		es, pes := strconv.FormatInt(ep, 10), strconv.FormatInt(ep-1, 10)
		w.hget = pipe.HMGet(ctx, key, "q"+gs, "b"+gs, "e"+gs, "q"+ps, "b"+ps, "e"+ps, "d"+es, "f"+es, "d"+pes, "f"+pes)
		w.pf[0] = pipe.PFCount(ctx, pfx+"u:"+gs+":"+w.e.name)
		w.pf[1] = pipe.PFCount(ctx, pfx+"u:"+ps+":"+w.e.name)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("fleet: sync %d pairs: %w", len(ws), err)
	}
	for i := range ws {
		s.apply(&ws[i], g, ep, now)
	}
	return nil
}

// apply books the pushed deltas as this instance's own and stores the
// others' share of the fetched totals.
func (s *Syncer) apply(w *work, g, ep, now int64) {
	vals := w.hget.Val()
	f := func(i int) float64 {
		if i >= len(vals) {
			return 0
		}
		str, _ := vals[i].(string)
		v, _ := strconv.ParseFloat(str, 64)
		return v
	}
	e := w.e
	sh := &s.shards[e.h>>(64-4)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for _, p := range w.pend {
		if p.bucket == 0 {
			continue
		}
		o := e.ownFor(p.bucket)
		o.q += p.q
		o.b += p.b
		o.e += p.e
		o.uniq += p.novel
	}
	if w.pdAt != 0 {
		t := max(e.odAt, w.pdAt)
		e.odE = decay(e.odE, e.odAt, t) + decay(w.pdE, w.pdAt, t)
		e.odB = decay(e.odB, e.odAt, t) + decay(w.pdB, w.pdAt, t)
		e.odAt = t
	}
	r := detect.Remote{Bucket: g, At: now}
	for i, b := range [2]int64{g, g - 1} {
		var o own
		for _, x := range e.own {
			if x.bucket == b {
				o = x
			}
		}
		c := detect.Counts{
			Queries:  math.Max(0, f(3*i)-o.q),
			Bytes:    math.Max(0, f(3*i+1)-o.b),
			EncBytes: math.Max(0, f(3*i+2)-o.e),
			Unique:   math.Max(0, float64(w.pf[i].Val())-o.uniq),
		}
		if i == 0 {
			r.Cur = c
		} else {
			r.Prev = c
		}
	}
	var dE, dB float64
	for i, x := range [2]int64{ep, ep - 1} {
		k := math.Exp2(-float64(now-x*int64(epochLen)) / float64(detect.HalfLife))
		dE += f(6+2*i) * k
		dB += f(7+2*i) * k
	}
	r.DecEncBytes = math.Max(0, dE-decay(e.odE, e.odAt, now))
	r.DecBytes = math.Max(0, dB-decay(e.odB, e.odAt, now))
	e.remote = r
}

// evicts returns the bucket whose own slot ownFor(b) would reuse (0: none).
func (e *entry) evicts(b int64) int64 {
	if e.own[0].bucket == b || e.own[1].bucket == b || e.own[0].bucket == 0 || e.own[1].bucket == 0 {
		return 0
	}
	return min(e.own[0].bucket, e.own[1].bucket)
}

// ownFor returns the own-counter slot of bucket b, reusing the oldest.
func (e *entry) ownFor(b int64) *own {
	for i := range e.own {
		if e.own[i].bucket == b {
			return &e.own[i]
		}
	}
	for i := range e.own {
		if e.own[i].bucket == 0 {
			e.own[i].bucket = b
			return &e.own[i]
		}
	}
	i := 0
	if e.own[1].bucket < e.own[0].bucket {
		i = 1
	}
	e.own[i] = own{bucket: b}
	return &e.own[i]
}

func epochOf(t int64) int64 { return t / int64(epochLen) }

// Close stops the background rounds after a last one (bounded by ctx) and
// closes the Redis client.
func (s *Syncer) Close(ctx context.Context) error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		if s.health.Up() {
			s.Sync(ctx)
		}
		err = s.client.Close()
	})
	return err
}
