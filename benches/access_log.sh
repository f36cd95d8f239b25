#!/usr/bin/env bash
# What the access log costs: wrk (1 thread, 32 connections, on core 0, with the
# demo upstream) against an API-key route of keygate (1 thread, pinned to core 1),
# once with the default logging (`warn,keygate=info`: one access line per request,
# stderr to a file) and once with `keygate::access=off`, rounds alternated, side by
# side in one run. With BASELINE=path/to/keygate, a third row runs that build
# (e.g. one from before the log writer) with the default logging too.
# Prints req/s, CPU µs per request (user, sys) and the ratios.
# Usage: bash benches/access_log.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
cargo build --release --quiet
bin=$PWD/target/release/keygate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port)
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &

# start NAME BINARY RUST_LOG: a keygate on its own ports and store; sets
# port_NAME, pid_NAME and key_NAME.
start() {
  local name=$1 exe=$2 filter=$3 listen admin
  listen=$(port); admin=$(port)
  bench_config "$work/$name.yaml" "$listen" "$admin" 1 "$up" \
    "{ kind: sqlite, path: \"$work/$name.db\" }" "" "routes:
  - { path: /static/api, scopes: [bench] }"
  local key
  key=$("$exe" keys create -c "$work/$name.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
  RUST_LOG=$filter taskset -c 1 "$exe" serve -c "$work/$name.yaml" 2>"$work/$name.log" &
  local pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.1; done
  printf -v "port_$name" %s "$listen"; printf -v "pid_$name" %s "$pid"; printf -v "key_$name" %s "$key"
}
start on "$bin" "warn,keygate=info"
start off "$bin" "warn,keygate=info,keygate::access=off"
names=(on off)
if [ -n "${BASELINE:-}" ]; then start base "$BASELINE" "warn,keygate=info"; names+=(base); fi

tick=$(getconf CLK_TCK)
# run NAME: prints "req/s user_us sys_us" for one wrk run against keygate NAME.
run() {
  local p=port_$1 k=key_$1 pid=pid_$1 out u0 s0 u1 s1 n
  read -r u0 s0 < <(awk '{print $14, $15}' "/proc/${!pid}/stat")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "X-API-Key: ${!k}" "http://127.0.0.1:${!p}/static/api")
  read -r u1 s1 < <(awk '{print $14, $15}' "/proc/${!pid}/stat")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  awk -v rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")" -v n="$n" -v du=$((u1 - u0)) -v ds=$((s1 - s0)) -v t="$tick" \
    'BEGIN { printf "%.0f %.1f %.1f\n", rps, du / t * 1e6 / n, ds / t * 1e6 / n }'
}
label() { case $1 in on) echo "access log on (default)";; off) echo "keygate::access=off";; base) echo "BASELINE, log on";; esac; }
printf '%-6s %-26s %10s %12s %12s\n' round logging req/s "user µs/req" "sys µs/req"
ratios=(); base_ratios=()
for r in $(seq "$rounds"); do
  declare -A rps=()
  for n in "${names[@]}"; do
    read -r q u s < <(run "$n")
    rps[$n]=$q
    printf '%-6s %-26s %10s %12s %12s\n' "$r" "$(label "$n")" "$q" "$u" "$s"
  done
  ratios+=("$(python3 -c "print(f'{${rps[on]}/${rps[off]}:.3f}')")")
  printf '%-6s %-26s %10s\n' "$r" "on / off" "${ratios[-1]}"
  if [ -n "${rps[base]:-}" ]; then
    base_ratios+=("$(python3 -c "print(f'{${rps[on]}/${rps[base]}:.3f}')")")
    printf '%-6s %-26s %10s\n' "$r" "on / BASELINE" "${base_ratios[-1]}"
  fi
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "median on / off: $(median "${ratios[@]}") (rounds: ${ratios[*]})"
[ ${#base_ratios[@]} -eq 0 ] || echo "median on / BASELINE: $(median "${base_ratios[@]}") (rounds: ${base_ratios[*]})"
lines=$(grep -c 'keygate::access' "$work/on.log" || true)
echo "access lines written by the default-logging keygate: $lines"
grep -q "ERROR\|panicked" "$work"/*.log && fail "keygate logged errors:" "$(cat "$work"/*.log | grep -v access | tail)" || true
