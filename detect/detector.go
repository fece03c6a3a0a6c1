// Package detect scores DNS queries for tunneling and data exfiltration and
// flags newly seen domains.
//
// Each query gets cheap, allocation-free features (Extract): registered
// domain, subdomain length, longest label, entropy, character-class mix and
// query type, folded into a per-query "encodedness". The Detector keeps,
// per (client, registered domain) pair, a two-bucket sliding window
// (queries, distinct subdomains via a 256-bit linear counter, subdomain
// bytes, NXDOMAIN share) and exponentially decayed totals (half-life 30
// minutes) for low-and-slow exfiltration. The score multiplies the pair's
// encodedness with its volume evidence, so one long random-looking name (a
// CDN hash, a DKIM or ACME lookup) does not alert but a session of them to
// one domain does. Pairs live in a bounded, sharded LRU.
package detect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsvalve/dnsvalve/detect/seen"
)

// Signal names, a fixed set (bounded metric label values).
const (
	SignalEntropy          = "entropy"
	SignalLabelLength      = "label_length"
	SignalUniqueSubdomains = "unique_subdomains"
	SignalVolume           = "volume"
	SignalRareQtype        = "rare_qtype"
	SignalRate             = "rate"
	SignalNewlySeen        = "newly_seen"
)

var signalNames = [...]string{SignalEntropy, SignalLabelLength, SignalUniqueSubdomains, SignalVolume,
	SignalRareQtype, SignalRate, SignalNewlySeen}

const (
	sigEntropy uint8 = 1 << iota
	sigLabelLength
	sigUnique
	sigVolume
	sigRareQtype
	sigRate
	sigNewlySeen
)

// Tuning constants of the score (see score()).
const (
	halfLife      = 30 * time.Minute
	uniqueScale   = 40     // distinct subdomains per window for volume evidence x=1
	encBytesScale = 2500.0 // encoded subdomain bytes per window for x=1
	decBytesScale = 800.0  // decayed encoded bytes (half-life 30 min) for x=1
	rateScale     = 600.0  // queries per window for x=1
	signalFloor   = 0.2    // below this score, no signals are reported
	sampleMinEnc  = 0.3    // only names this encoded are kept as alert samples
	shardBits     = 4
	numShards     = 1 << shardBits
	maxSamples    = 5
)

// ErrClosed is returned by New's results after Close where relevant.
var ErrClosed = errors.New("detect: closed")

// Config configures a Detector. Zero fields take the documented defaults.
type Config struct {
	AlertScore float64       // default 0.7
	BlockScore float64       // default 0.9 (the resolver blocks at or above it in enforce mode)
	Window     time.Duration // sliding window (default 60s)
	MaxPairs   int           // bound on tracked (client, registered domain) pairs (default 200000)
	// Ignore lists registered domains or suffixes ("*." prefix allowed)
	// never scored, in addition to DefaultIgnore.
	Ignore []string
	// NoDefaultIgnore drops DefaultIgnore (Ignore still applies).
	NoDefaultIgnore bool
	Learn           time.Duration // newly-seen learning period from the store's Created time (default 24h; <0 disables)
	Retention       time.Duration // newly-seen retention (default 30 days; used by callers opening the store)
	// LearnFromFirstQuery starts the learning period at the first query's
	// time instead of the store's creation: for scoring past logs, whose
	// clock is their records' timestamps ("dnsvalve score").
	LearnFromFirstQuery bool
	// Shared, when set, adds other instances' counters of each pair to its
	// score (a fleet of resolvers sharing state; see Shared). nil: this
	// instance's state only.
	Shared Shared
}

