#!/usr/bin/env bash
# Fuzz smoke: every cargo-fuzz target for a bounded time on its committed seeds
# (fuzz/seeds/<target>); new inputs go to a scratch corpus, so the tree stays clean.
# A crash fails the run and leaves its input in fuzz/artifacts/<target>/: add it
# to the seeds with the fix, so it is replayed from then on.
# Usage: bash scripts/fuzz.sh [seconds-per-target] [target...]
# Runs on the stable toolchain (RUSTC_BOOTSTRAP=1 lets cargo fuzz pass its -Z
# flags) without a sanitizer: our code forbids `unsafe`, and the targets look for
# panics, overflows (debug assertions are on), hangs and runaway memory.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
shift || true
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(credentials api_key jwt config management_body)
export RUSTC_BOOTSTRAP=1
echo "fuzz: building the targets (release, coverage-instrumented)" >&2
cargo fuzz build --sanitizer none
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf '%-18s %10s %10s %8s\n' target runs corpus result
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  if cargo fuzz run --sanitizer none "$t" "$scratch/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=8192 >"$log" 2>&1; then
    result=ok
  else
    result=FAILED
  fi
  runs=$(grep -o 'Done [0-9]* runs' "$log" | awk '{print $2}' | tail -1 || true)
  corpus=$(ls "$scratch/$t" | wc -l)
  printf '%-18s %10s %10s %8s\n' "$t" "${runs:--}" "$corpus" "$result"
  if [ "$result" != ok ]; then
    tail -40 "$log"
    exit 1
  fi
done
