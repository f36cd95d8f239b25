#!/usr/bin/env bash
# Makes sure the services the shared-backend tests use are running: PostgreSQL on
# 127.0.0.1:5432 (trust auth, database `test`) and Redis on 127.0.0.1:6379, plus the
# `redis-server` binary (tests start Redis servers of their own to kill them).
# Starts them if they are stopped; installs them from Debian if they are missing.
# With CI=true a service that cannot be brought up is a failure; otherwise the tests
# that need it are skipped (loudly).
set -uo pipefail
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
ci() { [ "${CI:-}" = true ]; }
fail() { if ci; then echo "services: $*" >&2; exit 1; else echo "services: WARNING: $* (tests needing it will be skipped)" >&2; fi; }

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v pg_isready >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "services: installing ${need[*]}" >&2
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [[ " ${need[*]} " == *" postgresql "* ]]; then
    # A fresh cluster: trust loopback connections, as the tests expect.
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf 2>/dev/null | head -1)
    [ -n "$hba" ] && $SUDO sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
fi

if ! pg_up; then
  echo "services: starting PostgreSQL" >&2
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start 2>/dev/null \
    || $SUDO pg_ctlcluster "$(ls /etc/postgresql | head -1)" main start
fi
if ! redis_up; then
  echo "services: starting Redis" >&2
  $SUDO mkdir -p /var/lib/redis /var/log/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
fi
for _ in $(seq 1 50); do pg_up && redis_up && break; sleep 0.2; done

if pg_up; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" 2>/dev/null | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null 2>&1 \
    || fail "cannot create database test"
  psql -h 127.0.0.1 -U postgres -d test -c "SELECT 1" >/dev/null 2>&1 || fail "PostgreSQL does not accept postgres@127.0.0.1/test"
else
  fail "PostgreSQL is not running on 127.0.0.1:5432"
fi
redis_up || fail "Redis is not running on 127.0.0.1:6379"
command -v redis-server >/dev/null || fail "redis-server is not installed"
exit 0
