#!/usr/bin/env bash
# A gateway's system calls per request on one path of the harness, counted by perf's syscall
# tracepoints (which, unlike `strace -c`, barely slow the gateway, so requests batch as they do
# in a bench run): the writes, reads and epoll waits per request, all system calls, and context
# switches. It answers whether a difference in kernel time between two gateways comes from the
# calls they make or from what each call costs.
#
#   benches/linkerd/bin/syscalls.sh CASE [GATEWAY]
#     CASE     h2 | orig | h1   (HTTP/2; l5d-orig-proto; HTTP/1.1 without a hint)
#     GATEWAY  proxy (linkerd2-proxy) or a crossgate binary (default target/release/crossgate),
#              run with $CONF (default: the harness's config; a copy with `threads = 1` for one
#              thread); LINKERD2_PROXY_CORES=1 gives linkerd2-proxy one core
#
# Needs root, perf, and the harness built (../README.md). Not part of the test run.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
CASE=${1:?CASE: h2 | orig | h1}
GW=${2:-$(cd "$HARNESS/../.." && pwd)/target/release/crossgate}
http_load "$CASE" 4 8
start_gateway "$GW" /tmp/crossgate-syscalls-start.log
counts=$(mktemp)
trap 'rm -f "$counts"' EXIT
events=raw_syscalls:sys_enter,context-switches
for call in writev sendto sendmsg write recvfrom recvmsg read epoll_wait epoll_ctl accept4 close shutdown; do
  events+=",syscalls:sys_enter_$call"
done
perf stat -x, -e "$events" -p "$PID" -o "$counts" &
PERF=$!
sleep 0.3
out=$(nsexec "${LOAD[@]}" 2>&1)
kill -INT "$PERF"
wait "$PERF"
"$HARNESS/bin/stop.sh" >/dev/null 2>&1
n=$(sed -n 's/.*requests=\([0-9]*\).*/\1/p' <<<"$out")
[[ -n $n && $n -gt 0 ]] || die "no requests: $out"
echo "# $GW $CASE: $out"
awk -F, -v n="$n" '$3 ~ /^(raw_)?syscalls:|^context-switches/ && $1 + 0 > 0 {
  name = $3; sub(/^syscalls:sys_enter_/, "", name); sub(/^raw_syscalls:sys_enter$/, "all system calls", name)
  printf "  %-18s %6.2f per request\n", name, $1 / n }' "$counts"
