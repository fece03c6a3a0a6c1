package lists

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeClock is a steppable clock for the manager.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// listServer serves a list whose response the test switches between modes.
type listServer struct {
	*httptest.Server
	mu       sync.Mutex
	mode     string // ok, fail, huge, empty
	body     string
	etag     string
	requests []string // If-None-Match of each request
}

func newListServer(tb testing.TB) *listServer {
	tb.Helper()
	s := &listServer{mode: "ok", body: "0.0.0.0 ads.example\n0.0.0.0 track.example\n", etag: `"v1"`}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.requests = append(s.requests, r.Header.Get("If-None-Match"))
		switch s.mode {
		case "fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "huge":
			w.Write([]byte(strings.Repeat("0.0.0.0 big.example\n", 200)))
		case "empty":
			w.Write([]byte("<html>captive portal</html>\n"))
		default:
			if r.Header.Get("If-None-Match") == s.etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Header().Set("ETag", s.etag)
			w.Write([]byte(s.body))
		}
	}))
	tb.Cleanup(s.Close)
	return s
}

func (s *listServer) set(mode, body, etag string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mode = mode
	if body != "" {
		s.body, s.etag = body, etag
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestManagerURLSource(t *testing.T) {
	srv := newListServer(t)
	cache := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	m := NewManager(cache, srv.Client(), NewMetrics(reg), quietLogger(), clock.now)
	cfg := []Config{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}, Refresh: time.Hour, MaxBytes: 1000}}
	lists, err := m.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	first := lists["ads"]
	if first.Len() != 2 {
		t.Fatalf("Len = %d, want 2", first.Len())
	}
	if mt, ok := first.Match("x.ads.example."); !ok || mt.Source != srv.URL+"/ads.txt" || mt.Line != 1 {
		t.Fatalf("Match = %+v, %v", mt, ok)
	}

	steps := []struct {
		name     string
		mode     string
		body     string
		etag     string
		result   string
		changed  bool
		wantLen  int
		wantName string
	}{
		{name: "not_modified_304", mode: "ok", result: resultNotModified, wantLen: 2, wantName: "ads.example"},
		{name: "server_error_500", mode: "fail", result: resultError, wantLen: 2, wantName: "ads.example"},
		{name: "oversized", mode: "huge", result: resultError, wantLen: 2, wantName: "ads.example"},
		{name: "empty_error_page", mode: "empty", result: resultError, wantLen: 2, wantName: "ads.example"},
		{name: "new_content", mode: "ok", body: "0.0.0.0 new.example\n", etag: `"v2"`, result: resultOK, changed: true, wantLen: 1, wantName: "new.example"},
		{name: "server_closed", mode: "closed", result: resultError, wantLen: 1, wantName: "new.example"},
	}
	prev := first
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.mode == "closed" {
				srv.Close()
			} else {
				srv.set(st.mode, st.body, st.etag)
			}
			before := testutil.ToFloat64(m.metrics.refreshes.WithLabelValues("ads", st.result))
			if _, changed := m.refreshDue(context.Background()); changed {
				t.Fatal("refreshed before the timer expired")
			}
			clock.step(time.Hour)
			lists, changed := m.refreshDue(context.Background())
			if changed != st.changed {
				t.Fatalf("changed = %v, want %v", changed, st.changed)
			}
			l := lists["ads"]
			if !st.changed && l != prev {
				t.Error("list replaced although nothing changed")
			}
			prev = l
			if l.Len() != st.wantLen {
				t.Errorf("Len = %d, want %d", l.Len(), st.wantLen)
			}
			if _, ok := l.Match(st.wantName); !ok {
				t.Errorf("Match(%q) missed", st.wantName)
			}
			if got := testutil.ToFloat64(m.metrics.refreshes.WithLabelValues("ads", st.result)); got != before+1 {
				t.Errorf("refresh_total{result=%s} = %v, want %v", st.result, got, before+1)
			}
		})
	}
	srv.mu.Lock()
	if srv.requests[1] != `"v1"` {
		t.Errorf("second request If-None-Match = %q, want \"v1\"", srv.requests[1])
	}
	srv.mu.Unlock()

	t.Run("restart_offline_uses_disk_copy", func(t *testing.T) {
		m2 := NewManager(cache, srv.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), clock.now)
		lists, err := m2.Load(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		l := lists["ads"]
		if l.Len() != 1 {
			t.Fatalf("Len = %d, want 1 (the disk copy)", l.Len())
		}
		if _, ok := l.Match("new.example"); !ok {
			t.Error("disk copy entry missing")
		}
		files, _ := filepath.Glob(filepath.Join(cache, "*"))
		if len(files) != 2 {
			t.Errorf("cache files = %q, want data + meta", files)
		}
	})

	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("promlint: %v %+v", err, problems)
	}
}

func TestManagerFileSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "list.txt")
	writeFile(t, path, "one.example\n")
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewManager(filepath.Join(dir, "cache"), nil, nil, quietLogger(), clock.now)
	cfg := []Config{{Name: "local", Category: "malware", Sources: []string{path}, Refresh: time.Minute}}
	lists, err := m.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if l := lists["local"]; l.Len() != 1 || l.Category() != "malware" || l.Name() != "local" {
		t.Fatalf("list = %s/%s len %d", l.Name(), l.Category(), l.Len())
	}

	// Run picks up a changed file once the clock passes the refresh time.
	writeFile(t, path, "one.example\ntwo.example\n")
	os.Chtimes(path, clock.now().Add(time.Second), clock.now().Add(time.Second))
	clock.step(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan map[string]*List, 1)
	done := make(chan struct{})
	go func() { m.Run(ctx, func(l map[string]*List) { changes <- l }); close(done) }()
	select {
	case l := <-changes:
		if l["local"].Len() != 2 {
			t.Errorf("after change Len = %d, want 2", l["local"].Len())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not report the change")
	}
	cancel()
	<-done

	// A deleted file keeps the last good copy.
	os.Remove(path)
	clock.step(time.Minute)
	lists, changed := m.refreshDue(context.Background())
	if changed || lists["local"].Len() != 2 {
		t.Errorf("after delete changed=%v Len=%d, want false 2", changed, lists["local"].Len())
	}
	// Dropping the list from the config removes it.
	lists, err = m.Load(context.Background(), []Config{{Name: "other", Sources: []string{filepath.Join(dir, "missing.txt")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lists["local"]; ok || lists["other"].Len() != 0 {
		t.Errorf("lists after reload = %v", lists)
	}
}

func writeFile(tb testing.TB, path, s string) {
	tb.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		tb.Fatal(err)
	}
}

func TestManagerInvalidConfig(t *testing.T) {
	tests := []struct {
		name string
		cfgs []Config
	}{
		{name: "no_name", cfgs: []Config{{Sources: []string{"a.txt"}}}},
		{name: "no_sources", cfgs: []Config{{Name: "x"}}},
		{name: "bad_format", cfgs: []Config{{Name: "x", Sources: []string{"a.txt"}, Format: "dnsmasq"}}},
		{name: "bad_scheme", cfgs: []Config{{Name: "x", Sources: []string{"ftp://h/a.txt"}}}},
		{name: "duplicate", cfgs: []Config{{Name: "x", Sources: []string{"a"}}, {Name: "x", Sources: []string{"b"}}}},
		{name: "negative_max_bytes", cfgs: []Config{{Name: "x", Sources: []string{"a"}, MaxBytes: -1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewManager("", nil, nil, quietLogger(), nil)
			if _, err := m.Load(context.Background(), tc.cfgs); !errors.Is(err, ErrConfig) {
				t.Errorf("Load error = %v, want ErrConfig", err)
			}
			if len(m.Lists()) != 0 {
				t.Error("invalid config changed the lists")
			}
		})
	}
}

func TestManagerMemoryOnly(t *testing.T) {
	srv := newListServer(t)
	path := filepath.Join(t.TempDir(), "local.txt")
	writeFile(t, path, "local.example\n")
	clock := &fakeClock{t: time.Unix(0, 0)}
	m := NewManager("", srv.Client(), nil, quietLogger(), clock.now)
	cfg := []Config{{Name: "a", Sources: []string{srv.URL, path}}}
	if _, err := m.Load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// The URL changes while the file disappears: the file's entries come
	// from its in-memory last good copy (no cache dir).
	os.Remove(path)
	srv.set("ok", "0.0.0.0 changed.example\n", `"v9"`)
	clock.step(DefaultRefresh)
	lists, changed := m.refreshDue(context.Background())
	if !changed {
		t.Fatal("no change")
	}
	l := lists["a"]
	for _, name := range []string{"changed.example", "local.example"} {
		if mt, ok := l.Match(name); !ok {
			t.Errorf("Match(%q) missed", name)
		} else if name == "local.example" && mt.Source != path {
			t.Errorf("Source = %q, want %q", mt.Source, path)
		}
	}
	if _, ok := l.Match("ads.example"); ok {
		t.Error("old URL content still present")
	}
}

// TestRestartRefusesEmptyDownload: after a restart, a source that answers
// 200 with a body that parses to nothing (an HTML error page, a captive
// portal) must not replace the last good copy on disk, whose entry count
// the cache keeps; a cache written before the count was kept counts as
// unknown and is protected too.
func TestRestartRefusesEmptyDownload(t *testing.T) {
	tests := []struct {
		name, mode string
		legacyMeta bool // drop the entry count from the cached copy's meta
	}{
		{"server_error_500", "fail", false},
		{"error_page_as_200", "empty", false},
		{"disk_copy_survived", "fail", false},
		{"error_page_as_200_legacy_meta", "empty", true},
	}
	srv := newListServer(t)
	cache := t.TempDir()
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cfg := []Config{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}, Refresh: time.Hour, MaxBytes: 1000}}
	m := NewManager(cache, srv.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), clock.now)
	lists, err := m.Load(context.Background(), cfg)
	if err != nil || lists["ads"].Len() != 2 {
		t.Fatalf("first load: %v, want 2 entries", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.legacyMeta {
				p := m.cachePath(srv.URL+"/ads.txt") + ".meta"
				raw, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				var meta map[string]any
				if err := json.Unmarshal(raw, &meta); err != nil || meta["entries"] != 2.0 {
					t.Fatalf("meta %s (%v): want an entry count of 2", raw, err)
				}
				delete(meta, "entries")
				raw, _ = json.Marshal(meta)
				if err := os.WriteFile(p, raw, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			srv.set(tc.mode, "", "")
			m2 := NewManager(cache, srv.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), clock.now)
			lists, err := m2.Load(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			l := lists["ads"]
			if l.Len() != 2 {
				t.Errorf("Len = %d, want 2 (the last good copy on disk)", l.Len())
			}
			if _, ok := l.Match("ads.example"); !ok {
				t.Error("ads.example no longer blocked")
			}
			if got := testutil.ToFloat64(m2.metrics.refreshes.WithLabelValues("ads", resultError)); got != 1 {
				t.Errorf("refresh_total{result=error} = %v, want 1", got)
			}
		})
	}
}

// TestSourceAccessKeysNotShown: a feed URL's access key (user info, query
// values) must not reach the log, the matched rule's source (query log,
// dnsvalve check) or a fetch error, while the fetch itself uses it.
func TestSourceAccessKeysNotShown(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://user:s3cret@feeds.example/list.txt?key=s3cret&fmt=hosts", "https://REDACTED@feeds.example/list.txt?fmt=REDACTED&key=REDACTED"},
		{"https://feeds.example/list.txt", "https://feeds.example/list.txt"},
		{"/etc/dnsvalve/lists/ads.txt", "/etc/dnsvalve/lists/ads.txt"},
		{"lists/a?b.txt", "lists/a?b.txt"},
	} {
		if got := redactSource(tc.in); got != tc.want {
			t.Errorf("redactSource(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	srv := newListServer(t)
	var logs bytes.Buffer
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewManager(t.TempDir(), srv.Client(), NewMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(&logs, nil)), clock.now)
	src := strings.Replace(srv.URL, "http://", "http://feeduser:s3cret@", 1) + "/ads.txt?key=s3cret"
	cfg := []Config{{Name: "ads", Sources: []string{src}, Refresh: time.Hour, MaxBytes: 1000}}
	lists, err := m.Load(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	match, ok := lists["ads"].Match("ads.example")
	if !ok {
		t.Fatal("ads.example not blocked: the fetch did not use the URL")
	}
	// A transport error (the server gone) names the URL in net/http's error.
	srv.Close()
	clock.step(2 * time.Hour)
	m.refreshDue(context.Background())
	for what, s := range map[string]string{"log": logs.String(), "match source": match.Source} {
		if strings.Contains(s, "s3cret") {
			t.Errorf("the access key is in the %s: %s", what, s)
		}
	}
	if !strings.Contains(logs.String(), "list source failed") {
		t.Errorf("no failure logged:\n%s", logs.String())
	}
}

// TestRefreshAll: a forced refresh fetches URLs before their timer,
// re-reads only changed files, reports every source, and keeps a failing
// source's last good copy.
func TestRefreshAll(t *testing.T) {
	srv := newListServer(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "local.txt")
	writeFile(t, file, "local.example\n")
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	cacheDir := t.TempDir()
	m := NewManager(cacheDir, srv.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), clock.now)
	url := srv.URL + "/feed.txt?key=s3cret"
	cfg := []Config{
		{Name: "feed", Sources: []string{url}, Refresh: 6 * time.Hour, MaxBytes: 1000},
		{Name: "local", Sources: []string{file}, MaxBytes: 1000},
	}
	if _, err := m.Load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	shown := srv.URL + "/feed.txt?key=REDACTED"
	for _, step := range []struct {
		name       string
		mode       string // the feed server's
		body, etag string
		local      string // new content of the local file, "" for none
		dropCopy   bool   // delete the feed's cached copy first
		changed    bool
		want       []SourceResult
		blocked    string // a name the feed list must now match
	}{
		{"nothing_new", "ok", "", "", "", false, false, []SourceResult{
			{List: "feed", Source: shown, Result: resultNotModified},
			{List: "local", Source: file, Result: resultNotModified}}, "ads.example"},
		{"feed_updated", "ok", "0.0.0.0 fresh-ioc.example\n", `"v2"`, "", false, true, []SourceResult{
			{List: "feed", Source: shown, Result: resultOK},
			{List: "local", Source: file, Result: resultNotModified}}, "fresh-ioc.example"},
		{"local_edited", "ok", "", "", "local.example\nlocal2.example\n", false, true, []SourceResult{
			{List: "feed", Source: shown, Result: resultNotModified},
			{List: "local", Source: file, Result: resultOK}}, "fresh-ioc.example"},
		{"feed_down", "fail", "", "", "", false, false, []SourceResult{
			{List: "feed", Source: shown, Result: resultError, Error: "fetch " + shown + ": unexpected HTTP status: 500 Internal Server Error"},
			{List: "local", Source: file, Result: resultNotModified}}, "fresh-ioc.example"},
		// Its cached copy gone, the feed is asked unconditionally: a 304
		// would leave nothing to parse.
		{"copy_gone", "ok", "", "", "", true, true, []SourceResult{
			{List: "feed", Source: shown, Result: resultOK},
			{List: "local", Source: file, Result: resultNotModified}}, "fresh-ioc.example"},
	} {
		t.Run(step.name, func(t *testing.T) {
			srv.set(step.mode, step.body, step.etag)
			if step.local != "" {
				writeFile(t, file, step.local)
				clock.step(time.Second)
			}
			if step.dropCopy {
				matches, _ := filepath.Glob(filepath.Join(cacheDir, "*.data"))
				for _, f := range matches {
					if err := os.Remove(f); err != nil {
						t.Fatal(err)
					}
				}
				if len(matches) == 0 {
					t.Fatal("no cached copy to remove")
				}
			}
			lists, changed, got := m.RefreshAll(context.Background())
			if changed != step.changed {
				t.Errorf("changed = %v, want %v", changed, step.changed)
			}
			if !slices.Equal(got, step.want) {
				t.Errorf("results\n%+v\nwant\n%+v", got, step.want)
			}
			if _, ok := lists["feed"].Match(step.blocked); !ok {
				t.Errorf("feed list does not match %s", step.blocked)
			}
		})
	}
	// Every way a source can fail names it redacted: its cached copy gone
	// and the feed down, the error is about the missing copy.
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "*.data"))
	for _, f := range matches {
		_ = os.Remove(f)
	}
	srv.set("fail", "", "")
	writeFile(t, file, "local.example\n")
	_, _, got := m.RefreshAll(context.Background())
	for _, r := range got {
		if strings.Contains(r.Error, "s3cret") || strings.Contains(r.Source, "s3cret") {
			t.Errorf("access key shown: %+v", r)
		}
	}
}

// gatedFeed serves a list whose body the test sets, and holds the
// requests it is told to (by number, from 1) until released.
type gatedFeed struct {
	*httptest.Server
	mu      sync.Mutex
	n       int
	body    string
	hold    map[int]bool
	entered chan int      // a held request's number, once it is held
	release chan struct{} // closed to let held requests answer
	// busy, when set, counts requests in flight across feeds.
	busy *inFlight
}

// inFlight counts requests in flight and the most seen at once.
type inFlight struct{ now, max atomic.Int32 }

func (b *inFlight) enter() {
	n := b.now.Add(1)
	for m := b.max.Load(); n > m && !b.max.CompareAndSwap(m, n); m = b.max.Load() {
	}
}

func newGatedFeed(t *testing.T, body string, hold ...int) *gatedFeed {
	f := &gatedFeed{body: body, hold: map[int]bool{}, entered: make(chan int, len(hold)), release: make(chan struct{})}
	for _, n := range hold {
		f.hold[n] = true
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.n++
		n, held := f.n, f.hold[f.n]
		f.mu.Unlock()
		if f.busy != nil {
			f.busy.enter()
			defer f.busy.now.Add(-1)
		}
		if held {
			f.entered <- n
			select {
			case <-f.release:
			case <-r.Context().Done():
				return
			}
		}
		f.mu.Lock()
		body := f.body
		f.mu.Unlock()
		w.Write([]byte(body))
	}))
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
		f.Close()
	})
	return f
}

