#!/usr/bin/env bash
# bench/querylog.sh: does dnsvalve's query log account for every query at full
# speed? Inside a loopback-only network namespace (see bench/README.md).
#
#   1. dnsvalve with querylog.sinks: ["file:@TMP@/q.log?max_size_mb=100000"]
#      (no rotation; every q*.log* file is counted anyway), readiness taken
#      from /readyz so that no DNS query is sent besides dnsperf's; one dnsperf
#      run of QL_DURATION s at full speed (-c CLIENTS -q OUTSTANDING, the hits
#      set: after the first 1000 queries all cache hits); then /metrics
#      (dnsvalve_querylog_written/dropped/errors_total, dnsvalve_server_queries_total)
#      and the namespace's UDP counters (/proc/net/snmp: datagrams the kernel
#      dropped before dnsvalve read them), SIGTERM (flushes the log), wc -l.
#      Checks: lines + dropped + errors == queries dnsvalve received
#      (dnsvalve_server_queries_total), and
#      sent == received + kernel UDP receive drops;
#      i.e. sent - lines == dropped + errors + kernel drops, exactly.
#   2. cache-hit qps with the query log on vs off, same run (bench/run.sh with
#      VARIANTS="base: qlog:bench/configs/querylog-file.yaml", SETS=hits).
#
# Environment (all optional):
#   QL_DURATION=60     seconds of the full-speed dnsperf run
#   QPS_DURATION=15    DURATION of the run.sh pass; 0 skips step 2
#   CLIENTS=10 OUTSTANDING=500 SERVER_CPU=0 LOAD_CPU=1, DNSVALVE_BIN, KEEP_TMP=1,
#   RESULTS_DIR=bench/results ("" = don't write)
# Exit status 1 if the accounting does not add up.
set -euo pipefail

QL_DURATION=${QL_DURATION:-60}
QPS_DURATION=${QPS_DURATION:-15}
CLIENTS=${CLIENTS:-10}
OUTSTANDING=${OUTSTANDING:-500}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RESULTS_DIR=${RESULTS_DIR-$BENCH_DIR/results}
BENCH_NAME=querylog
export QL_DURATION QPS_DURATION CLIENTS OUTSTANDING RESULTS_DIR
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

outer() {
	bench_require_tools curl
	bench_mktemp
	log "building fakeupstream, gen, dnsvalve"
	bench_build_tools noconst
	bench_build_dnsvalve || die "go build ./cmd/dnsvalve failed"
	"$BENCH_TMP/gen" -set hits -n 1000 -o "$BENCH_TMP/data/hits.txt"
	local rc=0
	bench_enter_netns "$BENCH_DIR/querylog.sh" || rc=$?
	if [[ $QPS_DURATION != 0 ]]; then
		log "cache-hit qps with the query log on vs off (bench/run.sh)"
		VARIANTS="base: qlog:bench/configs/querylog-file.yaml" SERVERS=dnsvalve SETS=hits \
			DURATION=$QPS_DURATION DNSVALVE_BIN=$BENCH_TMP/dnsvalve bash "$BENCH_DIR/run.sh" || rc=$?
	fi
	bench_finish_tmp
	return "$rc"
}


