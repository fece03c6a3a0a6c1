package detect

import (
	"bufio"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
)

// builtinNames stand in for the legit list when it is absent: the shapes a
// resolver answers most (apex, www, API hosts, multi-label cloud names).
var builtinNames = []string{
	"www.example.com", "example.com", "api.service.example.co.uk", "www.google.com", "google.com",
	"fonts.gstatic.com", "login.microsoftonline.com", "events.data.microsoft.com", "github.com",
	"api.github.com", "s3.us-east-1.amazonaws.com", "sts.amazonaws.com", "ocsp.digicert.com",
	"time.apple.com", "connectivitycheck.gstatic.com", "www.wikipedia.org", "cdn.jsdelivr.net",
	"registry-1.docker.io", "auth.docker.io", "update.googleapis.com", "graph.facebook.com",
	"edge.skype.com", "config.edge.skype.com", "slack.com", "wss-primary.slack.com", "zoom.us",
	"api.stripe.com", "www.bbc.co.uk", "mail.google.com", "clients4.google.com",
}

// realisticQueries builds n queries as a resolver sees them: names drawn
// (Zipf) from the legit list when present, else builtinNames, A/AAAA/HTTPS,
// from 256 clients, with 1% long encoded tunnel names.
func realisticQueries(tb testing.TB, n int) []benchQuery {
	tb.Helper()
	names := builtinNames
	if f, err := os.Open(legitList); err == nil {
		var l []string
		sc := bufio.NewScanner(f)
		for sc.Scan() && len(l) < 50000 {
			if s := strings.TrimSpace(sc.Text()); s != "" && !strings.HasPrefix(s, "#") {
				l = append(l, s)
			}
		}
		f.Close()
		if len(l) > 0 {
			names = l
		}
	}
	var tunnel []corpus.Query
	for _, s := range corpus.Tunnels(9, 1) {
		if !s.Slow {
			tunnel = append(tunnel, s.Queries...)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(r, 1.1, 1, uint64(len(names)-1))
	types := [...]uint16{1, 28, 1, 28, 65}
	qs := make([]benchQuery, n)
	for i := range qs {
		c := Client{Addr: netip.AddrFrom4([4]byte{10, 1, 0, byte(r.IntN(256))})}
		if r.IntN(100) == 0 {
			q := tunnel[r.IntN(len(tunnel))]
			qs[i] = benchQuery{c, q.Name + ".", q.Qtype}
			continue
		}
		qs[i] = benchQuery{c, names[zipf.Uint64()] + ".", types[r.IntN(len(types))]}
	}
	return qs
}

type benchQuery struct {
	c     Client
	name  string
	qtype uint16
}

// BenchmarkObserveRealistic is the figure that matters for the server:
// Observe on a resolver's everyday mix at 10k queries/s.
func BenchmarkObserveRealistic(b *testing.B) {
	d, err := New(Config{}, nil, nil, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	qs := realisticQueries(b, 1<<16)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x := &qs[i&(len(qs)-1)]
		d.Observe(t0.Add(time.Duration(i)*100*time.Microsecond), x.c, x.name, x.qtype)
		i++
	}
}

func TestObserveAllocatesNothing(t *testing.T) {
	d, _, _ := newTestDetector(t, Config{}, nil)
	qs := realisticQueries(t, 256)
	for _, q := range qs { // create the pairs
		d.Observe(t0, q.c, q.name, q.qtype)
	}
	i := 0
	n := testing.AllocsPerRun(1000, func() {
		q := &qs[i%len(qs)]
		d.Observe(t0.Add(time.Duration(i)*time.Millisecond), q.c, q.name, q.qtype)
		d.ObserveRcode(t0.Add(time.Duration(i)*time.Millisecond), q.c.Addr, q.name, 0)
		i++
	})
	if n != 0 {
		t.Errorf("Observe+ObserveRcode on tracked pairs allocate %v times per call", n)
	}
}

// TestObserveRcodeDomainOrName checks that ObserveRcode given the
// registered domain (as the resolver passes Result.Domain) and given the
// qname count the same.
func TestObserveRcodeDomainOrName(t *testing.T) {
	byDomain, _, _ := newTestDetector(t, Config{}, nil)
	byName, _, _ := newTestDetector(t, Config{}, nil)
	s := corpus.Tunnels(21, 1)[2]
	for _, q := range s.Queries {
		now := t0.Add(q.At)
		c := Client{Addr: s.Client}
		a, b := byDomain.Observe(now, c, q.Name, q.Qtype), byName.Observe(now, c, q.Name, q.Qtype)
		if a.Score != b.Score || a.Alert != b.Alert {
			t.Fatalf("%s: by domain %+v, by name %+v", q.Name, a, b)
		}
		rc := 0
		if q.NX {
			rc = 3
		}
		byDomain.ObserveRcode(now, s.Client, a.Domain+".", rc)
		byName.ObserveRcode(now, s.Client, strings.ToUpper(q.Name), rc)
	}
}
