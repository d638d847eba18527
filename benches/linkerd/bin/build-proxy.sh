#!/usr/bin/env bash
# Builds a release linkerd2-proxy at one commit, outside the repository.
#
#   bin/build-proxy.sh SOURCE [COMMIT]
#
# SOURCE  the linkerd2-proxy sources as git: a local git dir (bare mirror, a clone's .git, or
#         a clone's top directory), or a URL git can fetch from, e.g.
#         https://github.com/linkerd/linkerd2-proxy.git (fetched shallow into
#         $STATE/build/linkerd2-proxy.git).
# COMMIT  what to build (default $PROXY_COMMIT from lib.sh, the commit the benchmarks used:
#         29637b64f6cebedaf15bfbf516818d7a28a4d5a6). From a URL: a full 40-hex commit, a tag
#         or a branch (git cannot fetch an abbreviated commit).
# Env:    STATE (default /tmp/l5d-interop), OUT_DIR (default $STATE/proxy), JOBS (cargo -j),
#         RUSTFLAGS (default --cfg tokio_unstable, as upstream's Dockerfile), FORCE=1 (rebuild
#         even if OUT_DIR holds a proxy), EXPORT_ONLY=1 (export and patch the source, no build).
#
# Out: OUT_DIR/linkerd2-proxy, OUT_DIR/linkerd2-proxy.commit (the full commit),
#      OUT_DIR/linkerd2-proxy.rustc (rustc -V). The source tree and cargo target dir live under
#      $STATE/build (1.7 GB); the build takes ~12 min on 2 cores (the last ~4 are the
#      single-threaded fat-LTO link). Idempotent: exits 0 at once when OUT_DIR already holds a
#      proxy built from COMMIT, and refuses (without FORCE=1) to replace one built from another.
#
# Patches applied to the export (nothing else changes):
#   * rust-toolchain.toml removed (use the installed stable toolchain; tested with 1.95.0);
#   * the two git dependencies kubert-prometheus-process / kubert-prometheus-tokio
#     (github.com/linkerd/linkerd-kubert) replaced by their crates.io releases, vendored under
#     $STATE/build/vendor with their prometheus-client bumped to the workspace's version (step
#     2 below), so the build needs crates.io only.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

SOURCE=${1:?usage: build-proxy.sh SOURCE(git dir or URL) [COMMIT]}
COMMIT=${2:-$PROXY_COMMIT}
OUT=${OUT_DIR:-$STATE/proxy}
SRC=$STATE/build/linkerd2-proxy
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STATE/build/target}

# already_built COMMIT: OUT holds a proxy from that full commit.
already_built() {
  [[ -x $OUT/linkerd2-proxy && $(cat "$OUT/linkerd2-proxy.commit" 2>/dev/null) == "$1" ]]
}
if [[ -z ${FORCE:-} && -z ${EXPORT_ONLY:-} ]] && already_built "$COMMIT"; then
  echo "build-proxy: $OUT/linkerd2-proxy is built from $COMMIT (FORCE=1 to rebuild)"
  exit 0
fi

# --- 0. the commit, as a git dir we can archive from ---------------------------------------
if [[ -d $SOURCE ]]; then
  GIT=$(git -C "$SOURCE" rev-parse --absolute-git-dir) || die "$SOURCE is not a git dir"
  rev=$COMMIT
else
  GIT=$STATE/build/linkerd2-proxy.git
  [[ -d $GIT ]] || git init -q --bare "$GIT"
  echo "build-proxy: fetching $COMMIT from $SOURCE"
  git --git-dir="$GIT" fetch -q --depth 1 "$SOURCE" "$COMMIT" || die "cannot fetch $COMMIT from $SOURCE"
  rev=FETCH_HEAD
fi
commit=$(git --git-dir="$GIT" rev-parse --verify -q "$rev^{commit}") || die "no commit $COMMIT in $GIT"
if [[ -z ${FORCE:-} && -z ${EXPORT_ONLY:-} ]]; then
  already_built "$commit" && { echo "build-proxy: $OUT/linkerd2-proxy is built from $commit"; exit 0; }
  if [[ -x $OUT/linkerd2-proxy ]]; then
    die "$OUT/linkerd2-proxy is built from $(cat "$OUT/linkerd2-proxy.commit" 2>/dev/null || echo 'an unknown commit'), not $commit: FORCE=1 replaces it (or set OUT_DIR)"
  fi
