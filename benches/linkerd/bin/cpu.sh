#!/usr/bin/env bash
# One gateway's CPU per request on one path of the harness, without perf: for A/B runs of a
# change (alternate the two binaries, three runs each). Starts the harness with the gateway,
# warms it, runs the load for 8 s, and prints requests, CPU µs per request (utime + stime of
# the gateway process from /proc) and context switches per request (every thread's,
# voluntary and not).
#
#   benches/linkerd/bin/cpu.sh CASE [GATEWAY]
#     CASE     h2 | orig | h1   (HTTP/2; l5d-orig-proto; HTTP/1.1 without a hint)
#     GATEWAY  proxy (linkerd2-proxy) or a crossgate binary (default target/release/crossgate),
#              run with $CONF (default: the harness's config; a copy with `threads = 1` for one
#              thread)
#
# Needs root and the harness built (../README.md). Not part of the test run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
CASE=${1:?CASE: h2 | orig | h1}
GW=${2:-$(cd "$HARNESS/../.." && pwd)/target/release/crossgate}
http_load "$CASE" 4 8
start_gateway "$GW" /tmp/crossgate-cpu-start.log
switches() { cat /proc/"$PID"/task/*/status | awk '/ctxt_switches/ {s += $2} END {print s}'; }
ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
c0=$(switches) t0=$(ticks)
out=$(nsexec "${LOAD[@]}" 2>&1)
c1=$(switches) t1=$(ticks)
"$HARNESS/bin/stop.sh" >/dev/null 2>&1
n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
[[ -n $n && $n -gt 0 ]] || die "no requests: $out"
awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) -v n="$n" -v hz="$(getconf CLK_TCK)" -v gw="$GW" -v case="$CASE" \
  'BEGIN { printf "%s %s: %d requests, %.1f us CPU per request, %.2f context switches per request\n", gw, case, n, t * 1e6 / hz / n, c / n }'
