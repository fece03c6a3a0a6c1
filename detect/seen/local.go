package seen

import (
	"strings"
	"sync"
	"time"
)

// localSet is the domains a store knows in memory -> last seen (unix ns):
// the whole "memory:" store, and a "redis://" store's local copy. It is
// bounded by maxDomains (0: no bound). Domains asked for once are kept
// apart from those asked for again: a full set evicts from the first, so
// a flood's names (each asked for once) replace each other and the
// domains the network keeps using stay. Expired domains are swept in the
// background (sweeper) every retention/8, and at most once a minute while
// the set is full.
//
// Its methods are called under the store's lock, mu, which the background
// sweep takes too; stop (called under mu) reports that the store closed.
type localSet struct {
	mu         *sync.Mutex
	stop       func() bool
	retention  int64
	maxDomains int

	once, again map[string]int64
	nextSweep   int64
	fullSweep   int64 // earliest next sweep while full
	sweeps      sweeper
}

func newLocalSet(mu *sync.Mutex, stop func() bool, retention time.Duration, maxDomains int, opened time.Time) localSet {
	return localSet{mu: mu, stop: stop, retention: int64(retention), maxDomains: max(maxDomains, 0),
		once: map[string]int64{}, again: map[string]int64{}, nextSweep: opened.Add(retention / 8).UnixNano()}
}

// size is how many domains the set holds.
func (k *localSet) size() int { return len(k.once) + len(k.again) }

// full reports whether the set is at its bound.
func (k *localSet) full() bool { return k.maxDomains > 0 && k.size() >= k.maxDomains }

// sweepIfDue starts the periodic sweep when it is due at t.
func (k *localSet) sweepIfDue(t int64) {
	if t >= k.nextSweep {
		k.sweep(t)
	}
}

// sweep starts deleting, in the background, the domains not seen within
// the retention before t, and reports whether it did (not while another
// sweep runs: the next call tries again).
func (k *localSet) sweep(t int64) bool {
	_, started := k.sweeps.start(k.mu, t-k.retention, k.stop, k.once, k.again)
	if started {
		k.nextSweep = t + k.retention/8
	}
	return started
}

// find returns the key domain is stored under and its last-seen time, and
// whether the set knows it. A domain asked for once moves to the domains
// asked for again: it is being asked for again.
func (k *localSet) find(domain string) (key string, last int64, ok bool) {
	if last, ok = k.again[domain]; ok {
		return domain, last, true
	}
	if last, ok = k.once[domain]; ok {
		delete(k.once, domain)
		key = strings.Clone(domain)
		k.again[key] = last
		return key, last, true
	}
	return "", 0, false
}

// touch sets the last-seen time of key, as find returned it.
func (k *localSet) touch(key string, t int64) { k.again[key] = t }

// add records domain, which the set does not know, as asked for once and
// returns the key it is stored under. Call makeRoom first.
func (k *localSet) add(domain string, t int64) string {
	key := strings.Clone(domain)
	k.once[key] = t
	return key
}

// hasRoom reports whether the set has room for one more domain. When it
// is full it starts a sweep of the expired ones (at most once a minute),
// which frees room in the background, and reports false.
func (k *localSet) hasRoom(t int64) bool {
	if !k.full() {
		return true
	}
	if t >= k.fullSweep && k.sweep(t) {
		k.fullSweep = t + int64(time.Minute)
	}
	return false
}

// makeRoom makes room for one more domain when the set is full: in the
// place of an expired one found among a few (dropExpired), else of a
// random one (the first in map order) asked for once, or when there is
// none of those, asked for again. It reports whether it evicted a domain
// still within the retention (the caller counts it).
func (k *localSet) makeRoom(t int64) bool {
	cut := t - k.retention
	if k.hasRoom(t) || dropExpired(k.once, cut) || dropExpired(k.again, cut) {
		return false
	}
	set := k.once
	if len(set) == 0 {
		set = k.again
	}
	for d := range set {
		delete(set, d)
		break
	}
	return true
}

// learn records a domain the fleet saw at t: a known one keeps the later
// time, where it is; an unknown one is added as asked for once, while
// there is room (the domains this instance is asked for keep their place:
// pulled ones would only churn the set). d must not alias a buffer.
func (k *localSet) learn(d string, t, now int64) {
	for _, set := range [2]map[string]int64{k.again, k.once} {
		if l, ok := set[d]; ok {
			set[d] = max(l, t)
			return
		}
	}
	if k.hasRoom(now) {
		k.once[d] = t
	}
}

// drop forgets every domain (the store closed).
func (k *localSet) drop() { k.once, k.again = nil, nil }

// dropExpired deletes a domain of set last seen before cut, looking at
// the first dropProbes in map order (random), and reports whether it found
// one. A full set tries it before evicting a live domain: a sweep frees
// the expired ones in the background, and until it has, one found here
// saves a live domain, an eviction counted and a needless "full" warning.
// With half the set still expired, all the probes miss with probability
// 2^-32.
func dropExpired(set map[string]int64, cut int64) bool {
	n := 0
	for d, l := range set {
		if l < cut {
			delete(set, d)
			return true
		}
		if n++; n == dropProbes {
			break
		}
	}
	return false
}

// dropProbes is how many domains dropExpired looks at (~1 µs).
const dropProbes = 32
