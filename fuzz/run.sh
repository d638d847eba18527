#!/usr/bin/env bash
# Fuzz the transport header decoder: fuzz/run.sh [SECONDS] (default 60).
# Installs cargo-fuzz when missing; runs on the stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p corpus/transport_header
for f in ../tests/vectors/*.hex; do
  python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex(''.join(open('$f').read().split())))" \
    > "corpus/transport_header/$(basename "$f" .hex)"
done
RUSTC_BOOTSTRAP=1 cargo fuzz run transport_header corpus/transport_header -- -max_total_time="${1:-60}"
