#!/usr/bin/env bash
# Dependency audit with cargo deny and the committed policy (deny.toml): licenses,
# bans (wildcards, yanked crates) and sources (crates.io only) always; RustSec
# advisories when the advisory database (a git repository on github.com) can be
# reached. Where it cannot, the run says so plainly instead of passing silently.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deny >/dev/null || cargo install cargo-deny --locked --quiet
cargo deny check licenses bans sources
if timeout 20 git ls-remote https://github.com/RustSec/advisory-db HEAD >/dev/null 2>&1; then
  cargo deny check advisories
else
  echo "audit: advisories NOT CHECKED: the RustSec database (github.com) is unreachable from this machine"
fi
echo "audit: licenses in the dependency tree (crates per license):"
cargo deny list --layout license 2>/dev/null | sed -E 's/^([^(]+)\(([0-9]+)\).*/  \1\2/'
