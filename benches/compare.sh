#!/usr/bin/env bash
# Side-by-side benchmark: crossgate, nginx and HAProxy as mTLS proxies in front of the same
# backend, driven by the same load tool. Installs what it needs, builds, runs, prints one table.
#   benches/compare.sh [--quick]      (--quick: one repeat, shorter runs)
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v nginx >/dev/null || need+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || need+=(libnginx-mod-stream)
command -v haproxy >/dev/null || need+=(haproxy)
command -v taskset >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${need[@]}"
fi
command -v oha >/dev/null || cargo install oha --locked
cargo build --release --bin crossgate --example loadkit
exec python3 benches/compare.py "$@"
