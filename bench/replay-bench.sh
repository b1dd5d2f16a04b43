#!/usr/bin/env bash
# replay-bench.sh — time-travel replay throughput: STATEMENTS statements recorded through
# HeliosProxy's journal (pgbench -S -M prepared, CLIENTS sessions), then the whole window
# replayed as fast as possible against the same server (a DSN, reads only) with rows
# compared, and the replay's own figures printed: statements replayed, elapsed, statements/s.
#
#   bench/replay-bench.sh     # knobs: STATEMENTS [100000], CLIENTS [8], CONNECTIONS [8],
#                             #        DIFF [rows], SCALE [10], HELIOSPROXY_BIN
set -euo pipefail
STATEMENTS=${STATEMENTS:-100000}
CLIENTS=${CLIENTS:-8}
CONNECTIONS=${CONNECTIONS:-8}
DIFF=${DIFF:-rows}
SCALE=${SCALE:-10}
REPO_ROOT=$(cd "$(dirname "$0")/.." && pwd)
HELIOS_BIN=${HELIOSPROXY_BIN:-$REPO_ROOT/target/release/heliosproxy}
PGBIN=${PG_BINDIR:-$(pg_config --bindir)}
export PGSSLMODE=disable
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[[ -x $HELIOS_BIN ]] || (cd "$REPO_ROOT" && cargo build --release -p heliosproxy)
if [[ $EUID -eq 0 ]]; then as_user() { runuser -u postgres -- "$@"; }; else as_user() { "$@"; }; fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

TMP=$(mktemp -d /tmp/replay-bench.XXXXXX)
chmod 755 "$TMP"
PG_PORT=$(port) PROXY_PORT=$(port) ADMIN_PORT=$(port)
cleanup() {
    [[ -n ${PROXY_PID:-} ]] && kill "$PROXY_PID" 2>/dev/null
    as_user "$PGBIN/pg_ctl" -D "$TMP/pgdata" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$TMP"
}
trap cleanup EXIT
chown "$(id -u postgres 2>/dev/null || id -u)" "$TMP"
as_user "$PGBIN/initdb" -D "$TMP/pgdata" -A trust -U postgres --no-sync >/dev/null
printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\nfsync = off\n" \
    "$PG_PORT" "$TMP" >>"$TMP/pgdata/postgresql.conf"
as_user "$PGBIN/pg_ctl" -D "$TMP/pgdata" -l "$TMP/pg.log" -w start >/dev/null
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1
cat >"$TMP/heliosproxy.toml" <<TOML
listen_address = "127.0.0.1:$PROXY_PORT"
admin_address = "127.0.0.1:$ADMIN_PORT"
[pool]
mode = "transaction"
server_connections = $CLIENTS
[auth]
method = "trust"
[admin]
api_key = "bench"
journal_api_key = "bench"               # a DSN target receives every statement: the journal's key
[journal]
dir = "$TMP/journal"
[[nodes]]
name = "primary"
host = "127.0.0.1"
port = $PG_PORT
role = "primary"
TOML
"$HELIOS_BIN" --config "$TMP/heliosproxy.toml" >"$TMP/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in {1..100}; do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PROXY_PORT" && break; sleep 0.1; done

from=$(now_ms)
log "recording $STATEMENTS statements (pgbench -S -M prepared, $CLIENTS clients)"
"$PGBIN/pgbench" -S -n -M prepared -c "$CLIENTS" -t $((STATEMENTS / CLIENTS)) \
    -h 127.0.0.1 -p "$PROXY_PORT" -U postgres postgres | grep -E '^(tps|number of transactions actually)'
sleep 1
to=$(now_ms)
log "replaying the window: $CONNECTIONS connections, diff_mode $DIFF"
id=$(curl -sf -X POST -H 'X-API-Key: bench' -H 'Content-Type: application/json' \
    -d "{\"from\":$from,\"to\":$to,\"target\":\"postgres://postgres@127.0.0.1:$PG_PORT/postgres\",\"allow_writes\":true,\"diff_mode\":\"$DIFF\",\"max_connections\":$CONNECTIONS}" \
    "http://127.0.0.1:$ADMIN_PORT/api/replay" | python3 -c 'import json,sys; print(json.load(sys.stdin)["replay_id"])') \
    || die "POST /api/replay failed"
while :; do
    status=$(curl -sf -H 'X-API-Key: bench' "http://127.0.0.1:$ADMIN_PORT/api/replay/$id")
    [[ $status == *'"state":"running"'* ]] || break
    sleep 0.2
done
echo "$status" | python3 -c '
import json, sys
s = json.load(sys.stdin)
print("replay: %d statements in %d sessions, %d replayed in %d ms = %.0f statements/s; errors %d, diff_count %d"
      % (s["statements"], s["sessions"], s["statements_replayed"], s["elapsed_ms"],
         s["statements_per_s"], s["errors"], s["diff_count"]))'
