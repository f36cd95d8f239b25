#!/usr/bin/env bash
# Builds keygate's Docker image from the committed tree and runs it the way
# deploy/kubernetes runs it: read-only root filesystem, non-root, no capabilities,
# no privilege escalation, the ConfigMap's config with PostgreSQL and Redis, the
# API beside it on localhost. Checks requests, the README's in-place reload
# command, a graceful stop (exit 0) and that a source change rebuilds without
# recompiling the dependencies. Then runs the image as the README does, with its
# own config and nothing mounted (docker run -p ... -e KEYGATE_UPSTREAM_URL=...). Prints a table; exits 1 on the first failed check.
#
#   bash scripts/docker-check.sh
#
# Needs Docker (installed and started here if missing), PostgreSQL and Redis on
# 127.0.0.1 (scripts/services.sh). Where Docker Hub cannot be reached (as on the
# development machines), the two base images are replaced by stand-ins built
# locally: Debian bookworm from deb.debian.org (debootstrap) for debian:bookworm-slim,
# and the same plus this machine's Rust toolchain for rust:1.95-bookworm. The
# Dockerfile takes them as BUILD_IMAGE and RUNTIME_IMAGE. Not part of .ci/run: a
# release build inside a container takes ~10 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
source benches/lib.sh
work=$(mktemp -d)
containers=()
image=""
cleanup() {
  for c in "${containers[@]}"; do docker rm -f "$c" >/dev/null 2>&1 || true; done
  # The checked image goes; the build stages stay as Docker's cache for the next
  # run (docker image prune reclaims them).
  [ -z "$image" ] || docker rmi -f "$image" "$image-rebuilt" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
results=()
pass() { results+=("ok    $1"); echo "docker-check: ok: $1" >&2; }
fail() {
  results+=("FAIL  $1")
  printf '%s\n' "${results[@]}"
  echo "docker-check: FAILED: $1" >&2
  exit 1
}

# --- Docker itself -----------------------------------------------------------
# Some machines carry the docker client without the engine: install both then.
if ! command -v docker >/dev/null || ! command -v dockerd >/dev/null; then
  echo "docker-check: installing docker.io" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
if ! docker info >/dev/null 2>&1; then
  echo "docker-check: starting dockerd" >&2
  (dockerd >/tmp/keygate-dockerd.log 2>&1 &)
  for _ in $(seq 50); do docker info >/dev/null 2>&1 && break; sleep 0.2; done
  docker info >/dev/null 2>&1 || { tail -20 /tmp/keygate-dockerd.log; exit 1; }
fi
bash scripts/services.sh

# --- base images -------------------------------------------------------------
build_image=rust:1.95-bookworm
runtime_image=debian:bookworm-slim
if ! { docker image inspect "$runtime_image" >/dev/null 2>&1 || timeout 60 docker pull -q "$runtime_image" >/dev/null 2>&1; } ||
  ! { docker image inspect "$build_image" >/dev/null 2>&1 || timeout 300 docker pull -q "$build_image" >/dev/null 2>&1; }; then
  echo "docker-check: Docker Hub unreachable; building stand-in base images" >&2
  runtime_image=keygate-standin/debian:bookworm-slim
  build_image=keygate-standin/rust:1.95-bookworm
  cache=target/docker-standin
  mkdir -p "$cache"
  if ! docker image inspect "$runtime_image" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null ||
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    if [ ! -s "$cache/bookworm.tar" ]; then
      rm -rf "$cache/rootfs"
      debootstrap --variant=minbase bookworm "$cache/rootfs" http://deb.debian.org/debian >"$cache/debootstrap.log"
      tar -C "$cache/rootfs" -cf "$cache/bookworm.tar" .
      rm -rf "$cache/rootfs"
    fi
    docker import "$cache/bookworm.tar" "$runtime_image" >/dev/null
  fi
  if ! docker image inspect "$build_image" >/dev/null 2>&1; then
    ctx="$work/standin"
    toolchain=$(rustc --print sysroot)
    mkdir -p "$ctx/rustup/toolchains" "$ctx/cargo/bin"
    cp -a "$toolchain/." "$ctx/rustup/toolchains/1.95.0-x86_64-unknown-linux-gnu"
    printf 'version = "12"\ndefault_toolchain = "1.95.0-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' >"$ctx/rustup/settings.toml"
    cp "$(command -v rustup)" "$ctx/cargo/bin/rustup"
    for proxy in cargo rustc rustdoc rustfmt cargo-fmt cargo-clippy clippy-driver; do
      ln -s rustup "$ctx/cargo/bin/$proxy"
    done
    # This machine's own extra roots (an egress proxy's CA), so cargo inside the
    # stand-in reaches crates.io the way it does here.
    mkdir -p "$ctx/ca"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
    cat >"$ctx/Dockerfile" <<EOF
FROM $runtime_image
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc g++ libc6-dev make git pkg-config && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rustup /usr/local/rustup
COPY cargo /usr/local/cargo
EOF
    docker build -q -t "$build_image" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
fi
args=(--build-arg "BUILD_IMAGE=$build_image" --build-arg "RUNTIME_IMAGE=$runtime_image")

# --- build from the committed tree ----------------------------------------------
ctx="$work/context"
mkdir -p "$ctx"
git archive HEAD | tar -x -C "$ctx"
image=keygate-check:$(git rev-parse --short HEAD)
t0=$(date +%s)
docker build "${args[@]}" -t "$image" "$ctx" >"$work/build1.log" 2>&1 || { tail -40 "$work/build1.log"; fail "docker build"; }
t1=$(date +%s)
pass "image builds from the committed tree ($((t1 - t0)) s)"

echo "// a source change" >>"$ctx/src/lib.rs"
docker build "${args[@]}" -t "$image-rebuilt" "$ctx" >"$work/build2.log" 2>&1 || { tail -40 "$work/build2.log"; fail "rebuild"; }
t2=$(date +%s)
# The legacy builder colours a step's stderr: strip the escapes before counting.
sed 's/\x1b\[[0-9;]*m//g' "$work/build2.log" >"$work/build2.txt"
compiled=$(grep -c '^ *Compiling ' "$work/build2.txt" || true)
[ "$compiled" = 1 ] && grep -q 'Compiling keygate ' "$work/build2.txt" ||
  { grep 'Compiling ' "$work/build2.txt" | head; fail "a source change recompiles only keygate (compiled $compiled crates)"; }
pass "a source change recompiles only keygate, dependencies come from the cached layer ($((t2 - t1)) s)"

user=$(docker image inspect -f '{{.Config.User}}' "$image")
[ "$user" = "10001:10001" ] || fail "image user is 10001:10001 (got '$user')"
health=$(docker image inspect -f '{{.Config.Healthcheck}}' "$image")
[ "$health" = "<nil>" ] || fail "no HEALTHCHECK (got $health)"
size=$(docker image inspect -f '{{.Size}}' "$image")
pass "runtime image: user 10001, no HEALTHCHECK, $((size / 1000000)) MB"
libs=$(docker run --rm --entrypoint sh "$image" -c 'ldd /usr/local/bin/keygate' | awk '{print $1}' | tr '\n' ' ')
pass "binary links only: $libs"

# --- run it like the pod ---------------------------------------------------------
listen=$(port) admin=$(port) api=$(port)
db="keygate_docker_$$"
psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
trap 'cleanup; psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true' EXIT
conf="$work/conf"
mkdir -p "$conf"
# The ConfigMap's keygate.yaml, on free ports.
sed -n '/^  keygate.yaml: |$/,$p' deploy/kubernetes/configmap.yaml | tail -n +2 | sed 's/^    //' |
  sed -e "s/0\.0\.0\.0:8080/127.0.0.1:$listen/" -e "s/0\.0\.0\.0:9090/127.0.0.1:$admin/" \
    -e "s#http://127\.0\.0\.1:3000#http://127.0.0.1:$api#" >"$conf/keygate.yaml"
chmod -R a+rX "$conf"
envs=(-e "KEYGATE_DATABASE_URL=postgres://postgres@127.0.0.1:5432/$db"
  -e "KEYGATE_REDIS_URL=redis://127.0.0.1:6379/0"
  -e "KEYGATE_JWT_SECRET=docker-check-secret-0123456789abcdef")
pod=(--network host --read-only --cap-drop ALL --security-opt no-new-privileges
  --tmpfs /tmp --tmpfs /var/lib/keygate:uid=10001,gid=10001 -v "$conf:/etc/keygate:ro" "${envs[@]}")

docker run --rm "${pod[@]}" "$image" check -c /etc/keygate/keygate.yaml >/dev/null ||
  fail "keygate check accepts the ConfigMap's config"
pass "keygate check accepts the ConfigMap's config"

upstream=keygate-check-api-$$
containers+=("$upstream")
docker run -d --name "$upstream" --network host --read-only --cap-drop ALL "$image" \
  demo-upstream --listen "127.0.0.1:$api" >/dev/null
gate=keygate-check-gate-$$
containers+=("$gate")
docker run -d --name "$gate" "${pod[@]}" "$image" serve -c /etc/keygate/keygate.yaml --log-format json >/dev/null
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$admin/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
ready=$(curl -sS "http://127.0.0.1:$admin/ready" || true)
echo "$ready" | grep -q '"ready"' || { docker logs "$gate" 2>&1 | tail -20; fail "/ready answers ready ($ready)"; }
pass "serves as uid $(docker exec "$gate" id -u) on a read-only root filesystem; /ready: $ready"

key=$(docker run --rm "${pod[@]}" "$image" keys create -c /etc/keygate/keygate.yaml --name docker --tier pro --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$listen/orders/1")
[ "$code" = 200 ] || fail "a key made with 'keygate keys create' in the image is accepted (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$listen/orders/1")
[ "$code" = 401 ] || fail "no key answers 401 (got $code)"
pass "a key made with 'keygate keys create' passes (200), no key gets 401"

limit() { curl -s -D - -o /dev/null -H "X-API-Key: $key" "http://127.0.0.1:$listen/orders/1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-ratelimit-limit"{print $2}'; }
before=$(limit)
sed -i 's/pro: { per_second: 50,/pro: { per_second: 77,/' "$conf/keygate.yaml"
docker exec "$gate" sh -c 'kill -HUP 1'
after=$before
for _ in $(seq 50); do
  after=$(limit)
  [ "$after" = 77 ] && break
  sleep 0.1
done
[ "$after" = 77 ] || fail "README's reload command (kill -HUP 1) applies a new tier limit ($before -> $after)"
pass "README's reload command applies a new tier limit: X-RateLimit-Limit $before -> $after"

curl -s "http://127.0.0.1:$admin/metrics" | grep -q '^keygate_requests_total' || fail "/metrics serves keygate_requests_total"
pass "/metrics serves keygate's metrics"

t0=$(date +%s%N)
docker stop -t 30 "$gate" >/dev/null
t1=$(date +%s%N)
status=$(docker inspect -f '{{.State.ExitCode}}' "$gate")
[ "$status" = 0 ] || { docker logs "$gate" 2>&1 | tail -20; fail "docker stop (SIGTERM) exits 0 (got $status)"; }
stop_ms=$(((t1 - t0) / 1000000))
# Nothing is in flight: the drain ends at once, not after grace_period (10 s).
[ "$stop_ms" -lt 3000 ] || fail "docker stop of an idle keygate exits at once (took $stop_ms ms)"
pass "docker stop: drained and exited 0 in $stop_ms ms (grace_period 10s)"
docker logs "$gate" 2>&1 | grep -q '"target":"keygate::access"' || fail "JSON access log lines"
pass "JSON access log lines on stderr"

# --- as the README runs it: the image's own config, nothing mounted ---------------
# The demo API on the host, reached from the container as host.docker.internal.
docker rm -f "$upstream" >/dev/null
docker run -d --name "$upstream" --network host --read-only --cap-drop ALL "$image" \
  demo-upstream --listen "0.0.0.0:$api" >/dev/null
published=$(port)
volume="keygate-check-data-$$"
plain=keygate-check-plain-$$
containers+=("$plain")
run_plain() {
  docker run -d --name "$plain" -p "127.0.0.1:$published:8080" -v "$volume:/var/lib/keygate" \
    -e "KEYGATE_UPSTREAM_URL=http://host.docker.internal:$api" \
    --add-host host.docker.internal:host-gateway "$image" >/dev/null
  for _ in $(seq 100); do
    curl -fsS -o /dev/null "http://127.0.0.1:$published/health" 2>/dev/null && return 0
    sleep 0.1
  done
  docker logs "$plain" 2>&1 | tail -20
  fail "docker run -p $published:8080 -e KEYGATE_UPSTREAM_URL=... (the README's command) serves"
}
run_plain
key=$(docker exec "$plain" keygate keys create -c /etc/keygate/docker.yaml --name me --tier free --json |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$published/hello")
[ "$code" = 200 ] || fail "the README's docker run: a key made with docker exec passes (got $code)"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$published/portal/")
[ "$code" = 303 ] || fail "the README's docker run: the portal answers (got $code)"
docker rm -f "$plain" >/dev/null
run_plain
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-API-Key: $key" "http://127.0.0.1:$published/hello")
[ "$code" = 200 ] || fail "the key survives a new container on the same volume (got $code)"
docker rm -f "$plain" >/dev/null
docker volume rm "$volume" >/dev/null
pass "the README's docker run -p 8080:8080 -e KEYGATE_UPSTREAM_URL=...: reachable, key from docker exec passes, portal up, store kept on the volume"

echo
printf '%s\n' "${results[@]}"
