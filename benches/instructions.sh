#!/usr/bin/env bash
# Instructions per request (valgrind callgrind), which unlike req/s do not move with
# the machine's load: keygate serving N keep-alive requests on (b) an `auth: none`
# route and (c) an API-key route, each in its own process, counting only the
# requests (start-up and a 200-request warm-up are zeroed out), and (d) the same
# API-key route with a key on a `pool: account` tier (its windows the account's).
# (e) is the API-key route again with traces on (`telemetry:`, sample_ratio 1.0,
# exported to a local OTLP/HTTP sink that answers 200): every span built, queued
# and sent, the exporter's thread counted too.
# (f) is a decision on the same route and key by the authorizer (forward auth, as
# Traefik asks), against (c) which also forwards the request and relays the answer.
# Prints a table, the ratio (b)/(c) — the throughput the authenticated path keeps on
# a CPU-bound proxy — (d)/(c), what pooling per account costs a request, and
# (e)/(c), what tracing every request costs.
# Usage: bash benches/instructions.sh [requests]   (needs valgrind; installs it if missing)
# KEEP_PROFILES=DIR keeps the callgrind files for `callgrind_annotate --inclusive=yes`.
# keygate logs with the default filter (an access line per request, stderr to a
# file) unless KEYGATE_LOG says otherwise; KEYGATE_BIN measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
cargo build --profile "${KEYGATE_PROFILE:-release}" --quiet
bin=${KEYGATE_BIN:-$PWD/target/${KEYGATE_PROFILE:-release}/keygate}
log=${KEYGATE_LOG:-warn,keygate=info}
work=$(mktemp -d)
cleanup() { pkill -9 -f "callgrind-out-file=$work" 2>/dev/null || true; kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
source benches/lib.sh
up=$(port); listen=$(port); admin=$(port)
authz=$(port)
bench_config "$work/k.yaml" "$listen" "$admin" 1 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" "routes:
  - { path: /static/open, auth: none }
  - { path: /static/api, scopes: [bench] }"
cat > "$work/client.py" <<'PY'
import http.client, sys
port, path, n, key = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
headers = {"X-API-Key": key} if key != "-" else {}
headers.update(h.split(": ", 1) for h in sys.argv[5:])
for _ in range(n):
    c.request("GET", path, headers=headers)
    r = c.getresponse(); r.read()
    assert r.status == 200, r.status
PY
cat > "$work/otlp_sink.py" <<'PY'
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
PY
sink=$(port)
python3 "$work/otlp_sink.py" "$sink" &
cp "$work/k.yaml" "$work/traced.yaml"
printf 'telemetry: { otlp_endpoint: "http://127.0.0.1:%s", sample_ratio: 1.0 }\n' "$sink" >> "$work/traced.yaml"
key=$("$bin" keys create -c "$work/k.yaml" --name bench --tier bench --scopes bench | sed -n 's/^key: //p')
pooled=$("$bin" keys create -c "$work/k.yaml" --name pooled --tier pooled --scopes bench --account acct_bench | sed -n 's/^key: //p')
"$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
measure() { # name path key [config] -> instructions per request (MEASURE_PORT, MEASURE_HEADERS)
  local out="$work/$1.cg"
  RUST_LOG=$log valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" serve -c "${4:-$work/k.yaml}" >"$work/$1.log" 2>&1 &
  local vg=$!
  for _ in $(seq 200); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.2; done
  local to=${MEASURE_PORT:-$listen}
  python3 "$work/client.py" "$to" "$2" 200 "$3" ${MEASURE_HEADERS[@]+"${MEASURE_HEADERS[@]}"}
  callgrind_control -z "$vg" >/dev/null 2>&1
  python3 "$work/client.py" "$to" "$2" "$n" "$3" ${MEASURE_HEADERS[@]+"${MEASURE_HEADERS[@]}"}
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  kill -9 "$vg" 2>/dev/null || true; wait "$vg" 2>/dev/null || true
  local total
  total=$(grep -h '^summary:' "$out".* | tail -1 | awk '{print $2}')
  echo $(( total / n ))
}
b=$(measure open /static/open -)
c=$(measure apikey /static/api "$key")
d=$(measure pooled /static/api "$pooled")
# A build from before `telemetry:` (KEYGATE_BIN) refuses the section: no row (e).
if "$bin" check -c "$work/traced.yaml" >/dev/null 2>&1; then
  e=$(measure traced /static/api "$key" "$work/traced.yaml")
else
  e=""
fi
cp "$work/k.yaml" "$work/authz.yaml"
printf 'authorizer: { listen: "127.0.0.1:%s" }\n' "$authz" >> "$work/authz.yaml"
if "$bin" check -c "$work/authz.yaml" >/dev/null 2>&1; then
  MEASURE_PORT=$authz
  MEASURE_HEADERS=("X-Forwarded-Method: GET" "X-Forwarded-Uri: /static/api" "X-Forwarded-For: 203.0.113.5")
  f=$(measure authz / "$key" "$work/authz.yaml")
  unset MEASURE_PORT MEASURE_HEADERS
else
  f=""
fi
if [ -n "${KEEP_PROFILES:-}" ]; then mkdir -p "$KEEP_PROFILES" && cp "$work"/*.cg.* "$KEEP_PROFILES"/; fi
echo "keygate: $bin, RUST_LOG=$log"
printf '%-26s %14s\n' route "instr/request"
printf '%-26s %14s\n' "(b) keygate auth:none" "$b" "(c) keygate API key" "$c" \
  "(d) API key, pool: account" "$d" "(e) API key, traces 1.0" "${e:--}" \
  "(f) authorizer decision" "${f:--}"
printf '%-26s %14s\n' "(b)/(c)" "$(python3 -c "print(f'{$b/$c:.3f}')")"
printf '%-26s %14s\n' "(d)/(c)" "$(python3 -c "print(f'{$d/$c:.3f}')")"
[ -z "$e" ] || printf '%-26s %14s\n' "(e)/(c)" "$(python3 -c "print(f'{$e/$c:.3f}')")"
[ -z "$f" ] || printf '%-26s %14s\n' "(f)/(c)" "$(python3 -c "print(f'{$f/$c:.3f}')")"
