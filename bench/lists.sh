#!/usr/bin/env bash
# bench/lists.sh: policy-engine numbers of dnsvalve, inside a loopback-only
# network namespace (see bench/README.md, "lists.sh").
#
#   1. ready time and RSS growth with a synthetic LIST_N-name block list
#      (bench/gen -set list) vs the same config with an empty list;
#   2. the same with every file of BLOCKLISTS as a list of its own (format auto);
#   3. refresh peak: the LIST_N list served over HTTP (python3 -m http.server)
#      with refresh: 10s; the file changes, the list reloads; VmRSS sampled
#      every 50 ms across the refresh;
#   4. cache-hit qps with the list loaded vs without, same run (bench/run.sh
#      with VARIANTS="base: lists2m:bench/configs/lists-2m.yaml", SETS=hits,
#      ROUNDS=QPS_ROUNDS: the median of the rounds' ratios is the figure).
#
# Ready time: from just before dnsvalve is exec'd until the LAST name of the
# list is answered NXDOMAIN with EDE 15 (Blocked); dig polls every 20 ms.
# RSS: VmRSS / VmHWM of /proc/PID/status right after ready and SETTLE s later.
#
# Environment (all optional):
#   LIST_N=2000000        names in the synthetic list
#   BLOCKLISTS=/work/shared/testdata/blocklists   real lists (every file but *.md)
#   SETTLE=3              seconds after ready before the second RSS reading
#   REFRESH_STEADY=12     seconds sampled before the list file changes (the
#                         first 10 s refresh tick, a 304, falls in it)
#   REFRESH_AFTER=30      seconds sampled after the changed list is being served
#   QPS_DURATION=15       DURATION of the run.sh cache-hit pass; 0 skips step 4
#   QPS_ROUNDS=3          ROUNDS of it (each round measures both, interleaved)
#   PARTS="synthetic real refresh qps"   which steps to run
#   SERVER_CPU=0 LOAD_CPU=1, DNSVALVE_BIN, KEEP_TMP=1, RESULTS_DIR=bench/results ("" = don't write)
set -euo pipefail

LIST_N=${LIST_N:-2000000}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
BLOCKLISTS=${BLOCKLISTS:-$(cd "$REPO/.." && pwd)/shared/testdata/blocklists}
SETTLE=${SETTLE:-3}
REFRESH_STEADY=${REFRESH_STEADY:-12}
REFRESH_AFTER=${REFRESH_AFTER:-30}
QPS_DURATION=${QPS_DURATION:-15}
PARTS=${PARTS:-"synthetic real refresh qps"}
RESULTS_DIR=${RESULTS_DIR-$BENCH_DIR/results}
BENCH_NAME=lists
export LIST_N BLOCKLISTS SETTLE REFRESH_STEADY REFRESH_AFTER QPS_DURATION PARTS RESULTS_DIR
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

outer() {
	bench_require_tools dig curl python3
	[[ -d $BLOCKLISTS ]] || die "BLOCKLISTS $BLOCKLISTS is not a directory"
	bench_mktemp
	log "building fakeupstream, gen, dnsvalve"
	bench_build_tools noconst
	bench_build_dnsvalve || die "go build ./cmd/dnsvalve failed"
	log "generating a $LIST_N-name list"
	"$BENCH_TMP/gen" -set list -n "$LIST_N" -zone list.test. -o "$BENCH_TMP/list.txt"
	: >"$BENCH_TMP/empty.txt"
	local rc=0
	bench_enter_netns "$BENCH_DIR/lists.sh" || rc=$?
	if [[ $rc == 0 && " $PARTS " == *" qps "* && $QPS_DURATION != 0 ]]; then
		log "cache-hit qps with the 2M list vs without (bench/run.sh)"
		VARIANTS="base: lists2m:bench/configs/lists-2m.yaml" SERVERS=dnsvalve SETS=hits ROUNDS=${QPS_ROUNDS:-3} \
			DURATION=$QPS_DURATION DNSVALVE_BIN=$BENCH_TMP/dnsvalve bash "$BENCH_DIR/run.sh" || rc=$?
	fi
	bench_finish_tmp
	return "$rc"
}

# write_config NAME LISTS_YAML POLICY_BLOCK: $BENCH_TMP/NAME.yaml.
write_config() {
	cat >"$BENCH_TMP/$1.yaml" <<EOF
server:
  listen: ["127.0.0.1:$DNSVALVE_PORT"]
http:
  listen: "$DNSVALVE_HTTP"
upstream:
  servers: ["udp://$UPSTREAM_ADDR"]
cache:
  size: 100000
state_dir: "$BENCH_TMP/state-$1"
$2
policies:
  default:
    block: [$3]
querylog:
  sinks: []
EOF
}

