#!/usr/bin/env bash
# Runs the frontend-message fuzz target for a short, bounded time (default 20 s).
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
RUSTC_BOOTSTRAP=1 cargo fuzz run frontend_messages -- -max_total_time="${FUZZ_SECONDS:-20}" 2>&1 | tail -3