inner() {
	bench_inner_setup
	start_upstream
	local cfg=$BENCH_TMP/querylog.yaml raw=$BENCH_TMP/raw/querylog
	mkdir -p "$BENCH_TMP/qlog"
	cat >"$cfg" <<EOF
server:
  listen: ["127.0.0.1:$DNSVALVE_PORT"]
http:
  listen: "$DNSVALVE_HTTP"
upstream:
  servers: ["udp://$UPSTREAM_ADDR"]
cache:
  size: 100000
state_dir: "$BENCH_TMP/state"
querylog:
  sinks: ["file:$BENCH_TMP/qlog/q.log?max_size_mb=100000"]
EOF
	start_dnsvalve "$cfg" "$BENCH_TMP/dnsvalve.log"
	wait_http_ok "http://$DNSVALVE_HTTP/readyz" 300 || {
		tail -20 "$BENCH_TMP/dnsvalve.log" >&2
		die "dnsvalve not ready"
	}
	local rcvbuf0 inerr0 rcvbuf1 inerr1
	rcvbuf0=$(udp_counter RcvbufErrors)
	inerr0=$(udp_counter InErrors)
	log "dnsperf at full speed for ${QL_DURATION}s"
	taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$DNSVALVE_PORT" -d "$BENCH_TMP/data/hits.txt" \
		-l "$QL_DURATION" -c "$CLIENTS" -q "$OUTSTANDING" >"$raw.dnsperf" 2>&1 || true
	# Late replies to the last in-flight queries, and the log writer's queue.
	sleep 2
	rcvbuf1=$(udp_counter RcvbufErrors)
	inerr1=$(udp_counter InErrors)
	local sent completed lost qps written dropped errors received queue
	sent=$(dnsperf_stat "$raw.dnsperf" "Queries sent")
	completed=$(dnsperf_stat "$raw.dnsperf" "Queries completed")
	lost=$(dnsperf_stat "$raw.dnsperf" "Queries lost")
	qps=$(dnsperf_stat "$raw.dnsperf" "Queries per second")
	metrics_text >"$raw.metrics"
	sum_metric() { awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }' "$raw.metrics"; }
	written=$(sum_metric dnsvalve_querylog_written_total)
	dropped=$(sum_metric dnsvalve_querylog_dropped_total)
	errors=$(sum_metric dnsvalve_querylog_errors_total)
	queue=$(sum_metric dnsvalve_querylog_queue_length)
	received=$(sum_metric dnsvalve_server_queries_total)
	stop_pid "$DNSVALVE_PID"
	stop_upstream
	local lines files bytes
	lines=$(cat "$BENCH_TMP"/qlog/q*.log* | wc -l)
	files=$(find "$BENCH_TMP/qlog" -type f | wc -l)
	bytes=$(du -cb "$BENCH_TMP"/qlog/q*.log* | tail -1 | cut -f1)
	local kdrop=$((rcvbuf1 - rcvbuf0)) kinerr=$((inerr1 - inerr0))
	local verdict=PASS why=()
	if ((lines + dropped + errors != received)); then
		verdict=FAIL
		why+=("lines+dropped+errors $((lines + dropped + errors)) != received $received")
	fi
	if ((sent != received + kinerr)); then
		verdict=FAIL
		why+=("sent $sent != received $received + kernel UDP InErrors $kinerr")
	fi
	local out=$BENCH_TMP/result-querylog.txt
	{
		echo "# dnsvalve query-log accounting (bench/querylog.sh)"
		bench_header
		echo "# QL_DURATION=${QL_DURATION}s clients=$CLIENTS outstanding=$OUTSTANDING set=hits(1000 names) sink=file (no rotation)"
		echo
		echo "dnsperf_queries_sent        $sent"
		echo "dnsperf_queries_completed   $completed"
		echo "dnsperf_queries_lost        $lost (dnsperf 2.10 waits for queries in flight at the end: these are real losses)"
		echo "dnsperf_qps                 $qps"
		echo "kernel_udp_rcvbuf_errors    $kdrop (namespace /proc/net/snmp: datagrams dropped before dnsvalve read them)"
		echo "kernel_udp_in_errors        $kinerr"
		echo "dnsvalve_queries_received   $received (sum of dnsvalve_server_queries_total)"
		echo "querylog_lines              $lines (wc -l over $files file(s), $bytes bytes, after SIGTERM)"
		echo "querylog_written_total      $written (before SIGTERM; queue_length then $queue)"
		echo "querylog_dropped_total      $dropped"
		echo "querylog_errors_total       $errors"
		echo "sent - lines                $((sent - lines)) = dropped $dropped + errors $errors + kernel drops $kinerr ? $((dropped + errors + kinerr))"
		echo "lines / sent                $(awk -v a="$lines" -v b="$sent" 'BEGIN { printf "%.6f", b ? a / b : 0 }')"
		echo "verdict                     $verdict${why:+: ${why[*]}}"
	} | tee "$out"
	if [[ -n $RESULTS_DIR ]]; then
		mkdir -p "$RESULTS_DIR"
		cp "$out" "$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M)-querylog.txt"
	fi
	rm -rf "$BENCH_TMP/qlog"
	[[ $verdict == PASS ]]
}

if [[ ${BENCH_INNER:-0} == 1 ]]; then
	inner
else
	outer
fi
