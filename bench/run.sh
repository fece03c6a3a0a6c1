#!/usr/bin/env bash
# bench/run.sh: dnsperf benchmark of dnsvalve against Unbound (a caching
# forwarder) and a bare miekg/dns constant-answer server, all forwarding to
# the same fake upstream, inside a loopback-only network namespace.
#
# See bench/README.md for what is measured and how to read the results.
#
# Environment (all optional):
#   DURATION=20          seconds of each dnsperf pass (two passes per set and server)
#   SETS="hits misses mix"
#   BASELINE_ONLY=1      run only unbound and the const server (no dnsvalve build)
#   SERVERS="unbound const dnsvalve"   which servers, in table order
#   VARIANTS="base:"     dnsvalve variants "name:extra.yaml ..."; the first is the
#                        reference for the variant qps ratio; an empty file part
#                        means the base config as is
#   EXTRA_CONFIG=FILE    YAML merged into the base dnsvalve config of every variant
#                        (per top-level section; "@TMP@" in it and in variant files
#                        becomes the scratch directory)
#   ROUNDS=1             measure every server this many times, interleaved (round 1
#                        of each, then round 2, ...): with variants, each round's
#                        variant qps ratio is printed, and their median, which
#                        this shared machine's drift between passes moves less
#   DNSVALVE_BIN=PATH    use this binary instead of building ./cmd/dnsvalve
#   CLIENTS=10           dnsperf -c
#   OUTSTANDING=500      dnsperf -q in the max-qps pass
#   P99_LOAD=80          percent of the measured max qps for the latency pass
#   P99_QPS=             a fixed qps for the latency pass instead, the same for
#                        every server (compares latency at equal offered load)
#   SERVER_CPU=0 LOAD_CPU=1   taskset CPUs: servers / dnsperf + fake upstream
#   HITS_N=1000 MISSES_N=2000000 MIX_N=2000000 POPULAR=10000   query-set sizes
#   CACHE_SIZE=100000    dnsvalve cache.size
#   RESULTS_DIR=bench/results   where <date>-<set>.txt go ("" to skip writing)
#   KEEP_TMP=1           keep the scratch directory (binaries, data, raw dnsperf output)
set -euo pipefail

DURATION=${DURATION:-20}
SETS=${SETS:-"hits misses mix"}
BASELINE_ONLY=${BASELINE_ONLY:-0}
if [[ $BASELINE_ONLY == 1 ]]; then
	SERVERS=${SERVERS:-"unbound const"}
else
	SERVERS=${SERVERS:-"unbound const dnsvalve"}
fi
VARIANTS=${VARIANTS:-"base:"}
ROUNDS=${ROUNDS:-1}
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS must be a positive integer" >&2; exit 2; }
EXTRA_CONFIG=${EXTRA_CONFIG:-}
CLIENTS=${CLIENTS:-10}
OUTSTANDING=${OUTSTANDING:-500}
P99_LOAD=${P99_LOAD:-80}
P99_QPS=${P99_QPS:-}
[[ -z $P99_QPS || $P99_QPS =~ ^[1-9][0-9]*$ ]] || { echo "P99_QPS must be a positive integer" >&2; exit 2; }
# LAT_AT names the latency pass's load in the tables.
if [[ -n $P99_QPS ]]; then LAT_AT="${P99_QPS}qps"; else LAT_AT="${P99_LOAD}%"; fi
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
HITS_N=${HITS_N:-1000}
MISSES_N=${MISSES_N:-2000000}
MIX_N=${MIX_N:-2000000}
POPULAR=${POPULAR:-10000}
CACHE_SIZE=${CACHE_SIZE:-100000}
BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)
RESULTS_DIR=${RESULTS_DIR-$BENCH_DIR/results}
export DURATION SETS BASELINE_ONLY SERVERS VARIANTS ROUNDS EXTRA_CONFIG CLIENTS OUTSTANDING P99_LOAD P99_QPS LAT_AT \
	SERVER_CPU LOAD_CPU HITS_N MISSES_N MIX_N POPULAR CACHE_SIZE RESULTS_DIR

