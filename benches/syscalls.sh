#!/usr/bin/env bash
# System calls per request, keygate against HAProxy doing the same API-key job:
# each proxy runs under `strace -c -f` while wrk (1 thread, 32 keep-alive
# connections) sends requests for a few seconds; the calls strace counted, over the
# requests wrk completed, per syscall and in all. Both proxies log every request
# (keygate's default filter; HAProxy `option httplog` to stdout), stderr/stdout to
# a file. Start-up is excluded: strace attaches to the running process.
# Usage: bash benches/syscalls.sh [seconds]   (needs strace and haproxy; installs them)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3}
need=()
command -v strace >/dev/null || need+=(strace)
command -v haproxy >/dev/null || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
cargo build --release --quiet
bin=$PWD/target/release/keygate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port); kg=$(port); admin=$(port); hp=$(port)
taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
bench_config "$work/k.yaml" "$kg" "$admin" 1 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" ""
key=$("$bin" keys create -c "$work/k.yaml" --name bench --tier bench | sed -n 's/^key: //p')
hash=$("$bin" keys hash "$key" | sed 's/^sha256://')
echo "$hash key_bench" > "$work/keys.map"
RUST_LOG=warn,keygate=info taskset -c 1 "$bin" serve -c "$work/k.yaml" 2>"$work/kg.log" &
kg_pid=$!
cat > "$work/haproxy.cfg" <<CFG
global
  nbthread 1
  log stdout format raw local0 info
defaults
  mode http
  log global
  option httplog
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
backend per_key
  stick-table type string len 32 size 1m expire 60s store http_req_rate(60s)
frontend fe
  bind 127.0.0.1:$hp
  http-request set-var(txn.kid) req.hdr(x-api-key),digest(sha256),hex,lower,map($work/keys.map)
  http-request deny deny_status 401 unless { var(txn.kid) -m found }
  http-request track-sc0 var(txn.kid) table per_key
  http-request del-header x-api-key
  http-request set-header X-Auth-Key-Id %[var(txn.kid)]
  http-response set-header X-RateLimit-Remaining %[sc_http_req_rate(0),neg,add(1000000000)]
  default_backend be
backend be
  server up 127.0.0.1:$up
CFG
taskset -c 1 haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
hp_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.1; done
for p in "$kg" "$hp"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$p/x")" = 200 ] || fail "no 200 on port $p"
done
measure() { # name pid port -> table rows
  local name=$1 pid=$2 p=$3 out n
  strace -c -f -q -p "$pid" -o "$work/$name.strace" &
  local st=$!
  sleep 1
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "X-API-Key: $key" "http://127.0.0.1:$p/x")
  n=$(awk '/requests in/ {print $1}' <<<"$out")
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  # strace's summary: "% time seconds usecs/call calls [errors] syscall"
  awk -v n="$n" -v who="$name" '
    /^-+/ { next }
    $NF == "total" { printf "%-10s %-16s %10.2f\n", who, "total", $4 / n; next }
    NF >= 5 && $4 ~ /^[0-9]+$/ { printf "%-10s %-16s %10.2f\n", who, $NF, $4 / n }
  ' "$work/$name.strace" | sort -k3 -g -r | head -12
  echo "$name: $n requests"
}
printf '%-10s %-16s %10s\n' proxy syscall per_request
measure keygate "$kg_pid" "$kg"
measure haproxy "$hp_pid" "$hp"
