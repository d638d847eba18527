#!/usr/bin/env bash
# A gateway's user-space instructions per request on one path of the harness, counted by
# valgrind's callgrind: for A/B runs of a change too small for bin/cpu.sh to see. Counting is
# deterministic where CPU time is not (bin/cpu.sh moves by ±5 % between runs of one binary);
# one connection at a time (CONNS=1) makes the work per request repeat the same way, and runs
# of one binary then agree within about 0.5 %. It counts instructions, not time: a memcpy or
# a cache miss weighs the same as an add, and the kernel is not in it.
#
#   benches/linkerd/bin/instructions.sh CASE [GATEWAY]
#     CASE     h2 | orig | h1   (HTTP/2; l5d-orig-proto; HTTP/1.1 without a hint)
#     GATEWAY  a crossgate binary (default target/release/crossgate) or examples/floor, run
#              with $CONF (default: the harness's config)
#   SECS=10 CONNS=1 OUT=/tmp/crossgate-callgrind
#
# Prints the load's summary and `Ir/req`, and keeps the callgrind file (OUT.PID.1) for
# `callgrind_annotate --inclusive=yes --tree=calling FILE`. Under callgrind the gateway runs
# ~50 times slower, so a case takes its seconds at a few hundred requests per second (the
# no-hint path: ~150 handshakes/s). Needs root, valgrind, and the harness built
# (../README.md). Not part of the test run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
CASE=${1:?CASE: h2 | orig | h1}
GW=${2:-$(cd "$HARNESS/../.." && pwd)/target/release/crossgate}
OUT=${OUT:-/tmp/crossgate-callgrind}
SECS=${SECS:-10}
CONNS=${CONNS:-1}
command -v valgrind >/dev/null || die "valgrind is not installed (apt-get install -y valgrind)"
http_load "$CASE" "$CONNS" "$SECS"
"$HARNESS/bin/stop.sh" >/dev/null 2>&1
rm -f "$OUT".*
CONF=${CONF:-$STATE/gateway/crossgate.toml}
GATEWAY=cmd GATEWAY_CMD="valgrind --tool=callgrind --callgrind-out-file=$OUT.%p $GW run --config $CONF" \
  "$HARNESS/bin/start.sh" >/tmp/crossgate-instructions-start.log 2>&1 \
  || { cat /tmp/crossgate-instructions-start.log; exit 1; }
PID=$(pid_of gateway)
# Warm-up (aws-lc's entropy seeding, first connections), then count the case alone.
nsexec timeout 30 "$STUBCP" load "http://$VIP_H2:9898/bytes/64" --conns 1 --secs 2 >/dev/null 2>&1
callgrind_control -z "$PID" >/dev/null
out=$(nsexec "${LOAD[@]}" 2>&1)
callgrind_control -d "$PID" >/dev/null
sleep 1
"$HARNESS/bin/stop.sh" >/dev/null 2>&1
n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
[[ -n $n && $n -gt 0 ]] || die "no requests: $out"
file=$(ls -t "$OUT".*.1 2>/dev/null | head -1)
[[ -n $file ]] || die "no callgrind dump under $OUT.*"
total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$GW $CASE: $out"
echo "$GW $CASE: Ir/req $((total / n))  (callgrind file $file)"
