#!/usr/bin/env bash
# bench/soak.sh: soak test of dnsvalve with the full feature set, inside a
# loopback-only network namespace (see bench/README.md, "soak.sh").
#
# dnsvalve runs with four block lists (a 100,000-name generated list, hagezi
# light domains, urlhaus adblock, hagezi RPZ; copies in the scratch dir),
# detection observe (the default), the query log to a rotated file (100 MB x 3
# backups). Load: the mix set with every 50th query a blocked name, at RATE
# qps (default: 80 % of a CAP_DURATION s max pass) for SOAK_DURATION s. During
# the run, after the warm-up: the fake upstream is killed and started again on
# the same port EVENTS times, and a list file is changed followed by SIGHUP
# EVENTS times (alternating).
#
# Fails (exit 1) unless: no query timed out (dnsperf's [Timeout] lines, -t 5;
# dnsperf 2.10 waits for the queries in flight when -l ends, so they are real
# losses; the namespace's UDP RcvbufErrors say how many the kernel dropped
# because dnsvalve fell behind), VmRSS at the end within 10 % of VmRSS after the warm-up,
# go_goroutines at the end <= after the warm-up + GOROUTINE_SLACK, every
# reload counted as dnsvalve_config_reloads_total{result="ok"} and its new
# list entry answered blocked.
#
# Then, unless QPS_DURATION=0: cache-hit qps with detection observe vs off,
# same run (bench/run.sh, VARIANTS="detectoff:bench/configs/detect-off.yaml observe:").
#
# Environment (all optional):
#   SOAK_DURATION=300   seconds of load
#   WARMUP=             seconds before the "start" RSS/goroutine reading (default SOAK_DURATION/5, >= 15)
#   RATE=               qps of the soak load (default 80 % of the measured max)
#   CAP_DURATION=10     seconds of the capacity pass (skipped when RATE is set)
#   EVENTS=2            upstream restarts and reloads, each
#   GOROUTINE_SLACK=10  RSS_TOLERANCE=10 (percent)
#   QPS_DURATION=15     run.sh DURATION of the detection on/off pass; 0 skips it
#   BLOCKLISTS=/work/shared/testdata/blocklists
#   CLIENTS=10 OUTSTANDING=500 SERVER_CPU=0 LOAD_CPU=1, DNSVALVE_BIN, KEEP_TMP=1,
#   RESULTS_DIR=bench/results ("" = don't write)
set -euo pipefail

SOAK_DURATION=${SOAK_DURATION:-300}
WARMUP=${WARMUP:-$((SOAK_DURATION / 5 > 15 ? SOAK_DURATION / 5 : 15))}
RATE=${RATE:-}
CAP_DURATION=${CAP_DURATION:-10}
EVENTS=${EVENTS:-2}
GOROUTINE_SLACK=${GOROUTINE_SLACK:-10}
RSS_TOLERANCE=${RSS_TOLERANCE:-10}
QPS_DURATION=${QPS_DURATION:-15}
CLIENTS=${CLIENTS:-10}
OUTSTANDING=${OUTSTANDING:-500}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BLOCKLISTS=${BLOCKLISTS:-$(cd "$REPO/.." && pwd)/shared/testdata/blocklists}
RESULTS_DIR=${RESULTS_DIR-$BENCH_DIR/results}
BENCH_NAME=soak
export SOAK_DURATION WARMUP RATE CAP_DURATION EVENTS GOROUTINE_SLACK RSS_TOLERANCE QPS_DURATION \
	CLIENTS OUTSTANDING BLOCKLISTS RESULTS_DIR
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

