package seen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/dnsvalve/dnsvalve/detect/internal/redisconn"
)

// RedisOptions tune a Redis store. Zero fields take the defaults.
type RedisOptions struct {
	Prefix string        // key prefix (default "dnsvalve:")
	Sync   time.Duration // push/pull interval (default 500ms)
	CAFile string        // rediss://: extra trusted CAs (PEM)
	// Up and Errors, when set, mirror the store's health (1 / 0) and count
	// failed rounds.
	Up     prometheus.Gauge
	Errors prometheus.Counter
	Logger *slog.Logger
	// MaxDomains bounds the domains known locally (0: no bound). Past it
	// a sweep of the expired ones starts (at most once a minute, in the
	// background) and each new domain asked for replaces an expired one
	// found among a few, else a random known one asked for (or pulled)
	// only once, else a random one asked for again; domains pulled from the
	// fleet are added only while there is room (loaded newest first; a
	// pull into a full set waits for the sweep first).
	// The shared set keeps the 2*MaxDomains written last.
	MaxDomains int
	// Evicted, when set, counts the domains evicted locally.
	Evicted prometheus.Counter
}

// pullMargin is how far back each pull reaches before the previous one,
// covering clock skew between instances and the other instances' sync
// interval.
const pullMargin = 5 * time.Second

// loadChunk is the number of domains read per call when loading the set.
const loadChunk = 10000

// loadTimeout bounds a background round that loads the whole set: Redis did
// not answer at Open, or a round failed since. Close cuts it short.
const loadTimeout = 30 * time.Second

// maxQueued bounds first-seen records waiting for Redis; more are dropped
// (and counted as errors) while Redis is down.
const maxQueued = 200000

// RedisStore is a first-seen store shared by a fleet through Redis. It
// keeps the set of known domains in memory, so FirstSeen never waits on
// the network: a domain unknown locally is new, is recorded locally and
// queued. A background goroutine, every RedisOptions.Sync, pipelines the
// queued records to the sorted set PREFIX "seen" (member = domain, score =
// last seen, unix ms; ZADD GT, so the first-seen write is the ZADD that
// creates the member, the SET NX of the set) and pulls the members other
// instances added or refreshed since the previous pull, so a domain
// first seen on one instance is known to the others within about two sync
// intervals. Open loads the whole set (the restart keeps its knowledge);
// members older than the retention are trimmed with ZREMRANGEBYSCORE, and
// with a bound (RedisOptions.MaxDomains) the oldest past twice the bound
// with ZREMRANGEBYRANK.
// When Redis is down the store works on local knowledge, queues records
// (bounded) and catches up, loading the set again, on recovery.
type RedisStore struct {
	client    *redis.Client
	key       string
	created   string
	retention time.Duration
	now       func() time.Time
	sync      time.Duration
	health    *redisconn.Health
	logger    *slog.Logger

	evicted prometheus.Counter // may be nil

	mu         sync.Mutex
	warnedFull bool
	// The domains known locally, pulled from the fleet or asked for here
	// (a pulled one counts as asked for once).
	known     localSet
	queue     map[string]int64 // domain -> last seen to write
	closed    bool
	createdAt time.Time
	fresh     bool
	maxQueued int // maxQueued; lower in tests

	// afterTake, when set (tests), runs in Sync once the queue is taken.
	afterTake func()

	opened    time.Time       // when OpenRedis ran: the creation time this store writes if it creates the set
	roundCtx  context.Context // Close cancels it: the rounds end, a running one cut short
	endRounds context.CancelFunc

	syncMu    sync.Mutex // one round at a time; guards the fields below
	inited    bool       // createdAt and fresh come from Redis (init succeeded)
	setByUs   bool       // this store's SETNX created the set's creation key
	loaded    bool
	lastPull  int64
	lastTrim  int64
	done      chan struct{}
	closeOnce sync.Once
}

var _ Store = (*RedisStore)(nil)

