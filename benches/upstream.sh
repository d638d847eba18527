#!/usr/bin/env bash
# Gateway CPU per request, plaintext upstream vs meshed (mTLS) upstream, through a real
# linkerd2-proxy source, in the Linkerd harness (benches/linkerd/, see its README.md).
#
#   sudo benches/upstream.sh                       (REPEATS=3 SECS=10 CONNS=4 by default)
#   INTEROP=benches/linkerd STATE=/tmp/l5d-interop REPEATS=5 SECS=10 benches/upstream.sh
#
# Needs the harness started first, with crossgate as the gateway and discovery on, e.g.
#   CROSSGATE_DISCOVERY=1 GATEWAY=cmd \
#     GATEWAY_CMD="$PWD/target/release/crossgate run --config \$STATE/gateway/crossgate.toml" \
#     benches/linkerd/bin/start.sh
# It refuses to run otherwise. Root, as the harness (everything runs inside its netns).
#
# Two targets, both H2-hinted at the source proxy, so the gateway receives HTTP/2 either way:
#   plaintext  192.0.2.65:9898  podinfo: the gateway forwards in plaintext to 192.0.2.20:9898
#   meshed     192.0.2.69:9898  podinfo-meshed: the gateway dials 192.0.2.30:9898 over mTLS as
#                               itself (server id checked), HTTP/2, to the pod's linkerd2-proxy
# and two client protocols, `stubcp load` with CONNS connections sending back to back:
#   h2           HTTP/2 prior knowledge to the VIP (--h2)
#   h1-upgraded  HTTP/1.1 to the VIP; the source proxy upgrades it (l5d-orig-proto)
# Each repeat runs the four (protocol, target) cells back to back, plaintext then meshed for
# each protocol, so both targets see the same machine state; medians over REPEATS are printed.
#
# gw_us/req is the gateway process's utime+stime delta (/proc/PID/stat, clock ticks) over the
# run divided by the successful requests. The meshed path has one more hop (the pod's
# linkerd2-proxy, then its backend): it costs the gateway nothing but takes CPU from the same
# two cores, so req/s drops there and is not a gateway figure; compare the CPU per request.
# The mTLS handshakes happen once per upstream connection (the gateway keeps its HTTP/2
# connection to the pod), so their cost is amortised over the run.
set -uo pipefail
INTEROP=${INTEROP:-$(cd "$(dirname "$0")" && pwd)/linkerd}
[[ -r $INTEROP/bin/lib.sh ]] || { echo "upstream.sh: $INTEROP/bin/lib.sh not found (set INTEROP)" >&2; exit 1; }
# shellcheck source=/dev/null
source "$INTEROP/bin/lib.sh"
MODE=$(cat "$STATE/mode" 2>/dev/null) || die "harness not started ($INTEROP/bin/start.sh): no $STATE/mode"
ip netns list 2>/dev/null | grep -qw "$NS" || die "harness not started: no netns $NS (run as root)"
alive gateway || die "harness not started: no live gateway pid in $STATE/pids/gateway.pid"
alive source || die "harness not started: no live source proxy"
alive meshed-proxy || die "harness started without the meshed pod's proxy"
[[ $MODE == cmd ]] || echo "# note: GATEWAY=$MODE (not cmd): the gateway is not crossgate" >&2
REPEATS=${REPEATS:-3}
SECS=${SECS:-10}; ((SECS > 20)) && SECS=20
CONNS=${CONNS:-4}
GW_PID=${GW_PID:-$(pid_of gateway)}
TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
machine() { awk '/^cpu /{ print $9, $2+$3+$4+$5+$6+$7+$8+$9 }' /proc/stat; }
field() { sed -n "s/.*$1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }

echo "# upstream: GATEWAY=$MODE gateway pid $GW_PID ($(tr '\0' ' ' </proc/"$GW_PID"/cmdline | cut -c1-120)),"
echo "#   $REPEATS x ${SECS}s x $CONNS conns per cell, $(nproc) cores, 64-byte bodies"
# One request through each target first: discovery and the upstream connections are set up
# before any measurement.
for vip in "$VIP_H2" "$VIP_MESHED"; do
  out=$(nsexec timeout 15 "$STUBCP" load "http://$vip:9898/bytes/64" --conns 1 --secs 1 --h2 2>&1)
  [[ $out == *"errors=0 "* ]] || die "warm-up to $vip failed: $out"
done

declare -A US RPS P50
m0=$(machine)
printf '%-3s %-12s %-9s %9s %8s %8s %8s %10s\n' rep proto upstream requests req/s p50_ms p99_ms gw_us/req
for ((r = 1; r <= REPEATS; r++)); do
  for proto in h2 h1-upgraded; do
    flag=(); [[ $proto == h2 ]] && flag=(--h2)
    for up in plaintext meshed; do
      vip=$VIP_H2; [[ $up == meshed ]] && vip=$VIP_MESHED
      g0=$(cpu_ticks "$GW_PID")
      out=$(nsexec timeout $((SECS + 10)) "$STUBCP" load "http://$vip:9898/bytes/64" \
        --conns "$CONNS" --secs "$SECS" "${flag[@]}" 2>&1)
      g1=$(cpu_ticks "$GW_PID")
      n=$(field requests "$out"); n=${n:-0}
      us=$(awk -v d=$((g1 - g0)) -v n="$n" -v t="$TCK" 'BEGIN{ if (n > 0) printf "%.1f", d * 1e6 / t / n; else print "nan" }')
      key="$proto/$up"
      US[$key]+="$us "; RPS[$key]+="$(field rps "$out") "; P50[$key]+="$(field p50_ms "$out") "
      printf '%-3s %-12s %-9s %9s %8s %8s %8s %10s\n' "$r" "$proto" "$up" "$n" \
        "$(field rps "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" "$us"
      [[ $out == *"errors=0 "* ]] || echo "    ($key: $out)"
    done
  done
done
m1=$(machine)

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo
echo "medians over $REPEATS repeats:"
printf '%-12s %16s %16s %8s %14s %14s\n' proto plain_us/req meshed_us/req meshed/plain plain_req/s meshed_req/s
for proto in h2 h1-upgraded; do
  pu=$(median <<<"${US[$proto/plaintext]}"); mu=$(median <<<"${US[$proto/meshed]}")
  pr=$(median <<<"${RPS[$proto/plaintext]}"); mr=$(median <<<"${RPS[$proto/meshed]}")
  printf '%-12s %16s %16s %8s %14s %14s\n' "$proto" "$pu" "$mu" \
    "$(awk -v a="$mu" -v b="$pu" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }')" "$pr" "$mr"
done
read -r s0 t0 <<<"$m0"; read -r s1 t1 <<<"$m1"
awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN{ printf "steal during the runs: %.1f %% of the machine'"'"'s CPU time (/proc/stat)\n", t > 0 ? s * 100 / t : 0 }'
