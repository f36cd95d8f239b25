#!/usr/bin/env bash
# Every benchmark the README's Performance section quotes, in one run, one after
# another on this machine, so its figures are measured side by side. Each bench
# prints its own table (and which logging each keygate used); this script prints
# them in order with the time each took, and keeps them in $OUT (default
# target/bench-results/<date>).
# Usage: bash benches/all.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-8}; rounds=${2:-2}
out=${OUT:-target/bench-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
bench() { # name command...
  local name=$1 started=$SECONDS; shift
  echo "=== $name: $*"
  "$@" 2>&1 | tee "$out/$name.txt"
  echo "=== $name took $((SECONDS - started)) s"
}
bench hot_path cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time 3
bench key_memory cargo bench --bench key_memory
bench instructions bash benches/instructions.sh 3000
bench access_log bash benches/access_log.sh "$secs" "$((rounds * 2))"
bench load bash benches/load.sh "$secs" "$rounds"
bench backends bash benches/backends.sh "$secs" "$rounds"
bench sliding bash benches/sliding.sh "$secs" "$rounds"
bench peers bash benches/peers/run.sh "$secs" "$rounds"
bench syscalls bash benches/syscalls.sh 3
bench scale env STORE_KEYS=1000000 TRAFFIC_KEYS=100000 SOAK=60 bash benches/scale.sh "$secs" "$rounds"
echo "results in $out"
