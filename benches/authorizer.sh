#!/usr/bin/env bash
# What a decision costs: keygate's authorizer against keygate as the proxy, on the
# same key and tier, in one run (docs/performance.md, The authorizer).
#
# Layout: the measured processes (keygate with `threads: 1`, and nginx with one
# worker where it stands in front) are pinned to core 1; the load tools (wrk,
# h2load) and the upstream (one nginx worker answering `return 200`) to core 0.
# Keep-alive clients: wrk -c32 over HTTP/1.1, h2load -c4 -m8 over h2c.
#
# Rows:
#   proxy       keygate proxying the API-key route to the upstream (the whole job)
#   http-authz  keygate's authorizer answering forward-auth questions (Traefik's shape:
#               X-Forwarded-Method/-Uri/-For and the key) for the same route
#   grpc-authz  keygate's authorizer answering Envoy ext_authz Check calls (h2c)
#   nginx       nginx alone proxying to the upstream (no decision)
#   nginx+kg    nginx with auth_request asking keygate's authorizer
#               (conf/examples/authorizer/nginx.conf): CPU of the pair
#
# Per row: requests (or decisions) per second, CPU µs per request of the measured
# processes (utime+stime from /proc over the run), wrk's p99 where wrk measures.
# Logging: keygate's default filter (an access line per request, to a file); nginx
# with `access_log ... buffer=64k` to a file: the defaults users run.
#
# Usage: bash benches/authorizer.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet
bin=$PWD/target/release/keygate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port); listen=$(port); admin=$(port); authz=$(port); front=$(port); bare=$(port)

start_nginx_upstream "$work" "$up"

