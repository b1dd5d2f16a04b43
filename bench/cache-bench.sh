#!/usr/bin/env bash
# cache-bench.sh — the result cache against a 5 ms query, in one run: HeliosProxy without
# the cache vs HeliosProxy with it (the cache-policy component caching the statement), plus
# direct PostgreSQL and PgBouncer for reference. The statement joins a table to a function
# that sleeps 5 ms, declared IMMUTABLE so a cache may keep its result (a stand-in for an
# expensive read). pgbench picks one of 100 ids per transaction, so after the first pass
# every statement is a hit.
#
#   bench/cache-bench.sh                 # knobs: CLIENTS [8], DURATION [10], MODES
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
script=$(mktemp /tmp/cache-bench.XXXXXX.sql)
trap 'rm -f "$script"' EXIT
cat >"$script" <<'SQL'
\set id random(1, 100)
SELECT i.name, slow_name(i.id) FROM bench_items i WHERE i.id = :id;
SQL
export SETUP_SQL="
CREATE TABLE bench_items (id int PRIMARY KEY, name text);
INSERT INTO bench_items SELECT g, 'item ' || g FROM generate_series(1, 100) g;
CREATE FUNCTION slow_name(int) RETURNS text LANGUAGE sql IMMUTABLE
  AS \$\$ SELECT 'n' || \$1 FROM pg_sleep(0.005) \$\$;"
export SCRIPT=$script
export VARIANTS=${VARIANTS:-cache}
export CLIENTS=${CLIENTS:-8}
export MODES=${MODES:-"simple prepared"}
export WARMUP=0
exec "$here/pgbench-compare.sh"
