#!/usr/bin/env bash
# Installs what building and testing keygate needs on a fresh Debian machine:
# cmake (Pingora's zlib-ng, aws-lc), a C compiler, promtool (metrics checks), and
# Debian's Chromium with its chromedriver and a font (the portal's browser test),
# and nginx (the authorizer's tests put the real thing in front of keygate).
# Idempotent; only runs apt-get when something is missing.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v cc >/dev/null || need+=(build-essential)
python3 -c "import venv, ensurepip" 2>/dev/null || need+=(python3-venv)
if [ "${KEYGATE_SETUP_PROMTOOL:-1}" = 1 ]; then command -v promtool >/dev/null || need+=(prometheus); fi
if [ "${KEYGATE_SETUP_BROWSER:-1}" = 1 ]; then
  command -v chromium >/dev/null || need+=(chromium)
  command -v chromedriver >/dev/null || need+=(chromium-driver)
  [ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
fi
# nginx (with auth_request) in front of keygate's authorizer, in the authorizer tests.
if [ "${KEYGATE_SETUP_PROXIES:-1}" = 1 ]; then command -v nginx >/dev/null || need+=(nginx-light); fi
if [ "${KEYGATE_SETUP_WRK:-0}" = 1 ]; then command -v wrk >/dev/null || need+=(wrk); fi
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
