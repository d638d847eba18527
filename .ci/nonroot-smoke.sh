#!/usr/bin/env bash
# What the image promises without a Docker engine: the gateway serves as uid/gid 65532 (the
# distroless `nonroot` user) with the whole root filesystem read-only, as
# `readOnlyRootFilesystem: true` runs it. Usage: nonroot-smoke.sh CROSSGATE_BINARY
# Needs root (a private mount namespace: unshare, setpriv from util-linux).
set -euo pipefail
bin=$(realpath "${1:?usage: nonroot-smoke.sh CROSSGATE_BINARY}")
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
certs/gen.sh "$work/pki" >/dev/null
cp "$bin" "$work/crossgate"
cp "$work/pki/crossgate.toml" "$work/crossgate.toml.in"
# Readable by uid 65532, writable by nobody but root (as a Secret volume with defaultMode 0440
# and fsGroup would give it).
mkdir "$work/log"
chmod 0755 "$work" "$work/pki"
chmod 0444 "$work"/pki/*

# Ports below the kernel's ephemeral range (32768 up), so that no outgoing connection of
# another process holds one; a port some listener holds anyway is retried with others.
for attempt in 1 2 3; do
listen=127.0.0.1:$((10000 + RANDOM % 10000))
admin=127.0.0.1:$((20000 + RANDOM % 10000))
sed "s/0.0.0.0:4143/$listen/; s/0.0.0.0:4191/$admin/" "$work/crossgate.toml.in" >"$work/pki/crossgate.toml"
chmod 0444 "$work/pki/crossgate.toml"
status=0
unshare --mount --propagation private bash -euo pipefail -c '
  work=$1 admin=$2
  mount --bind / / && mount -o remount,bind,ro /
  # Only the gateway'"'"'s stderr log, written by this shell, goes to a scratch tmpfs.
  mount -t tmpfs -o size=1m tmpfs "$work/log"
  if touch "$work/probe" 2>/dev/null; then echo "root filesystem is still writable" >&2; exit 1; fi
  setpriv --reuid 65532 --regid 65532 --clear-groups \
    "$work/crossgate" run --config "$work/pki/crossgate.toml" 2>"$work/log/stderr.log" &
  pid=$!
  for _ in $(seq 100); do
    if [ "$(curl -s "http://$admin/ready")" = "ready" ]; then
      uid=$(awk "/^Uid:/ {print \$2}" /proc/$pid/status)
      kill -TERM $pid; wait $pid
      [ "$uid" = 65532 ] || { echo "ran as uid $uid" >&2; exit 1; }
      echo "nonroot-smoke: ready as uid 65532 on a read-only root, exited 0 on SIGTERM"
      exit 0
    fi
    sleep 0.1
  done
  cat "$work/log/stderr.log" >&2
  if grep -q "cannot bind" "$work/log/stderr.log"; then exit 3; fi
  echo "nonroot-smoke: the gateway never became ready" >&2
  exit 1
' _ "$work" "$admin" || status=$?
[ "$status" = 3 ] || exit "$status"
echo "nonroot-smoke: a port was taken (attempt $attempt); again with others" >&2
done
exit 1
