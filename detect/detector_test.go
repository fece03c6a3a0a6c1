package detect

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
	"github.com/dnsvalve/dnsvalve/detect/seen"
	"github.com/dnsvalve/dnsvalve/internal/redistest"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type alertRecorder struct {
	mu     sync.Mutex
	alerts []Alert
}

func (r *alertRecorder) Alert(a Alert) {
	r.mu.Lock()
	r.alerts = append(r.alerts, a)
	r.mu.Unlock()
}

func (r *alertRecorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.alerts)
}

func newTestDetector(tb testing.TB, cfg Config, store seen.Store) (*Detector, *alertRecorder, *prometheus.Registry) {
	tb.Helper()
	reg := prometheus.NewRegistry()
	rec := &alertRecorder{}
	d, err := New(cfg, store, rec, NewMetrics(reg), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d, rec, reg
}

func TestExtract(t *testing.T) {
	tests := []struct {
		name, qname       string
		qtype             uint16
		registered, sub   string
		badTLD, mixedCase bool
		minEnc, maxEnc    float64
	}{
		{"plain", "www.example.com.", 1, "example.com", "www", false, false, 0, 0},
		{"apex", "example.co.uk", 1, "example.co.uk", "", false, false, 0, 0},
		{"public_suffix_only", "co.uk", 1, "co.uk", "", false, false, 0, 0},
		{"k8s_search_path", "api.example.com.default.svc.cluster.local.", 1, "cluster.local", "api.example.com.default.svc", true, false, 0, 0.05},
		{"ec2_internal", "ip-10-0-0-1.ec2.internal", 1, "ec2.internal", "ip-10-0-0-1", true, false, 0, 0},
		{"dkim", "selector1._domainkey.example.com", 16, "example.com", "selector1._domainkey", false, false, 0, 0.1},
		{"acme", "_acme-challenge.www.example.com", 16, "example.com", "_acme-challenge.www", false, false, 0, 0.1},
		{"service_words", "9-prod-dynamite-prod-09-us-signaler-pa.clients6.google.com", 1, "google.com", "9-prod-dynamite-prod-09-us-signaler-pa.clients6", false, false, 0, 0.3},
		{"dnscat2_hex", "dnscat.3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1.t.evil.com", 16, "evil.com", "", false, false, 0.8, 1},
		{"dnstt_base32", "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpjqwez3bmfrggzdfmztwq2l.t.evil.net", 16, "evil.net", "", false, false, 0.8, 1},
		{"base64_mixed_case", "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Qgb2YgYmFzZTY0.ZW5jb2Rpbmc.t.evil.io", 16, "evil.io", "", false, true, 0.8, 1},
		{"uuid_halved", "123e4567-e89b-12d3-a456-426614174000.events.example.com", 1, "example.com", "", false, false, 0, 0.45},
		{"unknown_tld", "foo.bar.notatld", 1, "bar.notatld", "foo", true, false, 0, 0},
		{"ip_literal", "10.0.0.1", 1, "0.1", "10.0", true, false, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var f Features
			Extract(tc.qname, tc.qtype, &f)
			if f.Registered != tc.registered {
				t.Errorf("Registered = %q, want %q", f.Registered, tc.registered)
			}
			if tc.sub != "" && f.Sub != tc.sub {
				t.Errorf("Sub = %q, want %q", f.Sub, tc.sub)
			}
			if f.BadTLD != tc.badTLD || f.MixedCase != tc.mixedCase {
				t.Errorf("BadTLD, MixedCase = %v, %v; want %v, %v", f.BadTLD, f.MixedCase, tc.badTLD, tc.mixedCase)
			}
			if f.Encoded < tc.minEnc || f.Encoded > tc.maxEnc {
				t.Errorf("Encoded = %.2f, want in [%.2f, %.2f]", f.Encoded, tc.minEnc, tc.maxEnc)
			}
		})
	}
}

