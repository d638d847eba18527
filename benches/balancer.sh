#!/usr/bin/env bash
# The balancer against a slow endpoint, crossgate beside a baseline binary (benches/balancer.py).
#   CROSSGATE_BASELINE=/path/to/old/crossgate [REPEATS=3] [SECS=10] benches/balancer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v taskset >/dev/null || { apt-get update && apt-get install -y util-linux; }
cargo build --release --bin crossgate --example loadkit
exec python3 benches/balancer.py "$@"
