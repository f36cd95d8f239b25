#!/usr/bin/env bash
# Scale and memory: keygate with STORE_KEYS keys in its SQLite store, driven by wrk
# rotating through TRAFFIC_KEYS distinct keys (a Lua script), against the one-key case
# on the same process.
#
# Rounds:
# - cold: the first pass over the distinct keys, every key a cache miss. Reports
#   p50/p99 and req/s.
# - warm: the distinct keys again, all cached, alternated with the one-key case.
#   Reports the ratio warm/one-key (target: within 10%).
# - soak: two minutes (SOAK seconds) at full load on the distinct keys, with RSS at
#   idle, after warm-up, and at the start and end of the soak.
#
# Layout as in the other benches: keygate on core 1, wrk and the upstream on core 0.
# keygate runs with the default logging (an access line per request, stderr to a
# file) unless KEYGATE_LOG says otherwise; KEYGATE_BIN runs another build.
# PERF=1 also samples keygate with `perf record` (cpu-clock) during one more warm
# round and one more one-key round and prints the top symbols of each side by side:
# what grows from one key to many is where the per-key cost lives.
# ACCOUNTS=N puts the keys on a `pool: account` tier in N accounts (key i in account
# i mod N: ACCOUNTS=10000 TRAFFIC_KEYS=100000 is 10k accounts of 10 keys in use), so
# every request counts in its account's windows.
# Usage: STORE_KEYS=1000000 TRAFFIC_KEYS=100000 SOAK=120 [ACCOUNTS=10000] bash benches/scale.sh [seconds] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}; rounds=${2:-3}
store_keys=${STORE_KEYS:-1000000}; traffic_keys=${TRAFFIC_KEYS:-100000}; soak=${SOAK:-120}
accounts=${ACCOUNTS:-0}
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 KEYGATE_SETUP_WRK=1 bash scripts/setup.sh
[ -n "${KEYGATE_BIN:-}" ] || cargo build --release --quiet
bin=${KEYGATE_BIN:-$PWD/target/release/keygate}
log=${KEYGATE_LOG:-warn,keygate=info}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
source benches/lib.sh
up=$(port); listen=$(port); admin=$(port)
bench_config "$work/k.yaml" "$listen" "$admin" 1 "$up" "{ kind: sqlite, path: \"$work/k.db\" }" "" "cache: { capacity: 200000, ttl: 1h }"
one=$("$bin" keys create -c "$work/k.yaml" --name one --tier bench | sed -n 's/^key: //p')

# Keys made the way keygate makes them (base62 body + CRC-32 checksum), inserted in
# one transaction; the first TRAFFIC_KEYS of them are written out for wrk.
python3 - "$work/k.db" "$work/keys.txt" "$store_keys" "$traffic_keys" "$accounts" <<'PY'
import sys, sqlite3, hashlib, zlib, os, time
db, out, n, t, a = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def checksum(body):
    v = zlib.crc32(body.encode()); s = ""
    for _ in range(6):
        s = B62[v % 62] + s; v //= 62
    return s
con = sqlite3.connect(db)
now = int(time.time())
tier = "pooled" if a else "bench"
if a:
    con.executemany("INSERT INTO accounts (id, plan, created_at) VALUES (?, 'pooled', ?)",
                    [(f"acct_s{j:06d}", now) for j in range(a)])