func TestExtractAllocatesNothing(t *testing.T) {
	var f Features
	n := testing.AllocsPerRun(100, func() {
		Extract("mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpjqwez.t.example.co.uk.", 16, &f)
	})
	if n != 0 {
		t.Errorf("Extract allocates %v times per call", n)
	}
}

func TestSingleEncodedNameDoesNotAlert(t *testing.T) {
	tests := []struct {
		name, qname string
		qtype       uint16
	}{
		{"dnscat2_like", "3f2a1b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b1c2.e3f4.evil.com", 16},
		{"base32_null", "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpjqwez3bmfrggzdfmztwq2l.t.evil.net", 10},
		{"base64_private", "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Qgb2YgYmFzZTY0ZW5jb2Rpbmc.t.evil.io", 65399},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := seen.Open("memory:", 0, func() time.Time { return t0.Add(-48 * time.Hour) })
			d, rec, _ := newTestDetector(t, Config{}, st)
			r := d.Observe(t0, Client{Addr: netip.MustParseAddr("10.0.0.1")}, tc.qname, tc.qtype)
			if r.Alert || rec.len() != 0 || r.Score >= 0.7 {
				t.Errorf("one query alerted: %+v", r)
			}
			if !r.NewlySeen {
				t.Errorf("first query of a domain after the learn period is not newly seen")
			}
		})
	}
}

func TestSessionAlertsOncePerWindow(t *testing.T) {
	d, rec, reg := newTestDetector(t, Config{}, nil)
	c := Client{Addr: netip.MustParseAddr("10.0.0.9"), Name: "web-1", Group: "payments", Policy: "sensitive"}
	s := corpus.Tunnels(7, 1)[0] // first tool, bulk
	var alerted, results int
	for _, q := range s.Queries {
		r := d.Observe(t0.Add(q.At), c, q.Name, q.Qtype)
		if r.Alert {
			alerted++
		}
		results++
	}
	if alerted == 0 {
		t.Fatalf("no alert for a bulk %s session of %d queries", s.Kind, len(s.Queries))
	}
	// session lasts 2-5 minutes: at most one alert per 60 s window.
	maxAlerts := int(s.Duration()/time.Minute) + 1
	if n := rec.len(); n < 1 || n > maxAlerts {
		t.Errorf("%d alerts for a %v session, want 1..%d", n, s.Duration(), maxAlerts)
	}
	a := rec.alerts[0]
	if a.Domain == "" || a.ClientName != "web-1" || a.Group != "payments" || len(a.SampleNames) == 0 || len(a.SampleNames) > 5 || a.Queries == 0 || a.Unique == 0 || a.Bytes == 0 || len(a.Signals) == 0 {
		t.Errorf("alert incomplete: %+v", a)
	}
	for _, n := range a.SampleNames {
		if !strings.HasSuffix(n, a.Domain) {
			t.Errorf("sample %q not under %q", n, a.Domain)
		}
	}
	if problems, err := promlint.NewWithMetricFamilies(gather(t, reg)).Lint(); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %v", problems, err)
	}
}

func gather(tb testing.TB, reg *prometheus.Registry) []*dto.MetricFamily {
	tb.Helper()
	mf, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	return mf
}

func TestIgnored(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{Ignore: []string{"*.corp-telemetry.example", "vendor.example.com"}}, nil)
	for i, name := range []string{"e1234.dscb.akamaiedge.net", "4.3.2.1.zen.spamhaus.org", "1.0.0.10.in-addr.arpa", "x.y.vendor.example.com", "abc.corp-telemetry.example", "0123456789abcdef0123456789abcdef.avqs.mcafee.com"} {
		r := d.Observe(t0.Add(time.Duration(i)*time.Second), Client{Addr: netip.MustParseAddr("10.0.0.1")}, name, 1)
		if !r.Ignored || r.Score != 0 {
			t.Errorf("%s: %+v, want ignored", name, r)
		}
	}
	if r := d.Observe(t0, Client{Addr: netip.MustParseAddr("10.0.0.1")}, "mcafee.com", 1); r.Ignored {
		t.Errorf("parent of an ignored suffix is ignored")
	}
}

