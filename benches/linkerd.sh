#!/usr/bin/env bash
# crossgate beside linkerd2-proxy as the multicluster gateway, each behind a real
# linkerd2-proxy as the source proxy: the paths a Linkerd source really takes (l5d-orig-proto
# HTTP/1.1 upgraded to HTTP/2, HTTP/1.1 without a hint, HTTP/2, opaque TCP), with the gateway's
# own CPU per request read from /proc. Runs the harness's bin/bench.sh (benches/linkerd/) per
# gateway, the three gateways interleaved and repeated; prints the medians as a Markdown table.
#
#   benches/linkerd.sh [REPEATS]       (default 3; SECS=10 CONNS=4 as bench.sh; opaque TCP
#                                      TCP_BYTES=512 MiB each way)
#   BEFORE=/path/to/older/crossgate benches/linkerd.sh 3
#                                      adds that binary (default runtime) as a fourth gateway
#                                      in the same interleaved run: a change's before and after
#   CROSSGATE=target/pgo/release/crossgate benches/linkerd.sh 3
#                                      measures that binary as crossgate (benches/pgo.sh's
#                                      profile-guided build) instead of target/release's
#   FLOOR=1 benches/linkerd.sh 3       adds examples/floor.rs (`threads = 1`), the HTTP paths'
#                                      floor on crossgate's stack, as a gateway of the same run
#                                      (it serves no opaque TCP: that row stays empty)
#
# Needs root and the harness built once (benches/linkerd/README.md: bin/build-proxy.sh,
# bin/build-stubcp.sh). INTEROP=DIR runs another copy of the harness instead; STATE as the
# harness (default /tmp/l5d-interop).
# Gateways: linkerd2-proxy (LINKERD2_PROXY_CORES=1, as the harness runs it), crossgate with
# `threads = 1` and crossgate with its default runtime. Not part of the test run.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
INTEROP=${INTEROP:-$ROOT/benches/linkerd}
REPEATS=${1:-3}
export STATE=${STATE:-/tmp/l5d-interop}
OUT=${OUT:-/tmp/crossgate-linkerd-bench}
BIN=$(realpath -m "${CROSSGATE:-$ROOT/target/release/crossgate}")
BEFORE=${BEFORE:-}
FLOOR=${FLOOR:-}
export TCP_BYTES=${TCP_BYTES:-536870912}
[[ -x $INTEROP/bin/start.sh ]] || { echo "no interop harness at $INTEROP (set INTEROP=)" >&2; exit 2; }
[[ -x ${PROXY_BIN:-$STATE/proxy/linkerd2-proxy} ]] || { echo "build the proxy first: $INTEROP/bin/build-proxy.sh (see its README)" >&2; exit 2; }
[[ -x ${STUBCP:-$STATE/bin/stubcp} ]] || { echo "build stubcp first: $INTEROP/bin/build-stubcp.sh" >&2; exit 2; }
(cd "$ROOT" && cargo build --release --bin crossgate --example loadkit ${FLOOR:+--example floor})
mkdir -p "$OUT"
rm -f "$OUT"/run-*.txt
"$INTEROP/bin/stop.sh" >/dev/null 2>&1 || true

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

run_one() { # rep gateway
  local rep=$1 gw=$2 log=$OUT/run-$1-$2.txt
  case $gw in
    linkerd2-proxy) GATEWAY=proxy "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 ;;
    crossgate-t1) GATEWAY=cmd GATEWAY_CMD="$BIN run --config $OUT/t1.toml" \
      "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 ;;
    crossgate-default) GATEWAY=cmd GATEWAY_CMD="$BIN run --config $OUT/default.toml" \
      "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 ;;
    crossgate-before) GATEWAY=cmd GATEWAY_CMD="$BEFORE run --config $OUT/default.toml" \
      "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 ;;
    floor) GATEWAY=cmd GATEWAY_CMD="$ROOT/target/release/examples/floor run --config $OUT/t1.toml" \
      "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 ;;
  esac || { cat "$OUT/start.log" >&2; exit 1; }
  # The harness writes crossgate's config at every start; keep a copy of each flavour.
  cp "$STATE/gateway/crossgate.toml" "$OUT/default.toml"
  sed 's/^\[server\]$/[server]\nthreads = 1/' "$STATE/gateway/crossgate.toml" >"$OUT/t1.toml"
  local pid
  pid=$(cat "$STATE/pids/gateway.pid")
  sleep 1
  echo "idle_rss_kib $(rss_kib "$pid")" >"$log"
  "$INTEROP/bin/bench.sh" >>"$log" 2>&1 || true
  echo "loaded_rss_kib $(rss_kib "$pid")" >>"$log"
  "$INTEROP/bin/stop.sh" >/dev/null 2>&1
  echo "[$rep/$REPEATS] $gw" >&2
  cat "$log" >&2
}

