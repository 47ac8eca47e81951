#!/usr/bin/env bash
# The project's one test command: formatting, lints, every Rust test, and the end-to-end
# tests that drive our servers through the stock @rails/actioncable consumer.
# It installs what it needs on a fresh machine (npm packages) by itself.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test"
cargo test --workspace

if [[ -f js-client/package.json ]]; then
  step "js-client: npm ci"
  (cd js-client && npm ci --no-audit --no-fund)
  step "js-client: build example servers"
  cargo build --workspace --bins
  step "js-client: node --test"
  (cd js-client && npm test)
fi
step "all tests passed"
