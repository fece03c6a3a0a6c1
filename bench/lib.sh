# bench/lib.sh: shared machinery of the bench scripts (run.sh, lists.sh,
# querylog.sh, soak.sh). Source it; it defines functions and a few fixed
# names, and starts nothing by itself.
#
# The pattern every script follows:
#   outer part (host):  bench_require_tools; bench_mktemp; bench_build ...;
#                       generate data; bench_enter_netns "$0" (re-executes
#                       the script with BENCH_INNER=1 in a fresh network
#                       namespace); bench_finish_tmp.
#   inner part (netns): bench_inner_setup (lo up, refuses any other link,
#                       kills started processes on exit); start_upstream;
#                       start a server; measure; stop.
# shellcheck shell=bash
# shellcheck disable=SC2034 # ports and values are used by the sourcing scripts

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
REPO=${REPO:-$(cd "$BENCH_DIR/.." && pwd)}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
BENCH_NAME=${BENCH_NAME:-bench}

# Fixed loopback ports inside the namespace.
UPSTREAM_ADDR=127.0.0.1:5399
DNSVALVE_PORT=5300
DNSVALVE_HTTP=127.0.0.1:9300
UNBOUND_PORT=5301
CONST_PORT=5302
LISTS_HTTP_PORT=8399

log() { printf '[%s %s] %s\n' "$BENCH_NAME" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "ERROR: $*"
	exit 1
}

# merge_yaml BASE EXTRA: prints BASE with every top-level section that EXTRA
# also has replaced by EXTRA's (section-level merge, not a deep merge).
merge_yaml() {
	awk '
		FNR == NR { if ($0 ~ /^[A-Za-z_][A-Za-z0-9_]*:/) { k = $0; sub(/:.*/, "", k); over[k] = 1 } next }
		/^[A-Za-z_][A-Za-z0-9_]*:/ { k = $0; sub(/:.*/, "", k); skip = (k in over) }
		!skip { print }
	' "$2" "$1"
	cat "$2"
}

# expand_tmp FILE: FILE with every "@TMP@" replaced by the scratch directory,
# so variant configs can put query logs, seen stores etc. in it.
expand_tmp() {
	sed "s|@TMP@|$BENCH_TMP|g" "$1"
}

# gen_lists_for FILE...: for every "genlist-N.txt" the files mention,
# writes $BENCH_TMP/genlist-N.txt, a plain-domain block list of N names
# (bench/gen -set list -zone list.test.; needs $BENCH_TMP/gen).
gen_lists_for() {
	local f n
	for f in "$@"; do
		[[ -f $f ]] || continue
		while read -r n; do
			[[ -n $n && ! -f $BENCH_TMP/genlist-$n.txt ]] || continue
			log "generating a $n-name block list for $f"
			"$BENCH_TMP/gen" -set list -n "$n" -zone list.test. -o "$BENCH_TMP/genlist-$n.txt"
		done < <(grep -o 'genlist-[0-9]*\.txt' "$f" | sed 's/.*genlist-//; s/\.txt//' | sort -u)
	done
}

# bench_require_tools TOOL...: installs dnsperf (and unbound) with apt-get if
# missing, then checks every TOOL exists and the pinning CPUs are there.
bench_require_tools() {
	if ! command -v dnsperf >/dev/null || ! command -v unbound >/dev/null; then
		log "installing dnsperf and unbound"
		apt-get update -qq
		# No service may start (unbound would prime its trust anchor from the internet).
		local guard=""
		if [[ ! -e /usr/sbin/policy-rc.d ]]; then
			printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
		fi
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dnsperf unbound >/dev/null
		[[ -z $guard ]] || rm -f /usr/sbin/policy-rc.d
	fi
	local tool
	for tool in dnsperf taskset unshare ip awk sort getconf "$@"; do
		command -v "$tool" >/dev/null || die "missing $tool"
	done
	[[ $(nproc) -gt $SERVER_CPU && $(nproc) -gt $LOAD_CPU ]] || die "SERVER_CPU/LOAD_CPU not on this machine ($(nproc) CPUs)"
}