// TestIgnoreCaseInsensitive: ignore entries deeper than the registered
// domain (zen.spamhaus.org, avqs.mcafee.com, a user's *.x.example.com)
// match whatever the case of the query name (0x20 forwarders, DNSBL
// clients that upper-case names).
func TestIgnoreCaseInsensitive(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{Learn: -1, Ignore: []string{"*.telemetry.example.com"}}, nil)
	c := Client{Addr: netip.MustParseAddr("10.0.0.9")}
	tests := []struct{ name, qname string }{
		{"dnsbl_lower", "2.0.0.127.zen.spamhaus.org."},
		{"dnsbl_upper_entry_label", "2.0.0.127.ZEN.spamhaus.org."},
		{"dnsbl_all_upper", "2.0.0.127.ZEN.SPAMHAUS.ORG."},
		{"mcafee_0x20", "0.0.0.0.1.0.0.4e.14kf9xdc1bk.AvQs.mCaFeE.CoM."},
		{"user_entry_upper", "abcdef0123456789.TELEMETRY.example.com."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r := d.Observe(t0, c, tc.qname, 1); !r.Ignored {
				t.Errorf("Observe(%s).Ignored = false (domain %q, score %.3f), want true: ignore matching must not depend on case", tc.qname, r.Domain, r.Score)
			}
		})
	}
}

func random0x20(r *rand.Rand, s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'a' && c <= 'z' && r.IntN(2) == 0 {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// TestCaseRandomizationDoesNotInflateScore: DNS 0x20 (a forwarder with
// use-caps-for-id) randomizes the case of every letter. Case carries no
// data for a resolver: ordinary service names must not look like
// mixed-case base64 for it. Case a client put in the subdomain of a
// lower-case domain still counts, and a 0x20'd base64 payload stays
// encoded.
func TestCaseRandomizationDoesNotInflateScore(t *testing.T) {
	t.Run("features", func(t *testing.T) {
		r := rand.New(rand.NewPCG(1, 2))
		for _, name := range []string{
			"telemetry-collector-prod-eu-west-1.example.com.",
			"9-prod-dynamite-prod-09-us-signaler-pa.clients6.google.com.",
			"login-microsoftonline-com.trafficmanager.example.net.",
		} {
			var lo, mixed Features
			extractLower(name, 1, &lo)
			extractLower(random0x20(r, name), 1, &mixed)
			if mixed.Encoded > lo.Encoded+0.05 {
				t.Errorf("%s: Encoded %.3f lower-case, %.3f with 0x20 case", name, lo.Encoded, mixed.Encoded)
			}
		}
	})
	t.Run("session", func(t *testing.T) {
		for _, x20 := range []bool{false, true} {
			d, rec, _ := newTestDetector(t, Config{Learn: -1}, nil)
			c := Client{Addr: netip.MustParseAddr("10.0.1.7")}
			r := rand.New(rand.NewPCG(3, 4))
			alert := false
			for i := range 60 { // one page load's worth of service names, within a minute
				name := fmt.Sprintf("%d-prod-dynamite-prod-%02d-us-signaler-pa.clients6.google.com.", i%10, i)
				if x20 {
					name = random0x20(r, name)
				}
				res := d.Observe(t0.Add(time.Duration(i)*time.Second), c, name, 1)
				alert = alert || res.Alert
			}
			if alert || rec.len() > 0 {
				t.Errorf("0x20=%v: legit session alerted (%d alerts)", x20, rec.len())
			}
		}
	})
	t.Run("payload", func(t *testing.T) {
		tests := []struct {
			name, qname    string
			minEnc, maxEnc float64
		}{
			{"base64_under_lower_domain", "aGVsbG8gd29ybGQgdGhpcyBpcyBhIHRlc3Qgb2YgYmFzZTY0.ZW5jb2Rpbmc.t.evil.io.", 1, 1}, // as Extract scores it
			{"base64_behind_0x20", "AGVSBG8gD29YBGQgDGHpCYBPCYBhIHRlC3Qgb2YGYmFzZTY0.ZW5JB2RPbMc.T.EVil.IO.", 0.75, 1},
			{"uuid_behind_0x20", "123E4567-E89b-12D3-a456-426614174000.EvEnTS.exaMPlE.Com.", 0, 0.45}, // still halved
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var f Features
				name := extractLower(tc.qname, 16, &f)
				if f.Encoded < tc.minEnc || f.Encoded > tc.maxEnc {
					t.Errorf("extractLower(%s): Encoded %.3f, want in [%.2f, %.2f]", tc.qname, f.Encoded, tc.minEnc, tc.maxEnc)
				}
				if want := strings.ToLower(strings.TrimSuffix(tc.qname, ".")); name != want || f.Registered != "evil.io" && f.Registered != "example.com" {
					t.Errorf("extractLower(%s) = %q, Registered %q; want %q and a lower-case domain", tc.qname, name, f.Registered, want)
				}
				if !strings.HasPrefix(tc.qname, f.Sub+".") {
					t.Errorf("Sub %q is not the original case of %s", f.Sub, tc.qname)
				}
			})
		}
	})
}

