#!/usr/bin/env bash
# Validates what ships for deployment: the Kubernetes manifests with
# `kubernetes-validate --strict` (from PyPI, in .venv-deploy), the custom resources
# it has no schema for (Istio, Envoy Gateway) and the Helm values by their shape
# and what they name, and the keygate configs inside the ConfigMaps with
# `keygate check`.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-deploy
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check kubernetes-validate pyyaml
fi
manifests=$(ls deploy/kubernetes/*.yaml deploy/kubernetes/authorizer/*.yaml | grep -v '\.values\.yaml$')
# shellcheck disable=SC2086
"$venv/bin/kubernetes-validate" --strict $manifests
"$venv/bin/python" scripts/validate-custom-resources.py deploy/kubernetes/authorizer
cargo build --quiet
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$venv/bin/python" - "$work" <<'PY'
import sys, yaml
for i, path in enumerate(["deploy/kubernetes/configmap.yaml",
                          "deploy/kubernetes/authorizer/keygate-authorizer.yaml"]):
    with open(path) as f:
        cm = next(d for d in yaml.safe_load_all(f) if d["kind"] == "ConfigMap")
    open(f"{sys.argv[1]}/keygate-{i}.yaml", "w").write(cm["data"]["keygate.yaml"])
PY
for config in "$work"/keygate-*.yaml; do
  KEYGATE_DATABASE_URL=postgres://keygate@db:5432/keygate KEYGATE_REDIS_URL=redis://redis:6379 \
    KEYGATE_JWT_SECRET=0123456789abcdef0123456789abcdef0123456789abcdef \
    target/debug/keygate check -c "$config"
done
echo "deploy: manifests and the ConfigMap's config are valid"
