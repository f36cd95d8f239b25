#!/usr/bin/env bash
# HTTP/2 rows of the peers bench: keygate against nginx doing the same job over
# HTTP/2, beside both over HTTP/1.1, on the same machine, in one run.
#
# The job is run.sh's: hash the API key (SHA-256) and look it up in a map of hashed
# keys, count the request on a per-key counter, strip the key and add an identity
# header, add a rate-limit header. keygate runs its API-key route as the contract
# defines it (7 identity headers, 3 rate-limit headers, X-Request-Id,
# X-Forwarded-For). The upstream is HTTP/1.1 for every row, as most APIs are.
#
# Layout: every proxy pinned to core 1 with one thread or worker; the load
# generator and the upstream (one nginx worker answering `return 200`) on core 0.
#
# Rows, per round:
#   h1    wrk -c32 (32 requests in flight, one per connection)
#   h2    h2load over TLS, h2 chosen by ALPN: -c4 -m8 (32 streams in flight over
#         4 connections, the way HTTP/2 clients multiplex)
#   h2c   h2load with prior knowledge over cleartext: -c4 -m8
# Each reports req/s, the proxy's CPU µs per request (utime+stime from /proc over
# the requests it served: steadier than req/s on a shared machine) and peak RSS,
# then the ratios keygate/nginx per protocol and keygate h2/h1, and their medians.
#
# Logging: as users run, an access line per request: keygate's default filter to a
# file, nginx `access_log ... buffer=64k flush=1s`.
#
# Usage: bash benches/peers/http2.sh [seconds-per-run] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}; rounds=${2:-3}
need=()
command -v nginx >/dev/null || need+=(nginx-light)
[ -e /usr/lib/nginx/modules/ngx_http_js_module.so ] || need+=(libnginx-mod-http-js)
command -v wrk >/dev/null || need+=(wrk)
command -v h2load >/dev/null || need+=(nghttp2-client)
command -v openssl >/dev/null || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 bash scripts/setup.sh
[ -n "${KEYGATE_BIN:-}" ] || cargo build --release --quiet
bin=${KEYGATE_BIN:-$PWD/target/release/keygate}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port)

# --- the upstream: one nginx worker, core 0
start_nginx_upstream "$work" "$up"

# --- a certificate for both proxies' TLS listeners
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null

# --- one key, as keygate issues them; nginx gets its SHA-256 in its map
kg_listen=$(port); kg_tls=$(port); kg_admin=$(port); kg_admin2=$(port)
write_keygate() { # file listen admin extra-server-lines
  cat > "$1" <<YAML
server:
  listen: "127.0.0.1:$2"
  admin_listen: "127.0.0.1:$3"
  threads: 1
$4
upstream: { url: "http://127.0.0.1:$up" }
store: { kind: sqlite, path: "$work/k.db" }
tiers: { bench: { per_second: 100000000, per_minute: 1000000000, per_day: 100000000000 } }
default_tier: bench
rate_limit: { ip: { per_minute: 0, failed_auth_per_minute: 0 } }
YAML
}
write_keygate "$work/kg.yaml" "$kg_listen" "$kg_admin" "  h2c: true"
write_keygate "$work/kg-tls.yaml" "$kg_tls" "$kg_admin2" "  tls: { cert: \"$work/tls.crt\", key: \"$work/tls.key\" }"
key=$("$bin" keys create -c "$work/kg.yaml" --name bench --tier bench | sed -n 's/^key: //p')
hash=$("$bin" keys hash "$key" | sed 's/^sha256://')
key_id=$("$bin" keys list -c "$work/kg.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["api_keys"][0]["id"])')

# --- nginx 1.22 + njs, one worker: HTTP/1.1, h2 over TLS and h2c on three ports
cat > "$work/auth.js" <<'EOF'
import crypto from 'crypto';
function hash(r) {
  const k = r.headersIn['X-API-Key'];
  return k ? crypto.createHash('sha256').update(k).digest('hex') : '';
}
export default { hash };
EOF
ng_h1=$(port); ng_tls=$(port); ng_h2c=$(port)
location='location / {
      if ($key_id = "") { return 401; }
      limit_req zone=per_key burst=1000000 nodelay;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-API-Key "";
      proxy_set_header X-Auth-Key-Id $key_id;
      add_header X-RateLimit-Limit 1000000000 always;
      proxy_pass http://up;
    }'
