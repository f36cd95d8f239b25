#!/usr/bin/env bash
# keygate against HAProxy and nginx doing the same job, on the same machine, in one run.
#
# The job, for every peer:
# - hash the API key (SHA-256) and look it up in a map of hashed keys;
# - count the request on a per-key counter;
# - strip the key and add an identity header;
# - add a rate-limit header.
#
# Layout: every proxy is pinned to core 1 with one thread or worker. wrk, oha and the
# upstream (one nginx worker answering `return 200`) are pinned to core 0.
#
# Rows:
#   direct    the upstream alone
#   haproxy   HAProxy 2.6: digest(sha256) + map + stick-table counter
#   nginx     nginx 1.22 + njs: crypto sha256 + map + limit_req zone
#   bare      keygate with `auth: none`: the engine's cost, Pingora alone
#   keygate   keygate's API-key route as the contract defines it: 7 identity headers,
#             3 rate-limit headers, X-Request-Id, X-Forwarded-For
#   keygate1  the same route forwarding one identity header, as the peers do
#   JWT       RS256 through HAProxy's jwt_verify and through keygate, with one reused
#             token and with TOKENS (default 20,000) distinct tokens rotated by wrk
#   HTTP/2    keygate against nginx over h2 (TLS) and h2c, beside HTTP/1.1: see
#             benches/peers/http2.sh, run at the end (H2=0 skips it)
#
# Per run it reports:
# - req/s;
# - CPU µs per request: the proxy's utime+stime from /proc over the requests it
#   served, steadier than req/s on a shared machine;
# - peak RSS (VmHWM);
# - per round, the ratios keygate/HAProxy, keygate/nginx and keygate/bare, then their
#   medians.
#
# Then latency at a fixed rate (oha, latency-corrected) at half the weakest peer's
# saturation, as p50/p99 added over going direct.
#
# Logging: every proxy runs twice, side by side in one run. "log on" is what users
# run: keygate's default filter (an access line per request), HAProxy's `option
# httplog` to stdout, nginx's `access_log ... buffer=64k flush=1s`, each to a file.
# "log off" turns all three off (keygate `RUST_LOG=warn`). LOGS=on or LOGS=off
# runs one mode only.
#
# Usage: bash benches/peers/run.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; rounds=${2:-3}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || need+=(libnginx-mod-http-js)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 bash scripts/setup.sh
command -v oha >/dev/null || cargo install oha --locked --quiet
cargo build --release --quiet
bin=$PWD/target/release/keygate
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port)
declare -A listen pid
modes=(on off)
[ -n "${LOGS:-}" ] && modes=("$LOGS")

# --- the upstream: one nginx worker, core 0
start_nginx_upstream "$work" "$up"

