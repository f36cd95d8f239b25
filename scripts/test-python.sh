#!/usr/bin/env bash
# Makes .venv-test, a Python with PyJWT and cryptography: the independent JWT
# implementation the tests and benchmarks mint tokens with. Prints its python path.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$PWD/.venv-test/bin/python
if ! "$py" -c "import jwt, cryptography" 2>/dev/null; then
  python3 -m venv .venv-test >&2
  "$py" -m pip install -q pyjwt cryptography >&2
fi
echo "$py"
