#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs, then unit, end-to-end and lint checks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export CARGO_TERM_COLOR=never
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace --all-targets
scripts/fuzz-smoke.sh
