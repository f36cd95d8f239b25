#!/usr/bin/env bash
# Shared-backend benchmark: the same API-key route with tier limits on three keygate
# processes with the same layout (keygate pinned to core 1; wrk, the upstream and a
# redis-server of the bench's own pinned to core 0; the machine's PostgreSQL):
#   (m) memory limiter, SQLite store      (the single-replica default)
#   (r) Redis limiter, SQLite store       (one EVALSHA round trip per request)
#   (p) Redis limiter, PostgreSQL store   (the several-replicas deployment)
# Rounds alternate between them. Prints req/s, p50, p99 and CPU time per request
# (keygate's own utime+stime from /proc over the requests served, and Redis's from
# INFO cpu; steadier than req/s on a shared machine) per run, and per round the
# ratios (r)/(m), (p)/(m) and the p99 that Redis adds over memory.
# Then latency at a fixed rate (oha -q RATE --latency-correction, open loop, well below
# saturation; closed-loop p99 at saturation measures queueing, not overhead): p50 and
# p99 of the upstream direct and of each keygate, and what Redis adds over memory.
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (scripts/services.sh);
# installs wrk (Debian) and oha (crates.io) if missing.
# keygate logs with the default filter (an access line per request, stderr to a
# file) unless KEYGATE_LOG says otherwise.
# Usage: bash benches/backends.sh [seconds-per-run] [rounds] [fixed-rate req/s]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}; rate=${3:-5000}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
command -v oha >/dev/null || cargo install oha --locked --quiet
bash scripts/services.sh
cargo build --release --quiet
bin=$PWD/target/release/keygate
log=${KEYGATE_LOG:-warn,keygate=info}
echo "keygate: RUST_LOG=$log"
work=$(mktemp -d)
db="kg_bench_$$"
psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $db"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT
source benches/lib.sh
up=$(port)
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
rport=$(port)
taskset -c 0 redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
for _ in $(seq 50); do redis-cli -p "$rport" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done

declare -A listen key pid
start() { # name store-yaml limiter-yaml
  local l a; l=$(port); a=$(port)
  bench_config "$work/$1.yaml" "$l" "$a" 2 "$up" "$2" "$3" "routes:
  - { path: /static/api, scopes: [bench] }"
  key[$1]=$("$bin" keys create -c "$work/$1.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
  RUST_LOG=$log taskset -c 1 "$bin" serve -c "$work/$1.yaml" 2>"$work/$1.log" &
  pid[$1]=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/ready" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$a/ready" >/dev/null || fail "$1 not ready" "$(cat "$work/$1.log")"
  listen[$1]=$l
}
start m "{ kind: sqlite, path: \"$work/m.db\" }" "backend: memory"
start r "{ kind: sqlite, path: \"$work/r.db\" }" "backend: redis, redis_url: \"redis://127.0.0.1:$rport\""
start p "{ kind: postgres, url: \"postgres://postgres@127.0.0.1:5432/$db\" }" "backend: redis, redis_url: \"redis://127.0.0.1:$rport\""

ms() { # wrk latency -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
redis_cpu() { redis-cli -h 127.0.0.1 -p "$rport" info cpu | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.6f", s}'; }
run() { # name
  local out rps p50 p99 t0 t1 r0 r1 n hz
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "${pid[$1]}"); r0=$(redis_cpu)
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency -H "X-API-Key: ${key[$1]}" "http://127.0.0.1:${listen[$1]}/static/api")
  t1=$(cpu_ticks "${pid[$1]}"); r1=$(redis_cpu)
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || fail "$1: $non2xx non-2xx responses"
  echo "$rps $(ms "$p50") $(ms "$p99") $(python3 -c "print(f'{($t1-$t0)/$hz/$n*1e6:.1f}')") $(python3 -c "print(f'{($r1-$r0)/$n*1e6:.1f}')")"
}
printf '%-6s %-34s %12s %10s %10s %12s %12s\n' round target req/s p50_ms p99_ms kg_cpu_us/req redis_us/req
for r in $(seq "$rounds"); do
  declare -A res
  for n in m r p; do res[$n]=$(run $n); done
  for n in m r p; do
    read -r rps p50 p99 cpu rcpu <<<"${res[$n]}"
    case $n in m) label="(m) memory limiter, SQLite";; r) label="(r) Redis limiter, SQLite";; p) label="(p) Redis limiter, PostgreSQL";; esac
    printf '%-6s %-34s %12s %10s %10s %12s %12s\n' "$r" "$label" "$rps" "$p50" "$p99" "$cpu" "$rcpu"
  done
  read -r mr _ mp99 mc _ <<<"${res[m]}"; read -r rr _ rp99 rc _ <<<"${res[r]}"; read -r pr _ pp99 pc _ <<<"${res[p]}"
  printf '%-6s %-34s %12s\n' "$r" "(r)/(m) req/s" "$(python3 -c "print(f'{$rr/$mr:.3f}')")"
  printf '%-6s %-34s %12s\n' "$r" "(p)/(m) req/s" "$(python3 -c "print(f'{$pr/$mr:.3f}')")"
  printf '%-6s %-34s %12s\n' "$r" "p99 added by Redis (r)-(m), ms" "$(python3 -c "print(f'{$rp99-$mp99:.3f}')")"
  printf '%-6s %-34s %12s\n' "$r" "(m)/(r) keygate CPU per request" "$(python3 -c "print(f'{$mc/$rc:.3f}')")"
done
fixed() { # url [header] -> p50_ms p99_ms
  local header=()
  [ -n "${2:-}" ] && header=(-H "$2")
  taskset -c 0 oha -z "${secs}s" -q "$rate" -c 32 --latency-correction --no-tui --output-format json "${header[@]}" "$1" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; c=d["statusCodeDistribution"]
assert set(c) == {"200"}, c
print("%.3f %.3f" % (p["p50"] * 1000, p["p99"] * 1000))'
}
echo
echo "fixed rate: $rate req/s for ${secs}s each (oha, latency-corrected)"
printf '%-34s %10s %10s\n' target p50_ms p99_ms
declare -A lat
lat[d]=$(fixed "http://127.0.0.1:$up/static/api")
for n in m r p; do lat[$n]=$(fixed "http://127.0.0.1:${listen[$n]}/static/api" "X-API-Key: ${key[$n]}"); done
for n in d m r p; do
  case $n in d) label="upstream direct";; m) label="(m) memory limiter, SQLite";; r) label="(r) Redis limiter, SQLite";; p) label="(p) Redis limiter, PostgreSQL";; esac
  read -r p50 p99 <<<"${lat[$n]}"
  printf '%-34s %10s %10s\n' "$label" "$p50" "$p99"
done
read -r _ mp99 <<<"${lat[m]}"; read -r _ rp99 <<<"${lat[r]}"; read -r _ pp99 <<<"${lat[p]}"
printf '%-34s %10s\n' "p99 added by Redis (r)-(m), ms" "$(python3 -c "print(f'{$rp99-$mp99:.3f}')")"
printf '%-34s %10s\n' "p99 added by Redis (p)-(m), ms" "$(python3 -c "print(f'{$pp99-$mp99:.3f}')")"

# Pingora 0.9 logs "failed to acquire reusable stream" at ERROR when its upstream
# keep-alive pool loses a race with its own idle watcher; it then opens a new
# connection and the request succeeds (wrk counted no non-2xx). Anything else fails.
for n in m r p; do
  if grep -v "failed to acquire reusable stream\|keygate::access" "$work/$n.log" | grep -q "ERROR\|panicked"; then fail "keygate ($n) logged errors:" "$(cat "$work/$n.log")"; fi
done