func (c *Config) defaults() error {
	if c.AlertScore == 0 {
		c.AlertScore = 0.7
	}
	if c.BlockScore == 0 {
		c.BlockScore = 0.9
	}
	if c.Window == 0 {
		c.Window = 60 * time.Second
	}
	if c.MaxPairs == 0 {
		c.MaxPairs = 200000
	}
	if c.Learn == 0 {
		c.Learn = 24 * time.Hour
	}
	if c.Retention == 0 {
		c.Retention = 30 * 24 * time.Hour
	}
	var errs []error
	if c.AlertScore < 0 || c.AlertScore > 1 || c.BlockScore < 0 || c.BlockScore > 1 {
		errs = append(errs, fmt.Errorf("alert_score %v and block_score %v must be in [0,1]", c.AlertScore, c.BlockScore))
	}
	if c.Window < time.Second {
		errs = append(errs, fmt.Errorf("window %v must be at least 1s", c.Window))
	}
	if c.MaxPairs < numShards {
		errs = append(errs, fmt.Errorf("max_pairs %d must be at least %d", c.MaxPairs, numShards))
	}
	return errors.Join(errs...)
}

// Client identifies who asked.
type Client struct {
	Addr                netip.Addr
	Name, Group, Policy string
}

// Result is the verdict for one query. Signals is shared and read-only.
type Result struct {
	Score     float64
	Signals   []string
	Alert     bool // the client's pair with Domain is in alert
	NewlySeen bool
	Domain    string // registered domain (may be a substring of the qname)
	Ignored   bool
}

// Alert is raised once per pair per window when its score crosses AlertScore.
type Alert struct {
	Time                      time.Time
	Client                    netip.Addr
	ClientName, Group, Policy string
	Domain                    string
	Score                     float64
	Signals                   []string
	Queries, Unique, Bytes    int64
	SampleNames               []string
}

// AlertSink receives alerts. Alert must not block and must be safe for
// concurrent use.
type AlertSink interface {
	Alert(a Alert)
}

// AlertFunc adapts a function to AlertSink.
type AlertFunc func(a Alert)

// Alert calls f(a).
func (f AlertFunc) Alert(a Alert) { f(a) }

var _ AlertSink = AlertFunc(nil)

// bucket is one window's worth of pair counters.
type bucket struct {
	queries, novel int32
	nx, rcodes     int32
	bytes          float32
	encBytes       float32
	encSum         float32
	bits           [4]uint64 // 256-bit linear counter of distinct subdomains
	uniq           float64   // linearCount(bits), kept current by setBit
}

// unique is the distinct-subdomain estimate of the bucket.
func (b *bucket) unique() float64 { return b.uniq }

// setBit sets bit in word w of the linear counter and refreshes uniq when
// it changed (the logarithm is computed once per new bit, not per query).
func (b *bucket) setBit(w, bit uint64) {
	if b.bits[w]&bit != 0 {
		return
	}
	b.bits[w] |= bit
	b.uniq = linearCount(&b.bits)
}

// linearCount estimates the number of distinct values hashed into the
// 256-bit map: -m ln(zeros/m).
func linearCount(b *[4]uint64) float64 {
	zeros := 256 - bits.OnesCount64(b[0]) - bits.OnesCount64(b[1]) -
		bits.OnesCount64(b[2]) - bits.OnesCount64(b[3])
	if zeros == 0 {
		zeros = 1
	}
	return -256 * math.Log(float64(zeros)/256)
}

// pair is the state of one (client, registered domain) pair. Pairs live in
// their shard's slot array; newer/older link the shard's LRU list.
type pair struct {
	key          uint64 // pairHash(addr, domain)
	addr         netip.Addr
	domain       string
	newer, older int32 // slot indexes, -1 for none
	cur, prev    bucket
	curStart     int64 // unix ns
	decAt        int64
	dNovel       float64
	dEnc         float64
	dEncBytes    float64
	dBytes       float64
	alertUntil   int64
	lastAlert    int64
	remQ, remU   float32 // other instances' window queries and unique subdomains at the last query (Shared)
	remB         float32
	newly        bool
	samples      [maxSamples]string
	nSamples     uint8
	nextSample   uint8
}