# bench_mktemp: creates and exports BENCH_TMP (a scratch directory).
bench_mktemp() {
	BENCH_TMP=$(mktemp -d "/tmp/dnsvalve-$BENCH_NAME.XXXXXX")
	export BENCH_TMP
	mkdir -p "$BENCH_TMP/data" "$BENCH_TMP/raw"
	echo "ready.probe.bench.test. A" >"$BENCH_TMP/data/probe.txt"
	log "scratch directory $BENCH_TMP"
}

# bench_build_tools: builds fakeupstream and gen (and constserver with
# "const") into $BENCH_TMP.
bench_build_tools() {
	(
		cd "$REPO" || exit 1
		go build -o "$BENCH_TMP/fakeupstream" ./bench/fakeupstream
		go build -o "$BENCH_TMP/gen" ./bench/gen
		if [[ ${1:-} == const ]]; then go build -o "$BENCH_TMP/constserver" ./bench/constserver; fi
	)
}

# bench_build_dnsvalve: $BENCH_TMP/dnsvalve from DNSVALVE_BIN or go build.
bench_build_dnsvalve() {
	if [[ -n ${DNSVALVE_BIN:-} ]]; then
		cp "$DNSVALVE_BIN" "$BENCH_TMP/dnsvalve"
		return 0
	fi
	log "building dnsvalve"
	if ! (cd "$REPO" && go build -o "$BENCH_TMP/dnsvalve" ./cmd/dnsvalve) 2>"$BENCH_TMP/dnsvalve-build.log"; then
		cat "$BENCH_TMP/dnsvalve-build.log" >&2
		return 1
	fi
}

# bench_enter_netns SCRIPT: runs SCRIPT again with BENCH_INNER=1 inside a new
# network namespace (only loopback); returns its exit status.
bench_enter_netns() {
	local rc=0
	log "entering a loopback-only network namespace"
	if [[ $(id -u) == 0 ]]; then
		BENCH_INNER=1 unshare --net -- bash "$1" || rc=$?
	else
		BENCH_INNER=1 unshare --net --map-root-user -- bash "$1" || rc=$?
	fi
	return "$rc"
}

# bench_finish_tmp: removes $BENCH_TMP unless KEEP_TMP=1.
bench_finish_tmp() {
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		log "kept $BENCH_TMP"
	else
		rm -rf "$BENCH_TMP"
	fi
}

# ---------------------------------------------------------------------------
# Inside the namespace.
# ---------------------------------------------------------------------------
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
}

# bench_inner_setup: loopback up, refuse to run with any other link, kill
# everything started (PIDS) on exit.
bench_inner_setup() {
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	ip link set lo up
	local others
	others=$(ip -o link show | awk -F': ' '$2 != "lo" { print $2 }')
	[[ -z $others ]] || die "network namespace has non-loopback links: $others"
}

CLK_TCK=$(getconf CLK_TCK)

