#!/usr/bin/env bash
# crossgate built with profile-guided optimization (PGO): the release binary, laid out and
# inlined by what a run of the gateway's hot paths measured. On the Linkerd harness it spends
# 7-18 % less CPU per HTTP request than `cargo build --release` (BENCHMARKS.md, "Every path,
# 2026-12-07 (afternoon)"); it is the same code, only the machine code's layout differs.
#
#   benches/pgo.sh                 -> target/pgo/release/crossgate
#   OUT=DIR benches/pgo.sh         (target dir; default target/pgo)
#
# 1. builds an instrumented crossgate (-Cprofile-generate, its own target dir) and loadkit;
# 2. trains it on loopback with this repository's tools only: a PKI from `crossgate certs`,
#    `loadkit delayed` as the HTTP/1.1 + h2c backend, `loadkit sink`, and as clients
#    `loadkit linkerd` (a transport header, then HTTP/2 with and without `l5d-orig-proto`),
#    `loadkit stream` (opaque TCP after a transport header) and curl (HTTP/1.1, one full mTLS
#    handshake per request); then stops it with SIGTERM, so that it writes its profile;
# 3. merges the profile (llvm-profdata of the toolchain's own LLVM: `rustup component add
#    llvm-tools`, done here when missing) and builds the release binary with -Cprofile-use.
# The training is not the Linkerd harness the figures are measured on: other clients, other
# backends. About 10 minutes on two cores (two full release builds). Not part of the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/target/pgo}
GEN=$ROOT/target/pgo-gen
SECS=${SECS:-5}
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
say() { echo "pgo: $*" >&2; }

sysroot=$(rustc --print sysroot)
profdata=$(ls "$sysroot"/lib/rustlib/*/bin/llvm-profdata 2>/dev/null | head -1 || true)
if [[ -z $profdata ]]; then
  say "installing llvm-tools (llvm-profdata matching rustc's LLVM)"
  rustup component add llvm-tools
  profdata=$(ls "$sysroot"/lib/rustlib/*/bin/llvm-profdata | head -1)
fi
command -v curl >/dev/null || { say "needs curl"; exit 1; }

say "instrumented build -> $GEN"
# Fixed paths, so that a second run rebuilds only what changed.
PROFILES=$GEN/profiles
rm -rf "$PROFILES"
RUSTFLAGS="-Cprofile-generate=$PROFILES" \
  cargo build --release --locked --bin crossgate --target-dir "$GEN"
cargo build --release --locked --example loadkit
LOADKIT=$ROOT/target/release/examples/loadkit
BIN=$GEN/release/crossgate

wait_port() {
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  say "port $1 never opened"
  exit 1
}

pki=$WORK/pki
"$BIN" certs --out "$pki" >/dev/null
GW=linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
cat >"$WORK/crossgate.toml" <<TOML
[server]
listen = "127.0.0.1:24143"
admin = "127.0.0.1:24191"
threads = 1
max_connections = 1000

[identity]
trust_anchors = "$pki/ca.crt"
certificate = "$pki/gateway.crt"
key = "$pki/gateway.key"

[routing.static]
"web.pgo.svc.cluster.local:80" = ["127.0.0.1:28080"]
"sink.pgo.svc.cluster.local:9000" = ["127.0.0.1:29000"]
TOML
"$LOADKIT" delayed 127.0.0.1:28080 0 & pids+=($!)
"$LOADKIT" sink 127.0.0.1:29000 & pids+=($!)
RUST_LOG=warn "$BIN" run --config "$WORK/crossgate.toml" & gw=$!
pids+=("$gw")
wait_port 28080; wait_port 29000; wait_port 24143

tls=("$pki/ca.crt" "$pki/client.crt" "$pki/client.key")
say "training: transport header + HTTP/2, ${SECS}s"
"$LOADKIT" linkerd 127.0.0.1:24143 "$GW" "${tls[@]}" 4 10 "$SECS" web.pgo.svc.cluster.local:80
say "training: transport header + l5d-orig-proto, ${SECS}s"
"$LOADKIT" linkerd 127.0.0.1:24143 "$GW" "${tls[@]}" 4 10 "$SECS" web.pgo.svc.cluster.local:80 orig-proto
say "training: HTTP/1.1, a full handshake per request"
curl -sS --no-progress-meter --fail -o /dev/null --http1.1 -Z --parallel-max 4 -H "Connection: close" \
  -H "l5d-dst-canonical: web.pgo.svc.cluster.local:80" \
  --cacert "$pki/ca.crt" --cert "$pki/client.crt" --key "$pki/client.key" \
  --connect-to "$GW:24143:127.0.0.1:24143" "https://$GW:24143/[1-1500]"
say "training: opaque TCP after a transport header"
"$LOADKIT" stream 127.0.0.1:24143 "$GW" "${tls[@]}" 512 sink.pgo.svc.cluster.local:9000

kill -TERM "$gw"
wait "$gw" || true
ls "$PROFILES"/*.profraw >/dev/null || { say "no profile written"; exit 1; }
mkdir -p "$OUT"
"$profdata" merge -o "$WORK/crossgate.profdata" "$PROFILES"
# Named by its content: cargo tracks RUSTFLAGS, not the file they name, so a new profile must
# be a new flag for every crate (dependencies included) to be built with it.
profile=$OUT/crossgate-$(sha256sum "$WORK/crossgate.profdata" | cut -c1-16).profdata
rm -f "$OUT"/crossgate*.profdata
mv "$WORK/crossgate.profdata" "$profile"

say "optimized build -> $OUT"
RUSTFLAGS="-Cprofile-use=$profile -Cllvm-args=-pgo-warn-missing-function=false" \
  cargo build --release --locked --bin crossgate --target-dir "$OUT"
"$OUT/release/crossgate" --help >/dev/null
say "built $OUT/release/crossgate"