// shard is one lock's worth of the bounded pair table: an LRU of at most
// max pairs in fixed-size chunks of slots (no allocation per pair, no
// copying as it grows), indexed by the pair's 64-bit keyed hash.
type shard struct {
	mu     sync.Mutex
	index  map[uint64]int32
	chunks []*[chunkSize]pair
	n      int32 // slots in use
	newest int32 // -1 when empty
	oldest int32
	max    int
	_      [64]byte // keep neighbouring shards' locks off this cache line
}

func (s *shard) init(max int) {
	s.index = make(map[uint64]int32, min(max, 1024))
	s.newest, s.oldest, s.max = -1, -1, max
}

// peek returns the pair for (h, addr, domain) or nil, without touching
// its LRU position.
func (s *shard) peek(h uint64, addr netip.Addr, domain string) *pair {
	i, ok := s.index[h]
	if !ok {
		return nil
	}
	p := s.slot(i)
	if p.addr != addr || p.domain != domain {
		return nil // 64-bit hash collision: a different pair owns the slot
	}
	return p
}

// get is peek that marks the pair most recently used.
func (s *shard) get(h uint64, addr netip.Addr, domain string) *pair {
	i, ok := s.index[h]
	if !ok {
		return nil
	}
	p := s.slot(i)
	if p.addr != addr || p.domain != domain {
		return nil
	}
	if s.newest != i {
		s.unlink(i)
		s.pushNewest(i)
	}
	return p
}

// add inserts a fresh pair (the caller checked it is absent) and reports
// whether another pair was evicted for it: the least recently used one
// when the shard is full, or, on a 64-bit hash collision (about 1e-11 per
// full shard with a random seed), the colliding pair.
func (s *shard) add(h uint64, addr netip.Addr, domain string, t int64) (p *pair, evicted bool) {
	var i int32
	if j, ok := s.index[h]; ok {
		i, evicted = j, true
		s.unlink(i)
	} else if int(s.n) < s.max {
		if int(s.n)%chunkSize == 0 {
			s.chunks = append(s.chunks, new([chunkSize]pair))
		}
		i = s.n
		s.n++
	} else {
		i, evicted = s.oldest, true
		s.unlink(i)
		delete(s.index, s.slot(i).key)
	}
	p = s.slot(i)
	*p = pair{key: h, addr: addr, domain: domain, curStart: t, decAt: t}
	s.index[h] = i
	s.pushNewest(i)
	return p, evicted
}

// chunkSize is the number of pair slots allocated at a time.
const chunkSize = 256

func (s *shard) slot(i int32) *pair { return &s.chunks[i/chunkSize][i%chunkSize] }

func (s *shard) unlink(i int32) {
	p := s.slot(i)
	if p.newer >= 0 {
		s.slot(p.newer).older = p.older
	} else {
		s.newest = p.older
	}
	if p.older >= 0 {
		s.slot(p.older).newer = p.newer
	} else {
		s.oldest = p.newer
	}
}

func (s *shard) pushNewest(i int32) {
	p := s.slot(i)
	p.newer, p.older = -1, s.newest
	if s.newest >= 0 {
		s.slot(s.newest).newer = i
	} else {
		s.oldest = i
	}
	s.newest = i
}

// purge drops every pair and returns how many there were.
func (s *shard) purge() int {
	n := int(s.n)
	clear(s.index)
	s.chunks, s.n = nil, 0
	s.newest, s.oldest = -1, -1
	return n
}

// Detector scores queries. It is safe for concurrent use.
type Detector struct {
	cfg    Config
	store  seen.Store
	sink   AlertSink
	m      *Metrics
	log    *slog.Logger
	ignore ignoreSet
	seed   maphash.Seed
	window int64
	shards [numShards]shard
	pairs  atomic.Int64
	sigs   [128][]string
	closed atomic.Bool
	// learnTo is when the learning period of LearnFromFirstQuery ends
	// (newly seen is record-only before it), set by learnStart from the
	// first query. Otherwise learnEnd reads it off the store.
	learnTo    time.Time
	learnStart sync.Once
}

