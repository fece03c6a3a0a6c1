#!/usr/bin/env bash
# bench/chaos/run.sh: a soak and chaos run of dnsvalve (see bench/README.md,
# "chaos"). It builds dnsvalve, the fake upstream and bench/chaostool into
# SOAK, writes lists, a names file and a config, and runs scenario.sh inside
# a loopback-only network namespace: dnsperf load (UDP, TCP, an
# allow-list-only client), an answer verifier, malformed traffic, and a
# loop that rewrites lists and names, reloads (SIGHUP, API, file watch),
# writes invalid configs, flushes the cache and takes the list feed down,
# while RSS, fds and goroutines are sampled. At the end it checks that the
# query log holds exactly one record per counted query and every record
# is right (chaostool analyze). Results in SOAK/run (samples.txt,
# analyze.txt, chaos.log, dv.stderr).
#
# Environment: DURATION (s of load, default 720), SOAK (scratch directory,
# default /tmp/dnsvalve-chaos). Needs root (unshare -n), dnsperf (installed
# if missing) and python3. Not part of the test suite: it takes minutes.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SOAK=${SOAK:-/tmp/dnsvalve-chaos}
export ROOT SOAK
mkdir -p "$SOAK"
cd "$ROOT"
export R=$SOAK/run DURATION=${DURATION:-720}
command -v dnsperf >/dev/null || { apt-get update && apt-get install -y dnsperf; }
go build -o $SOAK/dv ./cmd/dnsvalve
go build -o $SOAK/fakeup ./bench/fakeupstream
go build -o $SOAK/chaostool ./bench/chaostool
rm -rf "$R" $SOAK/q.log $SOAK/q-*.log
mkdir -p "$R"/{lists,www,state,data}
source bench/chaos/lib.sh
gen_local_list 0 >"$R/lists/local-hosts.txt"
gen_url_list 0 >"$R/www/url-list.txt"
for i in $(seq 0 99); do echo "stable-$i.alert.test"; done >"$R/lists/alert.txt"
{ for i in $(seq 0 199); do echo "ok-$i.corp.test"; done; echo "t.corp.test"; } >"$R/lists/corp-allow.txt"
for i in $(seq 0 9); do echo "x-$i.extra.test"; done >"$R/lists/extra.txt"
gen_names 0 >"$R/names.txt"
gen_cfg A >"$R/dnsvalve.yaml"
"$TOOL" gen -dir "$R/data"
$SOAK/dv check --config "$R/dnsvalve.yaml" stable-1.lblock.test www-1.ok.test >"$R/check.txt" 2>&1 || true
exec unshare -n bash -c 'ip link set lo up; exec bash $ROOT/bench/chaos/scenario.sh'
