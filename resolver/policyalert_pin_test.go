package resolver

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestPolicyAlertsDoNotPinLists: the dedup key keeps info.Rule, which
// lists.Match returns as a substring of the list's text of all its
// decorated rules ("||name^"). A remembered key must not keep a list a
// refresh replaced alive: the keys have no expiry (only LRU eviction at
// 100,000), so every refreshed generation with one alert would stay.
func TestPolicyAlertsDoNotPinLists(t *testing.T) {
	p := NewPolicyAlerts([]query.Action{query.ActionBlock}, time.Hour, func(querylog.Alert) {}, nil)
	before := heapInUse()
	func() {
		var sb strings.Builder
		for i := range 400_000 {
			fmt.Fprintf(&sb, "||d%d.blocked-by-the-feed.example^\n", i)
		}
		b := lists.NewBuilder()
		if _, err := lists.Parse(strings.NewReader(sb.String()), "feed.txt", lists.FormatAuto, b); err != nil {
			t.Fatal(err)
		}
		l := b.Build("malware", "malware")
		m, ok := l.Match("d7.blocked-by-the-feed.example.")
		if !ok {
			t.Fatal("no match")
		}
		p.Observe(&query.Request{Msg: new(dns.Msg).SetQuestion("d7.blocked-by-the-feed.example.", dns.TypeA),
			Start: time.Now(), Client: query.Client{Addr: netip.MustParseAddr("10.0.0.1")},
			Info: query.Info{Action: query.ActionBlock, List: "malware", Category: "malware", Rule: m.Rule, Source: m.Source, Line: m.Line}}, nil, 0)
	}()
	// The list is gone (a refresh replaced it); only p remains.
	after := heapInUse()
	runtime.KeepAlive(p)
	if grown := int64(after) - int64(before); grown > 4<<20 {
		t.Errorf("%.1f MB still in use after the list was dropped: the remembered alert key pins it", float64(grown)/(1<<20))
	}
}