func (f *gatedFeed) setBody(b string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body = b
}

// TestReloadDuringRefreshDownload: a config reload (Load) does not wait
// for a refresh's download, however long the feed takes; when the
// download lands, it is applied to a list the reload left as it was and
// discarded for one the reload replaced (which the reload loaded itself).
func TestReloadDuringRefreshDownload(t *testing.T) {
	for _, tc := range []struct {
		name       string
		reloadFeed Config // the feed list's config in the reload
		wantCat    string // the feed list's category afterwards
		wantResult []string
		wantEntry  string // the feed entry in force after the refresh
	}{
		// The refresh's download (v3) applies to a list the reload kept.
		{"feed_unchanged", Config{Name: "feed", Refresh: time.Hour, MaxBytes: 1000}, "feed",
			[]string{"feed:ok", "local:not_modified"}, "v3.example"},
		// A list the reload replaced keeps the reload's download (v2)
		// and is refreshed again at once.
		{"feed_replaced", Config{Name: "feed", Category: "malware", Refresh: time.Hour, MaxBytes: 1000}, "malware",
			[]string{"local:not_modified"}, "v2.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Request 1 is the first load; 2 is the refresh's, held.
			feed := newGatedFeed(t, "0.0.0.0 v1.example\n", 2)
			dir := t.TempDir()
			local := filepath.Join(dir, "local.txt")
			writeFile(t, local, "local.example\n")
			cacheDir := t.TempDir()
			m := NewManager(cacheDir, feed.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), nil)
			cfg := []Config{
				{Name: "feed", Sources: []string{feed.URL + "/feed.txt"}, Refresh: time.Hour, MaxBytes: 1000},
				{Name: "local", Sources: []string{local}, MaxBytes: 1000},
			}
			if _, err := m.Load(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			type refreshed struct {
				lists   map[string]*List
				results []SourceResult
			}
			done := make(chan refreshed)
			go func() {
				lists, _, results := m.RefreshAll(context.Background())
				done <- refreshed{lists, results}
			}()
			<-feed.entered // the refresh is downloading

			// The reload edits the local list (and maybe the feed's
			// config) while the download hangs: it must finish.
			feed.setBody("0.0.0.0 v2.example\n")
			writeFile(t, local, "local.example\nlocal2.example\n")
			fc := tc.reloadFeed
			fc.Sources = cfg[0].Sources
			reloaded := make(chan error)
			go func() {
				_, err := m.Load(context.Background(), []Config{fc, cfg[1]})
				reloaded <- err
			}()
			select {
			case err := <-reloaded:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Load waited for a refresh's download")
			}
			if _, ok := m.Lists()["local"].Match("local2.example"); !ok {
				t.Error("the reload's edit of the local list is not in force")
			}

			feed.setBody("0.0.0.0 v3.example\n") // what the held request answers
			close(feed.release)
			r := <-done
			var got []string
			for _, sr := range r.results {
				got = append(got, sr.List+":"+sr.Result)
			}
			if !slices.Equal(got, tc.wantResult) {
				t.Errorf("results %v, want %v", got, tc.wantResult)
			}
			l := r.lists["feed"]
			if l.Category() != tc.wantCat {
				t.Errorf("feed category %q, want %q", l.Category(), tc.wantCat)
			}
			if _, ok := l.Match(tc.wantEntry); !ok {
				t.Errorf("feed list does not match %s", tc.wantEntry)
			}
			// Either way the next timer round has the feed's latest.
			lists, _ := m.refreshDue(context.Background())
			if tc.wantEntry != "v3.example" {
				if _, ok := lists["feed"].Match("v3.example"); !ok {
					t.Error("the replaced list was not refreshed again at once")
				}
			}
			if _, ok := r.lists["local"].Match("local2.example"); !ok {
				t.Error("the refresh undid the reload's local list")
			}
			// A discarded download leaves no spool file behind.
			left, _ := filepath.Glob(filepath.Join(cacheDir, ".tmp-*"))
			if len(left) > 0 {
				t.Errorf("spool files left: %v", left)
			}
		})
	}
}

