#!/usr/bin/env bash
# Import of existing keys: `keygate keys import` of N keys (default 1,000,000) of
# JSON Lines into SQLite and into PostgreSQL, half as plaintext keys and half as
# sha256 hashes, every line with a name, tier, scopes and an owner. Prints, per
# store, the wall time, keys per second and the peak RSS of the import process
# (GNU time), then imports the same file again (every key updated in place) and
# checks the store holds N keys. The file streams: peak RSS should not grow with N.
# Needs PostgreSQL on 127.0.0.1:5432 (scripts/services.sh).
# Usage: bash benches/import.sh [keys]
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
n=${1:-1000000}
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
bash scripts/services.sh
[ -n "${KEYGATE_BIN:-}" ] || cargo build --release --quiet
bin=${KEYGATE_BIN:-$PWD/target/release/keygate}
work=$(mktemp -d)
db="kg_import_$$"
psql -q -h 127.0.0.1 -U postgres -d test -c "CREATE DATABASE $db"
cleanup() {
  psql -q -h 127.0.0.1 -U postgres -d test -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  rm -rf "$work"
}
trap cleanup EXIT
python3 - "$work/keys.jsonl" "$n" <<'PY'
import sys, os, hashlib, json
path, n = sys.argv[1], int(sys.argv[2])
with open(path, "w") as f:
    for i in range(n):
        key = "ak_live_" + os.urandom(16).hex()
        line = {"id": f"cust_{i:07d}", "name": f"customer {i}", "tier": "pro",
                "scopes": ["search"], "owner": f"user{i % 5000}@example.com"}
        if i % 2:
            line["key"] = key
        else:
            line["hash"] = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        f.write(json.dumps(line) + "\n")
PY
echo "file: $n keys, $(du -m "$work/keys.jsonl" | cut -f1) MB"
printf '%-12s %-8s %10s %12s %14s\n' store run seconds keys/s peak_rss_MB
for kind in sqlite postgres; do
  if [ "$kind" = sqlite ]; then store="{ kind: sqlite, path: \"$work/k.db\" }"; else store="{ kind: postgres, url: \"postgres://postgres@127.0.0.1:5432/$db\" }"; fi
  cat > "$work/$kind.yaml" <<YAML
upstream: { url: "http://127.0.0.1:3000" }
store: $store
api_keys: { format: "ak_{env}_{random:26}{checksum}", accept_prefixes: ["ak_live_"] }
tiers: { free: { per_minute: 60 }, pro: { per_minute: 600 } }
default_tier: free
YAML
  for run in first again; do
    /usr/bin/time -f '%e %M' -o "$work/time" "$bin" keys import -c "$work/$kind.yaml" "$work/keys.jsonl" > "$work/out"
    grep -q "^imported $n keys$" "$work/out" || fail "$(cat "$work/out")"
    read -r secs kb < "$work/time"
    printf '%-12s %-8s %10s %12.0f %14.1f\n' "$kind" "$run" "$secs" "$(python3 -c "print($n / max($secs, 0.001))")" "$(python3 -c "print($kb / 1024)")"
  done
done
total=$("$bin" keys list -c "$work/sqlite.yaml" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
[ "$total" = "$n" ] || fail "sqlite holds $total keys, not $n"
total=$(psql -tA -h 127.0.0.1 -U postgres -d "$db" -c "SELECT count(*) FROM api_keys")
[ "$total" = "$n" ] || fail "postgres holds $total keys, not $n"
echo "both stores hold $n keys after the second import"
