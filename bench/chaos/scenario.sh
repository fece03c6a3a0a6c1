#!/usr/bin/env bash
# Inside the loopback-only namespace. Starts fake upstream, python http
# server, dnsvalve, load, chaos and sampler; then checks the end state.
set -uo pipefail
source $ROOT/bench/chaos/lib.sh
if ip -o link | grep -v ': lo:' | grep -q .; then echo "not a loopback-only namespace" >&2; exit 1; fi
D=${DURATION:-720}
cd "$R"
$SOAK/fakeup -listen $UP -ttl 30 -stats >"$R/fakeup.log" 2>&1 &
UPPID=$!
start_www() { python3 -m http.server 8000 --bind 127.0.0.1 --directory "$R/www" >>"$R/www.log" 2>&1 & WWWPID=$!; }
start_www
sleep 1
$SOAK/dv serve --config "$R/dnsvalve.yaml" >"$R/dv.stdout" 2>"$R/dv.stderr" &
DV=$!
for i in $(seq 1 50); do curl -sf --max-time 2 "http://$HTTP/readyz" >/dev/null && break; sleep 0.2; done
echo "$(ts) dnsvalve pid $DV ready" | tee -a "$R/chaos.log"

sample() {
	local t=$1 rss fds gor thr
	rss=$(awk '/^VmRSS/ {print $2}' /proc/$DV/status 2>/dev/null)
	thr=$(awk '/^Threads/ {print $2}' /proc/$DV/status 2>/dev/null)
	fds=$(ls /proc/$DV/fd 2>/dev/null | wc -l)
	gor=$(curl -s --max-time 20 "http://$HTTP/debug/pprof/goroutine?debug=1" | head -1 | awk '{print $NF}')
	local m; m=$(curl -s --max-time 20 "http://$HTTP/metrics")
	s() { awk -v n="$1" -v re="${2:-}" '$1 ~ "^"n"({|$)" && (re == "" || $0 ~ re) { s += $NF } END { printf "%.0f", s }' <<<"$m"; }
	echo "$t $(date +%T) alive=$(kill -0 $DV 2>/dev/null && echo y || echo n) rss_kb=$rss fds=$fds goroutines=$gor threads=$thr" \
		"queries=$(s dnsvalve_server_queries_total) panics=$(s dnsvalve_server_panics_total)" \
		"ql_written=$(s dnsvalve_querylog_written_total) ql_dropped=$(s dnsvalve_querylog_dropped_total) ql_err=$(s dnsvalve_querylog_errors_total) ql_queue=$(s dnsvalve_querylog_queue_length)" \
		"reload_ok=$(s dnsvalve_config_reloads_total ok) reload_err=$(s dnsvalve_config_reloads_total error)" \
		"write_err=$(s dnsvalve_server_write_errors_total) udp_stuck=$(s dnsvalve_server_udp_stuck_total) malformed=$(s dnsvalve_server_malformed_total)" \
		"cache=$(s dnsvalve_cache_entries) heap_inuse_mb=$(($(s go_memstats_heap_inuse_bytes) / 1048576)) pairs=$(s dnsvalve_detect_tracked_pairs)" \
		"list_err=$(s dnsvalve_lists_refresh_total error) names_err=$(s dnsvalve_clients_names_file_errors_total) seen_err=$(s dnsvalve_detect_seen_store_errors_total)" \
		>>"$R/samples.txt"
}
sample 0
START=$(date +%s)
END=$((START + D))

# ---- load
dnsperf -s 127.0.0.1 -p 5353 -d "$R/data/mix.txt" -Q 4000 -c 8 -q 500 -l "$D" -t 5 -S 60 >"$R/dnsperf-main.txt" 2>&1 &
P1=$!
dnsperf -s 127.0.0.1 -a 127.0.0.2 -p 5353 -d "$R/data/sens.txt" -Q 400 -c 2 -q 100 -l "$D" -t 5 >"$R/dnsperf-sens.txt" 2>&1 &
P2=$!
dnsperf -m tcp -s 127.0.0.1 -p 5353 -d "$R/data/mix.txt" -Q 300 -c 4 -q 50 -l "$D" -t 5 >"$R/dnsperf-tcp.txt" 2>&1 &
P3=$!
"$TOOL" verify -dur "$((D - 5))s" >"$R/verify.txt" 2>&1 &
PV=$!
"$TOOL" malformed -dur "$((D - 45))s" >"$R/malformed.txt" 2>&1 &
PM=$!