// New builds a Detector. store may be nil (no newly-seen signal), sink may
// be nil (alerts only show in Results), m may be nil (unregistered metrics).
func New(cfg Config, store seen.Store, sink AlertSink, m *Metrics, logger *slog.Logger) (*Detector, error) {
	if err := cfg.defaults(); err != nil {
		return nil, fmt.Errorf("detect: config: %w", err)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	d := &Detector{cfg: cfg, store: store, sink: sink, m: m, log: logger, seed: maphash.MakeSeed(),
		window: int64(cfg.Window)}
	if cfg.NoDefaultIgnore {
		d.ignore = newIgnoreSet(cfg.Ignore)
	} else {
		d.ignore = newIgnoreSet(DefaultIgnore, cfg.Ignore)
	}
	per := cfg.MaxPairs / numShards
	for i := range d.shards {
		d.shards[i].init(per)
	}
	for mask := range d.sigs {
		var s []string
		for i, n := range signalNames {
			if mask&(1<<i) != 0 {
				s = append(s, n)
			}
		}
		d.sigs[mask] = s
	}
	return d, nil
}

// learnEnd returns when the newly-seen learning period ends (the zero time
// without one). It counts from the store's creation, not from this start:
// a bolt file reopened after a restart, or a Redis set another fleet
// instance created, continues it (and one created more than Learn ago
// ends it at once). It is read at each first sighting, not once: a Redis
// store that did not answer at start reports its own opening until Redis
// answers, then the set's creation, so an outage at start means learning
// only while it lasts.
func (d *Detector) learnEnd() time.Time {
	switch {
	case d.cfg.Learn <= 0:
		return time.Time{}
	case d.cfg.LearnFromFirstQuery:
		return d.learnTo
	}
	return d.store.Created().Add(d.cfg.Learn)
}

// Config returns the effective configuration (defaults applied).
func (d *Detector) Config() Config { return d.cfg }

// TrackedPairs is the number of pairs currently tracked.
func (d *Detector) TrackedPairs() int { return int(d.pairs.Load()) }

// pairHash is the keyed 64-bit hash of a (client, domain) pair: the pair
// table's key, and its top bits pick the shard.
func (d *Detector) pairHash(addr netip.Addr, domain string) uint64 {
	h := maphash.String(d.seed, domain)
	a := addr.As16()
	h = (h ^ binary.LittleEndian.Uint64(a[:8])) * 0x9e3779b97f4a7c15
	h = (h ^ binary.LittleEndian.Uint64(a[8:]) ^ uint64(addr.BitLen())) * 0xc2b2ae3d27d4eb4f
	if z := addr.Zone(); z != "" {
		h ^= maphash.String(d.seed, z)
	}
	h ^= h >> 29
	h *= 0x165667b19e3779f9
	return h ^ h>>32
}

func (d *Detector) shardFor(h uint64) *shard {
	return &d.shards[h>>(64-shardBits)]
}

// Observe scores one query at time now (the caller's clock: offline scoring
// passes record timestamps). qname may have a trailing dot and any case.
func (d *Detector) Observe(now time.Time, c Client, qname string, qtype uint16) Result {
	r, a := d.observe(now, c, qname, qtype, -1)
	if a != nil && d.sink != nil {
		d.sink.Alert(*a)
	}
	return r
}

// observe is Observe returning the alert raised, if any, instead of
// handing it to the sink. An rcode >= 0 is also recorded on the pair after
// scoring, as ObserveRcode would at the same time (offline scoring knows
// it with the query).
func (d *Detector) observe(now time.Time, c Client, qname string, qtype uint16, rcode int) (Result, *Alert) {
	var f Features
	name := extractFold(qname, qtype, &f)
	res := Result{Domain: f.Registered}
	if f.Registered == "" {
		return res, nil
	}
	// Ignore entries are lower case and may be deeper than the registered
	// domain (zen.spamhaus.org): match the whole name, without case.
	if d.ignore.match(name) {
		res.Ignored = true
		d.m.Ignored.Inc()
		return res, nil
	}
	d.m.Queries.Inc()
	t := now.UnixNano()
	h := d.pairHash(c.Addr, f.Registered)
	sh := d.shardFor(h)
	sh.mu.Lock()
	p := sh.get(h, c.Addr, f.Registered)
	if p == nil {
		dom := strings.Clone(f.Registered)
		var evicted bool
		p, evicted = sh.add(h, c.Addr, dom, t)
		if evicted {
			d.pairs.Add(-1)
			d.m.Evictions.Inc()
		}
		d.m.TrackedPairs.Set(float64(d.pairs.Add(1)))
		if d.store != nil {
			if d.cfg.LearnFromFirstQuery && d.cfg.Learn > 0 {
				d.learnStart.Do(func() { d.learnTo = now.Add(d.cfg.Learn) })
			}
			first, err := d.store.FirstSeen(context.Background(), dom, now)
			switch {
			case err != nil:
				d.m.SeenErrors.Inc()
				d.log.Debug("newly seen store", "domain", dom, "err", err)
			case first && now.Before(d.learnEnd()):
				// learning: recorded, not reported
			case first:
				res.NewlySeen, p.newly = true, true
				d.m.NewlySeen.Inc()
			}
		}
	}
	res.Domain = p.domain
	score, mask := d.update(p, t, &f, d.cfg.Shared)
	if mask != 0 && score >= signalFloor {
		res.Signals = d.sigs[mask]
	}
	res.Score = score
	var alert *Alert
	if score >= d.cfg.AlertScore {
		p.alertUntil = t + d.window
		if p.lastAlert == 0 || t-p.lastAlert >= d.window {
			p.lastAlert = t
			alert = d.buildAlert(now, c, p, score, res.Signals)
		}
	}
	res.Alert = t < p.alertUntil
	if rcode >= 0 {
		p.countRcode(rcode)
	}
	sh.mu.Unlock()
	d.m.Score.Observe(score)
	if alert != nil {
		d.m.AlertsTotal.Inc()
		for _, s := range alert.Signals {
			d.m.Alerts.WithLabelValues(s).Inc()
		}
	}
	return res, alert
}

// extractFold runs extract (lite) for the detector and returns the name
// without its trailing dot, lower-cased (a copy) when its registered
// domain has upper case and as given otherwise. Case carries no data for a
// resolver, but a client can put data in it: mixed-case base64 packs 6
// bits a character. DNS 0x20 (a forwarder's use-caps-for-id) randomises
// the case of every letter, the registered domain's too, and would make
// ordinary service names look like mixed-case base64. So a name whose
// registered domain has upper case is scored lower-cased, keeping of the
// original case only MixedCase (a label had both cases) for a subdomain
// that is encoded anyway, so a base64 payload still counts 6 bits a
// character, and Sub, for the alert samples. Case in the subdomain alone,
// under a lower-case domain, is the client's own and scored as it is (and
// costs no copy).
func extractFold(qname string, qtype uint16, f *Features) string {
	name := strings.TrimSuffix(qname, ".")
	extract(name, qtype, f, true)
	if !f.upper || !hasUpper(f.Registered) {
		return name
	}
	orig := name
	name = asciiLower(orig)
	mixed := f.MixedCase
	extract(name, qtype, f, true)
	f.upper = true
	if mixed && f.Encoded > 0 { // Encoded > 0: the full path ran, every feature is filled
		f.MixedCase = true
		f.Encoded = f.encoded()
	}
	f.entropy() // of the lower-cased Sub, before Sub takes the original case
	f.Sub = orig[:len(f.Sub)]
	return name
}

func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

// asciiLower returns s with ASCII upper-case letters lowered (other bytes
// unchanged, so the length and NonPrintable count stay), in one allocation.
func asciiLower(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	return b.String()
}

// roll advances the pair's window and decays its long-term counters to t.
func (d *Detector) roll(p *pair, t int64) {
	if el := t - p.curStart; el >= d.window {
		if el >= 2*d.window {
			p.prev = bucket{}
		} else {
			p.prev = p.cur
		}
		p.cur = bucket{}
		p.curStart = t - el%d.window
	}
	if dt := t - p.decAt; dt > 0 {
		k := math.Exp2(-float64(dt) / float64(halfLife))
		p.dNovel *= k
		p.dEnc *= k
		p.dEncBytes *= k
		p.dBytes *= k
		p.decAt = t
	}
}

// prevWeight is the weight of the pair's previous window at t: the part of
// it still inside the sliding window, in [0, 1] even when t is before the
// current window's start (a clock stepped back, records out of order).
func (d *Detector) prevWeight(p *pair, t int64) float64 {
	return min(1, max(0, 1-float64(t-p.curStart)/float64(d.window)))
}

// update adds the query to the pair and returns the pair's score and
// signals. With shared set, the fleet's counters of the pair are added to
// the local ones (shared.Record only touches memory).
func (d *Detector) update(p *pair, t int64, f *Features, shared Shared) (float64, uint8) {
	d.roll(p, t)
	cur := &p.cur
	cur.queries++
	novel := false
	var h uint64
	if f.SubLen > 0 {
		h = subHash(f.Sub)
		w, bit := (h>>6)&3, uint64(1)<<(h&63)
		if cur.bits[w]&bit == 0 && p.prev.bits[w]&bit == 0 {
			novel = true
		}
		cur.setBit(w, bit)
	}
	if novel {
		e := f.Encoded * f.bpc // payload-weighted (mixed-case base64 packs 6 bits a character)
		cur.novel++
		cur.bytes += float32(f.SubLen)
		cur.encSum += float32(e)
		cur.encBytes += float32(e * float64(f.SubLen))
		p.dNovel++
		p.dEnc += e
		p.dEncBytes += e * float64(f.SubLen)
		p.dBytes += float64(f.SubLen)
		if e >= sampleMinEnc {
			p.samples[p.nextSample] = f.Sub + "." + f.Registered
			p.nextSample = (p.nextSample + 1) % maxSamples
			if p.nSamples < maxSamples {
				p.nSamples++
			}
		}
	}

	w := d.prevWeight(p, t)
	prev := &p.prev
	encBytes := float64(cur.encBytes) + w*float64(prev.encBytes)
	bytes := float64(cur.bytes) + w*float64(prev.bytes)
	uniq := cur.unique() + w*prev.unique()
	queries := float64(cur.queries) + w*float64(prev.queries)
	dEncBytes, dBytes := p.dEncBytes, p.dBytes
	if shared != nil {
		dl := Delta{Time: t, Novel: novel, SubHash: h}
		if novel {
			dl.Bytes, dl.EncBytes = float64(f.SubLen), f.Encoded*f.bpc*float64(f.SubLen) // as counted locally
		}
		r := shared.Record(PairKey{Hash: p.key, Addr: p.addr, Domain: p.domain}, dl)
		rw := remoteWindow(&r, t, d.window)
		encBytes += rw.EncBytes
		bytes += rw.Bytes
		uniq += rw.Unique
		queries += rw.Queries
		dEncBytes += decayTo(r.DecEncBytes, r.At, t)
		dBytes += decayTo(r.DecBytes, r.At, t)
		p.remQ, p.remU, p.remB = float32(rw.Queries), float32(rw.Unique), float32(rw.Bytes)
	}
	// The pair's encodedness: byte-weighted mean over its novel names, in
	// the window or (low-and-slow) over the decayed history.
	enc := 0.0
	if bytes > 0 {
		enc = encBytes / bytes
	}
	if dBytes > 0 {
		enc = math.Max(enc, dEncBytes/dBytes)
	}
	xU := uniq / uniqueScale
	xB := math.Max(encBytes/encBytesScale, dEncBytes/decBytesScale)
	xR := queries / rateScale
	x := math.Max(xU, math.Max(xB, xR))
	v := 1 - math.Exp(-x)
	score := enc * (0.3 + 0.7*v)
	if f.QtypeWeight > 1 {
		score += 0.1 * enc * math.Min(1, f.QtypeWeight-1)
	}
	if p.newly {
		score += 0.05
	}
	if rc := float64(cur.rcodes) + w*float64(prev.rcodes); rc >= 5 && enc >= 0.5 {
		if nx := (float64(cur.nx) + w*float64(prev.nx)) / rc; nx > 0.5 {
			score += 0.05 * nx
		}
	}
	score = clamp01(score)

	var mask uint8
	if enc >= 0.5 && f.entropy() >= 3 {
		mask |= sigEntropy
	}
	if f.MaxLabel >= 40 || f.SubLen >= 100 {
		mask |= sigLabelLength
	}
	if xU >= 0.5 {
		mask |= sigUnique
	}
	if xB >= 0.5 {
		mask |= sigVolume
	}
	if f.QtypeWeight >= 1.5 {
		mask |= sigRareQtype
	}
	if xR >= 0.5 {
		mask |= sigRate
	}
	if p.newly {
		mask |= sigNewlySeen
	}
	return score, mask
}

// subHash is FNV-1a over the ASCII-lower-cased subdomain.
func subHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h ^ h>>29
}