cat > "$work/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_http_js_module.so;
daemon off; master_process off; worker_processes 1;
pid $work/nginx.pid; error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log $work/nginx-access.log combined buffer=64k flush=1s;
  client_body_temp_path $work/nb; proxy_temp_path $work/np; fastcgi_temp_path $work/nf;
  uwsgi_temp_path $work/nu; scgi_temp_path $work/ns;
  js_import auth from $work/auth.js;
  js_set \$key_hash auth.hash;
  map_hash_bucket_size 128;
  map \$key_hash \$key_id { default ""; $hash $key_id; }
  limit_req_zone \$key_id zone=per_key:10m rate=100000000r/s;
  upstream up { server 127.0.0.1:$up; keepalive 64; }
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$ng_h1; $location }
  server {
    listen 127.0.0.1:$ng_tls ssl http2;
    ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key;
    $location
  }
  server { listen 127.0.0.1:$ng_h2c http2; $location }
}
EOF
taskset -c 1 nginx -p "$work" -c "$work/nginx.conf" &
nginx_pid=$!

# --- keygate: h1 and h2c on one listener, h2 by ALPN on a TLS one (access log on)
RUST_LOG=warn,keygate=info taskset -c 1 "$bin" serve -c "$work/kg.yaml" 2>"$work/kg.log" &
kg_pid=$!
RUST_LOG=warn,keygate=info taskset -c 1 "$bin" serve -c "$work/kg-tls.yaml" 2>"$work/kg-tls.log" &
kg_tls_pid=$!
for a in "$kg_admin" "$kg_admin2"; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$a/health" >/dev/null && break; sleep 0.1; done
done
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$up/" >/dev/null && break; sleep 0.1; done

declare -A url pid kind
url[nginx-h1]=http://127.0.0.1:$ng_h1/api/x; pid[nginx-h1]=$nginx_pid; kind[nginx-h1]=h1
url[nginx-h2]=https://127.0.0.1:$ng_tls/api/x; pid[nginx-h2]=$nginx_pid; kind[nginx-h2]=h2
url[nginx-h2c]=http://127.0.0.1:$ng_h2c/api/x; pid[nginx-h2c]=$nginx_pid; kind[nginx-h2c]=h2c
url[keygate-h1]=http://127.0.0.1:$kg_listen/api/x; pid[keygate-h1]=$kg_pid; kind[keygate-h1]=h1
url[keygate-h2]=https://127.0.0.1:$kg_tls/api/x; pid[keygate-h2]=$kg_tls_pid; kind[keygate-h2]=h2
url[keygate-h2c]=http://127.0.0.1:$kg_listen/api/x; pid[keygate-h2c]=$kg_pid; kind[keygate-h2c]=h2c
targets=(nginx-h1 keygate-h1 nginx-h2 keygate-h2 nginx-h2c keygate-h2c)

check() { # the job is really done, in the row's protocol: 401 without the key, 200 with it
  local n=$1 flag=--http1.1 code version
  case ${kind[$n]} in h2) flag=--http2;; h2c) flag=--http2-prior-knowledge;; esac
  code=$(curl -sk $flag -o /dev/null -w '%{http_code}' "${url[$n]}")
  [ "$code" = 401 ] || fail "$n: $code without a key, not 401"
  read -r code version < <(curl -sk $flag -o /dev/null -w '%{http_code} %{http_version}\n' -H "X-API-Key: $key" "${url[$n]}")
  [ "$code" = 200 ] || fail "$n: $code with the key, not 200"
  case ${kind[$n]} in h1) want=1.1;; *) want=2;; esac
  [ "$version" = "$want" ] || fail "$n: answered over HTTP/$version, not HTTP/$want"
}
for n in "${targets[@]}"; do check "$n"; done

