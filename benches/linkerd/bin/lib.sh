# shellcheck shell=bash
# Shared settings for the Linkerd harness scripts (benches/linkerd/bin). Everything is
# overridable from the env.
STATE=${STATE:-/tmp/l5d-interop}          # all runtime state, logs, pids, PKI, captures, builds
NS=${NS:-l5dtest}                         # the network namespace the harness owns
HARNESS=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)   # this harness: benches/linkerd
# The linkerd2-proxy commit the harness was built and measured with (bin/build-proxy.sh's
# default; BENCHMARKS.md's linkerd2-proxy figures come from it).
PROXY_COMMIT=${PROXY_COMMIT:-29637b64f6cebedaf15bfbf516818d7a28a4d5a6}
PROXY_BIN=${PROXY_BIN:-$STATE/proxy/linkerd2-proxy}
STUBCP=${STUBCP:-$STATE/bin/stubcp}

# Network layout inside $NS (192.0.2.0/24 is TEST-NET-1; nothing leaves the namespace).
SRC_IP=192.0.2.1          # the source-side linkerd2-proxy (inbound; outbound is 127.0.0.1:4140)
GW_IP=192.0.2.10          # the gateway under test: 4143 (mTLS), 4191 (admin)
BACKEND_IP=192.0.2.20     # echo backends: 9898 HTTP/1+h2c, 9899 TCP
MESHED_IP=192.0.2.30      # the meshed target pod: its linkerd2-proxy (inbound 4143, admin 4191,
                          # authenticated-only policy) in front of an echo backend on 9898/9899
VIP_NET=192.0.2.64/26     # service VIPs, redirected by iptables to the source proxy's 4140
VIP_H2=192.0.2.65         # podinfo-east   -> podinfo.test.svc.cluster.local:9898, H2 hint
VIP_H1=192.0.2.66         # podinfo-h1-east -> podinfo-h1.test.svc.cluster.local:9898, no hint
VIP_TCP=192.0.2.67        # tcpecho-east   -> tcpecho.test.svc.cluster.local:9899, opaque
VIP_BAD=192.0.2.68        # outside-east   -> podinfo.test.example.com:9898 (must be refused)
VIP_MESHED=192.0.2.69     # podinfo-meshed-east -> podinfo-meshed.test.svc.cluster.local:9898, H2 hint
CP_ADDR=127.0.0.1:8086    # stubcp (plaintext gRPC)
GATEWAY_ID=linkerd-gateway.linkerd-multicluster.serviceaccount.identity.linkerd.cluster.local
SOURCE_ID=frontend.west.serviceaccount.identity.linkerd.cluster.local
MESHED_ID=podinfo-meshed.test.serviceaccount.identity.linkerd.cluster.local
MESHED_WORKLOAD='{"ns":"test","pod":"podinfo-meshed-0"}'   # its proxy's POLICY_WORKLOAD
MESHED_UID=${MESHED_UID:-2102}   # the meshed pod's proxy runs as this uid (Linkerd's proxy uid):
                                 # the proxy-init-like DNAT rule skips that uid's connections

nsexec() { ip netns exec "$NS" "$@"; }

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# start_bg NAME CMD...: runs CMD inside $NS in its own session, logs to $STATE/logs/NAME.log,
# pid (of CMD itself: ip netns exec and env exec in place) to $STATE/pids/NAME.pid.
start_bg() {
  local name=$1; shift
  mkdir -p "$STATE/logs" "$STATE/pids"
  setsid ip netns exec "$NS" "$@" >"$STATE/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$STATE/pids/$name.pid"
}

pid_of() { cat "$STATE/pids/$1.pid" 2>/dev/null; }

alive() { local p; p=$(pid_of "$1") && [[ -n $p ]] && kill -0 "$p" 2>/dev/null; }

# wait_tcp IP PORT SECS: waits until something listens there (inside $NS).
wait_tcp() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    nsexec bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# http_load CASE CONNS SECS: sets LOAD to the stubcp load of one HTTP case through the
# source proxy (h2: HTTP/2; orig: HTTP/1.1 the source upgrades with l5d-orig-proto; h1:
# HTTP/1.1 without a hint, a new mTLS connection per request), bounded by a timeout.
http_load() {
  local url
  case $1 in
    h2 | orig) url="http://$VIP_H2:9898/bytes/64" ;;
    h1) url="http://$VIP_H1:9898/bytes/64" ;;
    *) die "unknown case $1" ;;
  esac
  LOAD=(timeout $(($3 * 6 + 10)) "$STUBCP" load "$url" --conns "$2" --secs "$3")
  [[ $1 == h2 ]] && LOAD+=(--h2)
  return 0
}

# start_gateway GATEWAY LOG: starts the harness with linkerd2-proxy (GATEWAY=proxy) or a
# crossgate binary run with $CONF (default: the harness's config) as the gateway, sets PID to
# the gateway's, and warms it with one second of HTTP/2 (so that one-time costs such as
# aws-lc's entropy seeding are not counted).
start_gateway() {
  "$HARNESS/bin/stop.sh" >/dev/null 2>&1
  if [[ $1 == proxy ]]; then
    GATEWAY=proxy "$HARNESS/bin/start.sh" >"$2" 2>&1
  else
    GATEWAY=cmd GATEWAY_CMD="$1 run --config ${CONF:-$STATE/gateway/crossgate.toml}" \
      "$HARNESS/bin/start.sh" >"$2" 2>&1
  fi || { cat "$2"; exit 1; }
  PID=$(pid_of gateway)
  nsexec timeout 10 "$STUBCP" load "http://$VIP_H2:9898/bytes/64" --conns 1 --secs 1 >/dev/null 2>&1
  return 0
}