BENCH_NAME=bench
# Ports, log/die, merge_yaml, expand_tmp, process and CPU helpers, probe,
# start_upstream/stop_upstream, dnsperf_stat: shared with the other scripts.
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"

# ---------------------------------------------------------------------------
# Outer part: install, build, generate data, then re-exec in a fresh netns.
# ---------------------------------------------------------------------------
outer() {
	bench_require_tools unbound
	bench_mktemp

	cd "$REPO"
	log "building fakeupstream, constserver, gen"
	go build -o "$BENCH_TMP/fakeupstream" ./bench/fakeupstream
	go build -o "$BENCH_TMP/constserver" ./bench/constserver
	go build -o "$BENCH_TMP/gen" ./bench/gen
	if [[ " $SERVERS " == *" dnsvalve "* ]]; then
		if [[ -n ${DNSVALVE_BIN:-} ]]; then
			cp "$DNSVALVE_BIN" "$BENCH_TMP/dnsvalve"
		else
			log "building dnsvalve"
			if ! go build -o "$BENCH_TMP/dnsvalve" ./cmd/dnsvalve 2>"$BENCH_TMP/dnsvalve-build.log"; then
				cat "$BENCH_TMP/dnsvalve-build.log" >&2
				die "go build ./cmd/dnsvalve failed; rerun with BASELINE_ONLY=1 to measure unbound and the const server only"
			fi
		fi
		write_dnsvalve_configs
		# Variant files that name @TMP@/genlist-N.txt get that block list.
		gen_lists_for "$BENCH_TMP"/dnsvalve-*.yaml
	fi

	log "generating query sets"
	local g=$BENCH_TMP/gen d=$BENCH_TMP/data
	mkdir -p "$d"
	echo "ready.probe.bench.test. A" >"$d/probe.txt"
	for set in $SETS; do
		case $set in
		hits) "$g" -set hits -n "$HITS_N" -o "$d/hits-1.txt" ;;
		misses)
			"$g" -set misses -n "$MISSES_N" -seed 1 -o "$d/misses-1.txt"
			"$g" -set misses -n "$MISSES_N" -seed 2 -o "$d/misses-2.txt"
			;;
		mix)
			"$g" -set popular -popular "$POPULAR" -o "$d/mix-warm.txt"
			"$g" -set mix -n "$MIX_N" -popular "$POPULAR" -seed 1 -o "$d/mix-1.txt"
			"$g" -set mix -n "$MIX_N" -popular "$POPULAR" -seed 2 -o "$d/mix-2.txt"
			;;
		tunnel)
			"$g" -set tunnel -n "$MISSES_N" -seed 1 -o "$d/tunnel-1.txt"
			"$g" -set tunnel -n "$MISSES_N" -seed 2 -o "$d/tunnel-2.txt"
			;;
		*) die "unknown set $set" ;;
		esac
	done
	write_unbound_config

	local rc=0
	log "entering a loopback-only network namespace"
	if [[ $(id -u) == 0 ]]; then
		BENCH_INNER=1 unshare --net -- bash "$BENCH_DIR/run.sh" || rc=$?
	else
		BENCH_INNER=1 unshare --net --map-root-user -- bash "$BENCH_DIR/run.sh" || rc=$?
	fi
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		log "kept $BENCH_TMP"
	else
		rm -rf "$BENCH_TMP"
	fi
	return "$rc"
}