# ---- sampler
( while :; do sleep 30; now=$(($(date +%s) - START)); ((now > D + 5)) && break; sample "$now"; done ) &
PS=$!

# ---- chaos
api() { # METHOD PATH -> logs code and duration
	local t0 t1 out code
	t0=$(date +%s%N)
	out=$(curl -s --max-time 60 -X "$1" -w ' HTTP%{http_code}' "http://$HTTP$2" 2>&1)
	t1=$(date +%s%N)
	code=${out##* HTTP}
	local ms=$(((t1 - t0) / 1000000))
	clog "api $1 $2 -> $code ${ms}ms ${out:0:160}"
	((ms > 10000)) && clog "SLOW api $1 $2 ${ms}ms"
	echo "$code"
}
q() { "$TOOL" q -name "$1" -type "${2:-A}" ${3:+-src $3}; }
expect() { # NAME WANT_RCODE DESC
	local got; got=$(q "$1" A)
	if [[ ${got%% *} == "$2" ]]; then clog "ok $3: $1 $got"; echo pass >>"$R/expect.txt"
	else clog "EXPECT_FAIL $3: $1 got '$got' want $2"; echo "fail $(ts) $3 $1 got '$got' want $2" >>"$R/expect.txt"; fi
}
INVALID=0 INVALID_HUP=0 INVALID_POST=0 VARIANT=A HUPS=0 G=0 i=0
outage=""
while (($(date +%s) < END - 25)); do
	i=$((i + 1)); G=$i
	# pre-cache names that this generation will block
	q "g$G-0.lrot.test" >/dev/null; q "g$G-0.urot.test" >/dev/null
	# local list
	if ((i % 2)); then gen_local_list $G | write_inplace "$R/lists/local-hosts.txt"; mode=inplace
	else gen_local_list $G | write_atomic "$R/lists/local-hosts.txt"; mode=atomic; fi
	clog "local list gen $G written ($mode)"
	c=$(api POST /api/v1/reload)
	expect "g$G-0.lrot.test" NXDOMAIN "local gen $G new name blocked after reload($c)"
	expect "g$((G - 1))-0.lrot.test" NOERROR "local gen $G old name unblocked"
	# URL list (outages: 404 in iterations 20-24, server down 40-43)
	if ((i >= 20 && i <= 24)); then rm -f "$R/www/url-list.txt"; outage=404
	elif ((i >= 40 && i <= 43)); then [[ $outage != down ]] && { kill $WWWPID; wait $WWWPID 2>/dev/null; clog "www stopped"; }; outage=down
	else
		[[ $outage == down ]] && { start_www; sleep 0.5; clog "www restarted"; }
		outage=""
		gen_url_list $G | write_atomic "$R/www/url-list.txt"
	fi
	clog "url list gen $G (outage=$outage)"
	sleep 1.1
	c=$(api POST /api/v1/lists/refresh)
	if [[ -z $outage ]]; then
		expect "g$G-0.urot.test" NXDOMAIN "url gen $G new name blocked after refresh($c)"
		expect "g$((G - 1))-0.urot.test" NOERROR "url gen $G old name unblocked"
	else
		expect "stable-7.ublock.test" NXDOMAIN "url outage $outage: last good copy kept"
	fi
	# names file
	if ((i % 3)); then gen_names $G | write_atomic "$R/names.txt"; else gen_names $G | write_inplace "$R/names.txt"; fi
	kill -HUP $DV && HUPS=$((HUPS + 1)); clog "SIGHUP"
	api POST /api/v1/cache/flush >/dev/null
	# config variant toggle
	if ((i % 5 == 0)); then
		[[ $VARIANT == A ]] && VARIANT=B || VARIANT=A
		gen_cfg $VARIANT | write_atomic "$R/dnsvalve.yaml"
		c=$(api POST /api/v1/reload)
		if [[ $VARIANT == B ]]; then expect x-3.extra.test NXDOMAIN "variant B extra list($c)"
		else expect x-3.extra.test NOERROR "variant A no extra list($c)"; fi
	fi
	# invalid config episode
	if ((i % 8 == 0)); then
		INVALID=$((INVALID + 1))
		gen_invalid $INVALID | write_atomic "$R/dnsvalve.yaml"
		clog "INVALID config kind $((INVALID % 4)) written"
		sleep 1.5
		kill -HUP $DV && INVALID_HUP=$((INVALID_HUP + 1))
		sleep 0.5
		c=$(api POST /api/v1/reload); INVALID_POST=$((INVALID_POST + 1))
		[[ $c == 422 ]] || clog "UNEXPECTED reload code $c for invalid config"
		expect stable-3.lblock.test NXDOMAIN "still blocking with invalid config on disk"
		expect "g$G-0.lrot.test" NXDOMAIN "current local gen still in force during invalid config"
		gen_cfg $VARIANT | write_atomic "$R/dnsvalve.yaml"
		c=$(api POST /api/v1/reload)
		[[ $c == 200 ]] || clog "UNEXPECTED reload code $c after restoring config"
		clog "config restored ($VARIANT)"
	fi
	# concurrent burst
	if ((i % 6 == 0)); then
		clog "burst start"
		BP=()
		for k in 1 2 3; do
			api POST /api/v1/reload >/dev/null & BP+=($!)
			api POST /api/v1/lists/refresh >/dev/null & BP+=($!)
			kill -HUP $DV && HUPS=$((HUPS + 1))
		done
		api POST /api/v1/cache/flush >/dev/null & BP+=($!)
		gen_local_list $G | write_inplace "$R/lists/local-hosts.txt"
		gen_names $G | write_inplace "$R/names.txt"
		touch "$R/lists/alert.txt"
		gen_local_list $G | write_atomic "$R/lists/local-hosts.txt"
		wait "${BP[@]}"
		clog "burst end"
		expect "g$G-0.lrot.test" NXDOMAIN "after burst"
	fi
	curl -sf --max-time 10 "http://$HTTP/healthz" >/dev/null || clog "HEALTHZ FAILED"
	kill -0 $DV || { clog "DNSVALVE DIED"; break; }
	sleep 2
done
[[ -f $R/www/url-list.txt ]] || gen_url_list $G >"$R/www/url-list.txt"
kill -0 $WWWPID 2>/dev/null || start_www
echo "iterations=$i invalid_episodes=$INVALID invalid_hups=$INVALID_HUP invalid_posts=$INVALID_POST hups=$HUPS" >"$R/chaos-summary.txt"
clog "chaos loop done: $(cat "$R/chaos-summary.txt")"

# ---- end
wait $P1 $P2 $P3 $PV $PM
clog "load done"
sleep 6
sample final
curl -s --max-time 20 "http://$HTTP/metrics" >"$R/final.metrics"
curl -s --max-time 20 "http://$HTTP/debug/pprof/goroutine?debug=1" >"$R/goroutines-final.txt"
cat /proc/net/snmp >"$R/snmp.txt"
ls -la $SOAK/q*.log >"$R/qlog-files.txt"
kill -TERM $DV
wait $DV; echo "dnsvalve exit status $?" | tee "$R/exit.txt"
kill -TERM $UPPID $WWWPID; wait $UPPID $WWWPID 2>/dev/null
kill $PS 2>/dev/null
echo "$(ts) scenario done" | tee -a "$R/chaos.log"

# ---- checks: one query-log record per counted query, every record right,
# a clean exit, no query lost by dnsperf.
"$TOOL" analyze $SOAK/q*.log >"$R/analyze.txt"
records=$(awk '$1=="stat" && $2=="query_records" {print $3}' "$R/analyze.txt")
counted=$(awk '/^dnsvalve_server_queries_total\{/ {s+=$2} END {printf "%d", s}' "$R/final.metrics")
lost=$(awk '/Queries lost:/ {s+=$3} END {printf "%d", s}' "$R"/dnsperf-*.txt)
status=0
check() { # check OK TEXT
	if [[ $1 == 1 ]]; then echo "check ok: $2"; else echo "CHECK FAILED: $2"; status=1; fi
}
check "$([[ -n $records && $records == "$counted" ]] && echo 1)" "$records query-log records, $counted queries counted"
check "$(grep -q '^no violations' "$R/analyze.txt" && echo 1)" "every record right (analyze.txt)"
check "$(grep -q 'exit status 0' "$R/exit.txt" && echo 1)" "exit status 0 on SIGTERM"
check "$([[ $lost == 0 ]] && echo 1)" "$lost queries lost by dnsperf"
exit $status
