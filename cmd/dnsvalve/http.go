package main

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/policy/lists"
)

// startHTTP serves /metrics, /healthz, /readyz and the /api/v1 endpoints.
func (a *app) startHTTP(cfg *Config) error {
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http listen %s: %w", cfg.HTTP.Listen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{Registry: a.reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", a.readyz)
	api := http.NewServeMux()
	api.HandleFunc("GET /api/v1/check", a.apiCheck)
	api.HandleFunc("GET /api/v1/stats", a.apiStats)
	api.HandleFunc("POST /api/v1/reload", a.apiReload)
	api.HandleFunc("POST /api/v1/lists/refresh", a.apiRefreshLists)
	api.HandleFunc("POST /api/v1/cache/flush", a.apiFlushCache)
	// Without a token, a loopback listener trusts whoever reaches it:
	// only requests that name it by address or as localhost, so that a
	// web page on this machine cannot reach it through DNS rebinding.
	guard := func(h http.Handler) http.Handler { return requireToken(cfg.HTTP.Token, h) }
	if cfg.HTTP.Token == "" && loopbackListen(ln.Addr()) {
		guard = localHostOnly
	}
	// A web page in a browser on this machine may send a POST to a
	// loopback API without a token (no preflight for a simple request):
	// cross-origin browser requests that change state are refused.
	mux.Handle("/api/", guard(http.NewCrossOriginProtection().Handler(api)))
	// Profiling, for "why is it slow?", only when asked for: its dumps
	// hold live query names. Same protection as /api/.
	if cfg.HTTP.Pprof {
		dbg := http.NewServeMux()
		dbg.HandleFunc("/debug/pprof/", pprof.Index)
		dbg.HandleFunc("/debug/pprof/profile", pprof.Profile)
		dbg.HandleFunc("/debug/pprof/trace", pprof.Trace)
		dbg.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		dbg.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.Handle("/debug/pprof/", guard(dbg))
	}
	if cfg.HTTP.Token == "" && !loopbackListen(ln.Addr()) {
		a.logger.Warn("http.token is empty and http.listen is not loopback: /api/ (and /debug/pprof/ when http.pprof is on) answer anyone who can reach it; set http.token (DNSVALVE_HTTP_TOKEN)", "addr", ln.Addr().String())
	}
	// Idle keep-alive connections close after IdleTimeout and a request
	// must arrive within ReadTimeout, so that clients cannot hold
	// connections open; no WriteTimeout, which would cut pprof's
	// profile?seconds=N.
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second, IdleTimeout: 60 * time.Second}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("http server stopped", "err", err)
		}
	}()
	a.logger.Info("http listening", "addr", ln.Addr().String())
	return nil
}

// loopbackListen reports whether addr is a loopback address (only this
// machine can reach it).
func loopbackListen(addr net.Addr) bool {
	ap, err := netip.ParseAddrPort(addr.String())
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// localHostOnly serves requests whose Host is an IP address or localhost
// (with or without a port) and refuses the others with 403: a browser sent
// to a rebound DNS name sends that name.
func localHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if hh, _, err := net.SplitHostPort(host); err == nil {
			host = hh
		}
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && !strings.EqualFold(host, "localhost") {
			http.Error(w, "forbidden: name this endpoint by its address or as localhost, or set http.token", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// requireToken guards h with a bearer token compared in constant time;
// an empty token leaves h open.
func requireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := []byte(token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="dnsvalve"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// readyz is 200 once the listeners are up and at least one upstream is
// healthy, 503 otherwise; the body says which.
func (a *app) readyz(w http.ResponseWriter, _ *http.Request) {
	r := a.router.Load()
	listeners, upstreams := a.server.Ready(), r.Healthy()
	body := map[string]any{"listeners": listeners, "upstreams": r.Status()}
	code := http.StatusOK
	body["ready"] = listeners && upstreams
	body["shared_state"] = a.obs.sharedStatus()
	if !(listeners && upstreams) {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}

// apiCheck answers "why was this blocked?" for ?name=…&client=…&qtype=….
func (a *app) apiCheck(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	names := q["name"]
	if len(names) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "name is required"})
		return
	}
	client := netip.IPv4Unspecified()
	if c := q.Get("client"); c != "" {
		var err error
		if client, err = netip.ParseAddr(c); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("client: %v", err)})
			return
		}
	}
	qtype := dns.TypeA
	if t := q.Get("qtype"); t != "" {
		var ok bool
		if qtype, ok = policy.TypeFromString(t); !ok {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("qtype: unknown type %q", t)})
			return
		}
	}
	snap := a.store.Load()
	out := make([]policy.Explanation, 0, len(names))
	for _, n := range names {
		out = append(out, snap.Explain(client, n, qtype))
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// apiReload reloads the configuration as SIGHUP does, and answers once it
// is done: 200, or 422 with the reason when the running configuration
// stays.
func (a *app) apiReload(w http.ResponseWriter, r *http.Request) {
	if err := a.reloadConfig(a.background(), "api"); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"reloaded": false, "error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"reloaded": true})
}

// apiRefreshLists refreshes every list now, whatever its timer (a feed
// just published new indicators), compiles and swaps the policy, and
// reports each source: ok, not_modified, or error (its last good copy
// stays in force). 422 when the policy does not compile (the running one
// stays).
func (a *app) apiRefreshLists(w http.ResponseWriter, r *http.Request) {
	_, changed, results := a.lists.RefreshAll(a.background())
	failed := 0
	for _, sr := range results {
		if sr.Result == "error" {
			failed++
		}
	}
	body := map[string]any{"changed": changed, "sources": results, "errors": failed}
	if results == nil {
		body["sources"] = []lists.SourceResult{}
	}
	// Compiled even when nothing changed: the policy then surely holds
	// the lists as they are now.
	if err := a.swapLists(); err != nil {
		body["error"] = err.Error()
		writeJSON(w, http.StatusUnprocessableEntity, body)
		return
	}
	a.logger.Info("lists refreshed on request", "remote", r.RemoteAddr, "changed", changed, "source_errors", failed)
	writeJSON(w, http.StatusOK, body)
}

// apiFlushCache empties the cache (answers, stale answers, remembered
// failures), as a reload that moves conditional zones does.
func (a *app) apiFlushCache(w http.ResponseWriter, r *http.Request) {
	n := a.cache.Len()
	a.cache.Purge()
	a.logger.Info("cache flushed on request", "remote", r.RemoteAddr, "entries", n)
	writeJSON(w, http.StatusOK, map[string]any{"flushed": n})
}

// apiStats returns the top clients, blocked domains and scored pairs of
// the last ?minutes=M (default 5), ?n=N rows each (default 10).
func (a *app) apiStats(w http.ResponseWriter, r *http.Request) {
	minutes, n := 5, 10
	for key, dst := range map[string]*int{"minutes": &minutes, "n": &n} {
		if v := r.URL.Query().Get(key); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": key + ": want a positive integer"})
				return
			}
			*dst = i
		}
	}
	writeJSON(w, http.StatusOK, a.obs.stats.Top(minutes, n))
}