func (d *Detector) buildAlert(now time.Time, c Client, p *pair, score float64, signals []string) *Alert {
	w := d.prevWeight(p, now.UnixNano())
	a := &Alert{
		Time: now, Client: c.Addr, ClientName: c.Name, Group: c.Group, Policy: c.Policy,
		Domain: p.domain, Score: score, Signals: signals,
		Queries: int64(math.Round(float64(p.cur.queries) + w*float64(p.prev.queries) + float64(p.remQ))),
		Unique:  int64(math.Round(p.cur.unique() + w*p.prev.unique() + float64(p.remU))),
		Bytes:   int64(math.Round(float64(p.cur.bytes) + w*float64(p.prev.bytes) + float64(p.remB))),
	}
	if a.Signals == nil {
		a.Signals = []string{}
	}
	a.SampleNames = make([]string, 0, p.nSamples)
	for i := 0; i < int(p.nSamples); i++ {
		a.SampleNames = append(a.SampleNames, p.samples[(int(p.nextSample)+maxSamples-int(p.nSamples)+i)%maxSamples])
	}
	return a
}

// ObserveRcode records the response code of a query for domain (a qname or
// a registered domain) from client, for the pair's NXDOMAIN share. It does
// not create pairs.
func (d *Detector) ObserveRcode(now time.Time, client netip.Addr, domain string, rcode int) {
	// The resolver passes Result.Domain: a tracked pair's domain is a
	// registered domain, which Extract maps to itself, so an exact hit
	// needs no feature extraction.
	name := strings.TrimSuffix(domain, ".")
	t := now.UnixNano()
	if d.countRcode(t, client, name, rcode) {
		return
	}
	var f Features
	extractFold(domain, 1, &f)
	if f.Registered != "" && f.Registered != name {
		d.countRcode(t, client, f.Registered, rcode)
	}
}

// countRcode records rcode on the pair (client, domain) if it is tracked.
func (d *Detector) countRcode(t int64, client netip.Addr, domain string, rcode int) bool {
	h := d.pairHash(client, domain)
	sh := d.shardFor(h)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	p := sh.peek(h, client, domain)
	if p == nil {
		return false
	}
	d.roll(p, t)
	p.countRcode(rcode)
	return true
}

func (p *pair) countRcode(rcode int) {
	p.cur.rcodes++
	if rcode == 3 {
		p.cur.nx++
	}
}

// Close stops the detector. The store and sink belong to the caller.
func (d *Detector) Close() error {
	if d.closed.Swap(true) {
		return ErrClosed
	}
	for i := range d.shards {
		d.shards[i].mu.Lock()
		n := d.shards[i].purge()
		d.shards[i].mu.Unlock()
		d.pairs.Add(-int64(n))
		d.m.Evictions.Add(float64(n))
	}
	d.m.TrackedPairs.Set(0)
	return nil
}
