#!/usr/bin/env bash
# Shared-backend benchmark: the same API-key route with tier limits on three keygate
# processes with the same layout (keygate pinned to core 1, wrk, the upstream, Redis
# and PostgreSQL on core 0):
#   (m) memory limiter, SQLite store      (the single-replica default)
#   (r) Redis limiter, SQLite store       (one EVALSHA round trip per request)
#   (p) Redis limiter, PostgreSQL store   (the several-replicas deployment)
# Rounds alternate between them. Prints req/s, p50, p99 per run, and per round the
# ratios (r)/(m), (p)/(m) and the p99 that Redis adds over memory.
# Needs PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (scripts/services.sh).
# Usage: bash benches/backends.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
bash scripts/services.sh
cargo build --release --quiet
bin=$PWD/target/release/keygate
work=$(mktemp -d)
db="kg_bench_$$"
psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $db"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(port)
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &

declare -A listen key
start() { # name store-yaml limiter-yaml
  local l a; l=$(port); a=$(port)
  cat > "$work/$1.yaml" <<YAML
server: { listen: "127.0.0.1:$l", admin_listen: "127.0.0.1:$a", threads: 2 }
upstream: { url: "http://127.0.0.1:$up" }
store: $2
tiers: { bench: { per_second: 100000000, per_minute: 1000000000, per_day: 100000000000 } }
default_tier: bench
rate_limit: { ip: { per_minute: 0, failed_auth_per_minute: 0 }, $3 }
routes:
  - { path: /static/api, scopes: [bench] }
YAML
  key[$1]=$("$bin" keys create -c "$work/$1.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
  RUST_LOG=warn taskset -c 1 "$bin" serve -c "$work/$1.yaml" 2>"$work/$1.log" &
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/ready" >/dev/null && break; sleep 0.1; done
  curl -fs "http://127.0.0.1:$a/ready" >/dev/null || { echo "$1 not ready"; cat "$work/$1.log"; exit 1; }
  listen[$1]=$l
}
start m "{ kind: sqlite, path: \"$work/m.db\" }" "backend: memory"
start r "{ kind: sqlite, path: \"$work/r.db\" }" "backend: redis, redis_url: \"redis://127.0.0.1:6379\""
start p "{ kind: postgres, url: \"postgres://postgres@127.0.0.1:5432/$db\" }" "backend: redis, redis_url: \"redis://127.0.0.1:6379\""

ms() { # wrk latency -> milliseconds
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.3f", n }'
}
run() { # name
  local out rps p50 p99
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency -H "X-API-Key: ${key[$1]}" "http://127.0.0.1:${listen[$1]}/static/api")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || { echo "$1: $non2xx non-2xx responses"; exit 1; }
  echo "$rps $(ms "$p50") $(ms "$p99")"
}
printf '%-6s %-34s %12s %10s %10s\n' round target req/s p50_ms p99_ms
for r in $(seq "$rounds"); do
  declare -A res
  for n in m r p; do res[$n]=$(run $n); done
  for n in m r p; do
    read -r rps p50 p99 <<<"${res[$n]}"
    case $n in m) label="(m) memory limiter, SQLite";; r) label="(r) Redis limiter, SQLite";; p) label="(p) Redis limiter, PostgreSQL";; esac
    printf '%-6s %-34s %12s %10s %10s\n' "$r" "$label" "$rps" "$p50" "$p99"
  done
  read -r mr _ mp99 <<<"${res[m]}"; read -r rr _ rp99 <<<"${res[r]}"; read -r pr _ pp99 <<<"${res[p]}"
  printf '%-6s %-34s %12s\n' "$r" "(r)/(m) req/s" "$(python3 -c "print(f'{$rr/$mr:.3f}')")"
  printf '%-6s %-34s %12s\n' "$r" "(p)/(m) req/s" "$(python3 -c "print(f'{$pr/$mr:.3f}')")"
  printf '%-6s %-34s %12s\n' "$r" "p99 added by Redis (r)-(m), ms" "$(python3 -c "print(f'{$rp99-$mp99:.3f}')")"
done
for n in m r p; do
  if grep -q "ERROR\|panicked" "$work/$n.log"; then echo "keygate ($n) logged errors:"; cat "$work/$n.log"; exit 1; fi
done