outer() {
	bench_require_tools curl dig
	((SOAK_DURATION >= 40)) || die "SOAK_DURATION must be >= 40"
	((WARMUP < SOAK_DURATION * 3 / 10)) || die "WARMUP must end before the first event (30 % of SOAK_DURATION)"
	bench_mktemp
	log "building fakeupstream, gen, dnsvalve"
	bench_build_tools noconst
	bench_build_dnsvalve || die "go build ./cmd/dnsvalve failed"
	local d=$BENCH_TMP/data l=$BENCH_TMP/lists
	mkdir -p "$l"
	"$BENCH_TMP/gen" -set list -n 100000 -seed 7 -zone list.test. -o "$l/soak100k.txt"
	cp "$BLOCKLISTS/hagezi-legacy/domains/light.txt" "$l/hagezi-light.txt"
	cp "$BLOCKLISTS/urlhaus-filter/urlhaus-filter-agh.txt" "$l/urlhaus-agh.txt"
	cp "$BLOCKLISTS/hagezi/rpz/tif.light.txt" "$l/hagezi-tif-rpz.txt"
	chmod u+w "$l"/*
	"$BENCH_TMP/gen" -set popular -popular 10000 -o "$d/warm.txt"
	"$BENCH_TMP/gen" -set mix -n 1000000 -popular 10000 -seed 3 -o "$d/mix.txt"
	# Every 50th query: a name of the 100k list (blocked).
	awk 'FNR == NR { b[n++] = $1; next } FNR % 50 == 0 { print b[int(FNR / 50) % n] ". A"; next } { print }' \
		"$l/soak100k.txt" "$d/mix.txt" >"$d/soak.txt"
	local rc=0
	bench_enter_netns "$BENCH_DIR/soak.sh" || rc=$?
	if [[ $QPS_DURATION != 0 ]]; then
		log "cache-hit qps with detection observe vs off (bench/run.sh)"
		VARIANTS="detectoff:bench/configs/detect-off.yaml observe:" SERVERS=dnsvalve SETS=hits \
			DURATION=$QPS_DURATION DNSVALVE_BIN=$BENCH_TMP/dnsvalve bash "$BENCH_DIR/run.sh" || rc=$((rc ? rc : $?))
	fi
	bench_finish_tmp
	return "$rc"
}

write_config() {
	local l=$BENCH_TMP/lists
	cat >"$BENCH_TMP/soak.yaml" <<EOF
server:
  listen: ["127.0.0.1:$DNSVALVE_PORT"]
http:
  listen: "$DNSVALVE_HTTP"
  pprof: true
upstream:
  servers: ["udp://$UPSTREAM_ADDR"]
  timeout: 2s
cache:
  size: 100000
  prefetch: true
state_dir: "$BENCH_TMP/state"
lists:
  - name: soak100k
    category: synthetic
    sources: ["$l/soak100k.txt"]
  - name: hagezi-light
    category: ads
    sources: ["$l/hagezi-light.txt"]
  - name: urlhaus
    category: malware
    sources: ["$l/urlhaus-agh.txt"]
  - name: tif-rpz
    category: malware
    sources: ["$l/hagezi-tif-rpz.txt"]
policies:
  default:
    block: [synthetic, malware]
    alert: [ads]
    detect: observe
detect:
  newly_seen:
    store: "file:$BENCH_TMP/state/seen.db"
querylog:
  sinks: ["file:$BENCH_TMP/qlog/q.log?max_size_mb=100&max_backups=3"]
EOF
}

# reading: "VmRSS_kB go_goroutines RssAnon_kB RssFile_kB" of the running dnsvalve.
reading() {
	echo "$(proc_kb "$DNSVALVE_PID" VmRSS) $(metric_sum go_goroutines) $(proc_kb "$DNSVALVE_PID" RssAnon) $(proc_kb "$DNSVALVE_PID" RssFile)"
}

# diag NAME: "heap_inuse_MiB heap_released_MiB cache_entries" right after a
# forced GC (taken after reading(), so the RSS reading is not changed by it):
# tells live data from garbage and from memory the runtime has not yet
# returned to the OS when RSS moves.
# $1 names the heap profile kept in the scratch dir (heap-$1.pb.gz).
diag() {
	curl -fsS -o "$BENCH_TMP/heap-$1.pb.gz" "http://$DNSVALVE_HTTP/debug/pprof/heap?gc=1" || true
	echo "$(metric_sum go_memstats_heap_inuse_bytes | awk '{ printf "%.1f", $1 / 1048576 }') \
$(metric_sum go_memstats_heap_released_bytes | awk '{ printf "%.1f", $1 / 1048576 }') $(metric_sum dnsvalve_cache_entries)"
}

# goroutine_summary: the five most common goroutine stacks, as
# "count function" lines (the innermost frame of this program or of net/http).
goroutine_summary() {
	curl -fsS "http://$DNSVALVE_HTTP/debug/pprof/goroutine?debug=1" 2>/dev/null | awk '
		/^[0-9]+ @/ { n = $1; want = 1; next }
		want && /^#/ && ($3 ~ /dnsvalve|net\/http|miekg/) { sub(/\+0x[0-9a-f]+$/, "", $3); printf "%6d %s\n", n, $3; want = 0 }
		/^$/ { if (want && n) printf "%6d %s\n", n, "(runtime only)"; want = 0 }' | sort -rn | head -5
}


# sleep_until T: sleeps until T seconds after the soak started.
sleep_until() {
	local now
	now=$(awk -v a="$SOAK_T0" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
	awk -v t="$1" -v n="$now" 'BEGIN { exit !(t > n) }' && sleep "$(awk -v t="$1" -v n="$now" 'BEGIN { print t - n }')"
	return 0
}

inner() {
	bench_inner_setup
	mkdir -p "$BENCH_TMP/qlog" "$BENCH_TMP/state"
	write_config
	start_upstream
	start_dnsvalve "$BENCH_TMP/soak.yaml" "$BENCH_TMP/dnsvalve.log"
	wait_http_ok "http://$DNSVALVE_HTTP/readyz" 600 || {
		tail -20 "$BENCH_TMP/dnsvalve.log" >&2
		die "dnsvalve not ready"
	}
	local d=$BENCH_TMP/data raw=$BENCH_TMP/raw
	taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$DNSVALVE_PORT" -d "$d/warm.txt" -n 1 -q 100 >"$raw/warm" 2>&1 || true
	local cap=""
	if [[ -z $RATE ]]; then
		taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$DNSVALVE_PORT" -d "$d/soak.txt" -l "$CAP_DURATION" \
			-c "$CLIENTS" -q "$OUTSTANDING" >"$raw/capacity" 2>&1 || true
		cap=$(dnsperf_stat "$raw/capacity" "Queries per second")
		RATE=$(awk -v q="$cap" 'BEGIN { print int(q * 0.8) }')
		log "capacity ${cap} qps over ${CAP_DURATION}s; soak at $RATE qps"
	fi
	local reloads_ok0 reloads_err0
	reloads_ok0=$(metric_sum dnsvalve_config_reloads_total 'result="ok"')
	reloads_err0=$(metric_sum dnsvalve_config_reloads_total 'result="error"')

	log "soak: $RATE qps for ${SOAK_DURATION}s (warm-up ${WARMUP}s, $EVENTS upstream restarts, $EVENTS reloads)"
	local kdrop0
	kdrop0=$(udp_counter RcvbufErrors)
	SOAK_T0=$EPOCHREALTIME
	taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$DNSVALVE_PORT" -d "$d/soak.txt" -l "$SOAK_DURATION" \
		-c "$CLIENTS" -q "$OUTSTANDING" -Q "$RATE" -t 5 -S 10 >"$raw/soak" 2>&1 &
	local perf_pid=$!
	PIDS+=("$perf_pid")

	sleep_until "$WARMUP"
	local rss0 gor0 rss1 gor1 anon0 file0 anon1 file1
	read -r rss0 gor0 anon0 file0 < <(reading)
	log "after warm-up: VmRSS $rss0 kB, $gor0 goroutines"
	local diag0 diag1 gsum0 gsum1
	diag0=$(diag warmup)
	gsum0=$(goroutine_summary)
	# Events between 30 % and 80 % of the run, alternating restart / reload.
	local n=$((2 * EVENTS)) k at restarts=0 reloads=0 reload_fail=0 events_log=()
	for ((k = 0; k < n; k++)); do
		at=$(awk -v d="$SOAK_DURATION" -v k="$k" -v n="$n" 'BEGIN { printf "%.1f", d * (0.3 + 0.5 * k / (n > 1 ? n - 1 : 1)) }')
		sleep_until "$at"
		if ((k % 2 == 0)); then
			stop_upstream
			start_upstream
			restarts=$((restarts + 1))
			events_log+=("t=${at}s upstream restarted")
			log "t=${at}s: fake upstream restarted"
		else
			local name="soak-reload-$k.list.test"
			echo "$name" >>"$BENCH_TMP/lists/soak100k.txt"
			kill -HUP "$DNSVALVE_PID"
			reloads=$((reloads + 1))
			local end=$((SECONDS + 30)) blocked=0
			while ((SECONDS < end)); do
				if dig @127.0.0.1 -p "$DNSVALVE_PORT" +tries=1 +time=1 "$name" A 2>/dev/null | grep -q 'EDE: 15'; then
					blocked=1
					break
				fi
				sleep 0.1
			done
			((blocked)) || reload_fail=$((reload_fail + 1))
			events_log+=("t=${at}s list changed + SIGHUP: new name blocked=$blocked")
			log "t=${at}s: list changed + SIGHUP, new name blocked=$blocked"
		fi
	done
	sleep_until "$((SOAK_DURATION - 3))"
	read -r rss1 gor1 anon1 file1 < <(reading)
	local hwm
	hwm=$(proc_kb "$DNSVALVE_PID" VmHWM)
	log "at the end: VmRSS $rss1 kB (VmHWM $hwm), $gor1 goroutines"
	diag1=$(diag end)
	gsum1=$(goroutine_summary)
	wait "$perf_pid" || true
	sleep 1
	local kdrop=$(($(udp_counter RcvbufErrors) - kdrop0))
	local reloads_ok reloads_err qdropped qerr alerts
	reloads_ok=$(($(metric_sum dnsvalve_config_reloads_total 'result="ok"') - reloads_ok0))
	reloads_err=$(($(metric_sum dnsvalve_config_reloads_total 'result="error"') - reloads_err0))
	qdropped=$(metric_sum dnsvalve_querylog_dropped_total)
	qerr=$(metric_sum dnsvalve_querylog_errors_total)
	alerts=$(metric_sum dnsvalve_detect_alerts_total)
	metrics_text >"$raw/soak.metrics"
	stop_pid "$DNSVALVE_PID"
	stop_upstream

	local sent completed lost qps timeouts rcodes
	sent=$(dnsperf_stat "$raw/soak" "Queries sent")
	completed=$(dnsperf_stat "$raw/soak" "Queries completed")
	lost=$(dnsperf_stat "$raw/soak" "Queries lost")
	qps=$(dnsperf_stat "$raw/soak" "Queries per second")
	timeouts=$(grep -c '^\[Timeout\]' "$raw/soak" || true)
	rcodes=$(awk '/Response codes:/ { sub(/.*Response codes: */, ""); print; exit }' "$raw/soak")
	local verdict=PASS why=() rss_pct
	rss_pct=$(awk -v a="$rss0" -v b="$rss1" 'BEGIN { printf "%+.1f", a ? (b - a) * 100 / a : 0 }')
	((timeouts == 0)) || { verdict=FAIL; why+=("$timeouts queries timed out"); }
	awk -v p="$rss_pct" -v t="$RSS_TOLERANCE" 'BEGIN { exit !(p <= t && p >= -t) }' || { verdict=FAIL; why+=("RSS changed ${rss_pct}%"); }
	((gor1 <= gor0 + GOROUTINE_SLACK)) || { verdict=FAIL; why+=("goroutines $gor0 -> $gor1"); }
	((reloads_ok == reloads && reloads_err == 0 && reload_fail == 0)) || { verdict=FAIL; why+=("reloads ok $reloads_ok/$reloads, error $reloads_err, not applied $reload_fail"); }

	local out=$BENCH_TMP/result-soak.txt
	{
		echo "# dnsvalve soak (bench/soak.sh)"
		bench_header
		echo "# SOAK_DURATION=${SOAK_DURATION}s WARMUP=${WARMUP}s EVENTS=$EVENTS clients=$CLIENTS outstanding=$OUTSTANDING"
		echo "# features: 4 block lists (100k generated, hagezi light 90k, urlhaus adblock, hagezi TIF RPZ), alert list,"
		echo "# detect observe + newly-seen bbolt store, query log to a rotated file; load: mix set, every 50th query blocked"
		echo
		[[ -n $cap ]] && echo "capacity_qps             $cap (max pass, ${CAP_DURATION}s)"
		echo "rate_qps                 $RATE (dnsperf -Q)"
		echo "qps_held                 $qps"
		echo "queries_sent             $sent"
		echo "queries_completed        $completed"
		echo "queries_timed_out        $timeouts (real losses: dnsperf [Timeout] lines, -t 5)"
		echo "dnsperf_queries_lost     $lost"
		echo "kernel_udp_rcvbuf_drops  $kdrop (namespace /proc/net/snmp: queries dropped before dnsvalve read them)"
		echo "response_codes           $rcodes"
		echo "rss_after_warmup_kb      $rss0 (RssAnon $anon0, RssFile $file0)"
		echo "rss_end_kb               $rss1 (${rss_pct}%; RssAnon $anon1, RssFile $file1; VmHWM $hwm)"
		echo "goroutines_after_warmup  $gor0"
		echo "goroutines_end           $gor1"
		echo "after_gc_warmup          heap_inuse/released MiB, cache entries: $diag0"
		echo "after_gc_end             heap_inuse/released MiB, cache entries: $diag1"
		echo "heap_growth_top          (live bytes after GC, end minus warm-up: go tool pprof -top -sample_index=inuse_space -base)"
		go tool pprof -top -sample_index=inuse_space -nodecount=8 -base "$BENCH_TMP/heap-warmup.pb.gz" "$BENCH_TMP/heap-end.pb.gz" 2>/dev/null |
			awk '/flat%/ { on = 1; next } on { print "    " $0 }' || true
		echo "goroutine_stacks_warmup"
		sed 's/^/    /' <<<"$gsum0"
		echo "goroutine_stacks_end"
		sed 's/^/    /' <<<"$gsum1"
		echo "upstream_restarts        $restarts survived"
		echo "reloads                  $reloads (dnsvalve_config_reloads_total ok +$reloads_ok, error +$reloads_err; not applied $reload_fail)"
		echo "querylog_dropped_total   $qdropped"
		echo "querylog_errors_total    $qerr"
		echo "detect_alerts_total      $alerts"
		printf 'event                    %s\n' "${events_log[@]}"
		echo "verdict                  $verdict${why:+: ${why[*]}}"
	} | tee "$out"
	if [[ -n $RESULTS_DIR ]]; then
		mkdir -p "$RESULTS_DIR"
		cp "$out" "$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M)-soak.txt"
	fi
	rm -rf "$BENCH_TMP/qlog"
	[[ $verdict == PASS ]]
}

if [[ ${BENCH_INNER:-0} == 1 ]]; then
	inner
else
	outer
fi
