#!/usr/bin/env bash
# The test command of the README: unit tests beside the code and black-box tests
# that start the real binary in front of a real upstream, PostgreSQL and Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
KEYGATE_TEST_PYTHON=$(bash scripts/test-python.sh)
export KEYGATE_TEST_PYTHON
# tests/it/abuse.rs holds 10,000 connections open at once: the test process and
# keygate each need that many descriptors.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
RUST_TEST_THREADS=4 cargo test --all-targets