func TestNewlySeenLearnPeriod(t *testing.T) {
	st, err := seen.Open("memory:", time.Hour, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	d, _, _ := newTestDetector(t, Config{Learn: 24 * time.Hour}, st)
	a, b := Client{Addr: netip.MustParseAddr("10.0.0.1")}, Client{Addr: netip.MustParseAddr("10.0.0.2")}
	if r := d.Observe(t0.Add(time.Hour), a, "www.learned.com", 1); r.NewlySeen {
		t.Errorf("newly seen during the learn period")
	}
	if r := d.Observe(t0.Add(25*time.Hour), a, "www.fresh.com", 1); !r.NewlySeen || r.Score == 0 && len(r.Signals) > 0 {
		t.Errorf("not newly seen after the learn period: %+v", r)
	}
	if r := d.Observe(t0.Add(25*time.Hour), b, "www.fresh.com", 1); r.NewlySeen {
		t.Errorf("second client reported newly seen again")
	}
}

// TestLearningSurvivesRestart: the learning period counts from the
// store's creation, so a bolt file reopened an hour later (restart,
// upgrade) and a second fleet instance on the same Redis set keep
// learning for the 23 hours left, then flag newly seen domains.
func TestLearningSurvivesRestart(t *testing.T) {
	tests := []struct {
		name string
		// opener returns a func opening the store: the first run's
		// creates it at t0, the second run's reopens it (or is another
		// instance's).
		opener func(t *testing.T, clock func() time.Time) func() seen.Store
	}{
		{"bolt_reopened", func(t *testing.T, clock func() time.Time) func() seen.Store {
			spec := "file:" + filepath.Join(t.TempDir(), "seen.db")
			open := func() seen.Store {
				st, err := seen.Open(spec, 0, clock)
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			return open
		}},
		{"redis_second_instance", func(t *testing.T, clock func() time.Time) func() seen.Store {
			r := redistest.Start(t)
			open := func() seen.Store {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				st, err := seen.OpenRedis(ctx, r.URL(), 0, clock, seen.RedisOptions{Sync: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			return open
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := t0
			clock := func() time.Time { return now }
			open := tc.opener(t, clock)
			c := Client{Addr: netip.MustParseAddr("10.0.2.1")}

			st := open()
			d, _, _ := newTestDetector(t, Config{Learn: 24 * time.Hour}, st)
			if r := d.Observe(now, c, "www.first.example.com.", 1); r.NewlySeen {
				t.Fatalf("first run, learning: NewlySeen = true")
			}
			d.Close()
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			now = t0.Add(time.Hour) // 23h of learning left
			st = open()
			t.Cleanup(func() { st.Close() })
			d2, _, _ := newTestDetector(t, Config{Learn: 24 * time.Hour}, st)
			if r := d2.Observe(now, c, "www.second.example.org.", 1); r.NewlySeen {
				t.Errorf("second run within the learning period: NewlySeen = true (store Created %v, Fresh %v)", st.Created(), st.Fresh())
			}
			if r := d2.Observe(t0.Add(25*time.Hour), c, "www.third.example.net.", 1); !r.NewlySeen {
				t.Errorf("second run after the learning period: NewlySeen = false (store Created %v)", st.Created())
			}
		})
	}
}

// createdStore is a store whose creation time a test moves, as a Redis
// store's moves from its opening to the fleet set's once Redis answers.
type createdStore struct {
	seen.Store
	created atomic.Int64 // unix nanos
}

func (s *createdStore) Created() time.Time { return time.Unix(0, s.created.Load()).UTC() }

// TestLearningFollowsStoreCreated: the learning period is read off the
// store at each first sighting, so a store that learns an older creation
// time (Redis was down at start) ends it then, not a full period later.
func TestLearningFollowsStoreCreated(t *testing.T) {
	mem, err := seen.Open("memory:", 0, func() time.Time { return t0 })
	if err != nil {
		t.Fatal(err)
	}
	st := &createdStore{Store: mem}
	st.created.Store(t0.UnixNano())
	d, _, _ := newTestDetector(t, Config{Learn: 24 * time.Hour}, st)
	c := Client{Addr: netip.MustParseAddr("10.0.3.1")}
	if r := d.Observe(t0.Add(time.Hour), c, "www.during-outage.example.com.", 1); r.NewlySeen {
		t.Error("newly seen while the store's creation says learning")
	}
	st.created.Store(t0.Add(-48 * time.Hour).UnixNano())
	if r := d.Observe(t0.Add(time.Hour+time.Second), c, "www.after.example.org.", 1); !r.NewlySeen {
		t.Error("not newly seen once the store reports a creation more than a learning period ago")
	}
}

func TestMaxPairsBound(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{MaxPairs: 160}, nil)
	for i := 0; i < 2000; i++ {
		d.Observe(t0, Client{Addr: netip.MustParseAddr("10.0.0.1")}, fmt.Sprintf("www.d%d.com", i), 1)
	}
	if n := d.TrackedPairs(); n > 160 {
		t.Errorf("tracked %d pairs, bound 160", n)
	}
}

func TestConcurrentObserve(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{MaxPairs: 1000}, nil)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				d.Observe(t0.Add(time.Duration(i)*time.Millisecond), Client{Addr: netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)})}, fmt.Sprintf("a%x.d%d.com", i, i%50), 16)
				d.ObserveRcode(t0, netip.AddrFrom4([4]byte{10, 0, byte(g), byte(i)}), fmt.Sprintf("d%d.com", i%50), 3)
			}
		}()
	}
	wg.Wait()
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{AlertScore: 2}, {Window: time.Millisecond}, {MaxPairs: 3}} {
		if _, err := New(cfg, nil, nil, nil, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func BenchmarkExtract(b *testing.B) {
	names := []string{"www.google.com.", "mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpjqwez.t.example.co.uk.", "api.example.com.default.svc.cluster.local."}
	var f Features
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		Extract(names[i%3], 16, &f)
		i++
	}
}

func BenchmarkObserve(b *testing.B) {
	d, err := New(Config{}, nil, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	s := append(corpus.Tunnels(3, 2), corpus.Benign(3, 1)...)
	type q struct {
		c     Client
		name  string
		qtype uint16
	}
	var qs []q
	for _, se := range s {
		for _, x := range se.Queries {
			qs = append(qs, q{Client{Addr: se.Client}, x.Name, x.Qtype})
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x := qs[i%len(qs)]
		d.Observe(t0.Add(time.Duration(i)*time.Millisecond), x.c, x.name, x.qtype)
		i++
	}
}

// TestPrevWeight: the previous window's weight stays in [0, 1], also for a
// time before the current window's start (a clock stepped back, records
// out of order in "dnsvalve score"), where it used to exceed 1 and inflate
// the score.
func TestPrevWeight(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{Learn: -1}, nil)
	p := &pair{curStart: t0.UnixNano()}
	win := d.window
	for _, tc := range []struct {
		name string
		at   int64
		want float64
	}{
		{"stepped_back", -win / 2, 1},
		{"window_start", 0, 1},
		{"half_way", win / 2, 0.5},
		{"window_end", win, 0},
		{"long_after", 3 * win, 0},
	} {
		if got := d.prevWeight(p, t0.UnixNano()+tc.at); got != tc.want {
			t.Errorf("%s: prevWeight = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSharedDeltaPayloadWeight: the delta a query sends to the fleet
// weighs its encoded bytes as the instance counts them locally (mixed-case
// base64 packs 6 bits a character), so a tunnel spread over instances
// scores as it would on one.
func TestSharedDeltaPayloadWeight(t *testing.T) {
	var got []Delta
	shared := SharedFunc(func(_ PairKey, dl Delta) Remote { got = append(got, dl); return Remote{} })
	d, _, _ := newTestDetector(t, Config{Learn: -1, Shared: shared}, nil)
	name := "aGVsbG8gV29ybGQhIFRoaXMgaXMgYSB0ZXN0IG9mIGJhc2U2NA.t.example.com."
	d.Observe(t0, Client{Addr: netip.MustParseAddr("10.0.0.7")}, name, 1)
	var f Features
	extractLower(name, 1, &f)
	if len(got) != 1 || !got[0].Novel {
		t.Fatalf("deltas %+v, want one novel", got)
	}
	if want := f.Encoded * f.bpc * float64(f.SubLen); f.bpc <= 1 || math.Abs(got[0].EncBytes-want) > 1e-9 {
		t.Errorf("delta EncBytes %v, want Encoded*bpc*SubLen = %v (bpc %v)", got[0].EncBytes, want, f.bpc)
	}
}

// TestLearnFromFirstQuery: scoring past logs ("dnsvalve score"), the
// learning period runs from the first record's time, not from the store's
// creation (now), which put every past record inside it: nothing was ever
// newly seen.
func TestLearnFromFirstQuery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fromFirst bool
		wantLater bool // the domain first seen two hours after the first record is newly seen
	}{
		{"from_first_query", true, true},
		{"from_store_creation", false, false}, // store created now, long after t0
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := seen.Open("memory:", 0, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			d, _, _ := newTestDetector(t, Config{Learn: time.Hour, LearnFromFirstQuery: tc.fromFirst}, st)
			c := Client{Addr: netip.MustParseAddr("10.0.3.1")}
			if r := d.Observe(t0, c, "www.first.example.com.", 1); r.NewlySeen {
				t.Errorf("first record, learning: NewlySeen")
			}
			if r := d.Observe(t0.Add(30*time.Minute), c, "www.second.example.net.", 1); r.NewlySeen {
				t.Errorf("30 min in, learning: NewlySeen")
			}
			if r := d.Observe(t0.Add(2*time.Hour), c, "www.third.example.org.", 1); r.NewlySeen != tc.wantLater {
				t.Errorf("2 h in: NewlySeen %v, want %v", r.NewlySeen, tc.wantLater)
			}
		})
	}
}

// extractLower is extractFold returning the whole name lower-cased.
func extractLower(qname string, qtype uint16, f *Features) string {
	name := extractFold(qname, qtype, f)
	if f.upper && hasUpper(name) {
		name = asciiLower(name)
	}
	return name
}