# The first start writes the config the crossgate runs copy.
GATEWAY=proxy "$INTEROP/bin/start.sh" >"$OUT/start.log" 2>&1 || { cat "$OUT/start.log" >&2; exit 1; }
cp "$STATE/gateway/crossgate.toml" "$OUT/default.toml"
sed 's/^\[server\]$/[server]\nthreads = 1/' "$STATE/gateway/crossgate.toml" >"$OUT/t1.toml"
"$INTEROP/bin/stop.sh" >/dev/null 2>&1

steal() { awk 'NR == 1 { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
read -r steal0 total0 < <(steal)
for rep in $(seq 1 "$REPEATS"); do
  for gw in linkerd2-proxy crossgate-t1 crossgate-default ${BEFORE:+crossgate-before} ${FLOOR:+floor}; do
    run_one "$rep" "$gw"
  done
done

crate() { # name: its version in linkerd2-proxy's Cargo.lock
  awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' \
    "$STATE/build/linkerd2-proxy/Cargo.lock" 2>/dev/null
}
L5D="commit $(cut -c1-9 "$STATE/proxy/linkerd2-proxy.commit" 2>/dev/null || echo '?'): rustls $(crate rustls) with aws-lc-rs $(crate aws-lc-rs), hyper $(crate hyper), h2 $(crate h2)"
read -r steal1 total1 < <(steal)
STEAL=$(awk -v s=$((steal1 - steal0)) -v t=$((total1 - total0)) 'BEGIN { printf "%.1f", s * 100 / (t > 0 ? t : 1) }')
python3 - "$OUT" "$REPEATS" "$L5D" "$(cd "$ROOT" && git rev-parse --short HEAD) ($BIN)" "$STEAL" "$BEFORE" "$FLOOR" <<'PY'
import glob, os, re, statistics, sys
out, repeats = sys.argv[1], int(sys.argv[2])
gws = ["linkerd2-proxy", "crossgate-t1", "crossgate-default"]
before = sys.argv[6] if len(sys.argv) > 6 else ""
if before:
    gws.append("crossgate-before")
floor = len(sys.argv) > 7 and sys.argv[7] != ""
if floor:
    gws.append("floor")
vals = {g: {} for g in gws}
for g in gws:
    for path in sorted(glob.glob(f"{out}/run-*-{g}.txt")):
        for line in open(path):
            f = line.split()
            if not f:
                continue
            if f[0] in ("idle_rss_kib", "loaded_rss_kib") and len(f) == 2:
                vals[g].setdefault(f[0], []).append(int(f[1]) / 1024)
            elif f[0] in ("h1-upgraded", "h1-nohint", "h2") and len(f) >= 7 and f[5].isdigit():
                vals[g].setdefault(f"{f[0]} us", []).append(float(f[5]))
                if len(f) >= 8 and f[7].isdigit():
                    vals[g].setdefault(f"{f[0]} sys", []).append(float(f[7]))
                vals[g].setdefault(f"{f[0]} rps", []).append(float(f[2]))
                vals[g].setdefault(f"{f[0]} p99", []).append(float(f[4]))
            elif f[0] == "opaque-tcp:":
                m = re.search(r"([0-9.]+) MiB/s.* ([0-9]+) us/MiB", line)
                if m:
                    vals[g].setdefault("tcp MiB/s", []).append(float(m.group(1)))
                    vals[g].setdefault("tcp us", []).append(float(m.group(2)))
                m = re.search(r"([0-9.]+) MiB/s.*? ([0-9]+) us/MiB, of which kernel ([0-9]+) us/MiB", line)
                if m:
                    vals[g].setdefault("tcp us", [])[-1] = float(m.group(2))
                    vals[g].setdefault("tcp sys", []).append(float(m.group(3)))
rows = [
    ("HTTP/1.1 upgraded by the source (`l5d-orig-proto`), gateway CPU us per request", "h1-upgraded us", "{:.0f}"),
    ("HTTP/1.1 without a hint, gateway CPU us per request", "h1-nohint us", "{:.0f}"),
    ("HTTP/2, gateway CPU us per request", "h2 us", "{:.0f}"),
    ("opaque TCP, gateway CPU us per MiB", "tcp us", "{:.0f}"),
    ("&nbsp;&nbsp;of which kernel, `l5d-orig-proto`", "h1-upgraded sys", "{:.0f}"),
    ("&nbsp;&nbsp;of which kernel, HTTP/1.1 without a hint", "h1-nohint sys", "{:.0f}"),
    ("&nbsp;&nbsp;of which kernel, HTTP/2", "h2 sys", "{:.0f}"),
    ("&nbsp;&nbsp;of which kernel, opaque TCP", "tcp sys", "{:.0f}"),
    ("req/s, `l5d-orig-proto`", "h1-upgraded rps", "{:.0f}"),
    ("req/s, HTTP/1.1 without a hint", "h1-nohint rps", "{:.0f}"),
    ("req/s, HTTP/2", "h2 rps", "{:.0f}"),
    ("p99 ms, `l5d-orig-proto`", "h1-upgraded p99", "{:.2f}"),
    ("opaque TCP MiB/s (both directions)", "tcp MiB/s", "{:.0f}"),
    ("gateway RSS MiB, started and idle", "idle_rss_kib", "{:.1f}"),
    ("gateway RSS MiB after the run", "loaded_rss_kib", "{:.1f}"),
]
head = "| measure (medians of {}) | linkerd2-proxy | crossgate `threads = 1` | crossgate default runtime |".format(repeats)
head += " crossgate before (default runtime) |" if before else ""
head += " floor `threads = 1` |" if floor else ""
head += " `threads = 1` / linkerd2-proxy | default / linkerd2-proxy |"
head += " before / linkerd2-proxy |" if before else ""
head += " floor / linkerd2-proxy | `threads = 1` / floor |" if floor else ""
print(head)
print("|---" * (head.count("|") - 1) + "|")
for label, key, fmt in rows:
    v = {g: statistics.median(vals[g][key]) if vals[g].get(key) else None for g in gws}
    cell = lambda x: "" if x is None else fmt.format(x)
    ratio = lambda g: f"{v[g] / v['linkerd2-proxy']:.2f}" if v["linkerd2-proxy"] and v[g] is not None else ""
    row = f"| {label} | {cell(v['linkerd2-proxy'])} | {cell(v['crossgate-t1'])} | {cell(v['crossgate-default'])} |"
    row += f" {cell(v['crossgate-before'])} |" if before else ""
    row += f" {cell(v['floor'])} |" if floor else ""
    row += f" {ratio('crossgate-t1')} | {ratio('crossgate-default')} |"
    row += f" {ratio('crossgate-before')} |" if before else ""
    if floor:
        over = f"{v['crossgate-t1'] / v['floor']:.2f}" if v["floor"] and v["crossgate-t1"] is not None else ""
        row += f" {ratio('floor')} | {over} |"
    print(row)
print()
print(f"- linkerd2-proxy {sys.argv[3]}; LINKERD2_PROXY_CORES=1")
print(f"- crossgate {sys.argv[4]}" + (f"; before: {before}" if before else ""))
print(f"- steal: {sys.argv[5]} % of the machine's CPU time went to other guests during the run")
PY