write_unbound_config() {
	cat >"$BENCH_TMP/unbound.conf" <<EOF
server:
	interface: 127.0.0.1@$UNBOUND_PORT
	port: $UNBOUND_PORT
	do-ip6: no
	do-not-query-localhost: no
	num-threads: 1
	access-control: 127.0.0.0/8 allow
	chroot: ""
	username: ""
	directory: "$BENCH_TMP"
	pidfile: ""
	use-syslog: no
	logfile: ""
	verbosity: 0
	module-config: "iterator"
	# The query sets live under bench.test.; unbound answers test. itself
	# (RFC 6761 default local zone) unless told not to.
	local-zone: "test." nodefault
	msg-cache-size: 256m
	rrset-cache-size: 512m
	prefetch: yes
	qname-minimisation: no
	minimal-responses: yes
	num-queries-per-thread: 4096
	outgoing-range: 8192
remote-control:
	control-enable: no
forward-zone:
	name: "."
	forward-addr: 127.0.0.1@${UPSTREAM_ADDR#*:}
EOF
}

# write_dnsvalve_configs writes $BENCH_TMP/dnsvalve-<variant>.yaml for each
# variant: the base config, merged with EXTRA_CONFIG, merged with the
# variant's file.
write_dnsvalve_configs() {
	local base=$BENCH_TMP/dnsvalve-base-config.yaml
	cat >"$base" <<EOF
server:
  listen: ["127.0.0.1:$DNSVALVE_PORT"]
http:
  listen: "$DNSVALVE_HTTP"
upstream:
  servers: ["udp://$UPSTREAM_ADDR"]
  strategy: failover
  timeout: 2s
cache:
  size: $CACHE_SIZE
  prefetch: true
querylog:
  sinks: []
EOF
	if [[ -n $EXTRA_CONFIG ]]; then
		[[ -f $EXTRA_CONFIG ]] || die "EXTRA_CONFIG $EXTRA_CONFIG not found"
		expand_tmp "$EXTRA_CONFIG" >"$BENCH_TMP/extra.yaml"
		merge_yaml "$base" "$BENCH_TMP/extra.yaml" >"$base.tmp" && mv "$base.tmp" "$base"
	fi
	local v name file
	for v in $VARIANTS; do
		name=${v%%:*}
		file=${v#*:}
		[[ $v == *:* ]] || file=""
		[[ $name =~ ^[A-Za-z0-9_-]+$ ]] || die "bad variant name in '$v' (want name:file)"
		if [[ -n $file ]]; then
			[[ -f $file ]] || die "variant $name: $file not found"
			expand_tmp "$file" >"$BENCH_TMP/variant-$name.yaml"
			merge_yaml "$base" "$BENCH_TMP/variant-$name.yaml" >"$BENCH_TMP/dnsvalve-$name.yaml"
		else
			cp "$base" "$BENCH_TMP/dnsvalve-$name.yaml"
		fi
	done
}

# ---------------------------------------------------------------------------
# Inner part: runs inside the namespace; only loopback exists here.
# ---------------------------------------------------------------------------
# start_server LABEL: starts the server on SERVER_CPU; sets SERVER_PID, SERVER_PORT.
start_server() {
	local label=$1 log=$BENCH_TMP/server-$1.log
	case $label in
	unbound)
		SERVER_PORT=$UNBOUND_PORT
		taskset -c "$SERVER_CPU" unbound -d -c "$BENCH_TMP/unbound.conf" >"$log" 2>&1 &
		;;
	const)
		SERVER_PORT=$CONST_PORT
		taskset -c "$SERVER_CPU" "$BENCH_TMP/constserver" -listen "127.0.0.1:$CONST_PORT" >"$log" 2>&1 &
		;;
	dnsvalve:*)
		SERVER_PORT=$DNSVALVE_PORT
		taskset -c "$SERVER_CPU" "$BENCH_TMP/dnsvalve" serve --config "$BENCH_TMP/dnsvalve-${label#dnsvalve:}.yaml" \
			>"$log" 2>&1 &
		;;
	*) die "unknown server $label" ;;
	esac
	SERVER_PID=$!
	PIDS+=("$SERVER_PID")
	if ! probe "$SERVER_PORT"; then
		tail -20 "$log" >&2
		die "$label did not answer on port $SERVER_PORT"
	fi
}

stop_server() {
	kill -TERM "$SERVER_PID" 2>/dev/null || true
	wait "$SERVER_PID" 2>/dev/null || true
}

