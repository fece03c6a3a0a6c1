package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/internal/redistest"
)

// cacheHitNames is a query mix like a busy resolver's cache hits: 2,000
// clients over 500 registered domains, a few names each.
func cacheHitNames(n int) (addrs []netip.Addr, names []string) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range n {
		addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, byte(rng.IntN(8)), byte(rng.IntN(250))}))
		names = append(names, fmt.Sprintf("%s.site%d.com.", []string{"www", "api", "cdn", "img"}[rng.IntN(4)], rng.IntN(500)))
	}
	return
}

// BenchmarkObserveShared is Detector.Observe with the shared hook off and
// on (a Syncer on a real Redis, syncing every 500 ms in the background).
func BenchmarkObserveShared(b *testing.B) {
	addrs, names := cacheHitNames(4096)
	for _, mode := range []string{"off", "on", "on_redis_down"} {
		b.Run(mode, func(b *testing.B) {
			cfg := detect.Config{Window: time.Minute, Learn: -1}
			if mode != "off" {
				url := "redis://127.0.0.1:1/0" // closed loopback port: every round fails at once
				if mode == "on" {
					url = redistest.Start(b).URL()
				}
				s, err := New(Config{URL: url, Window: time.Minute}, nil, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close(context.Background()) })
				cfg.Shared = s
			}
			d, err := detect.New(cfg, nil, nil, nil, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := rand.IntN(len(names))
				for pb.Next() {
					i = (i + 1) % len(names)
					d.Observe(time.Now(), detect.Client{Addr: addrs[i]}, names[i], 1)
				}
			})
		})
	}
}

// BenchmarkRedisCost reports Redis commands per 1,000 queries (counted
// with INFO stats before and after, the INFO calls subtracted) for two
// traffic shapes, and Redis memory per tracked pair (INFO memory
// used_memory delta over 100,000 pairs).
func BenchmarkRedisCost(b *testing.B) {
	for _, tc := range []struct {
		name  string
		pairs int // distinct (client, domain) pairs in the traffic
		qps   int // queries per sync round
	}{
		{"busy_pairs", 50, 1000},
		{"sparse_pairs", 5000, 1000},
	} {
		b.Run("ops_"+tc.name, func(b *testing.B) {
			r := redistest.Start(b)
			c := &clock{t: t0}
			s, _ := newSyncer(b, r.URL(), c, nil)
			rng := rand.New(rand.NewPCG(5, 6))
			before, _ := r.Commands()
			queries := 0
			for round := 0; round < 20; round++ {
				at := t0.Add(time.Duration(round) * 500 * time.Millisecond)
				c.set(at)
				for range tc.qps {
					p := rng.IntN(tc.pairs)
					s.Record(detect.PairKey{Hash: uint64(p)*0x9e3779b97f4a7c15 + 1, Addr: netip.AddrFrom4([4]byte{10, 1, byte(p >> 8), byte(p)}), Domain: "d.example"},
						detect.Delta{Time: at.UnixNano(), Novel: rng.IntN(4) == 0, SubHash: rng.Uint64(), Bytes: 20, EncBytes: 5})
					queries++
				}
				syncNow(b, s)
			}
			after, _ := r.Commands()
			b.ReportMetric(float64(after-before-1)*1000/float64(queries), "redis-ops/1000q")
			for range b.N {
			}
		})
	}
	b.Run("memory_100k_pairs", func(b *testing.B) {
		r := redistest.Start(b)
		c := &clock{t: t0}
		s, _ := newSyncer(b, r.URL(), c, nil)
		before, _ := r.Info("memory", "used_memory")
		const n = 100000
		for p := range n {
			s.Record(detect.PairKey{Hash: uint64(p)*0x9e3779b97f4a7c15 + 1, Addr: netip.AddrFrom4([4]byte{10, byte(p >> 16), byte(p >> 8), byte(p)}), Domain: fmt.Sprintf("site%d.example", p%1000)},
				detect.Delta{Time: t0.UnixNano(), Novel: true, SubHash: uint64(p) + 1, Bytes: 20, EncBytes: 5})
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		s.Sync(ctx)
		cancel()
		if !s.Up() {
			b.Fatal("sync failed")
		}
		after, _ := r.Info("memory", "used_memory")
		keys, _ := r.Do("DBSIZE")
		b.ReportMetric(float64(after-before)/n, "redis-bytes/pair")
		b.Logf("100k pairs: used_memory +%d bytes, DBSIZE %s", after-before, keys)
		for range b.N {
		}
	})
}
