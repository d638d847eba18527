#!/usr/bin/env bash
# Where a gateway's CPU goes on one path of the harness: starts the harness with the gateway,
# warms it (so that one-time costs such as aws-lc's jitter-entropy seeding are not counted),
# records `perf record -e cpu-clock -g` of the gateway process during the load, and prints the
# samples grouped as kernel, crypto (aws-lc), rustls, h2, hyper/http, tokio, malloc, memmove,
# tracing, the gateway's own code; plus its CPU per unit from /proc.
#
#   benches/linkerd/bin/profile.sh CASE [GATEWAY]
#     CASE     h2 | orig | h1 | opaque   (HTTP/2; l5d-orig-proto; HTTP/1.1 without a hint;
#              opaque TCP, TCP_BYTES each way, default 256 MiB)
#     GATEWAY  proxy (linkerd2-proxy) or a crossgate binary (default target/release/crossgate),
#              run with $CONF (default: the harness's config; set CONF to a copy with
#              `threads = 1` for one thread); CALL_GRAPH=dwarf unwinds through code
#              built without frame pointers (larger files, slower report)
#
# Needs root, perf, and the harness built (../README.md). Not part of the test run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
CASE=${1:?CASE: h2 | orig | h1 | opaque}
GW=${2:-$(cd "$HARNESS/../.." && pwd)/target/release/crossgate}
OUT=${OUT:-/tmp/crossgate-profile}
mkdir -p "$OUT"
if [[ $CASE == opaque ]]; then
  LOAD=(timeout 60 "$STUBCP" tcp "$VIP_TCP:9899" --bytes "${TCP_BYTES:-268435456}") UNIT=MiB
else
  http_load "$CASE" 4 8
  UNIT=req
fi
start_gateway "$GW" "$OUT/start.log"
# start_gateway warmed HTTP/2; opaque TCP too.
nsexec timeout 10 "$STUBCP" tcp "$VIP_TCP:9899" --bytes 1048576 >/dev/null 2>&1
ticks() { awk '{print $14, $15}' "/proc/$PID/stat"; }
read -r u0 s0 < <(ticks)
perf record -e cpu-clock -F 2999 --call-graph "${CALL_GRAPH:-fp}" -p "$PID" -o "$OUT/$CASE.data" >/dev/null 2>&1 &
PERF=$!
sleep 0.3
out=$(nsexec "${LOAD[@]}" 2>&1)
kill -INT "$PERF"; wait "$PERF"
read -r u1 s1 < <(ticks)
"$HARNESS/bin/stop.sh" >/dev/null 2>&1
echo "# $CASE through $GW: $out"
case $CASE in
  opaque) n=$(( ${TCP_BYTES:-268435456} >> 20 )) ;;
  *) n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out") ;;
esac
awk -v u=$((u1 - u0)) -v s=$((s1 - s0)) -v n="$n" -v t="$(getconf CLK_TCK)" -v unit="$UNIT" \
  'BEGIN { printf "# CPU per %s (under perf): %.0f us, user %.0f, kernel %.0f\n", unit, (u+s)*1e6/t/n, u*1e6/t/n, s*1e6/t/n }'
python3 "$HARNESS/classify.py" "$OUT/$CASE.data"
