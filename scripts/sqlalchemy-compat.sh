#!/usr/bin/env bash
# SQLAlchemy's own test suite (pinned 2.0.59, from its PyPI source distribution) against
# PostgreSQL directly and through HeliosProxy in session and transaction mode, with psycopg 3
# and asyncpg; prints the tests that fail only through the proxy.
#
#   scripts/sqlalchemy-compat.sh            # the subset of issue #21 (long: ~1 h on 2 cores)
#   scripts/sqlalchemy-compat.sh --quick    # a smaller subset (a few minutes)
#
# Not part of scripts/test.sh (it does not fit CI's time with everything else); run it as a job
# of its own. Results go to target/sqlalchemy/results/; the exit status is 1 when any test
# fails through the proxy that passes directly.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
version=2.0.59
work="$root/target/sqlalchemy"
results="$work/results"
mkdir -p "$work" "$results"

python3 -m pip install --quiet --disable-pip-version-check "sqlalchemy==$version" pytest \
    "psycopg[binary]" asyncpg 2>/dev/null
src="$work/sqlalchemy-$version"
if [ ! -d "$src/test" ]; then
    (cd "$work" && python3 -m pip download --quiet --no-binary :all: --no-deps \
        "sqlalchemy==$version" -d . && tar xzf "sqlalchemy-$version.tar.gz")
fi

if [ "${1:-}" = "--quick" ]; then
    psycopg_tests=(test/dialect/postgresql/test_query.py test/orm/test_transaction.py
        test/sql/test_resultset.py test/sql/test_sequences.py)
    asyncpg_tests=(test/dialect/postgresql/test_async_pg.py test/orm/test_transaction.py)
else
    psycopg_tests=(test/dialect/postgresql test/dialect/test_suite.py test/engine
        test/orm/test_transaction.py test/sql/test_types.py test/sql/test_resultset.py
        test/sql/test_sequences.py test/sql/test_query.py test/sql/test_insert_exec.py)
    asyncpg_tests=(test/ext/asyncio test/dialect/postgresql/test_async_pg.py
        test/dialect/postgresql/test_types.py test/orm/test_transaction.py
        test/engine/test_transaction.py)
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# A PostgreSQL 15 server of its own, set up as SQLAlchemy's README.unittests asks.
bindir=$(pg_config --bindir)
data="$work/pgdata"
pg_port=$(free_port)
run_pg() { if [ "$(id -u)" -eq 0 ]; then su postgres -c "$*"; else sh -c "$*"; fi; }
rm -rf "$data" && mkdir -p "$data"
[ "$(id -u)" -eq 0 ] && chown postgres "$data" "$work"
run_pg "$bindir/initdb -D $data -U postgres --no-sync -E UTF8 --locale=C --auth=trust" >/dev/null
run_pg "$bindir/pg_ctl -D $data -l $data/log -w -o '-p $pg_port -k $data -c max_prepared_transactions=10 -c max_connections=200 -c fsync=off' start" >/dev/null
proxies=()
cleanup() {
    for p in "${proxies[@]}"; do kill "$p" 2>/dev/null || true; done
    run_pg "$bindir/pg_ctl -D $data -m immediate stop" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM
psql -h 127.0.0.1 -p "$pg_port" -U postgres -q -c "create database test" postgres
psql -h 127.0.0.1 -p "$pg_port" -U postgres -q test <<'SQL'
create schema test_schema;
create schema test_schema_2;
create extension hstore;
create extension citext;
SQL

cargo build -q -p heliosproxy
start_proxy() { # mode -> port
    local mode=$1 port admin conf
    port=$(free_port); admin=$(free_port)
    conf="$work/proxy-$mode.toml"
    cat >"$conf" <<EOF
listen_address = "127.0.0.1:$port"
admin_address = "127.0.0.1:$admin"
[pool]
mode = "$mode"
server_connections = 40
[auth]
method = "trust"
[[nodes]]
name = "primary"
host = "127.0.0.1"
port = $pg_port
EOF
    "$root/target/debug/heliosproxy" --config "$conf" >"$results/proxy-$mode.log" 2>&1 &
    proxies+=($!)
    for _ in $(seq 100); do
        psql -h 127.0.0.1 -p "$port" -U postgres -qtAc 'select 1' test >/dev/null 2>&1 && break
        sleep 0.1
    done
    echo "$port"
}
session_port=$(start_proxy session)
transaction_port=$(start_proxy transaction)

run_suite() { # label driver port tests...
    local label=$1 driver=$2 port=$3
    shift 3
    echo "sqlalchemy-compat: $label ($driver) ..." >&2
    (cd "$src" && timeout 7200 python3 -m pytest -q -p no:cacheprovider \
        --dburi "postgresql+$driver://postgres@127.0.0.1:$port/test" \
        --junitxml "$results/$label-$driver.xml" "$@" >"$results/$label-$driver.log" 2>&1) || true
    rm -f "$results/$label-$driver.failed"
    # A run that did not finish (no report, or pytest's own INTERNALERROR) counts as failed.
    if grep -q INTERNALERROR "$results/$label-$driver.log" || [ ! -s "$results/$label-$driver.xml" ]; then
        echo "sqlalchemy-compat: the $label ($driver) run did not complete; see $results/$label-$driver.log" >&2
        return 1
    fi
    python3 - "$results/$label-$driver.xml" >"$results/$label-$driver.failed" <<'PY'
import sys, xml.etree.ElementTree as ET
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        print(f"{case.get('classname')}::{case.get('name')}")
PY
    tail -n 1 "$results/$label-$driver.log" >&2
}

extra=0
for driver in psycopg asyncpg; do
    if [ "$driver" = psycopg ]; then tests=("${psycopg_tests[@]}"); else tests=("${asyncpg_tests[@]}"); fi
    run_suite direct "$driver" "$pg_port" "${tests[@]}" || exit 2
    for mode in session transaction; do
        port_var="${mode}_port"
        if ! run_suite "$mode" "$driver" "${!port_var}" "${tests[@]}"; then
            extra=$((extra + 1))
            continue
        fi
        only=$(comm -13 <(sort -u "$results/direct-$driver.failed") <(sort -u "$results/$mode-$driver.failed"))
        n=$(printf '%s' "$only" | grep -c . || true)
        echo "== $driver, $mode mode: $n tests fail through the proxy that pass directly"
        [ -n "$only" ] && printf '%s\n' "$only" | tee "$results/$mode-$driver.extra"
        extra=$((extra + n))
    done
done
[ "$extra" -eq 0 ]
