#!/usr/bin/env bash
# Load benchmark: wrk against (a) the upstream directly, (b) a keygate route with
# `auth: none`, (c) an API-key route with tier limits, (d) the same route with one
# reused RS256 JWT (minted by PyJWT), (e) a route with `cost: 1` (a credit debit per
# request, group-committed to SQLite), (f) the API-key route of (c) with the tier's
# windows counted sliding — on one keygate process, rounds alternated.
# Prints a table of req/s, p50, p99 and the ratios (c)/(b), (b)/(a), (d)/(c), (e)/(c),
# (f)/(c).
# keygate runs with the default logging (`warn,keygate=info`: an access line per
# request, stderr to a file) unless KEYGATE_LOG says otherwise; KEYGATE_BIN runs
# another build (e.g. an older one) instead of this checkout's.
# Usage: bash benches/load.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
cargo build --release --quiet
bin=${KEYGATE_BIN:-$PWD/target/release/keygate}
log=${KEYGATE_LOG:-warn,keygate=info}
py=$(bash scripts/test-python.sh)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port); listen=$(port); admin=$(port)
bench_config "$work/k.yaml" "$listen" "$admin" 2 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" "jwt:
  enabled: true
  algorithms: [RS256]
  keys: [ { kid: rs, alg: RS256, pem_file: \"$work/jk/rsa.pub.pem\" } ]
routes:
  - { path: /static/open, auth: none }
  - { path: /static/api, scopes: [bench] }
  - { path: /static/paid, scopes: [bench], cost: 1 }"
# A second tier: the same windows, counted sliding (limits fit a bucket's u32).
sed -i 's|^tiers: .*|tiers: { bench: { per_second: 100000000, per_minute: 1000000000, per_day: 100000000000 }, sliding: { per_second: 100000000, per_minute: 1000000000, per_day: 4000000000, algorithm: sliding } }|' "$work/k.yaml"
"$py" tests/jwt/mint.py keys "$work/jk"
token=$(echo '[{"name":"t","alg":"RS256","key":"rsa","kid":"rs","claims":{"sub":"bench","scope":"bench","exp":4102444800}}]' \
  | "$py" tests/jwt/mint.py mint "$work/jk" | python3 -c 'import json,sys; print(json.load(sys.stdin)["t"])')
key=$("$bin" keys create -c "$work/k.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
slide=$("$bin" keys create -c "$work/k.yaml" --name slide --tier sliding --scopes bench | sed -n 's/^key: //p')
paid=$("$bin" keys create -c "$work/k.yaml" --name paid --tier bench --scopes bench --credits 1000000000 | sed -n 's/^key: //p')
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
RUST_LOG=$log taskset -c 1 "$bin" serve -c "$work/k.yaml" 2>"$work/kg.log" &
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.1; done

run() { # name url [header]
  local out header=()
  [ -n "${3:-}" ] && header=(-H "$3")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency "${header[@]}" "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  echo "$1 $rps $p50 $p99"
}
echo "keygate: $bin, RUST_LOG=$log"
printf '%-6s %-22s %12s %10s %10s\n' round target req/s p50 p99
for r in $(seq "$rounds"); do
  a=$(run direct "http://127.0.0.1:$up/static/api")
  b=$(run open "http://127.0.0.1:$listen/static/open")
  c=$(run apikey "http://127.0.0.1:$listen/static/api" "X-API-Key: $key")
  d=$(run jwt "http://127.0.0.1:$listen/static/api" "Authorization: Bearer $token")
  e=$(run paid "http://127.0.0.1:$listen/static/paid" "X-API-Key: $paid")
  f=$(run sliding "http://127.0.0.1:$listen/static/api" "X-API-Key: $slide")
  for line in "$a" "$b" "$c" "$d" "$e" "$f"; do
    read -r n rps p50 p99 <<<"$line"
    case $n in direct) label="(a) upstream direct";; open) label="(b) keygate auth:none";; apikey) label="(c) keygate API key";; jwt) label="(d) keygate RS256 JWT";; paid) label="(e) keygate cost: 1";; sliding) label="(f) API key, sliding";; esac
    printf '%-6s %-22s %12s %10s %10s\n' "$r" "$label" "$rps" "$p50" "$p99"
  done
  ra=$(awk '{print $2}' <<<"$a"); rb=$(awk '{print $2}' <<<"$b"); rc=$(awk '{print $2}' <<<"$c"); rd=$(awk '{print $2}' <<<"$d"); re=$(awk '{print $2}' <<<"$e"); rf=$(awk '{print $2}' <<<"$f")
  printf '%-6s %-22s %12s\n' "$r" "(c)/(b)" "$(python3 -c "print(f'{$rc/$rb:.3f}')")"
  printf '%-6s %-22s %12s\n' "$r" "(b)/(a)" "$(python3 -c "print(f'{$rb/$ra:.3f}')")"
  printf '%-6s %-22s %12s\n' "$r" "(d)/(c)" "$(python3 -c "print(f'{$rd/$rc:.3f}')")"
  printf '%-6s %-22s %12s\n' "$r" "(e)/(c)" "$(python3 -c "print(f'{$re/$rc:.3f}')")"
  printf '%-6s %-22s %12s\n' "$r" "(f)/(c)" "$(python3 -c "print(f'{$rf/$rc:.3f}')")"
done
grep -v 'keygate::access' "$work/kg.log" | grep -q "ERROR\|panicked" && fail "keygate logged errors:" "$(cat "$work/kg.log")" || true
