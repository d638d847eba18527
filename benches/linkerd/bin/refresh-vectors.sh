#!/usr/bin/env bash
# With the harness started as GATEWAY=capture, runs the cases and writes, into
# $VECTORS_DIR (default $STATE/vectors):
#   <case>.hex         the transport header bytes the source proxy sent on that connection
#                      (3 comment lines, then line 1: the 23-byte preface; line 2: u32 length
#                      + protobuf Header)
#   connections.txt    per connection: TLS facts, header, and the requests as received
# The repository's tests/vectors/ hold the same files without the `#` lines (its unit tests
# decode them): `diff <(grep -v '^#' $STATE/vectors/h2-hint.hex) tests/vectors/h2-hint.hex`.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
[[ $(cat "$STATE/mode" 2>/dev/null) == capture ]] || die "start the harness with GATEWAY=capture first"
VEC=${VECTORS_DIR:-$STATE/vectors}
mkdir -p "$VEC"
rm -f "$STATE"/capture/*
"$(dirname "$0")/run-cases.sh"
rc=$?
sleep 0.5
commit=$(cat "$(dirname "$PROXY_BIN")/linkerd2-proxy.commit" 2>/dev/null || echo unknown)
declare -A seen=()
for f in "$STATE"/capture/conn-*.hdr.hex; do
  [[ -e $f ]] || continue
  txt=${f%.hdr.hex}.txt
  h=$(sed -n 's/^header: //p' "$txt")
  case $h in
    *'"podinfo.test.svc.cluster.local"'*Http2*) name=h2-hint ;;
    *'"podinfo-h1.test.svc.cluster.local"'*Http1*) name=h1-nohint ;;
    *'"tcpecho.test.svc.cluster.local"'*'protocol: None'*) name=opaque ;;
    *example.com*) name=bad-domain ;;
    *) name=other-$(basename "$f" .hdr.hex) ;;
  esac
  [[ -n ${seen[$name]:-} ]] && continue
  seen[$name]=1
  {
    echo "# transport header sent by linkerd2-proxy $commit (source side) to the gateway"
    echo "# decoded: $h"
    echo "# line 1: preface \"transport.l5d.io/v1\\r\\n\\r\\n\"; line 2: u32 BE length + protobuf Header"
    cat "$f"
  } >"$VEC/$name.hex"
done
{
  echo "# What each TLS connection from the source linkerd2-proxy ($commit) carried,"
  echo "# as recorded by bin/start.sh GATEWAY=capture + bin/refresh-vectors.sh."
  echo "# Request lines and headers are as the gateway receives them (HTTP/2 shown as"
  echo "# method, URI from :scheme/:authority/:path, version)."
  for t in "$STATE"/capture/conn-*.txt; do echo; sed 's/^conn \([0-9]*\) from .*/conn \1/' "$t"; done
} >"$VEC/connections.txt"
ls -l "$VEC"
exit $rc