fi

echo "build-proxy: exporting $commit into $SRC"
rm -rf "$SRC"
mkdir -p "$SRC"
git --git-dir="$GIT" archive --format=tar "$commit" | tar -x -C "$SRC"
echo "$commit" >"$SRC/.source-commit"

cd "$SRC"
rm -f rust-toolchain rust-toolchain.toml
# --- 1. drop `git = ...` and `tag = ...` from the [workspace.dependencies.kubert-*] tables
#        so cargo resolves the crates.io release of the same major version.
KUBERT="kubert-prometheus-process kubert-prometheus-tokio"
awk '
  /^\[/ { in_kubert = ($0 ~ /^\[workspace\.dependencies\.kubert-prometheus-(process|tokio)\]/) }
  in_kubert && /^(git|tag|branch|rev) *=/ { next }
  { print }
' Cargo.toml >Cargo.toml.new && mv Cargo.toml.new Cargo.toml
if grep -n '^git *= ' Cargo.toml; then
  echo "build-proxy: git dependencies remain in Cargo.toml (see above); patch them too" >&2
fi
# `cargo fetch` re-resolves just what changed (cargo update -p would try the git source).
cargo fetch 2>&1 | grep -v -E '^ *(Downloaded|Downloading)' || true
# --- 2. the crates.io releases (process 0.2.3, tokio 0.2.0 at 29637b64f) are built against
#        prometheus-client 0.23 while the proxy uses the workspace's prometheus-client (0.24):
#        the registry types would not match. Vendor the crates.io sources outside the
#        workspace, bump their prometheus-client to the workspace's version, and point the
#        workspace dependencies at them by path.
promver=$(sed -n 's/^prometheus-client = { version = "\([^"]*\)".*/\1/p' Cargo.toml)
VENDOR=$STATE/build/vendor
rm -rf "$VENDOR" && mkdir -p "$VENDOR"
for name in $KUBERT; do
  ver=$(awk -v n="$name" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
  crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$ver.crate" | head -n 1)
  tar -xzf "$crate" -C "$VENDOR"
  dir=$VENDOR/$name-$ver
  if [[ -n $promver ]]; then
    awk -v v="$promver" '
      /^\[/ { in_pc = ($0 == "[dependencies.prometheus-client]") }
      in_pc && /^version *=/ { print "version = \"" v "\""; next }
      { print }
    ' "$dir/Cargo.toml" >"$dir/Cargo.toml.new" && mv "$dir/Cargo.toml.new" "$dir/Cargo.toml"
  fi
  rm -f "$dir/Cargo.toml.orig" "$dir/Cargo.lock"
  awk -v n="$name" -v d="$dir" '
    /^\[/ { in_t = ($0 == "[workspace.dependencies." n "]"); print; if (in_t) print "path = \"" d "\""; next }
    { print }
  ' Cargo.toml >Cargo.toml.new && mv Cargo.toml.new Cargo.toml
  echo "build-proxy: vendored $name $ver (prometheus-client ${promver:-unchanged}) at $dir"
done
cargo fetch 2>&1 | grep -v -E '^ *(Downloaded|Downloading)' || true
if [[ -n ${EXPORT_ONLY:-} ]]; then
  echo "build-proxy: EXPORT_ONLY: patched source of $commit in $SRC (not built)"
  exit 0
fi

# --- 3. build. Upstream builds with tokio_unstable (tokio-metrics' runtime metrics need it);
#        like its Dockerfile, minus -D warnings.
export RUSTFLAGS=${RUSTFLAGS:---cfg tokio_unstable}
start=$(date +%s)
cargo build --release --package=linkerd2-proxy ${JOBS:+-j "$JOBS"}
end=$(date +%s)
mkdir -p "$OUT"
install -m 0755 "$CARGO_TARGET_DIR/release/linkerd2-proxy" "$OUT/linkerd2-proxy"
echo "$commit" >"$OUT/linkerd2-proxy.commit"
rustc -V >"$OUT/linkerd2-proxy.rustc"
echo "build-proxy: built $OUT/linkerd2-proxy from $commit in $((end - start)) s ($(nproc) cores)"