// OpenRedis opens the first-seen store at url (redis://[user:pass@]host:port[/db]
// or rediss://...). It tries Redis within ctx to learn the store's creation
// time and load the known domains; a Redis that does not answer is not an
// error (the store starts empty, not fresh, and catches up later). Only a
// bad URL or CA file is.
func OpenRedis(ctx context.Context, url string, retention time.Duration, now func() time.Time, o RedisOptions) (*RedisStore, error) {
	if retention <= 0 {
		retention = 30 * 24 * time.Hour
	}
	if now == nil {
		now = time.Now
	}
	if o.Prefix == "" {
		o.Prefix = "dnsvalve:"
	}
	if o.Sync <= 0 {
		o.Sync = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	opts, err := redisconn.Options(url, o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("seen: %w", err)
	}
	s := &RedisStore{client: redis.NewClient(opts), key: o.Prefix + "seen", created: o.Prefix + "seen:created",
		retention: retention, now: now, sync: o.Sync, logger: o.Logger, evicted: o.Evicted,
		health: redisconn.NewHealth("seen", o.Up, o.Errors, o.Logger),
		queue:  map[string]int64{}, maxQueued: maxQueued,
		done: make(chan struct{})}
	s.opened = now()
	s.createdAt = s.opened
	s.roundCtx, s.endRounds = context.WithCancel(context.Background())
	s.known = newLocalSet(&s.mu, func() bool { return s.closed }, retention, o.MaxDomains, s.opened)
	if err := s.init(ctx); err != nil {
		s.health.Fail(now(), err)
	} else {
		s.health.OK(now())
	}
	go s.loop()
	return s, nil
}

// init reads (or sets) the creation time and loads the set.
func (s *RedisStore) init(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	return s.initLocked(ctx)
}

// initLocked is init with syncMu held. The set's creation time and
// freshness are published only once its members are loaded: a store that
// reported an old creation (no more learning) while it knew no domains
// would call every domain new. If this store creates the set, the time it
// writes is its opening, not the moment Redis first answered, so an outage
// at start does not move the learning period.
func (s *RedisStore) initLocked(ctx context.Context) error {
	set, err := s.client.SetNX(ctx, s.created, s.opened.UnixMilli(), 0).Result()
	if err != nil {
		return fmt.Errorf("seen: redis init: %w", err)
	}
	s.setByUs = s.setByUs || set
	ms, err := s.client.Get(ctx, s.created).Int64()
	if err != nil {
		return fmt.Errorf("seen: redis init: %w", err)
	}
	if err := s.load(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.fresh, s.createdAt = s.setByUs, time.UnixMilli(ms)
	s.mu.Unlock()
	s.inited = true
	return nil
}

// load reads every member seen within the retention into the known set.
//
// It reads the newest first, up to the load's start (members written since
// come with the next pull), so that a copy bounded below the set's size
// keeps the newest, and the other instances' trims (of the oldest) do not
// shift the pages still to read. A member another instance refreshes
// during the load moves out of the range and shifts the later pages by one:
// a member may be missed, and is then new to this instance once.
func (s *RedisStore) load(ctx context.Context) error {
	t := s.now()
	min := strconv.FormatInt(t.Add(-s.retention).UnixMilli(), 10)
	until := strconv.FormatInt(t.UnixMilli(), 10)
	n := 0
	for off := int64(0); ; off += loadChunk {
		zs, err := s.client.ZRevRangeByScoreWithScores(ctx, s.key, &redis.ZRangeBy{Min: min, Max: until, Offset: off, Count: loadChunk}).Result()
		if err != nil {
			return fmt.Errorf("seen: redis load: %w", err)
		}
		s.merge(zs)
		n += len(zs)
		if len(zs) < loadChunk || s.full() {
			break
		}
	}
	s.loaded, s.lastPull = true, t.UnixNano()
	s.logger.Debug("first-seen set loaded from redis", "domains", n)
	return nil
}

// merge adds members (score: last seen, unix ms) to the known set. It
// runs on the sync goroutine, not a query's: when the set is full it
// first waits for a sweep of the expired domains (started if due), so
// that a pull after a long outage is not dropped for want of room that
// the expired ones hold.
func (s *RedisStore) merge(zs []redis.Z) {
	now := s.now().UnixNano()
	s.mu.Lock()
	if !s.known.hasRoom(now) { // starts the sweep when due
		if sweep := s.known.sweeps.running(); sweep != nil {
			s.mu.Unlock()
			<-sweep
			s.mu.Lock()
		}
	}
	defer s.mu.Unlock()
	for _, z := range zs {
		d, _ := z.Member.(string)
		s.known.learn(d, int64(z.Score)*int64(time.Millisecond), now)
	}
}

// FirstSeen reports whether domain is unknown to this instance (nor
// learned from the fleet) within the retention, records it and queues the
// record for Redis. It never does I/O.
func (s *RedisStore) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	t := now.UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	s.known.sweepIfDue(t)
	d, l, ok := s.known.find(domain)
	first := !ok || t-l > int64(s.retention)
	if first || t-l >= int64(refreshEvery) {
		if ok {
			s.known.touch(d, t)
		} else {
			s.makeRoom(t)
			d = s.known.add(domain, t)
		}
		if len(s.queue) < s.maxQueued {
			s.queue[d] = t
		} else {
			s.health.Fail(now, errQueueFull)
		}
	}
	return first, nil
}

var errQueueFull = errors.New("seen: redis queue full, first-seen records dropped")

// full reports whether the known set is at its bound.
func (s *RedisStore) full() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.known.full()
}

// makeRoom makes room in the known set for one more domain (see
// localSet.makeRoom), counting and warning about an eviction. Called
// under mu.
func (s *RedisStore) makeRoom(t int64) {
	if !s.known.makeRoom(t) {
		return
	}
	if s.evicted != nil {
		s.evicted.Inc()
	}
	if !s.warnedFull {
		s.warnedFull = true
		s.logger.Warn("newly-seen redis store full: each new domain now replaces a random known one, asked for once if there is one (evicted ones are new again); "+
			"raise detect.newly_seen.max_domains if this is normal traffic", "max_domains", s.known.maxDomains)
	}
}

// Fresh reports whether this store created the shared set (no instance had
// before); false until the set was first loaded from Redis.
func (s *RedisStore) Fresh() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.fresh }

