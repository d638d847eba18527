#!/usr/bin/env bash
# Builds stubcp (benches/linkerd/stubcp, release, --locked) with its target dir under $STATE
# (never in the repository) and installs the binary as $STUBCP (default $STATE/bin/stubcp).
# Re-run after changing stubcp/. Extra arguments go to cargo build.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/build/stubcp-target}
cargo build --release --locked --manifest-path "$HARNESS/stubcp/Cargo.toml" "$@"
mkdir -p "$(dirname "$STUBCP")"
install -m 0755 "$CARGO_TARGET_DIR/release/stubcp" "$STUBCP"
echo "build-stubcp: installed $STUBCP"
