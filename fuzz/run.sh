#!/usr/bin/env bash
# Fuzz what production runs: fuzz/run.sh [SECONDS] [TARGET...]
# Runs each target (default: all) for SECONDS (default 60) with a persistent corpus under
# fuzz/corpus/<target> (seeded from fuzz/seeds/<target> and, for the header targets, from
# tests/vectors/*.hex). Prints libFuzzer's final stats and the CPU time (user+sys) per target;
# crashes land in fuzz/artifacts/<target>/ and make the script exit 1 after the other targets ran.
# Installs cargo-fuzz when missing; runs on the stable toolchain with RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_EACH="${1:-60}"
shift || true
ALL=(header_framing plan plain_target header_rewrite config transport_header client_hello)
TARGETS=("${@:-${ALL[@]}}")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build

seed() {
  local target="$1"
  mkdir -p "corpus/$target" "artifacts/$target"
  if [ -d "seeds/$target" ]; then cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true; fi
  case "$target" in
    transport_header|header_framing)
      for f in ../tests/vectors/*.hex; do
        # header_framing's first byte is the number of split bytes: 0 = one read per call.
        local prefix=""
        [ "$target" = header_framing ] && prefix="00"
        python3 -c "import sys; sys.stdout.buffer.write(bytes.fromhex('$prefix' + ''.join(open('$f').read().split())))" \
          > "corpus/$target/vector-$(basename "$f" .hex)"
      done
      ;;
  esac
}

failed=()
for target in "${TARGETS[@]}"; do
  seed "$target"
  dict=()
  [ -f "dicts/$target.dict" ] && dict=("-dict=dicts/$target.dict")
  log="artifacts/$target/last-run.log"
  echo "== $target: ${SECONDS_EACH}s"
  if ! /usr/bin/time -f "cpu_seconds user=%U sys=%S wall=%e" \
      cargo fuzz run "$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
      -artifact_prefix="artifacts/$target/" "${dict[@]}" >"$log" 2>&1; then
    failed+=("$target")
    grep -E "panicked|ERROR|SUMMARY|Test unit written" "$log" | head -20 || true
  fi
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cpu_seconds|^#[0-9]+.*DONE" "$log" || true
  echo "   corpus: $(ls "corpus/$target" | wc -l) inputs"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)"
  exit 1
fi
