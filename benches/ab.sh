#!/usr/bin/env bash
# Two keygate builds side by side on the API-key route: build A, then build B, in
# alternating rounds, each on core 1 with one thread, wrk on core 0 (-c32), the
# demo upstream on core 0, the default logging (an access line per request, stderr
# to a file). Prints req/s and CPU µs per request of each run, and B/A per round.
# For "did this change slow the request path down?": A is the build before.
# Usage: bash benches/ab.sh BIN_A BIN_B [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
a=${1:?build A}; b=${2:?build B}; secs=${3:-8}; rounds=${4:-4}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
up=$(port)
taskset -c 0 "$a" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$up/" >/dev/null && break; sleep 0.05; done
declare -A bin cfg listen admin key
bin[A]=$a; bin[B]=$b
for n in A B; do
  listen[$n]=$(port); admin[$n]=$(port); mkdir -p "$work/$n"
  cfg[$n]=$work/$n/k.yaml
  bench_config "${cfg[$n]}" "${listen[$n]}" "${admin[$n]}" 1 "$up" \
    "{ kind: sqlite, path: \"$work/$n/k.db\" }" "" ""
  key[$n]=$("${bin[$n]}" keys create -c "${cfg[$n]}" --name bench --tier bench | sed -n 's/^key: //p')
  [ -n "${key[$n]}" ] || fail "build $n made no key"
done
run() { # build -> "req/s cpu_us_per_req"
  local n=$1
  taskset -c 1 "${bin[$n]}" serve -c "${cfg[$n]}" 2>"$work/$n/log" &
  local pid=$!
  for _ in $(seq 1 200); do curl -sf "http://127.0.0.1:${admin[$n]}/health" >/dev/null && break; sleep 0.05; done
  local url="http://127.0.0.1:${listen[$n]}/static/x"
  taskset -c 0 wrk -t1 -c32 -d1s -H "X-API-Key: ${key[$n]}" "$url" >/dev/null
  local t0 t1 out
  t0=$(cpu_ticks "$pid")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "X-API-Key: ${key[$n]}" "$url")
  t1=$(cpu_ticks "$pid")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  grep -q "Non-2xx" <<<"$out" && fail "build $n answered non-2xx" "$out"
  local reqs rps
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  python3 -c "print($rps, round(($t1 - $t0) * 1e6 / $(getconf CLK_TCK) / $reqs, 1))"
}
printf '%-6s %12s %12s %12s %12s %8s\n' round 'A req/s' 'A cpu µs' 'B req/s' 'B cpu µs' 'B/A'
for r in $(seq 1 "$rounds"); do
  read -r ra ca <<<"$(run A)"
  read -r rb cb <<<"$(run B)"
  printf '%-6s %12s %12s %12s %12s %8s\n' "$r" "$ra" "$ca" "$rb" "$cb" \
    "$(python3 -c "print(round($rb / $ra, 3))")"
done