# --- one key, as keygate issues them; the peers get its SHA-256 in their maps
bench_config "$work/kg.yaml" PORT ADMIN 1 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" "routes:
  - { path: /open/*, auth: none }"
sed -e "s/PORT/1/" -e "s/ADMIN/2/" "$work/kg.yaml" > "$work/cli.yaml"   # for the CLI only
key=$("$bin" keys create -c "$work/cli.yaml" --name bench --tier bench | sed -n 's/^key: //p')
hash=$("$bin" keys hash "$key" | sed 's/^sha256://')
key_id=$("$bin" keys list -c "$work/cli.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_keys"][0]["id"])')
echo "$hash $key_id" > "$work/keys.map"

# --- RS256 tokens minted by PyJWT: one to reuse, and TOKENS distinct ones to rotate
py=$(bash scripts/test-python.sh)
"$py" - "$work" "${TOKENS:-20000}" <<'PY'
import sys, time, uuid, jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
d, n = sys.argv[1], int(sys.argv[2])
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
open(f"{d}/rs.pub.pem", "wb").write(key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
exp = int(time.time()) + 86400
with open(f"{d}/tokens.txt", "w") as f:
    for _ in range(n):
        # The key object, not its PEM: parsing a PEM per token takes ~20 ms.
        f.write(jwt.encode({"sub": "bench", "exp": exp, "jti": uuid.uuid4().hex}, key,
                           algorithm="RS256", headers={"kid": "rs"}) + "\n")
PY
token=$(head -1 "$work/tokens.txt")
head -1 "$work/tokens.txt" > "$work/token1.txt"
rotating_lua "$work/tokens-one.lua" "$work/token1.txt" Authorization "Bearer "
rotating_lua "$work/tokens-many.lua" "$work/tokens.txt" Authorization "Bearer "

# --- HAProxy 2.6, one thread (start_haproxy MODE: on logs every request to stdout)
start_haproxy() {
  local m=$1 log_global="" log_defaults=""
  if [ "$m" = on ]; then
    log_global="  log stdout format raw local0 info"
    log_defaults="  log global
  option httplog"
  fi
  listen[haproxy-$m]=$(port)
  local listen_hjwt; listen_hjwt=$(port)
  cat > "$work/haproxy-$m.cfg" <<EOF
global
  nbthread 1
  maxconn 8000
$log_global
defaults
  mode http
$log_defaults
  timeout connect 2s
  timeout client 30s
  timeout server 30s
  http-reuse always
backend per_key
  stick-table type string len 32 size 1m expire 60s store http_req_rate(60s)
frontend fe
  bind 127.0.0.1:${listen[haproxy-$m]}
  http-request set-var(txn.kid) req.hdr(x-api-key),digest(sha256),hex,lower,map($work/keys.map)
  http-request deny deny_status 401 unless { var(txn.kid) -m found }
  http-request track-sc0 var(txn.kid) table per_key
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
  http-request del-header x-api-key
  http-request set-header X-Auth-Key-Id %[var(txn.kid)]
  http-response set-header X-RateLimit-Limit 1000000000
  http-response set-header X-RateLimit-Remaining %[sc_http_req_rate(0),neg,add(1000000000)]
  default_backend be
frontend fe_jwt
  bind 127.0.0.1:$listen_hjwt
  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str RS256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/rs.pub.pem") -m int 1 }
  http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
  http-request set-var(txn.now) date
  http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
  http-request set-var(txn.sub) var(txn.bearer),jwt_payload_query('\$.sub')
  http-request track-sc0 var(txn.sub) table per_key
  http-request del-header authorization
  http-request set-header X-Auth-Subject %[var(txn.sub)]
  http-response set-header X-RateLimit-Limit 1000000000
  default_backend be
backend be
  server up 127.0.0.1:$up
EOF
  taskset -c 1 haproxy -db -f "$work/haproxy-$m.cfg" >"$work/haproxy-$m.log" 2>&1 &
  pid[haproxy-$m]=$!
  listen[hjwt-$m]=$listen_hjwt; pid[hjwt-$m]=${pid[haproxy-$m]}
}
for m in "${modes[@]}"; do start_haproxy "$m"; done

# --- nginx 1.22 + njs, one worker (start_nginx MODE: on buffers an access log)
cat > "$work/auth.js" <<'EOF'
import crypto from 'crypto';
function hash(r) {
  const k = r.headersIn['X-API-Key'];
  return k ? crypto.createHash('sha256').update(k).digest('hex') : '';
}
export default { hash };
EOF
start_nginx() {
  local m=$1 access="access_log off;"
  [ "$m" = on ] && access="access_log $work/nginx-access.log combined buffer=64k flush=1s;"
  listen[nginx-$m]=$(port)
  cat > "$work/nginx-$m.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
daemon off; master_process off; worker_processes 1;
pid $work/nginx-$m.pid; error_log $work/nginx-error-$m.log;
events { worker_connections 4096; }
http {
  $access
  client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf;
  uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;
  js_import auth from $work/auth.js;
  js_set \$key_hash auth.hash;
  map_hash_bucket_size 128;
  map \$key_hash \$key_id { default ""; $hash $key_id; }
  limit_req_zone \$key_id zone=per_key_$m:10m rate=100000000r/s;
  upstream up { server 127.0.0.1:$up; keepalive 64; }
  server {
    listen 127.0.0.1:${listen[nginx-$m]};
    keepalive_requests 1000000;
    location / {
      if (\$key_id = "") { return 401; }
      limit_req zone=per_key_$m burst=1000000 nodelay;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-API-Key "";
      proxy_set_header X-Auth-Key-Id \$key_id;
      add_header X-RateLimit-Limit 1000000000 always;
      proxy_pass http://up;
    }
  }
}
EOF
  taskset -c 1 nginx -p "$work" -c "$work/nginx-$m.conf" &
  pid[nginx-$m]=$!
}
for m in "${modes[@]}"; do start_nginx "$m"; done

# --- keygate: bare (auth: none), the contract's API-key route, and one identity header
start_keygate() { # name extra-yaml mode
  local l a filter=warn
  [ "$3" = on ] && filter=warn,keygate=info
  l=$(port); a=$(port)
  sed -e "s/PORT/$l/" -e "s/ADMIN/$a/" "$work/kg.yaml" > "$work/$1.yaml"
  printf '%s\n' "$2" >> "$work/$1.yaml"
  RUST_LOG=$filter taskset -c 1 "$bin" serve -c "$work/$1.yaml" 2>"$work/$1.log" &
  pid[$1]=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/health" >/dev/null && break; sleep 0.1; done
  listen[$1]=$l
}
for m in "${modes[@]}"; do
  start_keygate "keygate-$m" "" "$m"
  start_keygate "keygate1-$m" "forward: { headers: { subject: null, org: null, tier: null, scopes: null, environment: null, method: null } }" "$m"
  start_keygate "kjwt-$m" "jwt: { enabled: true, algorithms: [RS256], keys: [ { kid: rs, alg: RS256, pem_file: \"$work/rs.pub.pem\" } ] }" "$m"
  listen[bare-$m]=${listen[keygate-$m]}; pid[bare-$m]=${pid[keygate-$m]}
done
listen[direct]=$up
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$up/" >/dev/null && break; sleep 0.1; done

path_of() { case $1 in bare*) echo /open/x;; *) echo /api/x;; esac; }
# Targets: the upstream, then each peer in each logging mode.
targets=(direct)
for m in "${modes[@]}"; do targets+=("haproxy-$m" "nginx-$m" "bare-$m" "keygate-$m" "keygate1-$m"); done
check() { # the job is really done: 200 with the key, 401 without
  local n=$1 url="http://127.0.0.1:${listen[$1]}$(path_of "$1")"
  case $n in direct|bare*) ;; *)
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url")" = 401 ] || fail "$n: no 401 without a key" ;;
  esac
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "$url")" = 200 ] || fail "$n: no 200 with the key"
}
for n in "${targets[@]}"; do check "$n"; done
for m in "${modes[@]}"; do
  [ "$m" = off ] || [ -s "$work/haproxy-on.log" ] || fail "HAProxy wrote no access log"
done

run() { # name -> "rps cpu_us_per_request rss_mb"
  local n=$1 out t0 t1 reqs hz url
  hz=$(getconf CLK_TCK)
  url="http://127.0.0.1:${listen[$n]}$(path_of "$n")"
  [ "$n" = direct ] && t0=0 || t0=$(cpu_ticks "${pid[$n]}")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "X-API-Key: $key" "$url")
  [ "$n" = direct ] && t1=0 || t1=$(cpu_ticks "${pid[$n]}")
  grep -q "Non-2xx" <<<"$out" && fail "$n: non-2xx responses under load" "$out"
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  local rps cpu rss
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  cpu=$(python3 -c "print(f'{($t1-$t0)/$hz/$reqs*1e6:.1f}')")
  [ "$n" = direct ] && rss="-" || rss=$(mem_mb "${pid[$n]}" VmHWM)
  echo "$rps $cpu $rss"
}
label() {
  local m=${1##*-} what
  case $1 in
    direct) echo "upstream direct"; return;;
    haproxy-*) what="HAProxy 2.6 (1 thread)";;
    nginx-*) what="nginx 1.22 + njs (1 worker)";; bare-*) what="keygate auth:none (bare)";;
    keygate-*) what="keygate API key (contract)";; keygate1-*) what="keygate API key, 1 id header";;
  esac
  echo "$what, log $m"
}
declare -A ratios
printf '%-6s %-42s %12s %14s %10s\n' round target req/s cpu_us/req rss_MB
for r in $(seq "$rounds"); do
  declare -A res
  for n in "${targets[@]}"; do res[$n]=$(run "$n"); done
  for n in "${targets[@]}"; do
    read -r rps cpu rss <<<"${res[$n]}"
    printf '%-6s %-42s %12s %14s %10s\n' "$r" "$(label "$n")" "$rps" "$cpu" "$rss"
  done
  for m in "${modes[@]}"; do
    rk=$(cut -d' ' -f1 <<<"${res[keygate-$m]}"); rk1=$(cut -d' ' -f1 <<<"${res[keygate1-$m]}")
    rh=$(cut -d' ' -f1 <<<"${res[haproxy-$m]}"); rn=$(cut -d' ' -f1 <<<"${res[nginx-$m]}"); rb=$(cut -d' ' -f1 <<<"${res[bare-$m]}")
    for pair in "keygate/haproxy:$rk:$rh" "keygate/nginx:$rk:$rn" "keygate/bare:$rk:$rb" "keygate1/haproxy:$rk1:$rh" "keygate1/nginx:$rk1:$rn"; do
      IFS=: read -r name a b <<<"$pair"
      v=$(python3 -c "print(f'{$a/$b:.3f}')")
      ratios[$name, log $m]="${ratios[$name, log $m]:-} $v"
      printf '%-6s %-42s %12s\n' "$r" "$name req/s, log $m" "$v"
    done
  done
done
echo
for m in "${modes[@]}"; do
  for name in keygate/haproxy keygate/nginx keygate/bare keygate1/haproxy keygate1/nginx; do
    k="$name, log $m"
    printf '%-49s %12s   (rounds:%s)\n' "median $k" "$(python3 -c "import statistics,sys; print(f'{statistics.median([float(x) for x in sys.argv[1:]]):.3f}')" ${ratios[$k]})" "${ratios[$k]}"
  done
done

# --- JWT: RS256, one reused token and distinct tokens rotated (HAProxy verifies every
# request; keygate caches a verified token until it expires). Logging as the first mode.
jm=${modes[0]}
jwt_run() { # name lua -> "rps cpu"
  local n=$1 lua=$2 out t0 t1 reqs hz
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "${pid[$n]}")
  out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -s "$lua" "http://127.0.0.1:${listen[$n]}")
  t1=$(cpu_ticks "${pid[$n]}")
  grep -q "Non-2xx" <<<"$out" && fail "$n: non-2xx responses under load" "$out"
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(python3 -c "print(f'{($t1-$t0)/$hz/$reqs*1e6:.1f}')")"
}
for n in "hjwt-$jm" "kjwt-$jm"; do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${listen[$n]}/api/x")" = 401 ] || fail "$n: no 401 without a token"
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:${listen[$n]}/api/x")" = 200 ] || fail "$n: no 200 with the token"
done
echo
echo "RS256 JWT, log $jm: 1 token, or N = $(wc -l < "$work/tokens.txt") distinct tokens minted by PyJWT and rotated"
echo "(HAProxy verifies every request; keygate verifies a token once and caches it until"
echo " it expires, so N tokens cost N verifications per run, then cache hits)"
printf '%-6s %-32s %12s %14s\n' round target req/s cpu_us/req
for r in $(seq "$rounds"); do
  declare -A jr
  for case in "hjwt one" "kjwt one" "hjwt many" "kjwt many"; do
    read -r n f <<<"$case"
    jr["$n-$f"]=$(jwt_run "$n-$jm" "$work/tokens-$f.lua")
  done
  for case in hjwt-one kjwt-one hjwt-many kjwt-many; do
    case $case in hjwt-one) l="HAProxy jwt_verify, 1 token";; kjwt-one) l="keygate RS256, 1 token";;
      hjwt-many) l="HAProxy jwt_verify, N tokens";; kjwt-many) l="keygate RS256, N tokens";; esac
    read -r rps cpu <<<"${jr[$case]}"
    printf '%-6s %-32s %12s %14s\n' "$r" "$l" "$rps" "$cpu"
  done
  for f in one many; do
    a=$(cut -d' ' -f1 <<<"${jr[kjwt-$f]}"); b=$(cut -d' ' -f1 <<<"${jr[hjwt-$f]}")
    printf '%-6s %-32s %12s\n' "$r" "keygate/HAProxy JWT ($f)" "$(python3 -c "print(f'{$a/$b:.3f}')")"
  done
done

# --- latency at a fixed rate: half the weakest peer's saturation (first mode)
weakest=$(for n in "haproxy-$jm" "nginx-$jm" "keygate-$jm"; do cut -d' ' -f1 <<<"${res[$n]}"; done | sort -g | head -1)
rate=$(python3 -c "print(int($weakest / 2))")
echo
echo "fixed rate: $rate req/s (half the weakest peer's saturation) for ${secs}s each; oha, latency-corrected"
printf '%-42s %10s %10s %12s %12s\n' target p50_ms p99_ms p50_added p99_added
declare -A lat
lat_targets=(direct "haproxy-$jm" "nginx-$jm" "bare-$jm" "keygate-$jm" "keygate1-$jm")
for n in "${lat_targets[@]}"; do
  lat[$n]=$(taskset -c 0 oha -z "${secs}s" -q "$rate" -c 32 --latency-correction --no-tui --output-format json \
      -H "X-API-Key: $key" "http://127.0.0.1:${listen[$n]}$(path_of "$n")" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); p=d["latencyPercentiles"]; c=d["statusCodeDistribution"]
assert set(c) == {"200"}, c
print("%.3f %.3f" % (p["p50"] * 1000, p["p99"] * 1000))')
done
read -r d50 d99 <<<"${lat[direct]}"
for n in "${lat_targets[@]}"; do
  read -r p50 p99 <<<"${lat[$n]}"
  printf '%-42s %10s %10s %12s %12s\n' "$(label "$n")" "$p50" "$p99" \
    "$(python3 -c "print(f'{$p50-$d50:.3f}')")" "$(python3 -c "print(f'{$p99-$d99:.3f}')")"
done
for m in "${modes[@]}"; do
  for n in "keygate-$m" "keygate1-$m" "kjwt-$m"; do
    if grep -v "failed to acquire reusable stream\|keygate::access" "$work/$n.log" | grep -q "ERROR\|panicked"; then
      fail "keygate ($n) logged errors:" "$(cat "$work/$n.log")"
    fi
  done
done

# --- HTTP/2 rows (benches/peers/http2.sh; H2=0 skips them), once everything above
# has stopped, so that nothing else runs on the proxies' core.
if [ "${H2:-1}" = 1 ]; then
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  echo
  KEYGATE_BIN=$bin bash benches/peers/http2.sh "$secs" "$rounds"
fi