bench_config "$work/kg.yaml" "$listen" "$admin" 1 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" "routes:
  - { path: /api/*, scopes: [bench] }
authorizer: { listen: \"127.0.0.1:$authz\" }"
key=$("$bin" keys create -c "$work/kg.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
[ -n "$key" ] || fail "could not create the bench key"
taskset -c 1 "$bin" serve -c "$work/kg.yaml" >"$work/keygate.log" 2>&1 &
kg_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.1; done

# nginx in front: the shipped config with its ports moved, one worker, logging.
nginx_conf() { # name body-of-http
  cat > "$work/$1.conf" <<EOF
daemon off; worker_processes 1; pid $work/$1.pid; error_log $work/$1-error.log;
events { worker_connections 4096; }
http {
  access_log $work/$1-access.log combined buffer=64k flush=1s;
  client_body_temp_path $work/$1-b; proxy_temp_path $work/$1-p; fastcgi_temp_path $work/$1-f;
  uwsgi_temp_path $work/$1-u; scgi_temp_path $work/$1-s;
$2
}
EOF
}
nginx_conf front "$(sed -e "s/8080/$front/" -e "s/8081/$up/" -e "s/8082/$authz/" conf/examples/authorizer/nginx.conf)"
nginx_conf bare "upstream api { server 127.0.0.1:$up; keepalive 32; }
  server { listen $bare; location / { proxy_pass http://api; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }"
taskset -c 1 nginx -p "$work" -c "$work/front.conf" &
taskset -c 1 nginx -p "$work" -c "$work/bare.conf" &
for p in "$front" "$bare" "$authz"; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done
done
sleep 0.5
worker_of() { # the worker of the nginx whose master wrote $work/$1.pid
  local master w; master=$(cat "$work/$1.pid")
  for w in $(pgrep -f "nginx: worker process"); do
    if [ "$(ps -o ppid= -p "$w" | tr -d ' ')" = "$master" ]; then echo "$w"; fi
  done
}
front_worker=$(worker_of front); bare_worker=$(worker_of bare)
[ -n "$front_worker" ] && [ -n "$bare_worker" ] || fail "nginx workers not found"

# One Envoy CheckRequest for the same route and key, framed for gRPC.
py=$(bash scripts/test-python.sh)
"$py" - "$work/check.bin" "$key" <<'PY'
import struct, sys
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.envoy.service.auth.v3 import (AttributeContext, AttributeContextHttpRequest,
    AttributeContextPeer, AttributeContextRequest, CheckRequest)
req = CheckRequest(attributes=AttributeContext(
    source=AttributeContextPeer(address=Address(socket_address=SocketAddress(address="203.0.113.5", port_value=40000))),
    request=AttributeContextRequest(http=AttributeContextHttpRequest(
        method="GET", path="/api/x", host="api.example.com", scheme="http", protocol="HTTP/1.1",
        headers={"x-api-key": sys.argv[2], "accept": "*/*", "user-agent": "bench"}))))
body = bytes(req)
open(sys.argv[1], "wb").write(b"\0" + struct.pack(">I", len(body)) + body)
PY

# Sanity: every row answers 200 before it is measured.
curl -fs -o /dev/null -H "X-API-Key: $key" "http://127.0.0.1:$listen/api/x" || fail "proxy row refused"
curl -fs -o /dev/null -H "X-API-Key: $key" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /api/x" \
  "http://127.0.0.1:$authz/" || fail "http-authz row refused"
curl -fs -o /dev/null -H "X-API-Key: $key" "http://127.0.0.1:$front/api/x" || fail "nginx+kg row refused"
echo "{\"target\": \"127.0.0.1:$authz\", \"checks\": [{\"path\": \"/api/x\", \"headers\": {\"x-api-key\": \"$key\"}}]}" \
  | "$py" tests/grpc/ext_authz.py | grep -q '"code": 0' || fail "grpc-authz row refused"

cpu_of() { local t=0 p; for p in "$@"; do t=$((t + $(cpu_ticks "$p"))); done; echo "$t"; }
tick_us=$((1000000 / $(getconf CLK_TCK)))
declare -A rps cpu p99

run_wrk() { # row url pids... (extra wrk args in WRK_ARGS)
  local row=$1 url=$2; shift 2
  local before after out n
  taskset -c 0 wrk -t1 -c32 -d1s ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$url" >/dev/null
  before=$(cpu_of "$@")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" --latency ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} "$url")
  after=$(cpu_of "$@")
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  echo "$out" | grep -q "Non-2xx" && fail "$row: non-2xx answers" "$out"
  rps[$row]+="$(echo "$out" | awk '/Requests\/sec/ {printf "%.0f", $2}') "
  cpu[$row]+="$(( (after - before) * tick_us / n )).$(( ((after - before) * tick_us * 10 / n) % 10 )) "
  p99[$row]+="$(echo "$out" | awk '$1 == "99%" {print $2}') "
}

run_h2load() { # row
  local before after out n
  local args=(-c4 -m8 -H "content-type: application/grpc" -H "te: trailers" -d "$work/check.bin"
    "http://127.0.0.1:$authz/envoy.service.auth.v3.Authorization/Check")
  taskset -c 0 h2load -D 1 "${args[@]}" >/dev/null
  before=$(cpu_of "$kg_pid")
  out=$(taskset -c 0 h2load -D "$secs" "${args[@]}")
  after=$(cpu_of "$kg_pid")
  n=$(echo "$out" | awk '/^requests:/ {print $8}')
  [ "$(echo "$out" | awk '/^status codes:/ {print $3}')" -gt 0 ] || fail "grpc-authz: no 2xx" "$out"
  rps[$1]+="$(echo "$out" | awk '/^finished in/ {printf "%.0f", $4}') "
  cpu[$1]+="$(( (after - before) * tick_us / n )).$(( ((after - before) * tick_us * 10 / n) % 10 )) "
  p99[$1]+="- "
}

for r in $(seq "$rounds"); do
  echo "round $r/$rounds" >&2
  WRK_ARGS=(-H "X-API-Key: $key")
  run_wrk proxy "http://127.0.0.1:$listen/api/x" "$kg_pid"
  WRK_ARGS=(-H "X-API-Key: $key" -H "X-Forwarded-Method: GET" -H "X-Forwarded-Uri: /api/x" -H "X-Forwarded-For: 203.0.113.5")
  run_wrk http-authz "http://127.0.0.1:$authz/" "$kg_pid"
  run_h2load grpc-authz
  WRK_ARGS=()
  run_wrk nginx "http://127.0.0.1:$bare/api/x" "$bare_worker"
  WRK_ARGS=(-H "X-API-Key: $key")
  run_wrk nginx+kg "http://127.0.0.1:$front/api/x" "$front_worker" "$kg_pid"
done

median() { tr ' ' '\n' | grep -v '^$' | grep -v '^-$' | sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "-"}'; }
echo "keygate: $bin (threads: 1, default log filter: access line on); nginx 1 worker, access_log buffered"
echo "$secs s per run, $rounds rounds; medians, with every round's values"
printf '%-11s %10s %12s %9s   %s\n' row "req/s" "CPU µs/req" "p99" "rounds (req/s | CPU µs)"
for row in proxy http-authz grpc-authz nginx nginx+kg; do
  printf '%-11s %10s %12s %9s   %s| %s\n' "$row" "$(echo "${rps[$row]}" | median)" \
    "$(echo "${cpu[$row]}" | median)" "$(echo "${p99[$row]}" | median)" "${rps[$row]}" "${cpu[$row]}"
done
proxy_cpu=$(echo "${cpu[proxy]}" | median)
for row in http-authz grpc-authz; do
  printf 'CPU of a decision / CPU of a proxied request, %s: %s (target < 0.5)\n' "$row" \
    "$(python3 -c "print(f'{$(echo "${cpu[$row]}" | median)/$proxy_cpu:.2f}')")"
done
