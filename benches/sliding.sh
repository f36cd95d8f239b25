#!/usr/bin/env bash
# Sliding against fixed windows: two keygate processes with the same layout (keygate
# pinned to core 1; wrk, the upstream and a redis-server of the bench's own on core
# 0), one on the memory limiter and one on Redis, each with two keys whose tiers
# differ only in `algorithm` (per second, per minute and per day; limits that never
# bind), on the same API-key route. Rounds alternate the four runs. Per run: req/s,
# p99, keygate's CPU per request (utime+stime from /proc; steadier than req/s on a
# shared machine), Redis's CPU per request (INFO cpu), Redis round trips per request
# (EVALSHA/EVAL calls) and the commands the script runs inside Redis per request
# (INFO commandstats). Per round: sliding/fixed of req/s and of CPU per request.
# Then Redis memory per key for each algorithm (MEMORY USAGE of every kg:{...} key
# the key's requests created). Memory-backend bytes per key are in
# `cargo bench --bench key_memory`, the decision alone in
# `cargo bench --bench hot_path -- limiter`.
# keygate logs with the default filter (an access line per request, stderr to a
# file) unless KEYGATE_LOG says otherwise.
# Usage: bash benches/sliding.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
[ -n "${KEYGATE_BIN:-}" ] || cargo build --release --quiet
bin=${KEYGATE_BIN:-$PWD/target/release/keygate}
log=${KEYGATE_LOG:-warn,keygate=info}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port); rport=$(port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
for _ in $(seq 50); do redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &

declare -A listen key id pid
start() { # backend limiter-yaml
  local l a; l=$(port); a=$(port)
  bench_config "$work/$1.yaml" "$l" "$a" 2 "$up" "{ kind: sqlite, path: \"$work/$1.db\" }" "$2" "routes:
  - { path: /static/api, scopes: [bench] }"
  sed -i 's|^tiers: .*|tiers: { fixed: { per_second: 100000000, per_minute: 1000000000, per_day: 4000000000 }, sliding: { per_second: 100000000, per_minute: 1000000000, per_day: 4000000000, algorithm: sliding } }|; s|^default_tier: bench|default_tier: fixed|' "$work/$1.yaml"
  for alg in fixed sliding; do
    out=$("$bin" keys create -c "$work/$1.yaml" --name "$alg" --tier "$alg" --scopes bench)
    key[$1-$alg]=$(sed -n 's/^key: *//p' <<<"$out")
    id[$1-$alg]=$(sed -n 's/^id: *//p' <<<"$out")
  done
  RUST_LOG=$log taskset -c 1 "$bin" serve -c "$work/$1.yaml" 2>"$work/$1.log" &
  pid[$1]=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/ready" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$a/ready" >/dev/null || fail "$1 not ready" "$(cat "$work/$1.log")"
  listen[$1]=$l
}
start memory "backend: memory"
start redis "backend: redis, redis_url: \"redis://127.0.0.1:$rport\""

rcli() { redis-cli -h 127.0.0.1 -p "$rport" "$@"; }
redis_cpu() { rcli info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
# Calls of the commands matching $1 (an awk regex on cmdstat_NAME).
redis_calls() { rcli info commandstats | awk -F'[:=,]' -v re="$1" '$1 ~ re {s += $3} END {print s + 0}'; }
trips='^cmdstat_(evalsha|eval|script)$'
inner='^cmdstat_(get|incr|decr|pexpire|hmget|hset|hincrby)$'
ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'; }
run() { # backend algorithm -> "req/s p99 kg_us redis_us trips inner"
  local out n t0 t1 r0 r1 a0 a1 i0 i1 hz p=${pid[$1]}
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "$p"); r0=$(redis_cpu); a0=$(redis_calls "$trips"); i0=$(redis_calls "$inner")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency -H "X-API-Key: ${key[$1-$2]}" "http://127.0.0.1:${listen[$1]}/static/api")
  t1=$(cpu_ticks "$p"); r1=$(redis_cpu); a1=$(redis_calls "$trips"); i1=$(redis_calls "$inner")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || fail "$1 $2: $non2xx non-2xx responses"
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(ms "$(awk '$1=="99%" {print $2}' <<<"$out")") \
$(python3 -c "print(f'{($t1-$t0)/$hz/$n*1e6:.1f} {($r1-$r0)/$n*1e6:.1f} {($a1-$a0)/$n:.3f} {($i1-$i0)/$n:.2f}')")"
}
echo "keygate: $bin, RUST_LOG=$log (access log on), Redis on 127.0.0.1:$rport"
fmt='%-6s %-16s %12s %9s %14s %13s %12s %13s\n'
printf "$fmt" round target req/s p99_ms kg_cpu_us/req redis_us/req trips/req in_script/req
for r in $(seq "$rounds"); do
  declare -A res
  for backend in memory redis; do
    for alg in fixed sliding; do
      res[$backend-$alg]=$(run "$backend" "$alg")
      read -r rps p99 kgus rus tr inn <<<"${res[$backend-$alg]}"
      printf "$fmt" "$r" "$backend $alg" "$rps" "$p99" "$kgus" "$rus" "$tr" "$inn"
    done
    f=${res[$backend-fixed]}; s=${res[$backend-sliding]}
    printf '%-6s %-16s %12s %9s %14s %13s\n' "$r" "$backend s/f" \
      "$(python3 -c "print(f'{$(awk '{print $1}' <<<"$s")/$(awk '{print $1}' <<<"$f"):.3f}')")" "" \
      "$(python3 -c "print(f'{$(awk '{print $3}' <<<"$s")/$(awk '{print $3}' <<<"$f"):.3f}')")" \
      "$( [ "$backend" = redis ] && python3 -c "print(f'{$(awk '{print $4}' <<<"$s")/$(awk '{print $4}' <<<"$f"):.3f}')" || echo -)"
  done
done
echo "Redis memory per key (MEMORY USAGE of the keys its requests created)"
for alg in fixed sliding; do
  total=0; count=0
  while read -r k; do
    [ -n "$k" ] || continue
    total=$((total + $(rcli memory usage "$k"))); count=$((count + 1))
  done < <(rcli --scan --pattern "kg:{key:${id[redis-$alg]}}*")
  printf '%-8s %3d Redis keys %8d bytes\n' "$alg" "$count" "$total"
done
# Pingora's upstream pool logs "failed to acquire reusable stream" when an idle
# connection's watcher still holds it at checkout; the request then opens a new
# connection (pingora-core connectors/mod.rs). It is not keygate's error.
for backend in memory redis; do
  errors=$(grep -v 'keygate::access' "$work/$backend.log" | grep "ERROR\|panicked" | grep -v "failed to acquire reusable stream" || true)
  [ -z "$errors" ] || fail "$backend keygate logged errors:" "$(tail -20 <<<"$errors")"
done
