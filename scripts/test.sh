#!/usr/bin/env bash
# The whole test suite: formatting, lints, and every test (unit, integration, interop).
# Installs or starts what the tests need; works on a fresh Debian machine with the Rust
# toolchain. Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked "$@"