# measure SET LABEL: one row of results for LABEL on SET, appended to $ROWS.
measure() {
	local set=$1 label=$2 d=$BENCH_TMP/data raw=$BENCH_TMP/raw/$1-${2//:/-}
	local f1=$d/$set-1.txt f2=$d/$set-2.txt
	[[ -f $f2 ]] || f2=$f1
	mkdir -p "$(dirname "$raw")"

	start_upstream
	start_server "$label"
	case $set in
	hits) taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -d "$f1" -n 1 -q 100 >"$raw.warm" 2>&1 ;;
	mix) taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -d "$d/mix-warm.txt" -n 1 -q 100 >"$raw.warm" 2>&1 ;;
	esac

	# Pass 1: maximum qps with OUTSTANDING queries in flight.
	local c0 c1 s0 l0 s1 l1 t0 t1
	c0=$(cpu_ticks "$SERVER_PID")
	s0=$(cpu_busy "$SERVER_CPU")
	l0=$(cpu_busy "$LOAD_CPU")
	t0=$(date +%s.%N)
	local rb0 rb1
	rb0=$(udp_counter RcvbufErrors)
	taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -d "$f1" -l "$DURATION" \
		-c "$CLIENTS" -q "$OUTSTANDING" >"$raw.max" 2>&1 || true
	rb1=$(udp_counter RcvbufErrors)
	c1=$(cpu_ticks "$SERVER_PID")
	t1=$(date +%s.%N)
	s1=$(cpu_busy "$SERVER_CPU")
	l1=$(cpu_busy "$LOAD_CPU")
	local util
	# server's share of one CPU / server CPU busy (anyone) / load CPU busy.
	util="$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v w0="$t0" -v w1="$t1" 'BEGIN { printf "%.0f", (b - a) / t * 100 / (w1 - w0) }')/$(busy_pct "$s0" "$s1")/$(busy_pct "$l0" "$l1")"
	local qps completed lost avg sent
	qps=$(dnsperf_stat "$raw.max" "Queries per second")
	completed=$(dnsperf_stat "$raw.max" "Queries completed")
	lost=$(dnsperf_stat "$raw.max" "Queries lost")
	sent=$(dnsperf_stat "$raw.max" "Queries sent")
	avg=$(dnsperf_stat "$raw.max" "Average Latency (s)")
	local lines wrapped=""
	lines=$(wc -l <"$f1")
	if [[ $set != hits && ${sent%.*} -gt $lines ]]; then
		wrapped="*"
	fi

	# Pass 2: latency at P99_LOAD percent of that rate (or at P99_QPS),
	# every query logged.
	local rate c2 c3
	rate=$(awk -v q="$qps" -v p="$P99_LOAD" 'BEGIN { r = int(q * p / 100); print (r < 1 ? 1 : r) }')
	[[ -z $P99_QPS ]] || rate=$P99_QPS
	c2=$(cpu_ticks "$SERVER_PID")
	taskset -c "$LOAD_CPU" dnsperf -s 127.0.0.1 -p "$SERVER_PORT" -d "$f2" -l "$DURATION" \
		-c "$CLIENTS" -q "$OUTSTANDING" -Q "$rate" -v >"$raw.verbose" 2>&1 || true
	c3=$(cpu_ticks "$SERVER_PID")
	# Split the per-query lines ("> NOERROR name TYPE seconds") from the summary.
	awk -v lat="$raw.lat" '/^> / { print $NF * 1e6 > lat; next } { print }' "$raw.verbose" >"$raw.rate"
	touch "$raw.lat"
	rm -f "$raw.verbose"
	local completed2 lost2 qps2
	completed2=$(dnsperf_stat "$raw.rate" "Queries completed")
	qps2=$(dnsperf_stat "$raw.rate" "Queries per second")
	# dnsperf's "Queries lost" also counts the queries still in flight when
	# -l stops it (a few hundred); real losses are the [Timeout] lines.
	lost2=$(grep -c '^\[Timeout\]' "$raw.rate" || true)
	local p50 p99
	read -r p50 p99 < <(sort -g "$raw.lat" | awk -v sent="$((completed2 + lost2))" '
		{ v[NR] = $1 }
		END {
			n = split("0.50 0.99", ps, " ")
			for (i = 1; i <= n; i++) {
				k = int(ps[i] * sent + 0.999999); if (k < 1) k = 1
				# Lost queries count as slower than any answer.
				out = out (k > NR ? "timeout" : sprintf("%.0f", v[k])) " "
			}
			print out
		}')
	# Queries over 2 ms (the p99 target) in the latency pass: how many
	# episodes (runs of them, in answer order, closer than 10 ms of
	# traffic) and their share of the answers. Few long episodes are
	# stalls of the server or the machine, many short ones queueing.
	local slow
	slow=$(awk -v gap="$((rate / 100))" '
		$1 > 2000 { if (!n || NR - last > gap) n++; last = NR; k++ }
		END { printf "%d/%.1f%%", n, NR ? 100 * k / NR : 0 }' "$raw.lat")
	metrics_snapshot "$set" "$label"
	stop_server
	stop_upstream
	local upq=$UPSTREAM_ANSWERED

	local cpu_max cpu_rate
	cpu_max=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" -v n="$completed" 'BEGIN { printf "%.1f", n ? (b - a) / t * 1e6 / n : 0 }')
	cpu_rate=$(awk -v a="$c2" -v b="$c3" -v t="$CLK_TCK" -v n="$completed2" 'BEGIN { printf "%.1f", n ? (b - a) / t * 1e6 / n : 0 }')
	# Answers that are not NOERROR (the fake upstream answers every name)
	# are failures, often fast ones that dnsperf counts in its qps:
	# ok_qps counts only the NOERROR answers.
	local servfail noerror ok_qps
	servfail=$(dnsperf_rcode "$raw.max" SERVFAIL)
	noerror=$(dnsperf_rcode "$raw.max" NOERROR)
	ok_qps=$(awk -v q="$qps" -v n="$noerror" -v c="$completed" 'BEGIN { printf "%.0f", c ? q * n / c : 0 }')
	ROWS+=("$(printf '%s %.0f%s %.0f %d %s %s %d %.0f %s %s %d %s %s %s %s %d %d' \
		"$label" "$qps" "$wrapped" "$(awk -v a="$avg" 'BEGIN { print a * 1e6 }')" "$lost" "$cpu_max" "$util" \
		"$rate" "$qps2" "$p50" "$p99" "$lost2" "$cpu_rate" "$upq" "$slow" "$ok_qps" "$servfail" "$((rb1 - rb0))")")
	log "$set $label: ${qps} qps (${ok_qps} NOERROR), p99 ${p99}us at ${rate} qps, cpu ${cpu_max}/${cpu_rate} us/q, upstream ${upq} queries;" \
		"max pass: SERVFAIL $servfail, datagrams the kernel dropped for a full receive buffer (any socket of the namespace) $((rb1 - rb0))"
}

# metrics_snapshot SET LABEL: keeps dnsvalve's /metrics in the scratch dir.
metrics_snapshot() {
	[[ $2 == dnsvalve:* ]] || return 0
	command -v curl >/dev/null || return 0
	curl -s --max-time 2 "http://$DNSVALVE_HTTP/metrics" >"$BENCH_TMP/raw/$1-${2//:/-}.metrics" || true
}

# report SET: prints the table and ratios for SET from $ROWS.
report() {
	local set=$1
	{
		echo "# dnsvalve benchmark: set=$set"
		echo "# date=$(date -u +%Y-%m-%dT%H:%M:%SZ) git=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$REPO" diff --quiet 2>/dev/null || echo -dirty)"
		echo "# duration=${DURATION}s clients=$CLIENTS outstanding=$OUTSTANDING latency_pass=$LAT_AT server_cpu=$SERVER_CPU load_cpu=$LOAD_CPU"
		echo "# machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); loadavg before=$LOAD_BEFORE after=$(cut -d' ' -f1-3 /proc/loadavg)"
		echo "# $(dnsperf -h 2>&1 | grep -m1 Version | sed 's/^/dnsperf /'); $(unbound -V 2>/dev/null | head -1 | sed 's/^/unbound /'); $(go version 2>/dev/null | cut -d' ' -f3)"
		[[ " ${SERVERS} " == *" dnsvalve "* ]] && echo "# dnsvalve variants: $VARIANTS${EXTRA_CONFIG:+ (extra config $EXTRA_CONFIG)}"
		[[ $ROUNDS == 1 ]] || echo "# rounds=$ROUNDS (every server measured once per round, in table order; ratios below use the last round, variant ratios every round)"
		echo
		printf '%-18s %9s %8s %7s %8s %11s | %9s %9s %8s %8s %7s %8s | %9s %12s | %9s %8s %7s\n' \
			server max_qps avg_us unans cpu_us/q srv/cpu0/1% "rate@$LAT_AT" got_qps p50_us p99_us timeout cpu_us/q upstream_q over2ms ok_qps servfail rcvdrop
		local r
		for r in "${ROWS[@]}"; do
			# shellcheck disable=SC2086
			printf '%-18s %9s %8s %7s %8s %11s | %9s %9s %8s %8s %7s %8s | %9s %12s | %9s %8s %7s\n' $r
		done
		echo
		awk -v base_variant="dnsvalve:${VARIANTS%%:*}" '
			{ label[NR] = $1; qps[$1] = $2 + 0; p99[$1] = $10; cpu[$1] = $5 + 0; cpu2[$1] = $12 + 0
			  okq[$1] = $15 + 0; if ($16 > 0) failed[$1] = failed[$1] " " $16
			  k = ++rounds[$1]; rq[$1, k] = $2 + 0 }
			# median of the variant ratios of l over the rounds both have
			function rounds_ratio(l,    n, k, r, i, j, t, out) {
				n = rounds[l] < rounds[base_variant] ? rounds[l] : rounds[base_variant]
				out = ""
				for (k = 1; k <= n; k++) {
					r[k] = rq[base_variant, k] ? rq[l, k] / rq[base_variant, k] : 0
					out = out sprintf(" %.2f", r[k])
				}
				for (i = 2; i <= n; i++)
					for (j = i; j > 1 && r[j - 1] > r[j]; j--) { t = r[j]; r[j] = r[j - 1]; r[j - 1] = t }
				t = n % 2 ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
				return sprintf("per round%s, median %.2f", out, t)
			}
			function ratio(a, b) { return (b + 0 == 0 || a == "timeout" || b == "timeout") ? "-" : sprintf("%.2f", a / b) }
			END {
				for (i = 1; i <= NR; i++) {
					l = label[i]
					if (l !~ /^dnsvalve:/ || (l in done)) continue
					done[l] = 1
					if ("unbound" in qps)
						printf "ratio %s/unbound: qps %s  ok_qps %s  p99 %s  cpu_us/q@max %s  cpu_us/q@%s %s\n", l, ratio(qps[l], qps["unbound"]), ratio(okq[l], okq["unbound"]), ratio(p99[l], p99["unbound"]), ratio(cpu[l], cpu["unbound"]), "'"$LAT_AT"'", ratio(cpu2[l], cpu2["unbound"])
					if ("const" in qps)
						printf "ratio %s/const:   qps %s  cpu_us/q@%s %s\n", l, ratio(qps[l], qps["const"]), "'"$LAT_AT"'", ratio(cpu2[l], cpu2["const"])
					if (l != base_variant && (base_variant in qps)) {
						if (rounds[l] > 1)
							printf "variant %s vs %s: qps ratio %s\n", l, base_variant, rounds_ratio(l)
						else
							printf "variant %s vs %s: qps ratio %s\n", l, base_variant, ratio(qps[l], qps[base_variant])
					}
				}
				if (("unbound" in qps) && ("const" in qps))
					printf "ratio unbound/const: qps %s  cpu_us/q@%s %s\n", ratio(qps["unbound"], qps["const"]), "'"$LAT_AT"'", ratio(cpu2["unbound"], cpu2["const"])
				for (l in failed)
					printf "WARNING: %s answered SERVFAIL in its max pass (per failing round:%s): its max_qps counts those replies, ok_qps does not\n", l, failed[l]
			}' < <(printf '%s\n' "${ROWS[@]}")
		echo
		echo "# max_qps: dnsperf -q $OUTSTANDING -c $CLIENTS for ${DURATION}s ('*': ran past the end of the query file, later queries were repeats);"
		echo "# avg_us: dnsperf average latency in that pass; unans: dnsperf's 'Queries lost' (includes the few hundred still in"
		echo "# flight when -l stops it); rate@: -Q limit of the second pass; p50/p99 from every query's latency (-v);"
		echo "# timeout: queries of that pass that timed out (counted as slowest); cpu_us/q: server utime+stime / completed queries;"
		echo "# over2ms: in the latency pass, episodes of answers over 2 ms (runs closer than 10 ms of traffic) / their share"
		echo "# of all answers (p99 < 2 ms needs under 1%): few long episodes are stalls, of the server or the machine;"
		echo "# srv/cpu0/1%: in the max pass, the server's CPU use in % of one CPU / how busy SERVER_CPU was (anyone) /"
		echo "# how busy LOAD_CPU was (dnsperf, fake upstream, anyone): srv well under cpu0 means others took the CPU;"
		echo "# upstream_q: queries the fake upstream answered for this server over warm-up and both passes;"
		echo "# ok_qps: max_qps counting only NOERROR answers (the fake upstream answers every name; the ok_qps ratio uses the"
		echo "# last round); servfail: SERVFAIL answers in the max pass; rcvdrop: datagrams the kernel dropped in that pass for"
		echo "# a full receive buffer, on any socket of the namespace (client, server or fake upstream)."
	} | tee -a "$OUT_TMP"
}