run() { # name -> "rps cpu_us_per_request rss_mb"
  local n=$1 out t0 t1 reqs rps hz
  hz=$(getconf CLK_TCK)
  t0=$(cpu_ticks "${pid[$n]}")
  if [ "${kind[$n]}" = h1 ]; then
    out=$(taskset -c 0 wrk -t1 -c32 -d"${secs}s" -H "X-API-Key: $key" "${url[$n]}")
    t1=$(cpu_ticks "${pid[$n]}")
    grep -q "Non-2xx" <<<"$out" && fail "$n: non-2xx responses under load" "$out"
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  else
    out=$(taskset -c 0 h2load -t1 -c4 -m8 -D "$secs" -H "X-API-Key: $key" "${url[$n]}")
    t1=$(cpu_ticks "${pid[$n]}")
    reqs=$(awk '/^requests:/ {print $8}' <<<"$out")        # succeeded
    # every request answered 2xx: none failed, errored or timed out, no other
    # status (in timing mode h2load counts a response in flight at the end in
    # the status codes but not as done, so 2xx can exceed `succeeded` by one)
    local bad; bad=$(awk '/^requests:/ {f=$10+$12+$14} /^status codes:/ {s=$5+$7+$9} END {print f+s}' <<<"$out")
    [ "$reqs" -gt 0 ] && [ "$bad" = 0 ] || fail "$n: not every request answered 2xx" "$out"
    grep -q "h2" <<<"$(grep -i 'application protocol' <<<"$out")" || fail "$n: h2load did not speak h2" "$out"
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
  fi
  echo "$rps $(python3 -c "print(f'{($t1-$t0)/$hz/$reqs*1e6:.1f}')") $(mem_mb "${pid[$n]}" VmHWM)"
}
label() {
  case $1 in
    nginx-h1) echo "nginx 1.22 + njs, HTTP/1.1 (wrk -c32)";;
    nginx-h2) echo "nginx 1.22 + njs, h2 TLS (h2load -c4 -m8)";;
    nginx-h2c) echo "nginx 1.22 + njs, h2c (h2load -c4 -m8)";;
    keygate-h1) echo "keygate API key, HTTP/1.1 (wrk -c32)";;
    keygate-h2) echo "keygate API key, h2 TLS (h2load -c4 -m8)";;
    keygate-h2c) echo "keygate API key, h2c (h2load -c4 -m8)";;
  esac
}
declare -A ratios
echo "HTTP/2 peers, access log on for every row; proxies on core 1, load and upstream on core 0"
printf '%-6s %-44s %12s %14s %10s\n' round target req/s cpu_us/req rss_MB
for r in $(seq "$rounds"); do
  declare -A res
  for n in "${targets[@]}"; do res[$n]=$(run "$n"); done
  for n in "${targets[@]}"; do
    read -r rps cpu rss <<<"${res[$n]}"
    printf '%-6s %-44s %12s %14s %10s\n' "$r" "$(label "$n")" "$rps" "$cpu" "$rss"
  done
  f() { cut -d' ' -f"$2" <<<"${res[$1]}"; }
  for pair in "keygate/nginx req/s, h1:$(f keygate-h1 1):$(f nginx-h1 1)" \
              "keygate/nginx req/s, h2 TLS:$(f keygate-h2 1):$(f nginx-h2 1)" \
              "keygate/nginx req/s, h2c:$(f keygate-h2c 1):$(f nginx-h2c 1)" \
              "keygate h2c/h1 req/s:$(f keygate-h2c 1):$(f keygate-h1 1)" \
              "keygate h2c/h1 cpu/req:$(f keygate-h2c 2):$(f keygate-h1 2)" \
              "nginx h2c/h1 cpu/req:$(f nginx-h2c 2):$(f nginx-h1 2)"; do
    IFS=: read -r name a b <<<"$pair"
    v=$(python3 -c "print(f'{$a/$b:.3f}')")
    ratios[$name]="${ratios[$name]:-} $v"
    printf '%-6s %-44s %12s\n' "$r" "$name" "$v"
  done
done
echo
for name in "keygate/nginx req/s, h1" "keygate/nginx req/s, h2 TLS" "keygate/nginx req/s, h2c" \
            "keygate h2c/h1 req/s" "keygate h2c/h1 cpu/req" "nginx h2c/h1 cpu/req"; do
  printf '%-51s %12s   (rounds:%s)\n' "median $name" \
    "$(python3 -c "import statistics,sys; print(f'{statistics.median([float(x) for x in sys.argv[1:]]):.3f}')" ${ratios[$name]})" \
    "${ratios[$name]}"
done
for l in kg kg-tls; do
  if grep -v "failed to acquire reusable stream\|keygate::access" "$work/$l.log" | grep -q "ERROR\|panicked"; then
    fail "keygate ($l) logged errors:" "$(cat "$work/$l.log")"
  fi
done
grep -q "protocol=h2" "$work/kg.log" || fail "keygate logged no HTTP/2 request"