# dig_blocked NAME: true if NAME is answered NXDOMAIN with EDE 15 (Blocked).
dig_blocked() {
	local out
	out=$(dig @127.0.0.1 -p "$DNSVALVE_PORT" +tries=1 +time=1 "$1" A 2>/dev/null) || return 1
	[[ $out == *"status: NXDOMAIN"* && $out == *"EDE: 15"* ]]
}

# wait_blocked NAME [TIMEOUT_S]: polls every 20 ms until NAME is blocked.
wait_blocked() {
	local end=$((SECONDS + ${2:-300}))
	while ((SECONDS < end)); do
		dig_blocked "$1" && return 0
		sleep 0.02
	done
	return 1
}

# rss_now PID: "VmRSS VmHWM" in kB, no forks.
rss_now() {
	local k v _ rss=0 hwm=0
	while read -r k v _; do
		case $k in
		VmRSS:) rss=$v ;;
		VmHWM:) hwm=$v ;;
		esac
	done <"/proc/$1/status"
	echo "$rss $hwm"
}

# measure_ready NAME PROBE_NAME [RCODE]: starts dnsvalve on $BENCH_TMP/NAME.yaml,
# waits until PROBE_NAME is blocked (or, with RCODE, answered with that
# status), appends "NAME ready_s rss_ready hwm_ready rss_settled hwm_settled
# entries load_s" to READY_ROWS and stops it.
measure_ready() {
	local name=$1 probe_name=$2 rcode=${3:-} t1 ready rss hwm rss2 hwm2 entries load end=$((SECONDS + 300))
	start_dnsvalve "$BENCH_TMP/$name.yaml" "$BENCH_TMP/dnsvalve-$name.log"
	while :; do
		if [[ -n $rcode ]]; then
			dig @127.0.0.1 -p "$DNSVALVE_PORT" +tries=1 +time=1 "$probe_name" A 2>/dev/null | grep -q "status: $rcode" && break
		else
			dig_blocked "$probe_name" && break
		fi
		if ((SECONDS >= end)) || ! kill -0 "$DNSVALVE_PID" 2>/dev/null; then
			tail -20 "$BENCH_TMP/dnsvalve-$name.log" >&2
			die "$name: $probe_name never answered ${rcode:-blocked}"
		fi
		sleep 0.02
	done
	t1=$EPOCHREALTIME
	read -r rss hwm < <(rss_now "$DNSVALVE_PID")
	ready=$(awk -v a="$DNSVALVE_T0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
	sleep "$SETTLE"
	read -r rss2 hwm2 < <(rss_now "$DNSVALVE_PID")
	entries=$(metric_sum dnsvalve_lists_entries)
	load=$(metrics_text | awk '/^dnsvalve_lists_load_duration_seconds_sum/ { s += $NF } END { printf "%.2f", s }')
	stop_pid "$DNSVALVE_PID"
	log "$name: ready ${ready}s, VmRSS ${rss} kB (settled ${rss2}), VmHWM ${hwm2} kB, ${entries} entries, load ${load}s"
	READY_ROWS+=("$name $ready $rss $hwm $rss2 $hwm2 $entries $load")
}

# last_plain_name FILE: the last line of FILE that is a bare domain name.
last_plain_name() {
	grep -E '^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)+$' "$1" | tail -1
}

part_ready() {
	local lists="" block="" f n i=0 probe_file probe_name
	# Synthetic: the LIST_N list vs an empty one, same config otherwise.
	if [[ " $PARTS " == *" synthetic "* ]]; then
		write_config empty "lists:
  - name: synthetic
    sources: [\"$BENCH_TMP/empty.txt\"]
    format: domains" synthetic
		write_config synthetic "lists:
  - name: synthetic
    sources: [\"$BENCH_TMP/list.txt\"]
    format: domains
    max_bytes: 268435456" synthetic
		# The empty config has nothing to block: its readiness probe is the
		# synthetic list's last name answered by the fake upstream (NOERROR).
		measure_ready empty "$(tail -1 "$BENCH_TMP/list.txt")" NOERROR
		measure_ready synthetic "$(tail -1 "$BENCH_TMP/list.txt")"
	fi
	if [[ " $PARTS " == *" real "* ]]; then
		# Every file of BLOCKLISTS as its own list; a plain-domain file last
		# so its last line is the readiness probe.
		probe_file=$(find "$BLOCKLISTS" -type f -name '*-nl.txt' | sort | tail -1)
		[[ -n $probe_file ]] || probe_file=$(find "$BLOCKLISTS" -type f ! -name '*.md' | sort | tail -1)
		lists="lists:"
		while read -r f; do
			[[ $f == "$probe_file" ]] && continue
			lists+="
  - name: real$i
    sources: [\"$f\"]
    format: auto
    max_bytes: 268435456"
			block+="real$i, "
			i=$((i + 1))
		done < <(find "$BLOCKLISTS" -type f ! -name '*.md' | sort)
		lists+="
  - name: real$i
    sources: [\"$probe_file\"]
    format: auto
    max_bytes: 268435456"
		block+="real$i"
		n=$((i + 1))
		probe_name=$(last_plain_name "$probe_file")
		write_config real "$lists" "$block"
		log "real lists: $n files, probe $probe_name (last of $probe_file)"
		measure_ready real "$probe_name"
	fi
}

# part_refresh: the list over HTTP with refresh: 10s; change the file; sample
# VmRSS every 50 ms. Sets REFRESH_LINES.
part_refresh() {
	local www=$BENCH_TMP/www samples=$BENCH_TMP/refresh-samples.txt http_pid sampler t_change t_blocked
	mkdir -p "$www"
	cp "$BENCH_TMP/list.txt" "$www/list.txt"
	touch -d '-1 minute' "$www/list.txt"
	taskset -c "$LOAD_CPU" python3 -m http.server "$LISTS_HTTP_PORT" --bind 127.0.0.1 --directory "$www" \
		>"$BENCH_TMP/http.log" 2>&1 &
	http_pid=$!
	PIDS+=("$http_pid")
	wait_http_ok "http://127.0.0.1:$LISTS_HTTP_PORT/" 100 || die "list HTTP server did not start"
	write_config refresh "lists:
  - name: synthetic
    sources: [\"http://127.0.0.1:$LISTS_HTTP_PORT/list.txt\"]
    format: domains
    refresh: 10s
    max_bytes: 268435456" synthetic
	start_dnsvalve "$BENCH_TMP/refresh.yaml" "$BENCH_TMP/dnsvalve-refresh.log"
	wait_blocked "$(tail -1 "$www/list.txt")" 300 || die "refresh: list never loaded"
	# Sampler: "seconds-since-start VmRSS VmHWM" every 50 ms.
	(
		local k v _ rss hwm now
		while [[ -r /proc/$DNSVALVE_PID/status ]]; do
			rss=0 hwm=0
			while read -r k v _; do
				case $k in VmRSS:) rss=$v ;; VmHWM:) hwm=$v ;; esac
			done <"/proc/$DNSVALVE_PID/status" 2>/dev/null || break
			now=$EPOCHREALTIME
			echo "$now $rss $hwm"
			sleep 0.05
		done
	) >"$samples" &
	sampler=$!
	PIDS+=("$sampler")
	sleep "$REFRESH_STEADY"
	local ok0
	ok0=$(metric_sum dnsvalve_lists_refresh_total 'result="ok"')
	# The change: one more name at the end (new size, new mtime).
	echo "refreshed-probe.list.test" >>"$www/list.txt"
	t_change=$EPOCHREALTIME
	wait_blocked refreshed-probe.list.test 60 || die "refresh: the changed list was never served"
	t_blocked=$EPOCHREALTIME
	sleep "$REFRESH_AFTER"
	local ok1 nm
	ok1=$(metric_sum dnsvalve_lists_refresh_total 'result="ok"')
	nm=$(metric_sum dnsvalve_lists_refresh_total 'result="not_modified"')
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	stop_pid "$DNSVALVE_PID"
	stop_pid "$http_pid"
	# steady: median VmRSS before the change; peak: max after it; peak
	# duration: time VmRSS stayed above steady + half the rise, and above
	# steady + 10 %.
	REFRESH_LINES=$(awk -v tc="$t_change" -v tb="$t_blocked" -v ok="$((ok1 - ok0))" -v nm="$nm" '
		{ t[NR] = $1; r[NR] = $2; h = $3; if ($1 < tc) pre[++np] = $2 }
		END {
			# median of pre-change samples (insertion sort is fine: a few hundred)
			for (i = 2; i <= np; i++) { x = pre[i]; for (j = i - 1; j >= 1 && pre[j] > x; j--) pre[j + 1] = pre[j]; pre[j + 1] = x }
			steady = pre[int((np + 1) / 2)]
			peak = 0; for (i = 1; i <= NR; i++) if (t[i] >= tc && r[i] > peak) peak = r[i]
			half = steady + (peak - steady) / 2; ten = steady * 1.10
			# when the rise was (95 %) complete
			for (i = 1; i <= NR; i++) if (t[i] >= tc && r[i] >= steady + (peak - steady) * 0.95) { tp = t[i]; break }
			for (i = 2; i <= NR; i++) {
				if (t[i] < tc) continue
				dt = t[i] - t[i - 1]
				if (r[i] > half) dhalf += dt
				if (r[i] > ten) dten += dt
			}
			last = r[NR]
			printf "refresh_samples %d (every 50 ms; %d before the change)\n", NR, np
			printf "refresh_steady_rss_kb %d\n", steady
			printf "refresh_peak_rss_kb %d (%.2fx steady, +%d kB, reached %.2f s after the file changed)\n", peak, steady ? peak / steady : 0, peak - steady, tp - tc
			printf "refresh_peak_duration_s %.2f above steady+half the rise; %.2f above steady+10%%%s\n", dhalf, dten, (r[NR] > ten ? " (still above at the end of sampling: RSS not returned)" : "")
			printf "refresh_rss_after_kb %d (last sample, %.1f s after the new list answered)\n", last, t[NR] - tb
			printf "refresh_vmhwm_kb %d\n", h
			printf "refresh_change_to_blocked_s %.2f (refresh: 10s tick + download + parse + swap)\n", tb - tc
			printf "refresh_loads_ok_after_change %d; not_modified so far %d\n", ok, nm
		}' "$samples")
	log "refresh: $(tr '\n' ';' <<<"$REFRESH_LINES")"
}

inner() {
	bench_inner_setup
	start_upstream
	local out=$BENCH_TMP/result-lists.txt
	READY_ROWS=()
	REFRESH_LINES=""
	if [[ " $PARTS " == *" synthetic "* || " $PARTS " == *" real "* ]]; then
		part_ready
	fi
	if [[ " $PARTS " == *" refresh "* ]]; then
		part_refresh
	fi
	stop_upstream
	{
		echo "# dnsvalve lists benchmark (bench/lists.sh)"
		bench_header
		echo "# LIST_N=$LIST_N BLOCKLISTS=$BLOCKLISTS SETTLE=${SETTLE}s"
		echo
		if ((${#READY_ROWS[@]})); then
			printf '%-10s %8s %12s %12s %12s %12s %10s %8s\n' config ready_s rss_ready_kB hwm_ready_kB rss_settl_kB hwm_settl_kB entries load_s
			local r
			for r in "${READY_ROWS[@]}"; do
				# shellcheck disable=SC2086
				printf '%-10s %8s %12s %12s %12s %12s %10s %8s\n' $r
			done
			echo
			printf '%s\n' "${READY_ROWS[@]}" | awk '
				{ rss[$1] = $5; hwm[$1] = $6; rdy[$1] = $2; ent[$1] = $7 }
				END {
					if (!("empty" in rss)) exit
					for (c in rss) if (c != "empty")
						printf "growth %s vs empty: VmRSS +%.1f MB (%.1f B/entry), VmHWM +%.1f MB, ready %+.2f s\n", c,
							(rss[c] - rss["empty"]) / 1024, ent[c] ? (rss[c] - rss["empty"]) * 1024 / ent[c] : 0,
							(hwm[c] - hwm["empty"]) / 1024, rdy[c] - rdy["empty"]
				}'
			echo
		fi
		[[ -n $REFRESH_LINES ]] && echo "$REFRESH_LINES" && echo
		echo "# ready_s: dnsvalve exec to the list's last name answered NXDOMAIN + EDE 15 (dig every 20 ms; empty: first answer)."
		echo "# rss/hwm_ready: VmRSS/VmHWM at that moment; settl: ${SETTLE} s later. entries: dnsvalve_lists_entries;"
		echo "# load_s: dnsvalve_lists_load_duration_seconds_sum. 'real' = every file of BLOCKLISTS as its own list (format auto)."
		echo "# refresh: list over HTTP (python3 http.server, Last-Modified/If-Modified-Since), refresh: 10s, one name appended."
	} | tee "$out"
	if [[ -n $RESULTS_DIR ]]; then
		mkdir -p "$RESULTS_DIR"
		cp "$out" "$RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M)-lists.txt"
		log "wrote $RESULTS_DIR/$(date -u +%Y-%m-%d-%H%M)-lists.txt"
	fi
}

if [[ ${BENCH_INNER:-0} == 1 ]]; then
	inner
else
	outer
fi
