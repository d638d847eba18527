#!/usr/bin/env bash
# Soak: benches/soak.sh [SECONDS] [CONNECTIONS]   (defaults 600 and 10000; not run by CI)
#
# Starts a release-built crossgate on a dev PKI with a [routing.static] route to a local
# HTTP/1.1 backend, then `loadkit soak` opens CONNECTIONS mTLS connections in plain HTTP mode
# and holds them SECONDS, a tenth of them sending one request a second (l5d-dst-canonical). The
# gateway's VmRSS and its open inbound connections (tcp_open_connections) are printed every
# 10 s. At the end every held connection sends one more request. Exit 0 only when the RSS of
# the last third stays within 10 % of the baseline (the first sample after 60 s of traffic:
# connections get their HTTP buffers once they speak, so the first minute grows by design) and
# no connection was lost (all established, no request failed).
#
# `http_idle_timeout` is set above the soak's length: the soak holds idle HTTP connections on
# purpose, and the idle deadline (default 5m) would otherwise close them (as it should).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-600}"
CONNS="${2:-10000}"

# Each side holds one descriptor per connection (plus the pool): raise the soft limit.
ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 1000)) ]; then
  echo "RLIMIT_NOFILE $(ulimit -n) is too low for $CONNS connections" >&2
  exit 1
fi

cargo build --release --bin crossgate --example loadkit
BIN=target/release/crossgate
LOADKIT=target/release/examples/loadkit

TMP="$(mktemp -d)"
GW_PID=""
cleanup() {
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
LISTEN="127.0.0.1:$(free_port)"
ADMIN="127.0.0.1:$(free_port)"
BACKEND="127.0.0.1:$(free_port)"
TARGET="web.soak.svc.cluster.local:8080"
GW_ID="linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local"

"$BIN" certs --out "$TMP/pki" >/dev/null
cat > "$TMP/crossgate.toml" <<TOML
[server]
listen = "$LISTEN"
admin = "$ADMIN"
http_idle_timeout = "$((DURATION * 2 + 300))s"

[identity]
trust_anchors = "$TMP/pki/ca.crt"
certificate = "$TMP/pki/gateway.crt"
key = "$TMP/pki/gateway.key"

[routing.static]
"$TARGET" = ["$BACKEND"]
TOML

RUST_LOG=warn "$BIN" run --config "$TMP/crossgate.toml" 2>"$TMP/gateway.log" &
GW_PID=$!
for _ in $(seq 200); do
  curl -fs "http://$ADMIN/ready" >/dev/null 2>&1 && break
  sleep 0.05
done
curl -fs "http://$ADMIN/ready" >/dev/null || { cat "$TMP/gateway.log"; exit 1; }

echo "soak: $CONNS connections for ${DURATION}s, a tenth with 1 request/s; crossgate pid $GW_PID ($(nproc) cores)"
status=0
"$LOADKIT" soak "$LISTEN" "$GW_ID" "$TMP/pki/ca.crt" "$TMP/pki/client.crt" "$TMP/pki/client.key" \
  "$CONNS" "$DURATION" "$TARGET" "$BACKEND" "$ADMIN" "$GW_PID" || status=$?
echo "gateway: VmHWM $(awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' /proc/$GW_PID/status)," \
  "$(grep -c . "$TMP/gateway.log") log lines"
exit "$status"