# cpu_ticks PID: utime+stime of PID in clock ticks.
cpu_ticks() {
	# Fields after "pid (comm) ": state is 1, utime 12, stime 13.
	local stat rest
	stat=$(<"/proc/$1/stat")
	rest=${stat##*) }
	awk '{ print $12 + $13 }' <<<"$rest"
}

# cpu_busy CPU: "busy total" jiffies of CPU from /proc/stat (all processes).
cpu_busy() {
	awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat
}

# busy_pct "B0 T0" "B1 T1": percent busy between two cpu_busy samples.
busy_pct() {
	awk -v a="$1" -v b="$2" 'BEGIN { split(a, x); split(b, y); d = y[2] - x[2]; printf "%.0f", d ? (y[1] - x[1]) * 100 / d : 0 }'
}

# proc_kb PID FIELD: FIELD (VmRSS, VmHWM, ...) of /proc/PID/status in kB.
proc_kb() {
	awk -v k="$2:" '$1 == k { print $2; exit }' "/proc/$1/status"
}

# probe PORT: true once the server on PORT answers a query.
probe() {
	# 50 tries, 0.2 s apart plus up to 1 s each
	for _ in $(seq 1 50); do
		if dnsperf -s 127.0.0.1 -p "$1" -d "$BENCH_TMP/data/probe.txt" -n 1 -t 1 2>/dev/null |
			grep -Eq 'Queries completed: +1 '; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# wait_http_ok URL [TRIES]: true once URL answers 200 (0.1 s apart; no DNS sent).
wait_http_ok() {
	local i
	for ((i = 0; i < ${2:-300}; i++)); do
		curl -sf --max-time 1 -o /dev/null "$1" && return 0
		sleep 0.1
	done
	return 1
}

# start_upstream: starts the fake upstream on LOAD_CPU; sets UPSTREAM_PID.
start_upstream() {
	taskset -c "$LOAD_CPU" "$BENCH_TMP/fakeupstream" -listen "$UPSTREAM_ADDR" -stats \
		2>"$BENCH_TMP/upstream.log" &
	UPSTREAM_PID=$!
	PIDS+=("$UPSTREAM_PID")
	probe "${UPSTREAM_ADDR#*:}" || die "fake upstream did not answer"
}

# stop_upstream: stops it and sets UPSTREAM_ANSWERED to the queries it
# answered. Not for $(...): a subshell cannot wait for the process.
stop_upstream() {
	kill -TERM "$UPSTREAM_PID"
	wait "$UPSTREAM_PID" 2>/dev/null || true
	UPSTREAM_ANSWERED=$(awk '/answered/ { print $3 }' "$BENCH_TMP/upstream.log")
	UPSTREAM_ANSWERED=${UPSTREAM_ANSWERED:-?}
}

# start_dnsvalve CONFIG [LOG]: starts dnsvalve on SERVER_CPU without waiting;
# sets DNSVALVE_PID and DNSVALVE_T0 (wall clock just before the start).
start_dnsvalve() {
	DNSVALVE_T0=$EPOCHREALTIME
	taskset -c "$SERVER_CPU" "$BENCH_TMP/dnsvalve" serve --config "$1" >"${2:-$BENCH_TMP/dnsvalve.log}" 2>&1 &
	DNSVALVE_PID=$!
	PIDS+=("$DNSVALVE_PID")
}

# stop_pid PID: SIGTERM and wait (flushes dnsvalve's query log).
stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# metrics_text: dnsvalve's /metrics.
metrics_text() {
	curl -s --max-time 5 "http://$DNSVALVE_HTTP/metrics"
}

# metric_sum NAME [LABEL_MATCH]: sum of NAME's samples in dnsvalve's /metrics
# whose label set contains LABEL_MATCH (e.g. 'result="ok"'); 0 if none.
metric_sum() {
	metrics_text | awk -v n="$1" -v m="${2:-}" '
		$1 == n || index($1, n "{") == 1 { if (m == "" || index($1, m)) s += $NF }
		END { printf "%.0f\n", s }'
}

# dnsperf_stat FILE KEY: the first number after "KEY:" in dnsperf output.
dnsperf_stat() {
	awk -v k="$2:" 'index($0, k) { sub(/.*: */, ""); print $1 + 0; exit }' "$1"
}

# udp_counter NAME: NAME's value in the Udp: lines of /proc/net/snmp (this namespace).
udp_counter() {
	awk -v k="$1" '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else { print $col[k]; exit } }' /proc/net/snmp
}

# dnsperf_rcode FILE RCODE: how many answers of that rcode dnsperf counted (0 if none).
dnsperf_rcode() {
	awk -v r="$2" '/Response codes:/ { for (i = 1; i < NF; i++) if ($i == r) n = $(i + 1) } END { print n + 0 }' "$1"
}

# bench_header: "#" lines describing the run (date, git, machine, tools).
bench_header() {
	echo "# date=$(date -u +%Y-%m-%dT%H:%M:%SZ) git=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo -dirty)"
	echo "# machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); server_cpu=$SERVER_CPU load_cpu=$LOAD_CPU; loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "# $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/^/dnsperf /'); $(go version 2>/dev/null | cut -d' ' -f3)"
}