// TestDownloadsAtOnce: the first load and a refresh download URL sources
// side by side, so one slow feed does not hold the others back.
func TestDownloadsAtOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		held int // the request held: 1 is the first load's, 2 the refresh's
	}{{"load", 1}, {"refresh", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			var feeds []*gatedFeed
			var cfg []Config
			busy := &inFlight{}
			entered, release := make(chan int, maxDownloads+1), make(chan struct{})
			for i := range maxDownloads + 1 {
				f := newGatedFeed(t, fmt.Sprintf("0.0.0.0 feed%d.example\n", i), tc.held)
				f.busy, f.entered, f.release = busy, entered, release
				feeds = append(feeds, f)
				cfg = append(cfg, Config{Name: fmt.Sprintf("feed%d", i), Sources: []string{f.URL + "/list.txt"}, MaxBytes: 1000})
			}
			m := NewManager(t.TempDir(), nil, NewMetrics(prometheus.NewRegistry()), quietLogger(), nil)
			done := make(chan []SourceResult)
			go func() {
				_, err := m.Load(context.Background(), cfg)
				if err != nil {
					t.Error(err)
				}
				var results []SourceResult
				if tc.held == 2 {
					_, _, results = m.RefreshAll(context.Background())
				}
				done <- results
			}()
			// maxDownloads requests are in flight before any is answered,
			// and never more: the last feed waits for a free slot.
			for range maxDownloads {
				select {
				case <-entered:
				case <-time.After(30 * time.Second):
					t.Fatalf("fewer than %d feeds were asked side by side", maxDownloads)
				}
			}
			// The fifth must not start while four are held. A correct
			// limit never fails this; without one, the fifth request
			// arrives within microseconds, well inside the grace.
			select {
			case <-entered:
				t.Fatalf("a download started while %d were in flight", maxDownloads)
			case <-time.After(200 * time.Millisecond):
			}
			close(release)
			for _, r := range <-done {
				if r.Result != resultOK {
					t.Errorf("%+v", r)
				}
			}
			if n := busy.max.Load(); n != maxDownloads {
				t.Errorf("%d downloads in flight at most, want %d", n, maxDownloads)
			}
			for i := range feeds {
				name := fmt.Sprintf("feed%d", i)
				if _, ok := m.Lists()[name].Match(name + ".example"); !ok {
					t.Errorf("list %s lacks its entry", name)
				}
			}
		})
	}
}

