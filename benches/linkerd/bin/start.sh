#!/usr/bin/env bash
# Starts the Linkerd harness (benches/linkerd): netns, backends, stub control plane, the
# gateway under test, and the source-side linkerd2-proxy.
#
#   GATEWAY=capture|proxy|cmd bin/start.sh
#
#   capture  stubcp capture: an mTLS server with the gateway identity that records what the
#            source proxy sends ($STATE/capture/conn-NNNN.{txt,hdr.hex}) and answers like the
#            echo backend (it does not forward).
#   proxy    a second linkerd2-proxy configured as the multicluster gateway (the baseline).
#   cmd      runs $GATEWAY_CMD inside the netns (via bash -c "exec $GATEWAY_CMD"), e.g.
#            GATEWAY_CMD='/path/to/crossgate run --config $STATE/gateway/crossgate.toml'
#            STATE and CROSSGATE_CONFIG are exported to it.
#
# In every mode it also starts the "meshed" target pod at $MESHED_IP: an echo backend on
# $MESHED_IP:9898/9899 behind a third linkerd2-proxy (inbound only, identity $MESHED_ID,
# authenticated-only policy from stubcp, run as uid $MESHED_UID) that an iptables DNAT rule
# (like Linkerd's proxy-init) puts in front of those ports for everyone but that uid.
#
# With GATEWAY=cmd, the crossgate config it writes ($STATE/gateway/crossgate.toml) changes with:
#   CROSSGATE_DISCOVERY=1      [discovery] from stubcp's Destination API (the meshed pod is then
#                              not a static route: the gateway must learn it and dial it over mTLS)
#   CROSSGATE_POLICY=1         (with discovery) [policy] from stubcp's InboundServerPolicies API
#                              (a crossgate without a [policy] table refuses that config)
#   CROSSGATE_IDENTITY=linkerd the gateway's leaf from stubcp's Identity API, no cert files
# MESHED_ALLOW=id1,id2 limits the meshed pod's policy to those identities (default: any).
#
# Needs root (ip netns, iptables). Run bin/stop.sh to undo everything.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
GATEWAY=${GATEWAY:-proxy}
LOG_LEVEL=${LOG_LEVEL:-warn,linkerd=info}

[[ $(id -u) == 0 ]] || die "needs root (ip netns, iptables)"
for tool in ip iptables curl setpriv od awk; do
  command -v "$tool" >/dev/null || die "needs $tool (see benches/linkerd/README.md, Requirements)"
done
[[ -x $STUBCP ]] || die "no $STUBCP: run bin/build-stubcp.sh"
[[ -x $PROXY_BIN ]] || die "no $PROXY_BIN: run bin/build-proxy.sh SOURCE [COMMIT] (benches/linkerd/README.md)"
case $GATEWAY in
  capture | proxy) ;;
  cmd) [[ -n ${GATEWAY_CMD:-} ]] || die "GATEWAY=cmd needs GATEWAY_CMD" ;;
  *) die "GATEWAY must be capture, proxy or cmd" ;;
esac
if ip netns list | grep -qw "$NS"; then die "netns $NS exists: run bin/stop.sh first"; fi
trap 'rc=$?; ((rc)) && echo "start: failed; logs in $STATE/logs; run bin/stop.sh to clean up" >&2' EXIT

