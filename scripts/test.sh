#!/usr/bin/env bash
# The whole dnsvalve test suite, as the README's test command and CI run it.
# On a fresh Debian machine with Go it installs what the tests need
# (dig, dnsperf, unbound, promtool, redis-server; staticcheck from the Go
# module proxy), then: gofmt, go vet, staticcheck, go test -race ./...,
# GOARCH=386 vet and tests of the size arithmetic,
# short fuzz runs, and promtool rule tests.
#
# Environment: FUZZTIME (default 10s per fuzz target; 0 skips fuzzing),
# SKIP_INSTALL=1 (don't touch the system's packages).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n=== %s\n' "$*"; }

# --- what the tests need -----------------------------------------------------
need_pkgs=()
command -v dig >/dev/null 2>&1 || need_pkgs+=(bind9-dnsutils)
command -v dnsperf >/dev/null 2>&1 || need_pkgs+=(dnsperf)
command -v unbound >/dev/null 2>&1 || need_pkgs+=(unbound)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v redis-server >/dev/null 2>&1 || need_pkgs+=(redis-server)
if [ "${#need_pkgs[@]}" -gt 0 ] && [ "${SKIP_INSTALL:-}" != 1 ]; then
  log "installing ${need_pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  # The packages' services (unbound would prime its trust anchor from the
  # internet, prometheus and redis would listen) must not start: the tests
  # start their own instances on loopback. policy-rc.d says so to dpkg.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    guard=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  [ -z "$guard" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
# Packages with services (unbound, prometheus, redis) must not keep running
# on this machine: the tests start their own instances on loopback.
for svc in unbound prometheus redis-server; do
  if command -v systemctl >/dev/null 2>&1; then systemctl stop "$svc" >/dev/null 2>&1 || true; fi
done

GOBIN="$(go env GOPATH)/bin"
STATICCHECK_VERSION=v0.8.2
if ! "$GOBIN/staticcheck" -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
  log "installing staticcheck $STATICCHECK_VERSION"
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi

# --- static checks ------------------------------------------------------------
log "gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "not gofmt'ed:"; echo "$unformatted"; exit 1; fi
log "go vet"
go vet ./...
log "staticcheck"
"$GOBIN/staticcheck" ./...

# --- tests --------------------------------------------------------------------
log "go test -race ./..."
go build -o "${TMPDIR:-/tmp}/dnsvalve-testsummary" ./scripts/testsummary
set +e
summary="${TMPDIR:-/tmp}/dnsvalve-test-summary.txt"
CI=${CI:-} go test -race -count=1 -timeout 15m -json ./... | "${TMPDIR:-/tmp}/dnsvalve-testsummary" | tee "$summary"
status=${PIPESTATUS[1]}
set -e
[ "$status" -eq 0 ] || { echo "go test failed"; exit 1; }

# --- 32-bit: int is 32 bits there (list sizes, GC arithmetic) ------------------
# vet for every package; the packages with size arithmetic also run, where
# this amd64 kernel runs 386 binaries.
log "GOARCH=386"
GOARCH=386 go vet ./...
if [ "$(uname -m)" = x86_64 ]; then
  GOARCH=386 go test -count=1 -short ./policy/... ./resolver/cache/
  GOARCH=386 go test -count=1 -run 'TestFloorPercent|TestGCFloor' ./cmd/dnsvalve/
fi

# --- Kubernetes manifests: a nested module (kustomize + Kubernetes API types) ---
log "deploy/kubernetes/validate"
(cd deploy/kubernetes/validate && go vet ./... && "$GOBIN/staticcheck" ./... && CI=${CI:-} go test -count=1 ./...)

# --- fuzzing: a short run of every fuzz target on its committed corpus --------
# fuzz_target runs one target and prints the last lines when it passes, all
# of its output when it fails, and the failing input when one was written.
# Go 1.26's coordinator can fail a run with "context deadline exceeded" as
# -fuzztime ends, with no failing input (go.dev/issue/75804, fixed in 1.27):
# that one failure is reported and the target run once more; a second
# failure, or any other, fails the suite.
fuzz_target() { # pkg dir target
  local out status input attempt
  for attempt in 1 2; do
    set +e
    out=$(go test -run '^$' -fuzz "^${3}\$" -fuzztime "$FUZZTIME" "$1" 2>&1)
    status=$?
    set -e
    if [ "$status" -eq 0 ]; then
      printf '%s\n' "$out" | tail -n 3
      return 0
    fi
    printf '%s\n' "$out"
    input=$(printf '%s\n' "$out" | sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' | head -n 1)
    if [ -n "$input" ]; then
      echo "--- failing input $2/$input:"
      cat "$2/$input"
      return 1
    fi
    if [ "$attempt" = 1 ] && printf '%s\n' "$out" | grep -qx '[[:space:]]*context deadline exceeded'; then
      echo "--- $3: the fuzz engine's deadline race (go.dev/issue/75804), no failing input; running it once more"
      continue
    fi
    return 1
  done
  return 1
}
FUZZTIME=${FUZZTIME:-10s}
if [ "$FUZZTIME" != 0 ]; then
  log "fuzzing ($FUZZTIME per target)"
  for pkg in $(go list ./...); do
    dir=$(go list -f '{{.Dir}}' "$pkg")
    for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
      echo "--- $pkg $target"
      fuzz_target "$pkg" "$dir" "$target" || { echo "fuzzing $pkg $target failed"; exit 1; }
    done
  done
fi

# --- Prometheus rules ---------------------------------------------------------
if compgen -G "deploy/prometheus/*_test.yml" >/dev/null; then
  log "promtool test rules"
  promtool check rules deploy/prometheus/alerts.yml
  promtool test rules deploy/prometheus/*_test.yml
fi

log "all tests passed"
# The go test summary ("N passed, N failed, N skipped") closes the output.
tail -n 1 "$summary"