// Created is when the shared set was created; this store's opening until
// the set was first loaded from Redis.
func (s *RedisStore) Created() time.Time { s.mu.Lock(); defer s.mu.Unlock(); return s.createdAt }

// Up reports whether the last round with Redis succeeded.
func (s *RedisStore) Up() bool { return s.health.Up() }

// Status is the store's health, for /readyz.
func (s *RedisStore) Status() redisconn.Status { return s.health.Status() }

// Known is the number of domains known locally.
func (s *RedisStore) Known() int { s.mu.Lock(); defer s.mu.Unlock(); return s.known.size() }

func (s *RedisStore) loop() {
	defer close(s.done)
	tick := time.NewTicker(s.sync)
	defer tick.Stop()
	for {
		select {
		case <-s.roundCtx.Done():
			return
		case <-tick.C:
			// A round that loads the whole set (Redis did not answer
			// before, or failed since) gets loadTimeout.
			s.syncMu.Lock()
			timeout := max(s.sync, time.Second)
			if !s.inited || !s.loaded {
				timeout = max(timeout, loadTimeout)
			}
			s.syncMu.Unlock()
			ctx, cancel := context.WithTimeout(s.roundCtx, timeout)
			if err := s.Sync(ctx); err != nil {
				if s.roundCtx.Err() != nil {
					cancel()
					return // cut short by Close: not Redis's failure
				}
				s.health.Fail(s.now(), err)
			} else {
				s.health.OK(s.now())
			}
			cancel()
		}
	}
}

// Sync runs one round: push queued records, pull what the fleet recorded
// since the last pull, trim expired members now and then. The background
// goroutine calls it every RedisOptions.Sync.
func (s *RedisStore) Sync(ctx context.Context) error {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()
	t := s.now()
	switch {
	case !s.inited:
		// Redis did not answer at Open: the fleet's creation time (and so
		// the learning period, counted from Created) comes with the load.
		if err := s.initLocked(ctx); err != nil {
			return err
		}
	case !s.loaded:
		if err := s.load(ctx); err != nil {
			return err
		}
	}
	s.mu.Lock()
	q := s.queue
	if len(q) > 0 {
		s.queue = make(map[string]int64, len(q))
	} else {
		q = nil // still s.queue, which FirstSeen writes to: not to be read unlocked
	}
	s.mu.Unlock()
	if s.afterTake != nil {
		s.afterTake()
	}
	pipe := s.client.Pipeline()
	if len(q) > 0 {
		zs := make([]redis.Z, 0, len(q))
		for d, at := range q {
			zs = append(zs, redis.Z{Score: float64(at / int64(time.Millisecond)), Member: d})
		}
		pipe.ZAddGT(ctx, s.key, zs...)
	}
	from := strconv.FormatInt((s.lastPull-int64(pullMargin)-int64(s.sync))/int64(time.Millisecond), 10)
	pull := pipe.ZRangeByScoreWithScores(ctx, s.key, &redis.ZRangeBy{Min: from, Max: "+inf"})
	if t.UnixNano()-s.lastTrim > int64(s.retention/8) || s.lastTrim == 0 {
		pipe.ZRemRangeByScore(ctx, s.key, "-inf", "("+strconv.FormatInt(t.Add(-s.retention).UnixMilli(), 10))
		s.lastTrim = t.UnixNano()
	}
	if s.known.maxDomains > 0 {
		// Keep the 2*maxDomains written last (O(log n) when under it). A
		// member's score moves only when it is first seen or refreshed
		// (hourly), so a flood's names look newer than domains in use
		// for up to an hour: the headroom keeps those through a flood of
		// maxDomains names an hour.
		pipe.ZRemRangeByRank(ctx, s.key, 0, -2*int64(s.known.maxDomains)-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Keep them for the next round, behind what was queued meanwhile
		// (a domain queued again has its newer time already); past the
		// bound they are dropped and counted, as in FirstSeen.
		dropped := 0
		s.mu.Lock()
		for d, at := range q {
			if _, ok := s.queue[d]; ok {
				continue
			}
			if len(s.queue) < s.maxQueued {
				s.queue[d] = at
			} else {
				dropped++
			}
		}
		s.mu.Unlock()
		if dropped > 0 {
			s.health.FailN(t, errQueueFull, dropped)
		}
		s.loaded = false // reload on recovery: records written meanwhile may be older than the pull margin
		return fmt.Errorf("seen: redis sync: %w", err)
	}
	s.merge(pull.Val())
	s.lastPull = t.UnixNano()
	return nil
}

// Close stops the background rounds, cutting a running one short, makes a
// last push (bounded by 2 s) and closes the client.
func (s *RedisStore) Close() error {
	err := ErrClosed
	s.closeOnce.Do(func() {
		s.endRounds()
		<-s.done
		if s.health.Up() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.Sync(ctx)
			cancel()
		}
		s.mu.Lock()
		s.closed = true
		sweep := s.known.sweeps.running()
		s.mu.Unlock()
		if sweep != nil {
			<-sweep
		}
		err = s.client.Close()
	})
	return err
}