with open(out, "w") as f:
    rows = []
    for i in range(n):
        body = "kg_sk_live_" + "".join(B62[b % 62] for b in os.urandom(32))
        key = body + checksum(body)
        if i < t:
            f.write(key + "\n")
        rows.append((hashlib.sha256(key.encode()).digest(), f"key_s{i:08d}", "k", "kg_sk_live_", key[-4:],
                     tier, "[]", "live", "active", "[]", now, f"acct_s{i % a:06d}" if a else f"acct_key_s{i:08d}"))
        if len(rows) == 50000:
            con.executemany("INSERT INTO api_keys (key_hash, id, name, prefix, last4, tier, scopes, environment, status, allowed_ips, created_at, account) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            rows = []
    if rows:
        con.executemany("INSERT INTO api_keys (key_hash, id, name, prefix, last4, tier, scopes, environment, status, allowed_ips, created_at, account) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
if not a:
    # Every key belongs to an account: each its own, as the migration makes them.
    con.execute("INSERT INTO accounts (id, plan, created_at) SELECT account, tier, created_at FROM api_keys WHERE account LIKE 'acct_key_s%'")
con.commit()
print(f"store: {con.execute('select count(*) from api_keys').fetchone()[0]} keys in "
      f"{con.execute('select count(*) from accounts').fetchone()[0]} accounts", file=sys.stderr)
PY
echo "$one" > "$work/one.txt"
# The one-key case goes through the same Lua script (a one-line key file), so wrk's
# own cost of scripting requests is the same on both sides of the ratio.
rotating_lua "$work/rotate.lua" "$work/keys.txt" X-API-Key ""
rotating_lua "$work/one.lua" "$work/one.txt" X-API-Key ""

taskset -c 0 "$bin" demo-upstream --listen "127.0.0.1:$up" 2>/dev/null &
RUST_LOG=$log taskset -c 1 "$bin" serve -c "$work/k.yaml" 2>"$work/kg.log" &
kg=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$admin/health" >/dev/null && break; sleep 0.1; done
rss() { mem_mb "$kg" VmRSS; }
hwm() { mem_mb "$kg" VmHWM; }
idle=$(rss)

wrk_run() { # duration, then wrk args -> "rps p50 p99"
  local d=$1; shift
  local out
  out=$(taskset -c 0 wrk -t1 -c32 -d"$d" --latency "$@")
  grep -q "Non-2xx" <<<"$out" && fail "non-2xx responses:" "$out"
  echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out")"
}
echo "keygate: $bin, RUST_LOG=$log, accounts: ${accounts:-0} (0: each key its own, tier bench)"
printf '%-30s %12s %10s %10s %10s\n' run req/s p50 p99 rss_MB
# Cold: just long enough for one pass over the distinct keys at the start.
cold=$(wrk_run "${secs}s" -s "$work/rotate.lua" "http://127.0.0.1:$listen")
read -r rps p50 p99 <<<"$cold"
printf '%-30s %12s %10s %10s %10s\n' "cold: $traffic_keys keys, misses" "$rps" "$p50" "$p99" "$(rss)"
declare -a ratios
for r in $(seq "$rounds"); do
  read -r rk p50k p99k <<<"$(wrk_run "${secs}s" -s "$work/rotate.lua" "http://127.0.0.1:$listen")"
  printf '%-30s %12s %10s %10s %10s\n' "$r warm: $traffic_keys keys" "$rk" "$p50k" "$p99k" "$(rss)"
  read -r r1 p50o p99o <<<"$(wrk_run "${secs}s" -s "$work/one.lua" "http://127.0.0.1:$listen")"
  printf '%-30s %12s %10s %10s %10s\n' "$r one key" "$r1" "$p50o" "$p99o" "$(rss)"
  v=$(python3 -c "print(f'{$rk/$r1:.3f}')"); ratios+=("$v")
  printf '%-30s %12s\n' "$r warm/one-key" "$v"
done
echo "median warm/one-key: $(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "${ratios[@]}")"
if [ "${PERF:-0}" = 1 ]; then
  for side in rotate one; do
    perf record -q -F 1999 -e cpu-clock -p "$kg" -o "$work/$side.perf" -- sleep "$secs" 2>/dev/null &
    rec=$!
    wrk_run "${secs}s" -s "$work/$side.lua" "http://127.0.0.1:$listen" >/dev/null
    wait "$rec" || true
    perf report -q -i "$work/$side.perf" --no-children --sort symbol 2>/dev/null \
      | sed 's/^ *//; s/ *$//' | grep '%' > "$work/$side.all" || true
    awk '$1+0 >= 0.7' "$work/$side.all" | head -30 > "$work/$side.top"
  done
  echo "perf top symbols, % of keygate's samples: $traffic_keys keys warm | one key"
  paste -d'|' "$work/rotate.top" "$work/one.top" | awk -F'|' '{printf "%-60.60s | %.60s\n", $1, $2}'
  # The shares of the parts that can grow with the number of keys.
  for part in sqlite3 moka dashmap authenticate mi_ memcmp; do
    printf '%-14s %6.2f%% | %6.2f%%\n' "$part" \
      "$(grep -F "$part" "$work/rotate.all" | awk '{s += $1} END {print s + 0}')" \
      "$(grep -F "$part" "$work/one.all" | awk '{s += $1} END {print s + 0}')"
  done
fi
start=$(rss)
wrk_run "${soak}s" -s "$work/rotate.lua" "http://127.0.0.1:$listen" >/dev/null
end=$(rss)
echo "RSS MB: idle $idle, before soak $start, after ${soak}s at full load $end, peak $(hwm)"
echo "keys in cache: $(curl -s "http://127.0.0.1:$admin/metrics" | awk '/^keygate_key_cache_size/ {print $2}')"
if grep -v "failed to acquire reusable stream\|keygate::access" "$work/kg.log" | grep -q "ERROR\|panicked"; then
  fail "keygate logged errors:" "$(cat "$work/kg.log")"
fi
