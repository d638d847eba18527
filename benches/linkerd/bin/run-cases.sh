#!/usr/bin/env bash
# Drives clients inside the netns through the source linkerd2-proxy to the gateway under
# test, one line per case:  PASS|FAIL name detail   and a final  N passed, N failed.
# Checks look at what the echo backend received (it reports request line + headers).
# In GATEWAY=capture mode the checks look at what the capture server recorded instead
# (transport header bytes against the known vectors), since nothing is forwarded there.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
MODE=$(cat "$STATE/mode" 2>/dev/null) || die "harness not started (bin/start.sh)"
RUN=${RUN:-$(date +%s)}
OUT=$STATE/cases/$RUN
mkdir -p "$OUT"
pass=0 fail=0
tohex() { od -An -tx1 -v | tr -d ' \n'; }
result() { # result PASS|FAIL name detail
  printf '%s %s %s\n' "$1" "$2" "$3"
  if [[ $1 == PASS ]]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
}
# hdr FILE NAME: value of a header line "  name: value" in an echo report (first match).
hdr() { sed -n "s/^  $2: //Ip" "$1" | head -n 1 | tr -d '\r'; }
# block CASEID [LOG]: the backend's log entry for a request that carried x-case: CASEID
# (LOG: requests.log of the plain backend by default; meshed-requests.log for the meshed pod).
block() { awk -v c="case $1" '/^=== /{p = (index($0, c) > 0)} p' "${2:-$STATE/backend/requests.log}"; }
# denials PORT: the meshed pod's proxy's authz denials (HTTP + TCP) on PORT, from its metrics.
denials() {
  nsexec curl -fsS -m 3 "http://$MESHED_IP:4191/metrics" 2>/dev/null \
    | awk -v p="target_port=\"$1\"" '/^inbound_(http|tcp)_authz_deny_total[{]/ && index($0, p) {n += $NF} END {print n + 0}'
}
# curl_case NAME URL [curl args...]: body -> $OUT/NAME.body, headers -> $OUT/NAME.hdrs
curl_case() {
  local name=$1 url=$2; shift 2
  nsexec curl -sS -m 15 -o "$OUT/$name.body" -D "$OUT/$name.hdrs" -w '%{http_code}' \
    -H "x-case: $name-$RUN" "$@" "$url" 2>"$OUT/$name.err"
}
# common_checks NAME REPORT TARGET: the gateway's duties on a forwarded HTTP request.
common_checks() {
  local rep=$2 target=$3 problems=() notes=() v
  v=$(hdr "$rep" l5d-client-id)
  [[ $v == "$SOURCE_ID" ]] || problems+=("l5d-client-id='$v'")
  v=$(hdr "$rep" forwarded)
  if [[ -z $v ]]; then problems+=("no forwarded")
  else
    [[ $v == *"for=$SOURCE_ID"* ]] || problems+=("forwarded lacks for=<client id>: $v")
    [[ $v == *"by=$GATEWAY_ID"* ]] || notes+=("forwarded by=? ($v)")
  fi
  grep -q "$target" "$rep" || problems+=("target $target not in request line/host")
  v=$(hdr "$rep" l5d-dst-canonical); [[ -n $v ]] && notes+=("l5d-dst-canonical=$v")
  if ((${#problems[@]})); then echo "${problems[*]}"; return 1; fi
  echo "${notes[*]:-}"
}

capture_cases() {
  # Expected transport headers (u32 length + protobuf) as DESIGN.md part 1 lists them.
  local hex_h2 hex_h1 hex_tcp
  hex_h2=00000027$(printf '08aa4d121e%s1a021200' "$(printf podinfo.test.svc.cluster.local | tohex)")
  hex_h1=0000002a$(printf '08aa4d1221%s1a020a00' "$(printf podinfo-h1.test.svc.cluster.local | tohex)")
  hex_tcp=00000023$(printf '08ab4d121e%s' "$(printf tcpecho.test.svc.cluster.local | tohex)")
  code=$(curl_case h2-hint "http://$VIP_H2:9898/case/h2-hint" --http2-prior-knowledge)
  code=$(curl_case h1-upgraded "http://$VIP_H2:9898/case/h1-upgraded" --http1.1)
  code=$(curl_case h1-nohint "http://$VIP_H1:9898/case/h1-nohint" --http1.1)
  code=$(curl_case h1-nohint-2 "http://$VIP_H1:9898/case/h1-nohint-2" --http1.1)
  nsexec "$STUBCP" tcp "$VIP_TCP:9899" --bytes 4096 >"$OUT/opaque.out" 2>&1
  nsexec "$STUBCP" grpc "http://$VIP_H2:9898/test.Echo/Say" --case "grpc-$RUN" >"$OUT/grpc.out" 2>&1
  code=$(curl_case bad-domain "http://$VIP_BAD:9898/case/bad-domain" --http1.1)
  sleep 0.5
  local f name want
  for c in h2:$hex_h2 h1:$hex_h1 tcp:$hex_tcp; do
    name=${c%%:*} want=${c#*:}
    f=$(grep -l -x "$want" "$STATE"/capture/*.hdr.hex 2>/dev/null | head -n 1)
    if [[ -n $f ]]; then result PASS "capture-header-$name" "$(basename "$f") matches ${want:0:18}..."
    else result FAIL "capture-header-$name" "no connection carried ${want:0:18}... (see $STATE/capture)"; fi
  done
  grep -q 'trailer grpc-status: 0' "$OUT/grpc.out" && result PASS grpc-through-capture "$(grep -c . "$OUT/grpc.out") lines" \
    || result FAIL grpc-through-capture "$(tr '\n' ' ' <"$OUT/grpc.out")"
  grep -q '^ok ' "$OUT/opaque.out" && result PASS opaque-through-capture "$(cat "$OUT/opaque.out")" \
    || result FAIL opaque-through-capture "$(tr '\n' ' ' <"$OUT/opaque.out")"
}

gateway_cases() {
  local code d rep
  # 1. HTTP/2 from the app, H2 hint: an HTTP/2 stream through the gateway.
  code=$(curl_case h2-hint "http://$VIP_H2:9898/case/h2-hint" --http2-prior-knowledge)
  rep=$OUT/h2-hint.body
  if [[ $code == 200 ]] && d=$(common_checks h2-hint "$rep" "podinfo.test.svc.cluster.local:9898"); then
    result PASS h2-hint "200, backend got $(head -n 1 "$rep" | cut -d' ' -f1,3) ${d}"
  else result FAIL h2-hint "code=$code ${d:-} $(head -c 200 "$OUT/h2-hint.err")"; fi

  # 2. HTTP/1.1 from the app, H2 hint: the source proxy upgrades; the gateway must turn it
  #    back into HTTP/1.1 with Host = name:port.
  code=$(curl_case h1-upgraded "http://$VIP_H2:9898/case/h1-upgraded" --http1.1)
  rep=$OUT/h1-upgraded.body
  if [[ $code == 200 ]] && d=$(common_checks h1-upgraded "$rep" "podinfo.test.svc.cluster.local:9898"); then
    local line host op
    line=$(head -n 1 "$rep") host=$(hdr "$rep" host) op=$(hdr "$OUT/h1-upgraded.hdrs" l5d-orig-proto)
    if [[ $line == *HTTP/1.1 && $host == podinfo.test.svc.cluster.local:9898 ]]; then
      result PASS h1-upgraded "200, backend got '$line' host=$host ${op:+client saw l5d-orig-proto=$op }$d"
    else result FAIL h1-upgraded "backend got '$line' host='$host' (want HTTP/1.1, host name:port)"; fi
  else result FAIL h1-upgraded "code=$code ${d:-} $(head -c 200 "$OUT/h1-upgraded.err")"; fi

  # 3. HTTP/1.1 without the hint (session protocol Http1, no Host from the source proxy).
  code=$(curl_case h1-nohint "http://$VIP_H1:9898/case/h1-nohint" --http1.1)
  rep=$OUT/h1-nohint.body
  if [[ $code == 200 ]] && d=$(common_checks h1-nohint "$rep" "podinfo-h1.test.svc.cluster.local:9898"); then
    local line host
    line=$(head -n 1 "$rep") host=$(hdr "$rep" host)
    if [[ $line == *HTTP/1.1 && $host == podinfo-h1.test.svc.cluster.local:9898 ]]; then
      result PASS h1-nohint "200, backend got '$line' host=$host $d"
    else result FAIL h1-nohint "backend got '$line' host='$host' (want HTTP/1.1, host name:port)"; fi
  else result FAIL h1-nohint "code=$code ${d:-} $(head -c 200 "$OUT/h1-nohint.err")"; fi

  # 4. Opaque TCP: 1 MiB echoed, with half-close propagated both ways.
  if nsexec "$STUBCP" tcp "$VIP_TCP:9899" --bytes 1048576 >"$OUT/opaque.out" 2>&1; then
    result PASS opaque-tcp "$(cat "$OUT/opaque.out")"
  else result FAIL opaque-tcp "$(tr '\n' ' ' <"$OUT/opaque.out")"; fi

  # 5. gRPC-ish: HTTP/2 POST with request trailers; response trailers must come back.
  nsexec "$STUBCP" grpc "http://$VIP_H2:9898/test.Echo/Say" --case "grpc-$RUN" >"$OUT/grpc.out" 2>&1
  rep=$OUT/grpc.backend
  block "grpc-$RUN" >"$rep"
  if grep -q '^status: 200' "$OUT/grpc.out" && grep -q '^trailer grpc-status: 0' "$OUT/grpc.out" \
    && grep -q 'echo ok' "$OUT/grpc.out" && d=$(common_checks grpc "$rep" "podinfo.test.svc.cluster.local:9898"); then
    local rt
    rt=$(sed -n 's/^trailer x-request-trailers: //p' "$OUT/grpc.out")
    if [[ $rt == *x-req-trailer=t1* ]]; then
      result PASS grpc-trailers "200, grpc-status 0 back, request trailer reached backend; $d"
    else result FAIL grpc-trailers "request trailer lost (backend saw '${rt}')"; fi
  else result FAIL grpc-trailers "$(tr '\n' ' ' <"$OUT/grpc.out" | head -c 300) ${d:-}"; fi

  # 6. Refused: the authority override names a target outside svc.cluster.local.
  code=$(curl_case bad-domain "http://$VIP_BAD:9898/case/bad-domain" --http1.1)
  local perr seen
  perr=$(hdr <(sed 's/^/  /' "$OUT/bad-domain.hdrs") l5d-proxy-error)
  seen=$(block "bad-domain-$RUN" | head -n 1)
  if ((pass == 0)); then
    result FAIL bad-domain-refused "inconclusive: client got $code but no positive case passed (gateway not forwarding at all?)"
  elif [[ $code != 2* && -z $seen ]]; then
    result PASS bad-domain-refused "client got $code${perr:+ (l5d-proxy-error: $perr)}; backend saw nothing"
  else result FAIL bad-domain-refused "client got $code; backend saw: ${seen:-nothing}"; fi

  # 7. meshed-backend [needs upstream mTLS]: the target is a meshed pod whose linkerd2-proxy
  #    only admits mTLS clients with a mesh identity. The gateway must discover it (Linkerd:
  #    Destination.Get -> $MESHED_IP:9898, identity $MESHED_ID, H2 hint) and connect with mTLS
  #    as itself; the pod's proxy then sets l5d-client-id = the gateway's identity. A gateway
  #    that forwards plaintext (crossgate with the static config start.sh writes by default)
  #    gets refused: FAIL expected there; with CROSSGATE_DISCOVERY=1 crossgate passes it.
  local mtag="[needs upstream mTLS]" mrep plainseen cid fwd
  code=$(curl_case meshed-backend "http://$VIP_MESHED:9898/case/meshed-backend" --http2-prior-knowledge)
  mrep=$OUT/meshed-backend.backend
  block "meshed-backend-$RUN" "$STATE/backend/meshed-requests.log" >"$mrep"
  plainseen=$(block "meshed-backend-$RUN" | head -n 1)
  cid=$(hdr "$mrep" l5d-client-id) fwd=$(hdr "$mrep" forwarded)
  if [[ $code == 200 && -s $mrep && -z $plainseen && $cid == "$GATEWAY_ID" ]] \
    && grep -q "podinfo-meshed.test.svc.cluster.local:9898" "$mrep"; then
    result PASS meshed-backend "$mtag 200 via the pod's proxy; backend got $(sed -n 2p "$mrep" | cut -d' ' -f1,3) l5d-client-id=$cid${fwd:+ forwarded=$fwd}"
  else
    local perr
    perr=$(hdr <(sed 's/^/  /' "$OUT/meshed-backend.hdrs") l5d-proxy-error)
    result FAIL meshed-backend "$mtag code=$code${perr:+ l5d-proxy-error=$perr} meshed backend saw: $(sed -n 2p "$mrep" | head -c 120)${cid:+ l5d-client-id=$cid}${plainseen:+ (plain backend got it!)} $(head -c 200 "$OUT/meshed-backend.err")"
  fi

  # 8. meshed-plaintext-refused (negative control, no gateway involved): a plaintext request
  #    straight to the meshed pod's port 9898 (DNAT to its proxy's inbound, like proxy-init)
  #    must be refused by the pod's authenticated-only policy: non-2xx or no answer, nothing at
  #    the meshed backend, and the proxy's authz deny counter for port 9898 went up.
  local before after mseen
  before=$(denials 9898)
  code=$(curl_case meshed-plaintext "http://$MESHED_IP:9898/case/meshed-plaintext" --http1.1)
  after=$(denials 9898)
  mseen=$(block "meshed-plaintext-$RUN" "$STATE/backend/meshed-requests.log" | head -n 1)
  if [[ $code != 2* && -z $mseen ]] && ((after > before)); then
    result PASS meshed-plaintext-refused "plaintext to $MESHED_IP:9898 got ${code/#000/no answer}; pod proxy authz denials on 9898: $before -> $after; backend saw nothing"
  else
    result FAIL meshed-plaintext-refused "plaintext got $code; denials $before -> $after; meshed backend saw: ${mseen:-nothing}"
  fi
}

echo "# run-cases: GATEWAY=$MODE run $RUN (artifacts in $OUT)"
if [[ $MODE == capture ]]; then capture_cases; else gateway_cases; fi
echo "$pass passed, $fail failed"
((fail == 0))