// TestLoadDurationIsPerList: a list's load duration counts its own
// downloads and parsing, not those of the lists refreshed with it.
func TestLoadDurationIsPerList(t *testing.T) {
	feed := newGatedFeed(t, "0.0.0.0 v1.example\n", 2) // the refresh's request is held
	local := filepath.Join(t.TempDir(), "local.txt")
	writeFile(t, local, "local.example\n")
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	m := NewManager(t.TempDir(), feed.Client(), NewMetrics(reg), quietLogger(), clock.now)
	cfg := []Config{
		{Name: "feed", Sources: []string{feed.URL + "/feed.txt"}, Refresh: time.Hour, MaxBytes: 1000},
		{Name: "local", Sources: []string{local}, MaxBytes: 1000},
	}
	if _, err := m.Load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	sum := func(list string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "dnsvalve_lists_load_duration_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == list {
					return m.GetHistogram().GetSampleSum()
				}
			}
		}
		t.Fatalf("no load duration for %s", list)
		return 0
	}
	feedBefore, localBefore := sum("feed"), sum("local")
	done := make(chan struct{})
	go func() {
		m.RefreshAll(context.Background())
		close(done)
	}()
	<-feed.entered
	clock.step(10 * time.Minute) // the feed takes ten minutes
	close(feed.release)
	<-done
	if d := sum("local") - localBefore; d != 0 {
		t.Errorf("the local list's load duration grew by %v s: it counts the feed's download", d)
	}
	if d := sum("feed") - feedBefore; d != 600 {
		t.Errorf("the feed list's load duration grew by %v s, want 600 (its download)", d)
	}
}
