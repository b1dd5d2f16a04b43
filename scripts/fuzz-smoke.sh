#!/usr/bin/env bash
# Runs each fuzz target for a short, bounded time (FUZZ_SECONDS each, default 20 s): the
# frontend-message decoder, then the SQL lexer against PostgreSQL's own scanner (libpg_query,
# C code its build script compiles; the first build takes a few minutes).
# cargo-fuzz needs nightly-only flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
# Builds take no lock of their own: on a shared machine wrap the whole script in one.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
seconds="${FUZZ_SECONDS:-20}"

# Shows the tail of a passing run, and enough of a failing one to see the input and the panic.
run() {
    local log status=0
    log="$(mktemp)"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -eq 0 ]; then tail -3 "$log"; else tail -60 "$log"; fi
    rm -f "$log"
    return "$status"
}

run frontend_messages -- -max_total_time="$seconds"
# New inputs go to the scratch corpus (git-ignored); the tracked seeds are only read.
mkdir -p corpus/sql_scanner
run sql_scanner "$PWD/corpus/sql_scanner" "$PWD/seeds/sql_scanner" -- \
    -max_total_time="$seconds" -dict="$PWD/sql_scanner.dict"