inner() {
	trap cleanup EXIT
	trap 'exit 130' INT TERM
	ip link set lo up
	local others
	others=$(ip -o link show | awk -F': ' '$2 != "lo" { print $2 }')
	[[ -z $others ]] || die "network namespace has non-loopback links: $others"

	# BENCH_REDIS_PORT: a redis-server for variants with shared state
	# (bench/configs/shared-redis.yaml), on loopback inside the namespace.
	if [[ -n ${BENCH_REDIS_PORT:-} ]]; then
		command -v redis-server >/dev/null || die "redis-server is not installed (apt-get install redis-server)"
		taskset -c "$LOAD_CPU" redis-server --port "$BENCH_REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
			>"$BENCH_TMP/redis.log" 2>&1 &
		PIDS+=($!)
		REDIS_PID=$!
		local i
		for i in $(seq 50); do
			redis-cli -p "$BENCH_REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
			sleep 0.1
		done
		log "redis-server on 127.0.0.1:$BENCH_REDIS_PORT (pid $REDIS_PID)"
	fi

	local labels=() s v
	for s in $SERVERS; do
		if [[ $s == dnsvalve ]]; then
			for v in $VARIANTS; do labels+=("dnsvalve:${v%%:*}"); done
		else
			labels+=("$s")
		fi
	done
	local stamp
	stamp=$(date -u +%Y-%m-%d-%H%M)
	for set in $SETS; do
		ROWS=()
		OUT_TMP=$BENCH_TMP/result-$set.txt
		: >"$OUT_TMP"
		LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
		local round
		for round in $(seq "$ROUNDS"); do
			for label in "${labels[@]}"; do
				measure "$set" "$label"
			done
		done
		echo
		report "$set"
		if [[ -n $RESULTS_DIR ]]; then
			mkdir -p "$RESULTS_DIR"
			cp "$OUT_TMP" "$RESULTS_DIR/$stamp-$set.txt"
			log "wrote $RESULTS_DIR/$stamp-$set.txt"
		fi
	done
}

if [[ ${BENCH_INNER:-0} == 1 ]]; then
	inner
else
	outer
fi
