#!/usr/bin/env bash
# Validates what ships for deployment: the Kubernetes manifests with
# `kubernetes-validate --strict` (from PyPI, in .venv-deploy), and the keygate config
# inside the ConfigMap with `keygate check`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-deploy
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate pyyaml
fi
"$venv/bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml
cargo build --quiet
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$venv/bin/python" - "$work/keygate.yaml" <<'PY'
import sys, yaml
with open("deploy/kubernetes/configmap.yaml") as f:
    cm = yaml.safe_load(f)
open(sys.argv[1], "w").write(cm["data"]["keygate.yaml"])
PY
KEYGATE_DATABASE_URL=postgres://keygate@db:5432/keygate KEYGATE_REDIS_URL=redis://redis:6379 \
  KEYGATE_JWT_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef \
  target/debug/keygate check -c "$work/keygate.yaml"
echo "deploy: manifests and the ConfigMap's config are valid"
