#!/usr/bin/env bash
# First run: installs PostgreSQL when absent, builds the proxy, and serves a local PostgreSQL
# that it starts itself on 127.0.0.1:6432 (transaction pooling).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --release -p heliosproxy -- "$@"
