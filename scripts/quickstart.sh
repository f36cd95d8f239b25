#!/usr/bin/env bash
# Runs keygate on the embedded SQLite store in front of the demo echo upstream,
# creates a demo key on first run, and serves until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n== %s\n' "$*"; }
say "1/4 installing what the build needs (cmake, if missing)"
KEYGATE_SETUP_PROMTOOL=0 KEYGATE_SETUP_BROWSER=0 bash scripts/setup.sh
bin=target/release/keygate
if [ -x "$bin" ]; then
  say "2/4 building keygate (already built once: seconds, unless the code changed)"
else
  say "2/4 building keygate in release mode: the first build takes about 12 minutes on 2 cores (4 on 8); cargo shows its progress below"
fi
started=$(date +%s)
cargo build --release
say "built in $(( $(date +%s) - started )) s"
# The config names the token-signing key: make it before `check` reads it.
mkdir -p data
[ -s data/issuer-es256.pem ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out data/issuer-es256.pem 2>/dev/null
say "3/4 checking conf/keygate.yaml, starting the demo upstream on 127.0.0.1:3000"
"$bin" check -c conf/keygate.yaml
"$bin" demo-upstream --listen 127.0.0.1:3000 &
upstream=$!
trap 'kill $upstream 2>/dev/null || true' EXIT
if [ ! -s data/demo-key.txt ]; then
  mkdir -p data
  "$bin" keys create -c conf/keygate.yaml --name demo --tier free --scopes search | tee data/demo-key.txt
fi
key=$(sed -n 's/^key: //p' data/demo-key.txt)
say "4/4 serving (Ctrl-C stops it)"
cat <<MSG

keygate: http://127.0.0.1:8080 (admin http://127.0.0.1:9090/metrics)
portal:  http://127.0.0.1:8080/portal   # sign up, create a key, watch its usage
try:   curl -i -H "X-API-Key: $key" http://127.0.0.1:8080/hello
       curl -i http://127.0.0.1:8080/hello          # 401
MSG
"$bin" serve -c conf/keygate.yaml
