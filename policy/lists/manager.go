package lists

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dnsvalve/dnsvalve/internal/redact"
)

// Defaults for Config fields left zero.
const (
	DefaultRefresh  = 6 * time.Hour
	DefaultMaxBytes = 64 << 20
)

// Sentinel errors.
var (
	ErrConfig   = errors.New("invalid list config")
	ErrTooLarge = errors.New("source exceeds size cap")
	ErrStatus   = errors.New("unexpected HTTP status")
	// ErrEmpty means a source that used to have entries came back with
	// none (an error page served as 200, a truncated file): it is treated
	// as a failure so the last good copy stays.
	ErrEmpty = errors.New("source parsed to zero entries")
)

// Config is one named list as configured.
type Config struct {
	Name     string
	Category string        // defaults to Name
	Sources  []string      // file paths or http(s) URLs
	Format   string        // default "auto" (detected per source)
	Refresh  time.Duration // 0 = 6h when any source is a URL, else never; < 0 = never
	MaxBytes int64         // size cap per source (default 64 MiB)
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// normalize validates c and fills in defaults.
func (c Config) normalize() (Config, Format, error) {
	var errs []error
	if strings.TrimSpace(c.Name) == "" {
		errs = append(errs, fmt.Errorf("%w: list without a name", ErrConfig))
	}
	if c.Category == "" {
		c.Category = c.Name
	}
	f, err := ParseFormat(c.Format)
	if err != nil {
		errs = append(errs, fmt.Errorf("%w: list %q: %w", ErrConfig, c.Name, err))
	}
	if len(c.Sources) == 0 {
		errs = append(errs, fmt.Errorf("%w: list %q has no sources", ErrConfig, c.Name))
	}
	anyURL := false
	for _, s := range c.Sources {
		switch {
		case isURL(s):
			anyURL = true
			if u, err := url.Parse(s); err != nil || u.Host == "" {
				errs = append(errs, fmt.Errorf("%w: list %q: bad URL %q", ErrConfig, c.Name, s))
			}
		case strings.Contains(s, "://"):
			errs = append(errs, fmt.Errorf("%w: list %q: unsupported source scheme %q", ErrConfig, c.Name, s))
		case strings.TrimSpace(s) == "":
			errs = append(errs, fmt.Errorf("%w: list %q: empty source", ErrConfig, c.Name))
		}
	}
	if c.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: list %q: negative max bytes", ErrConfig, c.Name))
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.Refresh == 0 && anyURL {
		c.Refresh = DefaultRefresh
	}
	return c, f, errors.Join(errs...)
}

func (c Config) equal(o Config) bool {
	return c.Name == o.Name && c.Category == o.Category && c.Format == o.Format &&
		c.Refresh == o.Refresh && c.MaxBytes == o.MaxBytes && slicesEqual(c.Sources, o.Sources)
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// sourceState is what the manager remembers about one source of one list.
type sourceState struct {
	meta    cacheMeta
	modTime time.Time // file sources
	size    int64
	entries int    // entries in the last good copy; -1 unknown (a cache written before the count was kept)
	good    bool   // a last good copy exists (memory or disk)
	mem     []byte // last good copy, kept only when it could not be written to disk
}

// cacheMeta is stored next to each cached copy.
type cacheMeta struct {
	Source       string    `json:"source"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	Fetched      time.Time `json:"fetched"`
	// Entries is how many entries the copy parsed to, so that a download
	// that parses to none is refused after a restart too (nil in caches
	// written before it was kept).
	Entries *int `json:"entries,omitempty"`
}

type listState struct {
	cfg     Config
	format  Format
	list    *List
	next    time.Time // next refresh; zero = never
	sources map[string]*sourceState
}

// Manager loads every configured list, keeps each source's last good copy
// on disk in cacheDir, refreshes URL/file sources on their timers, and
// calls onChange after a list changed.
//
// A failing source never empties its list: the list keeps the entries of
// the source's last good copy (from memory, then from cacheDir, so a
// process that starts offline still has its lists). Manager is safe for
// concurrent use. Loads and the applying of refreshes are serialised; a
// refresh downloads its URL sources without holding the lock, so a config
// reload never waits for a slow or hanging feed (see refresh).
type Manager struct {
	cacheDir string
	client   *http.Client
	metrics  *Metrics
	log      *slog.Logger
	now      func() time.Time

	// refreshMu serialises refreshes (the timer's and RefreshAll's); mu
	// guards the state below and is taken by refreshes only to pick their
	// lists and to apply what they downloaded.
	refreshMu sync.Mutex
	mu        sync.Mutex
	lists     map[string]*listState
	cur       map[string]*List // replaced, never mutated
	// parsedBytes counts source bytes parsed into rebuilt lists since
	// memory was last returned to the OS (see releaseMemory).
	parsedBytes int64
}

// releaseAfter is how many source bytes a rebuild must have parsed for
// releaseMemory to hand freed memory back to the OS.
const releaseAfter = 4 << 20

// releaseMemory returns freed memory to the OS after lists were rebuilt
// from a few MB of sources or more. Building a big list leaves its
// builder's arrays (and, on a refresh, the replaced list) as free heap;
// the runtime would keep those pages mapped until its background
// scavenger slowly gets to them, so after a 2M-name load the process
// would sit on ~100 MB it no longer uses, and every refresh would add a
// peak that never came down. A rebuild is rare (startup, config reload,
// a changed source), so a forced GC and scavenge (a few ms with list-sized
// heaps) is cheap there. It runs without mu held, after the caller had a
// chance to drop the old lists (Run calls it after onChange).
func (m *Manager) releaseMemory() {
	m.mu.Lock()
	n := m.parsedBytes
	m.parsedBytes = 0
	m.mu.Unlock()
	if n >= releaseAfter {
		debug.FreeOSMemory()
	}
}

// NewManager returns a Manager. cacheDir "" keeps last good copies in
// memory only; a nil client gets one with a 60 s timeout; nil m, logger
// and now get no-op metrics, slog.Default() and time.Now.
func NewManager(cacheDir string, client *http.Client, m *Metrics, logger *slog.Logger, now func() time.Time) *Manager {
	if client == nil {
		client = &http.Client{Timeout: 60 * time.Second}
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.Default()
	}
	if now == nil {
		now = time.Now
	}
	return &Manager{cacheDir: cacheDir, client: client, metrics: m, log: logger, now: now,
		lists: map[string]*listState{}, cur: map[string]*List{}}
}

// Lists returns the current set of lists by name. The map must not be
// modified; it is replaced, not changed, when lists change.
func (m *Manager) Lists() map[string]*List {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cur
}

// Load validates cfgs and loads every list: the initial load and each
// config reload. A failing source uses its last good copy (memory, then
// disk); the error is only for an invalid config, in which case nothing
// changes. Lists whose config is unchanged since the last Load re-check
// their files but do not re-fetch URLs (their refresh timer does that).
func (m *Manager) Load(ctx context.Context, cfgs []Config) (map[string]*List, error) {
	var errs []error
	norm := make([]Config, 0, len(cfgs))
	formats := make([]Format, 0, len(cfgs))
	seen := map[string]bool{}
	for _, c := range cfgs {
		n, f, err := c.normalize()
		if err != nil {
			errs = append(errs, err)
		}
		if seen[c.Name] {
			errs = append(errs, fmt.Errorf("%w: duplicate list name %q", ErrConfig, c.Name))
		}
		seen[c.Name] = true
		norm = append(norm, n)
		formats = append(formats, f)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("load lists: %w", err)
	}
	cur := m.load(ctx, norm, formats)
	m.releaseMemory()
	return cur, nil
}

// load loads the validated configs; see Load.
func (m *Manager) load(ctx context.Context, norm []Config, formats []Format) map[string]*List {
	m.mu.Lock()
	defer m.mu.Unlock()
	next := make(map[string]*listState, len(norm))
	var jobs []refreshJob
	for i, c := range norm {
		ls, ok := m.lists[c.Name]
		unchanged := ok && ls.cfg.equal(c) && ls.list != nil
		if !ok || !ls.cfg.equal(c) {
			old := ls
			ls = &listState{cfg: c, format: formats[i], sources: map[string]*sourceState{}}
			if old != nil { // keep what we know about sources still configured
				for _, s := range c.Sources {
					if st, ok := old.sources[s]; ok {
						ls.sources[s] = st
					}
				}
			}
		}
		next[c.Name] = ls
		if unchanged {
			// Files re-checked; URLs wait for their timer.
			m.loadList(ctx, ls, true, nil, nil)
			continue
		}
		jobs = append(jobs, m.newJob(c.Name, ls))
	}
	// New and changed lists download their URL sources side by side (a
	// first start with many feeds), under mu: a reload is serialised
	// with the applying of refreshes anyway.
	m.download(ctx, jobs)
	for _, j := range jobs {
		m.loadList(ctx, j.ls, false, nil, j.urls)
	}
	for name := range m.lists {
		if _, ok := next[name]; !ok {
			m.metrics.forget(name)
		}
	}
	m.lists = next
	m.publish()
	return m.cur
}

// publish rebuilds the current map from the list states. Callers hold mu.
func (m *Manager) publish() {
	cur := make(map[string]*List, len(m.lists))
	for name, ls := range m.lists {
		if ls.list != nil {
			cur[name] = ls.list
		}
	}
	m.cur = cur
}

// Run refreshes lists on their timers until ctx is done, calling onChange
// with the full current set after any list changed. onChange runs on
// Run's goroutine; once it returns, the memory of lists it replaced is
// returned to the OS (see releaseMemory), so it should drop its
// references to the old lists before returning.
func (m *Manager) Run(ctx context.Context, onChange func(map[string]*List)) {
	for {
		if lists, changed := m.refreshDue(ctx); changed && onChange != nil {
			onChange(lists)
		}
		m.releaseMemory()
		t := time.NewTimer(m.nextWait())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// nextWait is how long Run sleeps: until the next refresh is due, at least
// a second and at most a minute so a stepped or jumping clock is noticed.
func (m *Manager) nextWait() time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	wait := time.Minute
	for _, ls := range m.lists {
		if !ls.next.IsZero() {
			wait = min(wait, ls.next.Sub(now))
		}
	}
	return max(wait, time.Second)
}

// refreshDue refreshes every list whose timer has expired and reports
// whether any list changed.
func (m *Manager) refreshDue(ctx context.Context) (map[string]*List, bool) {
	return m.refresh(ctx, func(ls *listState, now time.Time) bool {
		return !ls.next.IsZero() && !now.Before(ls.next)
	}, nil)
}

// SourceResult is how one source fared in a refresh.
type SourceResult struct {
	List   string `json:"list"`
	Source string `json:"source"` // URL access keys redacted
	Result string `json:"result"` // ok, not_modified or error
	Error  string `json:"error,omitempty"`
}

// RefreshAll refreshes every list now, whatever its timer: files are
// re-read when their size or time changed, URLs fetched with a conditional
// GET. A failing source keeps its last good copy, as on a timer. It
// returns the current lists, whether any changed (call the onChange of
// Run with them), and each source's result; each list's timer restarts.
// A list that a config reload replaced while its sources downloaded is
// left to that reload, which loaded it, and has no results.
func (m *Manager) RefreshAll(ctx context.Context) (map[string]*List, bool, []SourceResult) {
	var results []SourceResult
	cur, changed := m.refresh(ctx, func(*listState, time.Time) bool { return true }, &results)
	m.releaseMemory()
	return cur, changed, results
}

// maxDownloads bounds the URL sources a refresh downloads at once.
const maxDownloads = 4

// refreshJob is one list a refresh works on: the list's state when it was
// picked, and its URL sources' downloads (urls[i] for cfg.Sources[i];
// empty result for file sources, which are checked when applied).
type refreshJob struct {
	name  string
	ls    *listState
	valid []validators
	urls  []fetched
}

// newJob prepares the download of ls's URL sources: each source's state
// (restored from the cache directory when new) and what its conditional
// GET sends. Callers hold mu.
func (m *Manager) newJob(name string, ls *listState) refreshJob {
	j := refreshJob{name: name, ls: ls, valid: make([]validators, len(ls.cfg.Sources)),
		urls: make([]fetched, len(ls.cfg.Sources))}
	for i, src := range ls.cfg.Sources {
		if !isURL(src) {
			continue
		}
		st := ls.sources[src]
		if st == nil {
			st = m.restore(src)
			ls.sources[src] = st
		}
		j.valid[i] = m.validatorsOf(src, st)
	}
	return j
}

// download fetches the URL sources of jobs, maxDownloads at a time, into
// each job's urls. It reads only what the jobs hold and each list's
// config, which never changes (a changed config makes a new listState),
// so it needs no lock.
func (m *Manager) download(ctx context.Context, jobs []refreshJob) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, maxDownloads)
	for k := range jobs {
		j := &jobs[k]
		for i, src := range j.ls.cfg.Sources {
			if !isURL(src) {
				continue
			}
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				start := m.now()
				r := m.fetchURL(ctx, j.ls.cfg, src, j.valid[i])
				r.took = m.now().Sub(start)
				j.urls[i] = r
			})
		}
	}
	wg.Wait()
}

// refresh refreshes the lists pick selects (given each list's state and
// the time), in name order, and reports the current lists and whether any
// changed. It works in three steps so that Load (a config reload, the
// file watch, the reload API) never waits on a download: under mu it
// picks the lists and notes what each URL source's conditional GET
// sends; without mu it downloads the URL sources, maxDownloads at a time;
// under mu again it applies the downloads to each list that is still the
// one it picked. A list a reload replaced meanwhile was loaded by that
// reload: its downloads are discarded, and its timer is set to refresh it
// at once, in case the reload's own download failed or is older.
func (m *Manager) refresh(ctx context.Context, pick func(*listState, time.Time) bool, report *[]SourceResult) (map[string]*List, bool) {
	m.refreshMu.Lock()
	defer m.refreshMu.Unlock()

	m.mu.Lock()
	now := m.now()
	var jobs []refreshJob
	for name, ls := range m.lists {
		if !pick(ls, now) {
			continue
		}
		jobs = append(jobs, m.newJob(name, ls))
	}
	m.mu.Unlock()
	slices.SortFunc(jobs, func(a, b refreshJob) int { return strings.Compare(a.name, b.name) })
	m.download(ctx, jobs)

	m.mu.Lock()
	changed := false
	for _, j := range jobs {
		if cur := m.lists[j.name]; ctx.Err() != nil || cur != j.ls {
			for _, r := range j.urls {
				r.body.discard()
			}
			switch {
			case ctx.Err() != nil:
			case cur == nil:
				m.log.Info("list removed by a reload while its sources downloaded", "list", j.name)
			default:
				// The reload loaded it, but its download may have failed
				// where this one worked, or be older: the timer asks again
				// now (a conditional GET: cheap when nothing changed).
				m.log.Info("list replaced by a reload while its sources downloaded; the reload's copy stays, refreshing it again", "list", j.name)
				if !cur.next.IsZero() {
					cur.next = m.now()
				}
			}
			continue
		}
		if m.loadList(ctx, j.ls, false, report, j.urls) {
			changed = true
		}
	}
	if changed {
		m.publish()
	}
	cur := m.cur
	m.mu.Unlock()
	return cur, changed
}

// fetched is the outcome of fetching one source.
type fetched struct {
	result string
	err    error
	meta   cacheMeta
	mod    time.Time
	size   int64
	// body is a URL source's new content when result is ok, spooled while
	// it was downloaded. A file source has none: it is read from the file
	// while it is parsed.
	body *spool
	// took is how long a download made ahead of loadList (by download)
	// took; loadList counts its sources' longest in the load duration.
	took time.Duration
}

// loadList fetches every source of ls and recompiles it when anything
// changed; skipURLs treats URL sources as unchanged. It reports whether
// ls.list was replaced. urls, when not nil, holds the URL sources'
// downloads, made by a refresh without mu held (urls[i] for source i; the
// file sources' entries are empty and checked here); the longest of their
// times counts in the list's load duration. Callers hold mu.
//
// Sources are streamed: a changed file is parsed straight from the file,
// a changed URL from the spool its body was written to, an unchanged or
// failed source from its last good copy on disk. The only full copy of a
// source that stays in memory is the last good copy when there is no
// cache directory (or it cannot be written).
func (m *Manager) loadList(ctx context.Context, ls *listState, skipURLs bool, report *[]SourceResult, urls []fetched) bool {
	start := m.now()
	var fetchTime time.Duration // the sources' downloads ran side by side
	for _, r := range urls {
		fetchTime = max(fetchTime, r.took)
	}
	c := ls.cfg
	results := make([]fetched, len(c.Sources))
	rebuild := ls.list == nil
	for i, src := range c.Sources {
		st := ls.sources[src]
		if st == nil {
			st = m.restore(src)
			ls.sources[src] = st
		}
		if skipURLs && isURL(src) {
			results[i] = fetched{result: resultNotModified}
			continue
		}
		if urls != nil && isURL(src) {
			results[i] = urls[i]
		} else {
			results[i] = m.fetch(ctx, c, src, st)
		}
		if results[i].result == resultOK {
			rebuild = true
		}
	}
	// The timer restarts when the URLs were fetched (or never had one):
	// a reload that skipped them leaves it running, or a names file or
	// list file rewritten more often than the refresh interval would
	// keep postponing the feeds' refresh.
	switch {
	case c.Refresh <= 0:
		ls.next = time.Time{}
	case !skipURLs || ls.next.IsZero():
		ls.next = m.now().Add(c.Refresh)
	}

	if rebuild {
		accepted := ls.list == nil
		b := NewBuilder()
		var parsed int64
		for i, src := range c.Sources {
			st := ls.sources[src]
			r := &results[i]
			if r.result == resultOK {
				mark := b.mark()
				stats, sp, n, err := m.parseNew(c, src, ls.format, b, r)
				parsed += n
				if err == nil && stats.Entries == 0 && st.entries != 0 {
					err = ErrEmpty
				}
				if err == nil {
					m.logStats(c.Name, src, stats)
					m.metrics.parseErrors.WithLabelValues(c.Name).Add(float64(stats.Invalid))
					m.keep(src, st, r, sp, stats.Entries)
					accepted = true
					continue
				}
				sp.discard()
				b.rollback(mark)
				r.result, r.err = resultError, err
			}
			// Not modified or failed: parse the last good copy.
			rc, size, err := m.lastGood(src, st)
			if err != nil {
				if r.err == nil {
					r.err = err
					r.result = resultError
				}
				continue
			}
			at, _ := rc.(io.ReaderAt)
			stats, err := parse(rc, src, ls.format, b, size, at)
			rc.Close()
			parsed += size
			if err != nil {
				m.log.Warn("parse last good copy", "list", c.Name, "source", redactSource(src), "err", err)
			}
			if st.entries <= 0 {
				st.entries = stats.Entries
			}
		}
		if !accepted {
			rebuild = false // every new copy was rejected: keep the current list
		} else {
			ls.list = b.Build(c.Name, c.Category)
		}
		m.parsedBytes += parsed
		m.metrics.entries.WithLabelValues(c.Name).Set(float64(ls.list.Len()))
		m.metrics.regexes.WithLabelValues(c.Name).Set(float64(ls.list.Regexps()))
		huge, err := ls.list.HugePageBytes()
		m.metrics.hugeBytes.WithLabelValues(c.Name).Set(float64(huge))
		if err != nil {
			m.log.Debug("list table stays on small pages; matches are slower", "list", c.Name, "err", err)
		}
		if n := ls.list.Regexps(); n > 0 {
			m.log.Warn("list has regex rules; each one is evaluated per query and is slow", "list", c.Name, "regexes", n)
		}
	}

	now := float64(m.now().UnixNano()) / 1e9
	// Every result series exists from the first load (at 0), so alert
	// rules can use increase() on the first failure too.
	for _, res := range []string{resultOK, resultNotModified, resultError} {
		m.metrics.refreshes.WithLabelValues(c.Name, res)
	}
	for i, src := range c.Sources {
		r := results[i]
		if report != nil {
			sr := SourceResult{List: c.Name, Source: redactSource(src), Result: r.result}
			if r.err != nil {
				sr.Error = r.err.Error() // every error names the redacted source
			}
			*report = append(*report, sr)
		}
		m.metrics.refreshes.WithLabelValues(c.Name, r.result).Inc()
		m.metrics.lastRefresh.WithLabelValues(c.Name, r.result).Set(now)
		if r.result != resultError {
			m.metrics.lastSuccess.WithLabelValues(c.Name).Set(now)
			continue
		}
		m.log.Error("list source failed; keeping its last good copy", "list", c.Name, "source", redactSource(src), "err", r.err)
	}
	m.metrics.refreshDuration.WithLabelValues(c.Name).Observe((m.now().Sub(start) + fetchTime).Seconds())
	return rebuild
}

// parseNew parses a source's new content into b: a URL's spooled body, or
// a file read (under the size cap) while a copy is spooled for the cache.
// It returns the spool, to keep or discard, and the bytes parsed.
func (m *Manager) parseNew(c Config, src string, format Format, b *Builder, r *fetched) (Stats, *spool, int64, error) {
	if r.body != nil {
		rd, size, err := r.body.reader()
		if err != nil {
			return Stats{}, r.body, 0, err
		}
		at, _ := rd.(io.ReaderAt)
		st, err := parse(rd, src, format, b, size, at)
		return st, r.body, size, err
	}
	f, err := os.Open(src)
	if err != nil {
		return Stats{}, nil, 0, fmt.Errorf("fetch %s: %w", src, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Stats{}, nil, 0, fmt.Errorf("fetch %s: %w", src, err)
	}
	if fi.Size() > c.MaxBytes {
		return Stats{}, nil, 0, fmt.Errorf("fetch %s: %d bytes: %w", src, fi.Size(), ErrTooLarge)
	}
	r.mod, r.size = fi.ModTime(), fi.Size() // what is actually read
	sp := m.newSpool(fi.Size())
	st, err := parse(io.TeeReader(&capReader{r: f, left: c.MaxBytes, limit: c.MaxBytes}, sp), src, format, b, fi.Size(), f)
	return st, sp, fi.Size(), err
}

func (m *Manager) logStats(list, src string, s Stats) {
	if s.Invalid > 0 {
		m.log.Warn("list source has invalid lines", "list", list, "source", redactSource(src),
			"invalid", s.Invalid, "first_errors", s.FirstErrors)
	}
	m.log.Info("list source loaded", "list", list, "source", redactSource(src), "format", string(s.Format),
		"entries", s.Entries, "invalid", s.Invalid, "skipped", s.Skipped, "badfilter", s.Badfilter)
}

// fetch gets a source's content if it changed.
func (m *Manager) fetch(ctx context.Context, c Config, src string, st *sourceState) fetched {
	if isURL(src) {
		return m.fetchURL(ctx, c, src, m.validatorsOf(src, st))
	}
	fi, err := os.Stat(src)
	if err != nil {
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %w", src, err)}
	}
	if st.good && fi.ModTime().Equal(st.modTime) && fi.Size() == st.size {
		return fetched{result: resultNotModified}
	}
	if fi.Size() > c.MaxBytes {
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %d bytes: %w", src, fi.Size(), ErrTooLarge)}
	}
	// Changed: parseNew reads it.
	return fetched{result: resultOK, mod: fi.ModTime(), size: fi.Size(),
		meta: cacheMeta{Source: src, Fetched: m.now()}}
}

// validators is what a URL source's conditional GET sends: its last good
// copy's ETag and Last-Modified.
type validators struct{ etag, lastModified string }

// validatorsOf returns the validators of a URL source, none when there is
// no copy to fall back on: a 304 with the cached copy gone (deleted, a
// wiped state_dir) would leave the list without this source's entries
// until the feed next changes. Callers hold mu.
func (m *Manager) validatorsOf(src string, st *sourceState) validators {
	if !st.good || !m.haveCopy(src, st) {
		return validators{}
	}
	return validators{etag: st.meta.ETag, lastModified: st.meta.LastModified}
}

// fetchURL downloads a URL source, conditionally when v has validators.
// It reads no manager state, so refresh runs it without mu.
func (m *Manager) fetchURL(ctx context.Context, c Config, src string, v validators) fetched {
	shown := redactSource(src) // errors are logged: no access keys
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %w", shown, err)}
	}
	req.Header.Set("User-Agent", "dnsvalve")
	if v.etag != "" {
		req.Header.Set("If-None-Match", v.etag)
	}
	if v.lastModified != "" {
		req.Header.Set("If-Modified-Since", v.lastModified)
	}
	resp, err := m.client.Do(req)
	if err != nil {
		// A *url.Error names the whole URL, access key included.
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %w", shown, redact.URLError(err))}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && req.Header.Get("If-None-Match")+req.Header.Get("If-Modified-Since") != "":
		return fetched{result: resultNotModified}
	case resp.StatusCode != http.StatusOK:
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %w: %s", shown, ErrStatus, resp.Status)}
	}
	if resp.ContentLength > c.MaxBytes {
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %d bytes: %w", shown, resp.ContentLength, ErrTooLarge)}
	}
	// Spool the body (to the cache directory) rather than hold it: it is
	// parsed from there, and becomes the last good copy if accepted.
	sp := m.newSpool(resp.ContentLength)
	_, err = io.Copy(sp, &capReader{r: resp.Body, left: c.MaxBytes, limit: c.MaxBytes})
	if err == nil {
		err = sp.err
	}
	if err != nil {
		sp.discard()
		return fetched{result: resultError, err: fmt.Errorf("fetch %s: %w", shown, err)}
	}
	return fetched{body: sp, result: resultOK, meta: cacheMeta{
		Source: src, ETag: resp.Header.Get("ETag"), LastModified: resp.Header.Get("Last-Modified"), Fetched: m.now(),
	}}
}

// capReader reads at most limit bytes from r; reading more is an
// ErrTooLarge error.
type capReader struct {
	r           io.Reader
	left, limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, fmt.Errorf("read: over %d bytes: %w", c.limit, ErrTooLarge)
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, fmt.Errorf("read: over %d bytes: %w", c.limit, ErrTooLarge)
	}
	return n, err
}

// spool receives a source's new content while it is downloaded or parsed.
// Accepted, it becomes the source's last good copy (renamed into the
// cache directory, or kept in memory when there is none); rejected, it is
// discarded. It never fails a write: the first error is kept in err and
// later writes are dropped, so a full disk cannot fail a parse.
type spool struct {
	f   *os.File // temp file in the cache directory; nil: in memory
	mem []byte
	n   int64
	err error
}

// maxSpoolHint caps how much memory a spool reserves up front.
const maxSpoolHint = 256 << 20

// newSpool returns a spool in the cache directory, in memory when there
// is none or the temp file cannot be created. hint is the expected size
// (<= 0: unknown).
func (m *Manager) newSpool(hint int64) *spool {
	if m.cacheDir != "" {
		err := os.MkdirAll(m.cacheDir, 0o755)
		if err == nil {
			var f *os.File
			if f, err = os.CreateTemp(m.cacheDir, ".tmp-spool-*"); err == nil {
				return &spool{f: f}
			}
		}
		m.log.Warn("list cache unwritable; keeping new copies in memory", "dir", m.cacheDir, "err", err)
	}
	sp := &spool{}
	if hint > 0 {
		sp.mem = make([]byte, 0, min(hint, maxSpoolHint))
	}
	return sp
}

func (s *spool) Write(p []byte) (int, error) {
	if s.err != nil {
		return len(p), nil
	}
	if s.f != nil {
		if _, err := s.f.Write(p); err != nil {
			s.err = fmt.Errorf("spool: %w", err)
			return len(p), nil
		}
	} else {
		s.mem = append(s.mem, p...)
	}
	s.n += int64(len(p))
	return len(p), nil
}

// reader returns the spooled content from its start, and its size.
func (s *spool) reader() (io.Reader, int64, error) {
	if s.err != nil {
		return nil, 0, s.err
	}
	if s.f == nil {
		return bytes.NewReader(s.mem), s.n, nil
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, fmt.Errorf("spool: %w", err)
	}
	return s.f, s.n, nil
}

// discard drops a spool that did not become a last good copy.
func (s *spool) discard() {
	if s == nil {
		return
	}
	if s.f != nil {
		s.f.Close()
		os.Remove(s.f.Name())
		s.f = nil
	}
	s.mem = nil
}

// cachePath is where a source's last good copy lives: a hash of the
// source, so URLs need no escaping.
func (m *Manager) cachePath(src string) string {
	sum := sha256.Sum256([]byte(src))
	return filepath.Join(m.cacheDir, hex.EncodeToString(sum[:12]))
}

// restore builds the state of a source seen for the first time, picking
// up a cached copy from an earlier run.
func (m *Manager) restore(src string) *sourceState {
	st := &sourceState{}
	if m.cacheDir == "" {
		return st
	}
	p := m.cachePath(src)
	raw, err := os.ReadFile(p + ".meta")
	if err != nil {
		return st
	}
	var meta cacheMeta
	if json.Unmarshal(raw, &meta) != nil || meta.Source != src {
		return st
	}
	if _, err := os.Stat(p + ".data"); err != nil {
		return st
	}
	st.meta, st.good, st.entries = meta, true, -1
	if meta.Entries != nil {
		st.entries = *meta.Entries
	}
	return st
}

// keep records a newly fetched copy, spooled in sp, as the source's last
// good copy: renamed into the cache directory, or kept in memory when
// there is none or it cannot be written. sp is nil only when a file could
// not be opened, which is never accepted.
func (m *Manager) keep(src string, st *sourceState, r *fetched, sp *spool, entries int) {
	r.meta.Entries = &entries
	st.meta, st.modTime, st.size, st.entries, st.good = r.meta, r.mod, r.size, entries, true
	st.mem = nil
	if sp.f == nil {
		st.mem = slices.Clip(sp.mem)
		return
	}
	tmp := sp.f.Name()
	err := sp.err
	if err == nil {
		err = sp.f.Sync()
	}
	if cerr := sp.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("spool: %w", cerr)
	}
	sp.f = nil
	p := m.cachePath(src)
	renamed := false
	if err == nil {
		if err = os.Rename(tmp, p+".data"); err == nil {
			renamed = true
			err = m.writeMeta(p, r.meta)
		}
	}
	if err == nil {
		return
	}
	m.log.Warn("write list cache; keeping the copy in memory", "source", redactSource(src), "err", err)
	from := tmp
	if renamed {
		from = p + ".data"
	}
	if sp.err == nil {
		if data, rerr := os.ReadFile(from); rerr == nil {
			st.mem = data
		}
	}
	// No cached copy that disagrees with what was loaded: a file source
	// without one falls back to the file itself while it is unchanged.
	os.Remove(tmp)
	os.Remove(p + ".data")
	os.Remove(p + ".meta")
}

func (m *Manager) writeMeta(p string, meta cacheMeta) error {
	mj, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	return atomicWrite(p+".meta", mj)
}

// atomicWrite writes a temp file in the same directory and renames it
// over path, so readers see the old or the new copy, never a torn one.
func atomicWrite(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write cache %s: %w", path, err)
	}
	return nil
}

// errNoCopy means a source failed and has no last good copy anywhere.
var errNoCopy = errors.New("no last good copy")

// haveCopy reports whether lastGood can open a URL source's copy.
func (m *Manager) haveCopy(src string, st *sourceState) bool {
	if st.mem != nil {
		return true
	}
	if m.cacheDir == "" {
		return false
	}
	_, err := os.Stat(m.cachePath(src) + ".data")
	return err == nil
}

// lastGood opens a source's last good copy (memory, then the cache
// directory, then for a file source the file itself if it has not changed
// since it was loaded) and returns its size.
func (m *Manager) lastGood(src string, st *sourceState) (io.ReadCloser, int64, error) {
	if st.mem != nil {
		return io.NopCloser(bytes.NewReader(st.mem)), int64(len(st.mem)), nil
	}
	var cacheErr error
	if m.cacheDir != "" && st.good {
		f, err := os.Open(m.cachePath(src) + ".data")
		if err == nil {
			if fi, err := f.Stat(); err == nil {
				return f, fi.Size(), nil
			}
			f.Close()
		}
		cacheErr = fmt.Errorf("read last good copy of %s: %w", redactSource(src), err)
	}
	if !isURL(src) && st.good && !st.modTime.IsZero() {
		if f, err := os.Open(src); err == nil {
			if fi, err := f.Stat(); err == nil && fi.ModTime().Equal(st.modTime) && fi.Size() == st.size {
				return f, fi.Size(), nil
			}
			f.Close()
		}
	}
	if cacheErr != nil {
		return nil, 0, cacheErr
	}
	return nil, 0, fmt.Errorf("%s: %w", redactSource(src), errNoCopy)
}