mkdir -p "$STATE"/{logs,pids,backend,gateway}
rm -rf "$STATE/capture" "$STATE/pids"/* && mkdir -p "$STATE/capture"
: >"$STATE/backend/requests.log"
: >"$STATE/backend/meshed-requests.log"
echo "$GATEWAY" >"$STATE/mode"

# --- network: everything on lo of a private netns -------------------------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
for ip in $SRC_IP $GW_IP $BACKEND_IP $MESHED_IP; do ip -n "$NS" addr add "$ip/32" dev lo; done
ip -n "$NS" route add "$VIP_NET" dev lo   # VIPs are routable, then redirected below
nsexec iptables -t nat -A OUTPUT -p tcp -d "$VIP_NET" -j REDIRECT --to-ports 4140
# The meshed pod's "proxy-init": connections to its app ports go to its proxy's inbound
# (original dst kept for SO_ORIGINAL_DST), except the proxy's own (it forwards to the same
# address, as linkerd2-proxy's inbound connects to the original destination).
nsexec iptables -t nat -A OUTPUT -p tcp -d "$MESHED_IP" -m multiport --dports 9898,9899 \
  -m owner ! --uid-owner "$MESHED_UID" -j DNAT --to-destination "$MESHED_IP:4143"
nsexec sysctl -qw net.ipv4.ip_local_port_range="20000 60999"

# --- PKI and the gateway's config (crossgate format) ----------------------------------
"$STUBCP" init --state "$STATE" --gateway-id "$GATEWAY_ID" --source-id "$SOURCE_ID" --meshed-id "$MESHED_ID"
chown -R "$MESHED_UID:$MESHED_UID" "$STATE/id/meshed"
setpriv --reuid="$MESHED_UID" --regid="$MESHED_UID" --clear-groups test -r "$STATE/id/meshed/key.p8" -a -x "$PROXY_BIN" \
  || die "uid $MESHED_UID cannot read $STATE/id/meshed or run $PROXY_BIN (needs o+rx on their parents)"
# CROSSGATE_DISCOVERY=1: the gateway learns endpoints (and the meshed pod's identity) from
# stubcp's Destination API, as linkerd2-proxy as gateway does; the meshed name is then not static.
if [[ ${CROSSGATE_DISCOVERY:-} == 1 ]]; then
  MESHED_STATIC="# podinfo-meshed.test.svc.cluster.local:9898 comes from [discovery]"
  DISCOVERY=$'[discovery]\n'"destination_addr = \"$CP_ADDR\"   # stubcp, plaintext on loopback"
  # CROSSGATE_POLICY=1 (with discovery): the gateway holds each caller to the target pod's policy
  # from stubcp's InboundServerPolicies API.
  [[ ${CROSSGATE_POLICY:-} == 1 ]] && DISCOVERY+=$'\n\n[policy]\n'"policy_addr = \"$CP_ADDR\"        # stubcp, plaintext on loopback"
else
  MESHED_STATIC="\"podinfo-meshed.test.svc.cluster.local:9898\" = [\"$MESHED_IP:9898\"]"
  DISCOVERY=""
fi
# CROSSGATE_IDENTITY=linkerd: the gateway has no certificate files; it obtains its leaf from
# stubcp's Identity API (Certify with a CSR and the ServiceAccount token), as linkerd2-proxy does.
if [[ ${CROSSGATE_IDENTITY:-} == linkerd ]]; then
  IDENTITY_FILES="name = \"$GATEWAY_ID\"
[identity.linkerd]
addr       = \"$CP_ADDR\"   # stubcp, plaintext on loopback
token_file = \"$STATE/id/gw/token\""
else
  IDENTITY_FILES="certificate   = \"$STATE/gateway/identity/tls.crt\"
key           = \"$STATE/gateway/identity/tls.key\""
fi
cat >"$STATE/gateway/crossgate.toml" <<TOML
# Written by benches/linkerd/bin/start.sh. A gateway under test runs inside netns $NS as
#   crossgate run --config $STATE/gateway/crossgate.toml
[server]
listen = "$GW_IP:4143"
admin  = "$GW_IP:4191"

[identity]
trust_anchors = "$STATE/gateway/identity/ca.crt"
$IDENTITY_FILES

[routing]
cluster_domain = "cluster.local"
[routing.static]
"podinfo.test.svc.cluster.local:9898"    = ["$BACKEND_IP:9898"]
"podinfo-h1.test.svc.cluster.local:9898" = ["$BACKEND_IP:9898"]
"tcpecho.test.svc.cluster.local:9899"    = ["$BACKEND_IP:9899"]
# The meshed pod (case meshed-backend): its proxy requires mTLS from a mesh identity, so a
# plaintext connection here is refused. Passing needs upstream mTLS: SNI and server id
# $MESHED_ID, the gateway's own client cert, which Linkerd learns from Destination.Get.
$MESHED_STATIC
# no [[authorization]]: any identity chained to the trust anchor (Linkerd's default)
$DISCOVERY
TOML

# --- backends, control plane -------------------------------------------------------------
start_bg backend "$STUBCP" backend --http "$BACKEND_IP:9898" --tcp "$BACKEND_IP:9899" \
  --log "$STATE/backend/requests.log"
start_bg meshed-backend "$STUBCP" backend --http "$MESHED_IP:9898" --tcp "$MESHED_IP:9899" \
  --log "$STATE/backend/meshed-requests.log"
start_bg stubcp "$STUBCP" serve --state "$STATE" --listen "$CP_ADDR" \
  --gateway "$GW_IP:4143" --gateway-id "$GATEWAY_ID" --backend-ip "$BACKEND_IP" \
  --meshed-ip "$MESHED_IP" --meshed-id "$MESHED_ID" --meshed-workload "$MESHED_WORKLOAD" --meshed-ports 9898,9899 \
  ${MESHED_ALLOW:+--meshed-allow "$MESHED_ALLOW"}
wait_tcp "$BACKEND_IP" 9898 10 || die "backend did not start (see $STATE/logs/backend.log)"
alive meshed-backend || die "meshed backend did not start (see $STATE/logs/meshed-backend.log)"
wait_tcp "${CP_ADDR%:*}" "${CP_ADDR#*:}" 10 || die "stubcp did not start (see $STATE/logs/stubcp.log)"

# proxy_env ROLE: the env of a linkerd2-proxy (ROLE src|gw|meshed), one VAR=value per line.
proxy_env() {
  local role=$1 id ip out ctl admin workload
  case $role in
    src) id=$SOURCE_ID ip=$SRC_IP out=127.0.0.1:4140 ctl=127.0.0.1:4190 admin=127.0.0.1:4191 ;;
    gw) id=$GATEWAY_ID ip=$GW_IP out=127.0.0.1:4240 ctl=127.0.0.1:4290 admin=$GW_IP:4191 ;;
    meshed) id=$MESHED_ID ip=$MESHED_IP out=127.0.0.1:4340 ctl=127.0.0.1:4390 admin=$MESHED_IP:4191 ;;
  esac
  workload="{\"ns\":\"${role}\",\"pod\":\"${role}-0\"}"
  [[ $role == meshed ]] && workload=$MESHED_WORKLOAD
  cat <<ENV
LINKERD2_PROXY_LOG=$LOG_LEVEL
LINKERD2_PROXY_LOG_FORMAT=plain
LINKERD2_PROXY_INBOUND_LISTEN_ADDR=$ip:4143
LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR=$out
LINKERD2_PROXY_CONTROL_LISTEN_ADDR=$ctl
LINKERD2_PROXY_ADMIN_LISTEN_ADDR=$admin
LINKERD2_PROXY_INBOUND_IPS=$ip
LINKERD2_PROXY_DESTINATION_SVC_ADDR=$CP_ADDR
LINKERD2_PROXY_POLICY_SVC_ADDR=$CP_ADDR
LINKERD2_PROXY_POLICY_WORKLOAD=$workload
LINKERD2_PROXY_IDENTITY_SVC_ADDR=$CP_ADDR
LINKERD2_PROXY_IDENTITY_DIR=$STATE/id/$role
LINKERD2_PROXY_IDENTITY_TOKEN_FILE=$STATE/id/$role/token
LINKERD2_PROXY_IDENTITY_LOCAL_NAME=$id
LINKERD2_PROXY_DESTINATION_PROFILE_SUFFIXES=svc.cluster.local.
LINKERD2_PROXY_DESTINATION_PROFILE_NETWORKS=192.0.2.0/24
LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS=192.0.2.0/24
LINKERD2_PROXY_INBOUND_DEFAULT_POLICY=all-unauthenticated
LINKERD2_PROXY_CORES=1
ENV
  [[ $role == gw ]] && echo "LINKERD2_PROXY_INBOUND_GATEWAY_SUFFIXES=svc.cluster.local."
  # As the injector does: the container ports, whose policies are fetched before /ready.
  [[ $role == meshed ]] && echo "LINKERD2_PROXY_INBOUND_PORTS=9898,9899"
  return 0
}
run_proxy() { # run_proxy NAME ROLE [PREFIX CMD...]  (PREFIX: e.g. setpriv to another uid)
  local name=$1 role=$2
  local -a env
  shift 2
  mapfile -t env < <(proxy_env "$role")
  proxy_env "$role" >"$STATE/logs/$name.env"
  start_bg "$name" "$@" env "${env[@]}" \
    "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS=$(cat "$STATE/pki/ca.crt")" "$PROXY_BIN"
}
# wait_ready NAME ADMIN_ADDR: until the proxy's admin /ready answers 200.
wait_ready() {
  local i
  for ((i = 0; i < 200; i++)); do
    nsexec curl -fsS -o /dev/null -m 1 "http://$2/ready" 2>/dev/null && return 0
    alive "$1" || { tail -n 30 "$STATE/logs/$1.log" >&2; die "$1 exited"; }
    sleep 0.1
  done
  die "$1 not ready (see $STATE/logs/$1.log)"
}

# --- the meshed target pod's proxy (inbound only; any GATEWAY mode) ----------------------
run_proxy meshed-proxy meshed setpriv --reuid="$MESHED_UID" --regid="$MESHED_UID" --clear-groups
wait_ready meshed-proxy "$MESHED_IP:4191"

# --- the gateway under test ----------------------------------------------------------------
case $GATEWAY in
  capture) start_bg gateway "$STUBCP" capture --state "$STATE" --listen "$GW_IP:4143" ;;
  proxy) run_proxy gateway gw ;;
  cmd)
    export STATE CROSSGATE_CONFIG=$STATE/gateway/crossgate.toml
    start_bg gateway bash -c "exec $GATEWAY_CMD"
    ;;
esac
wait_tcp "$GW_IP" 4143 20 || { tail -n 20 "$STATE/logs/gateway.log" >&2; die "gateway did not listen on $GW_IP:4143"; }

# --- the source-side linkerd2-proxy ---------------------------------------------------
run_proxy source src
wait_ready source 127.0.0.1:4191
echo "start: GATEWAY=$GATEWAY up in netns $NS (state $STATE)"
for n in backend meshed-backend stubcp meshed-proxy gateway source; do printf '  %-14s pid %s  log %s\n' "$n" "$(pid_of $n)" "$STATE/logs/$n.log"; done
