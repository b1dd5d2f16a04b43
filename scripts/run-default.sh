#!/usr/bin/env bash
# First run: installs PostgreSQL when absent, builds the proxy and the first-party components,
# and serves a local PostgreSQL that it starts itself on 127.0.0.1:6432 (transaction pooling),
# with the router and llm-guardrail components signed by a key made on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
CARGO_TARGET_DIR=target/wasm cargo build --profile wasm --target wasm32-wasip2 \
    -p helios-router -p helios-llm-guardrail
exec cargo run --release -p heliosproxy -- "$@"
