// Package stats keeps a small, bounded picture of the last minutes of
// traffic for the responder without a dashboard: the busiest clients, the
// most blocked domains and the highest-scored (client, registered domain)
// pairs. It backs GET /api/v1/stats and `dnsvalve top`.
//
// Counts live in one-minute buckets (a ring of Minutes buckets); each
// bucket's tables are capped, and what does not fit is counted as "other",
// so memory stays bounded whatever the traffic.
package stats

import (
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// DefaultMinutes is how many one-minute buckets are kept.
const DefaultMinutes = 15

// maxKeys caps each table of a bucket.
const maxKeys = 10000

// scoreFloor: pairs scored below this are not tracked as "top scored".
const scoreFloor = 0.3

type pairKey struct {
	client netip.Addr
	domain string
}

type pairVal struct {
	name    string
	queries uint64
	max     float64
	alert   bool
}

type blockVal struct {
	count    uint64
	category string
}

type clientVal struct {
	name    string
	queries uint64
	blocked uint64
}

type bucket struct {
	minute  int64
	total   uint64
	other   uint64 // queries from clients that did not fit
	clients map[netip.Addr]*clientVal
	blocked map[string]*blockVal
	scored  map[pairKey]*pairVal
}

func (b *bucket) reset(minute int64) {
	b.minute = minute
	b.total, b.other = 0, 0
	clear(b.clients)
	clear(b.blocked)
	clear(b.scored)
}

// Collector accumulates the statistics. Safe for concurrent use.
type Collector struct {
	now     func() time.Time
	mu      sync.Mutex
	buckets []bucket
}

// New returns a Collector over the last minutes (DefaultMinutes when <= 0).
func New(minutes int, now func() time.Time) *Collector {
	if minutes <= 0 {
		minutes = DefaultMinutes
	}
	if now == nil {
		now = time.Now
	}
	c := &Collector{now: now, buckets: make([]bucket, minutes)}
	for i := range c.buckets {
		c.buckets[i] = bucket{minute: -1, clients: map[netip.Addr]*clientVal{}, blocked: map[string]*blockVal{}, scored: map[pairKey]*pairVal{}}
	}
	return c
}

// Record counts one finished query.
func (c *Collector) Record(req *query.Request, resp *dns.Msg) {
	minute := req.Start.Unix() / 60
	blocked := req.Info.Action == query.ActionBlock
	c.mu.Lock()
	defer c.mu.Unlock()
	b := &c.buckets[int(minute%int64(len(c.buckets)))]
	if b.minute != minute {
		b.reset(minute)
	}
	b.total++
	cv := b.clients[req.Client.Addr]
	if cv == nil {
		if len(b.clients) >= maxKeys {
			b.other++
		} else {
			cv = &clientVal{name: req.Client.Name}
			b.clients[req.Client.Addr] = cv
		}
	}
	if cv != nil {
		cv.queries++
		if blocked {
			cv.blocked++
		}
	}
	if blocked && len(req.Msg.Question) == 1 {
		name := req.Msg.Question[0].Name
		bv := b.blocked[name]
		if bv == nil && len(b.blocked) < maxKeys {
			bv = &blockVal{category: req.Info.Category}
			b.blocked[name] = bv
		}
		if bv != nil {
			bv.count++
		}
	}
	if req.Info.Domain != "" && (req.Info.Score >= scoreFloor || req.Info.Alert) {
		k := pairKey{req.Client.Addr, req.Info.Domain}
		pv := b.scored[k]
		if pv == nil && len(b.scored) < maxKeys {
			pv = &pairVal{name: req.Client.Name}
			b.scored[k] = pv
		}
		if pv != nil {
			pv.queries++
			pv.max = max(pv.max, req.Info.Score)
			pv.alert = pv.alert || req.Info.Alert
		}
	}
}

// Client is one row of the top-clients table.
type Client struct {
	Addr     string `json:"addr"`
	Workload string `json:"workload,omitempty"`
	Queries  uint64 `json:"queries"`
	Blocked  uint64 `json:"blocked"`
}

// Blocked is one row of the top-blocked-domains table.
type Blocked struct {
	Name     string `json:"name"`
	Category string `json:"category,omitempty"`
	Count    uint64 `json:"count"`
}

// Scored is one row of the top-scored-pairs table.
type Scored struct {
	Client   string  `json:"client"`
	Workload string  `json:"workload,omitempty"`
	Domain   string  `json:"domain"`
	MaxScore float64 `json:"max_score"`
	Queries  uint64  `json:"queries"`
	Alert    bool    `json:"alert"`
}

// Top is the summary of the last Minutes minutes.
type Top struct {
	Minutes int       `json:"minutes"`
	Since   time.Time `json:"since"`
	Queries uint64    `json:"queries"`
	Clients []Client  `json:"top_clients"`
	Blocked []Blocked `json:"top_blocked"`
	Scored  []Scored  `json:"top_scored"`
}

// Top returns the n biggest rows of each table over the last minutes.
func (c *Collector) Top(minutes, n int) Top {
	if minutes <= 0 || minutes > len(c.buckets) {
		minutes = len(c.buckets)
	}
	now := c.now().Unix() / 60
	first := now - int64(minutes) + 1
	clients := map[netip.Addr]*Client{}
	blocked := map[string]*Blocked{}
	scored := map[pairKey]*Scored{}
	out := Top{Minutes: minutes, Since: time.Unix(first*60, 0).UTC()}
	c.mu.Lock()
	for i := range c.buckets {
		b := &c.buckets[i]
		if b.minute < first || b.minute > now {
			continue
		}
		out.Queries += b.total
		for a, v := range b.clients {
			r := clients[a]
			if r == nil {
				r = &Client{Addr: a.String(), Workload: v.name}
				clients[a] = r
			}
			r.Queries += v.queries
			r.Blocked += v.blocked
		}
		for name, v := range b.blocked {
			r := blocked[name]
			if r == nil {
				r = &Blocked{Name: name, Category: v.category}
				blocked[name] = r
			}
			r.Count += v.count
		}
		for k, v := range b.scored {
			r := scored[k]
			if r == nil {
				r = &Scored{Client: k.client.String(), Workload: v.name, Domain: k.domain}
				scored[k] = r
			}
			r.Queries += v.queries
			r.MaxScore = max(r.MaxScore, v.max)
			r.Alert = r.Alert || v.alert
		}
	}
	c.mu.Unlock()
	for _, r := range clients {
		out.Clients = append(out.Clients, *r)
	}
	for _, r := range blocked {
		out.Blocked = append(out.Blocked, *r)
	}
	for _, r := range scored {
		out.Scored = append(out.Scored, *r)
	}
	sort.Slice(out.Clients, func(i, j int) bool {
		if out.Clients[i].Queries != out.Clients[j].Queries {
			return out.Clients[i].Queries > out.Clients[j].Queries
		}
		return out.Clients[i].Addr < out.Clients[j].Addr
	})
	sort.Slice(out.Blocked, func(i, j int) bool {
		if out.Blocked[i].Count != out.Blocked[j].Count {
			return out.Blocked[i].Count > out.Blocked[j].Count
		}
		return out.Blocked[i].Name < out.Blocked[j].Name
	})
	sort.Slice(out.Scored, func(i, j int) bool {
		if out.Scored[i].MaxScore != out.Scored[j].MaxScore {
			return out.Scored[i].MaxScore > out.Scored[j].MaxScore
		}
		return out.Scored[i].Queries > out.Scored[j].Queries
	})
	out.Clients = out.Clients[:min(n, len(out.Clients))]
	out.Blocked = out.Blocked[:min(n, len(out.Blocked))]
	out.Scored = out.Scored[:min(n, len(out.Scored))]
	return out
}
