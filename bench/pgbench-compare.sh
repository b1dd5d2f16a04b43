#!/usr/bin/env bash
# pgbench-compare.sh — read-only pgbench TPS comparison, all in one run:
#
#   * direct PostgreSQL 15
#   * PgBouncer    (pool_mode = transaction, default_pool_size = $POOL)
#   * HeliosProxy  (mode = "transaction",    server_connections = $POOL)
#
# for each pgbench protocol mode (simple, extended, prepared). The three
# targets are run back to back for each mode so that they see the same machine
# state. A failing pgbench run (non-zero exit, e.g. PgBouncer < 1.21 does not
# support prepared statements in transaction mode) is reported as `error`.
#
# Everything (PostgreSQL cluster, PgBouncer, HeliosProxy) lives in a temp dir
# on free loopback ports and is torn down on exit.
#
# Environment knobs (defaults in brackets):
#   CLIENTS [50]         pgbench clients (-c)
#   THREADS [2]          pgbench threads (-j)
#   DURATION [10]        seconds per pgbench run (-T)
#   POOL [10]            server connections per pooler
#   SCALE [10]           pgbench -i scale factor
#   WARMUP [3]           seconds of direct warm-up before measuring (0 = off)
#   MODES ["simple extended prepared"]
#   HELIOSPROXY_BIN [<repo>/target/release/heliosproxy] (built if missing)
#   EXTRA_HELIOS_CONFIG  TOML text appended to the HeliosProxy config
#   SKIP_HELIOS [0]      1 = do not build/run HeliosProxy (column says `skipped`)
#   COMPONENTS [0]       1 = HeliosProxy runs with the router and llm-guardrail components
#                        on every statement (built for wasm32-wasip2 into target/wasm)
#   VARIANTS [""]        extra HeliosProxy instances measured in the same run, each with one
#                        feature on: `journal` (statement journal, fsync interval) and/or `ha`
#                        (topology tracking + transaction replay), and/or `cache` (the result
#                        cache with the cache-policy component), and/or `no_analytics` (query
#                        analytics and the proxy's tables off: their cost), and/or `shadow` (a
#                        shadow run mirroring SHADOW_SAMPLE [1] of the statements to a second
#                        PostgreSQL cluster on this machine, loaded alike), and/or `baseline` (the same
#                        config on another build, BASELINE_BIN: before/after a change, same run);
#                        reported against plain Helios
#   BUILTIN [-S]         pgbench built-in script flag: -S select-only, -N simple-update,
#                        `tpcb` for the default TPC-B-like script
#   SCRIPT [""]          a pgbench script file run instead of BUILTIN (-f)
#   SETUP_SQL [""]       SQL run on the database after pgbench -i (tables, functions the
#                        SCRIPT needs)
#   PGBOUNCER_BIN [/usr/sbin/pgbouncer]
#   PG_BINDIR [$(pg_config --bindir)]
#   BENCH_USER [postgres, else nobody]  unprivileged user used when run as root
#   KEEP_TMP [0]         1 = keep the temp dir (logs, configs) for inspection
set -euo pipefail

# ---------------------------------------------------------------- settings --
CLIENTS=${CLIENTS:-50}
THREADS=${THREADS:-2}
DURATION=${DURATION:-10}
POOL=${POOL:-10}
SCALE=${SCALE:-10}
WARMUP=${WARMUP:-3}
MODES=${MODES:-"simple extended prepared"}
SKIP_HELIOS=${SKIP_HELIOS:-0}
EXTRA_HELIOS_CONFIG=${EXTRA_HELIOS_CONFIG:-}
COMPONENTS=${COMPONENTS:-0}
VARIANTS=${VARIANTS:-}
BUILTIN=${BUILTIN:--S}
[[ $BUILTIN == tpcb ]] && BUILTIN=""
SCRIPT=${SCRIPT:-}
SETUP_SQL=${SETUP_SQL:-}
if [[ -n $SCRIPT ]]; then
    SCRIPT=$(realpath "$SCRIPT")
    BUILTIN="-f $SCRIPT"
fi
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
KEEP_TMP=${KEEP_TMP:-0}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")

HELIOS_BIN=${HELIOSPROXY_BIN:-$REPO_ROOT/target/release/heliosproxy}
# A relative HELIOSPROXY_BIN is relative to the caller's cwd; make it absolute
# because we cd into the temp dir later.
[[ $HELIOS_BIN == /* ]] || HELIOS_BIN="$PWD/$HELIOS_BIN"

# Benchmark plumbing, not a TLS/GSS test: same plain connection for every target.
export PGSSLMODE=disable PGGSSENCMODE=disable
unset PGHOST PGHOSTADDR PGPORT PGUSER PGDATABASE PGPASSWORD PGSERVICE PGOPTIONS

log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------ prerequisites --
# PostgreSQL server binaries are not on PATH on Debian; find the bin dir that
# actually contains initdb.
find_pg_bindir() {
    local d
    for d in "${PG_BINDIR:-}" "$(pg_config --bindir 2>/dev/null || true)" /usr/lib/postgresql/15/bin; do
        if [[ -n $d && -x $d/initdb && -x $d/pgbench ]]; then
            echo "$d"
            return 0
        fi
    done
    return 1
}

if ! PGBIN=$(find_pg_bindir) || [[ ! -x $PGBOUNCER_BIN ]]; then
    if [[ $EUID -ne 0 ]]; then
        die "PostgreSQL 15 server binaries and/or $PGBOUNCER_BIN are missing; install them with: sudo apt-get install -y postgresql-15 pgbouncer"
    fi
    log "installing postgresql-15 and pgbouncer with apt-get"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql-15 pgbouncer
    PGBIN=$(find_pg_bindir) || die "PostgreSQL server binaries still not found after install"
    [[ -x $PGBOUNCER_BIN ]] || die "$PGBOUNCER_BIN still not found after install"
fi

# PostgreSQL (and, by convention, PgBouncer) refuse to run as root: use an
# unprivileged account for every server process in that case.
if [[ $EUID -eq 0 ]]; then
    if [[ -n ${BENCH_USER:-} ]]; then
        RUN_USER=$BENCH_USER
    elif id -u postgres >/dev/null 2>&1; then
        RUN_USER=postgres
    else
        RUN_USER=nobody
    fi
    id -u "$RUN_USER" >/dev/null 2>&1 || die "user $RUN_USER does not exist"
    command -v runuser >/dev/null || die "runuser (util-linux) is required when running as root"
    as_user() { runuser -u "$RUN_USER" -- "$@"; }
else
    RUN_USER=$(id -un)
    as_user() { "$@"; }
fi

# HeliosProxy: build it (release) if the binary is not there yet.
if [[ $SKIP_HELIOS != 1 && ! -x $HELIOS_BIN ]]; then
    command -v cargo >/dev/null || die "$HELIOS_BIN not found and cargo is not installed (set HELIOSPROXY_BIN or SKIP_HELIOS=1)"
    log "building HeliosProxy: cargo build --release -p heliosproxy"
    (cd "$REPO_ROOT" && cargo build --release -p heliosproxy)
    [[ -x $HELIOS_BIN ]] || die "build finished but $HELIOS_BIN does not exist (set HELIOSPROXY_BIN)"
fi

# ------------------------------------------------------------- temp dir ------
TMP=$(mktemp -d /tmp/pgbench-compare.XXXXXX)
chmod 755 "$TMP"
PGDATA_DIR=$TMP/pgdata
SOCK_DIR=$TMP/sock
PGBOUNCER_PID=""
HELIOS_PID=""
VARIANT_PIDS=""
PG_STARTED=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    for pid in $HELIOS_PID $VARIANT_PIDS; do
        kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    if [[ -n $PGBOUNCER_PID ]]; then
        kill "$PGBOUNCER_PID" 2>/dev/null
        for _ in {1..50}; do kill -0 "$PGBOUNCER_PID" 2>/dev/null || break; sleep 0.1; done
    fi
    if [[ $PG_STARTED == 1 ]]; then
        as_user "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ ${SHADOW_STARTED:-0} == 1 ]]; then
        as_user "$PGBIN/pg_ctl" -D "$SHADOW_DATA" -m immediate -w stop >/dev/null 2>&1
    fi
    if [[ $KEEP_TMP == 1 ]]; then
        log "kept temp dir $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Processes started via runuser inherit our cwd; make sure it is accessible.
cd "$TMP"

# Pick a free TCP port on 127.0.0.1, below the default ephemeral range
# (32768+) so pgbench's own client sockets cannot collide with it.
USED_PORTS=" "
port_in_use() {
    if command -v ss >/dev/null; then
        [[ -n $(ss -Htan "( sport = :$1 )" 2>/dev/null) ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}
# free_port VAR: store a free port in VAR (no subshell, so USED_PORTS persists).
free_port() {
    local -n _port_out=$1
    local p
    for _ in {1..200}; do
        p=$((20000 + RANDOM % 12000))
        [[ $USED_PORTS == *" $p "* ]] && continue
        port_in_use "$p" && continue
        USED_PORTS+="$p "
        _port_out=$p
        return 0
    done
    die "could not find a free port"
}
free_port PG_PORT
free_port BOUNCER_PORT
free_port HELIOS_PORT
free_port HELIOS_ADMIN_PORT

# Wait until something speaks the PostgreSQL protocol on 127.0.0.1:$1.
wait_ready() {
    local port=$1 pid=${2:-} i
    for i in {1..40}; do
        if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; then
            return 0
        fi
        if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1 # process died
        fi
        sleep 0.5
    done
    return 1
}

# ------------------------------------------------------------- PostgreSQL ----
log "PostgreSQL: $("$PGBIN/postgres" --version) in $TMP (user $RUN_USER, port $PG_PORT)"
mkdir -p "$SOCK_DIR"
chown -R "$RUN_USER:" "$TMP"

as_user "$PGBIN/initdb" -D "$PGDATA_DIR" -A trust -U postgres -E UTF8 --no-locale --no-sync \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

cat >>"$PGDATA_DIR/postgresql.conf" <<EOF

# --- pgbench-compare.sh ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$SOCK_DIR'
max_connections = 200
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF

PG_STARTED=1
as_user "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$TMP/postgres.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$TMP/postgres.log" >&2; die "PostgreSQL failed to start"; }

log "pgbench -i -s $SCALE"
"$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres \
    >"$TMP/pgbench-init.log" 2>&1 || { cat "$TMP/pgbench-init.log" >&2; die "pgbench -i failed"; }
if [[ -n $SETUP_SQL ]]; then
    "$PGBIN/psql" -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres -c "$SETUP_SQL" \
        >"$TMP/setup.log" 2>&1 || { cat "$TMP/setup.log" >&2; die "SETUP_SQL failed"; }
fi

# --------------------------------------------------------------- PgBouncer ---
echo '"postgres" ""' >"$TMP/userlist.txt"
cat >"$TMP/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$PG_PORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = 1000
logfile = $TMP/pgbouncer.log
pidfile = $TMP/pgbouncer.pid
EOF
chown "$RUN_USER:" "$TMP/userlist.txt" "$TMP/pgbouncer.ini"

BOUNCER_OK=0
log "PgBouncer: $("$PGBOUNCER_BIN" --version | head -n1) on port $BOUNCER_PORT"
# -d: daemonize; the real pid is read back from the pidfile.
if as_user "$PGBOUNCER_BIN" -d "$TMP/pgbouncer.ini" >"$TMP/pgbouncer.out" 2>&1; then
    for _ in {1..50}; do [[ -s $TMP/pgbouncer.pid ]] && break; sleep 0.1; done
    PGBOUNCER_PID=$(cat "$TMP/pgbouncer.pid" 2>/dev/null || true)
    if [[ -n $PGBOUNCER_PID ]] && wait_ready "$BOUNCER_PORT" "$PGBOUNCER_PID"; then
        BOUNCER_OK=1
    fi
fi
if [[ $BOUNCER_OK != 1 ]]; then
    log "PgBouncer failed to start; its column will say 'error'"
    tail -n 20 "$TMP/pgbouncer.out" "$TMP/pgbouncer.log" >&2 2>/dev/null || true
fi

# ------------------------------------------------------------- HeliosProxy ---
HELIOS_OK=0
if [[ $SKIP_HELIOS == 1 ]]; then
    log "HeliosProxy: skipped (SKIP_HELIOS=1)"
else
    cat >"$TMP/heliosproxy.toml" <<EOF
listen_address = "127.0.0.1:$HELIOS_PORT"
admin_address = "127.0.0.1:$HELIOS_ADMIN_PORT"

[pool]
mode = "transaction"
max_connections = 1000
server_connections = $POOL

[auth]
method = "trust"

[[nodes]]
name = "primary"
host = "127.0.0.1"
port = $PG_PORT
role = "primary"
EOF
    if [[ $COMPONENTS == 1 ]]; then
        log "building components (router, llm-guardrail) for wasm32-wasip2"
        (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$REPO_ROOT/target/wasm" cargo build -q --profile wasm \
            --target wasm32-wasip2 -p helios-router -p helios-llm-guardrail)
        WASM_DIR="$REPO_ROOT/target/wasm/wasm32-wasip2/wasm"
        cat >>"$TMP/heliosproxy.toml" <<EOF

[[plugins]]
name = "router"
source = "$WASM_DIR/helios_router.wasm"
grants = ["topology", "clock"]

[[plugins]]
name = "guardrail"
source = "$WASM_DIR/helios_llm_guardrail.wasm"
[plugins.config]
large_tables = ["pgbench_history"]
tenant_tables = ["tenants"]
EOF
    fi
    if [[ -n $EXTRA_HELIOS_CONFIG ]]; then
        printf '\n# --- EXTRA_HELIOS_CONFIG ---\n%s\n' "$EXTRA_HELIOS_CONFIG" >>"$TMP/heliosproxy.toml"
    fi

    log "HeliosProxy: $HELIOS_BIN on port $HELIOS_PORT"
    # HeliosProxy may run as root; $! is the proxy itself.
    "$HELIOS_BIN" --config "$TMP/heliosproxy.toml" >"$TMP/heliosproxy.log" 2>&1 &
    HELIOS_PID=$!
    if wait_ready "$HELIOS_PORT" "$HELIOS_PID"; then
        HELIOS_OK=1
    else
        log "HeliosProxy failed to become ready; its column will say 'error'"
        tail -n 20 "$TMP/heliosproxy.log" >&2 || true
    fi
fi

# The shadow variant's second cluster, loaded like the first; started on demand.
SHADOW_SAMPLE=${SHADOW_SAMPLE:-1}
SHADOW_DATA=$TMP/shadow-data
SHADOW_PORT=""
start_shadow_cluster() {
    free_port SHADOW_PORT
    as_user "$PGBIN/initdb" -D "$SHADOW_DATA" -A trust -U postgres -E UTF8 --no-locale --no-sync \
        >"$TMP/shadow-initdb.log" 2>&1 || die "initdb (shadow) failed"
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nmax_connections = 200\nfsync = off\n" \
        "$SHADOW_PORT" "$SOCK_DIR" >>"$SHADOW_DATA/postgresql.conf"
    as_user "$PGBIN/pg_ctl" -D "$SHADOW_DATA" -l "$TMP/shadow.log" -w -t 60 start >/dev/null \
        || die "shadow PostgreSQL failed to start"
    SHADOW_STARTED=1
    "$PGBIN/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$SHADOW_PORT" -U postgres postgres \
        >"$TMP/shadow-init.log" 2>&1 || die "pgbench -i (shadow) failed"
    extra_admin="[admin]
api_key = \"bench\"
journal_api_key = \"bench\""
}
# shadow_start ADMIN_PORT: starts a shadow run for the whole benchmark.
shadow_start() {
    curl -sf -X POST -H 'X-API-Key: bench' -H 'Content-Type: application/json' \
        -d "{\"target\":\"postgres://postgres@127.0.0.1:$SHADOW_PORT/postgres\",\"sample\":$SHADOW_SAMPLE,\"window\":86400}" \
        "http://127.0.0.1:$1/api/shadow/start" >"$TMP/shadow-start.json" \
        || die "POST /api/shadow/start failed"
    log "shadow run started (sample $SHADOW_SAMPLE) against port $SHADOW_PORT"
}

# Extra HeliosProxy instances: the same config plus one feature each.
declare -A VARIANT_PORT VARIANT_OK VARIANT_ADMIN
for variant in $VARIANTS; do
    free_port vport
    free_port vadmin
    case $variant in
        journal) extra="[journal]
dir = \"$TMP/journal\"
fsync = \"interval\"" ;;
        ha) extra="[ha]
user = \"postgres\"
failover = \"manual\"" ;;
        cache)
            (cd "$REPO_ROOT" && CARGO_TARGET_DIR="$REPO_ROOT/target/wasm" cargo build -q --profile wasm \
                --target wasm32-wasip2 -p helios-cache-policy)
            extra="[[plugins]]
name = \"cache-policy\"
source = \"$REPO_ROOT/target/wasm/wasm32-wasip2/wasm/helios_cache_policy.wasm\"
[plugins.config]
default_ttl_s = 600
immutable_functions = [\"slow_name\"]

[cache]
l1_bytes = 67108864" ;;
        shadow) start_shadow_cluster
            extra=$extra_admin ;;
        no_analytics) extra="[analytics]
enabled = false
sql_tables = false" ;;
        baseline) [[ -x ${BASELINE_BIN:-} ]] || die "variant baseline needs BASELINE_BIN (an executable)"
            extra="" ;;
        *) die "unknown variant $variant (journal, ha, cache, no_analytics, shadow, baseline)" ;;
    esac
    bin=$HELIOS_BIN
    [[ $variant == baseline ]] && bin=$BASELINE_BIN
    sed -e "s/^listen_address = .*/listen_address = \"127.0.0.1:$vport\"/" \
        -e "s/^admin_address = .*/admin_address = \"127.0.0.1:$vadmin\"/" \
        "$TMP/heliosproxy.toml" >"$TMP/heliosproxy-$variant.toml"
    printf '\n%s\n' "$extra" >>"$TMP/heliosproxy-$variant.toml"
    "$bin" --config "$TMP/heliosproxy-$variant.toml" >"$TMP/heliosproxy-$variant.log" 2>&1 &
    VARIANT_PIDS+=" $!"
    VARIANT_PORT[$variant]=$vport
    if wait_ready "$vport" "$!"; then
        VARIANT_OK[$variant]=1
        log "HeliosProxy+$variant on port $vport"
        if [[ $variant == shadow ]]; then
            VARIANT_ADMIN[shadow]=$vadmin
            shadow_start "$vadmin"
        fi
    else
        VARIANT_OK[$variant]=0
        log "HeliosProxy+$variant failed to start"
        tail -n 20 "$TMP/heliosproxy-$variant.log" >&2 || true
    fi
done

# ------------------------------------------------------------- benchmark -----
declare -A PORT=([direct]=$PG_PORT [pgbouncer]=$BOUNCER_PORT [heliosproxy]=$HELIOS_PORT)
for variant in $VARIANTS; do PORT[helios+$variant]=${VARIANT_PORT[$variant]}; done
declare -A RESULT

# run_pgbench TARGET MODE -> prints TPS, or `error`.
run_pgbench() {
    local target=$1 mode=$2 out=$TMP/pgbench-$1-$2.log tps
    if timeout -k 5 $((DURATION + 60)) \
        "$PGBIN/pgbench" $BUILTIN -n -c "$CLIENTS" -j "$THREADS" -T "$DURATION" -M "$mode" \
        -h 127.0.0.1 -p "${PORT[$target]}" -U postgres postgres >"$out" 2>&1; then
        tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$out")
        if [[ -n $tps ]]; then
            echo "$tps"
            return 0
        fi
    fi
    # Show why it failed (first error line), but keep going.
    log "  $target/$mode failed: $(grep -m1 -iE 'error|fatal|abort' "$out" || tail -n1 "$out")"
    echo error
}

if [[ $WARMUP -gt 0 ]]; then
    log "warm-up: ${WARMUP}s direct"
    "$PGBIN/pgbench" -S -n -c "$CLIENTS" -j "$THREADS" -T "$WARMUP" \
        -h 127.0.0.1 -p "$PG_PORT" -U postgres postgres >/dev/null 2>&1 || true
fi

log "running: -S -c $CLIENTS -j $THREADS -T $DURATION, pool size $POOL, modes: $MODES"
for mode in $MODES; do
    targets="direct pgbouncer heliosproxy"
    for variant in $VARIANTS; do targets+=" helios+$variant"; done
    for target in $targets; do
        if [[ $target == helios+* && ${VARIANT_OK[${target#helios+}]} != 1 ]]; then
            RESULT[$target,$mode]=error
        elif [[ $target == heliosproxy && $SKIP_HELIOS == 1 ]]; then
            RESULT[$target,$mode]=skipped
        elif [[ ($target == pgbouncer && $BOUNCER_OK != 1) || ($target == heliosproxy && $HELIOS_OK != 1) ]]; then
            RESULT[$target,$mode]=error
        else
            RESULT[$target,$mode]=$(run_pgbench "$target" "$mode")
        fi
        log "  $mode / $target: ${RESULT[$target,$mode]}"
    done
done

# ----------------------------------------------------------------- report ----
# fmt_tps X: one decimal for numbers, pass words (error/skipped) through.
fmt_tps() { awk -v x="$1" 'BEGIN { if (x ~ /^[0-9.]+$/) printf "%.1f", x; else printf "%s", x }'; }
# ratio A B: A/B with 2 decimals, `-` if either side is not a number.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b
        else printf "-"
    }'
}

echo
[[ $COMPONENTS == 1 ]] && echo "HeliosProxy runs the router and llm-guardrail components on every statement"
echo "pgbench ${BUILTIN:-(TPC-B)}, scale $SCALE, $CLIENTS clients, $THREADS threads, ${DURATION}s per run," \
    "pool size $POOL, $(nproc) CPUs"
fmt='%-9s | %12s | %13s | %15s | %16s | %13s | %16s\n'
printf "$fmt" mode "direct TPS" "PgBouncer TPS" "HeliosProxy TPS" "Helios/PgBouncer" "Helios/direct" "PgBouncer/direct"
printf "$fmt" --------- ------------ ------------- --------------- ---------------- ------------- ----------------
for mode in $MODES; do
    d=${RESULT[direct,$mode]} b=${RESULT[pgbouncer,$mode]} h=${RESULT[heliosproxy,$mode]}
    printf "$fmt" "$mode" "$(fmt_tps "$d")" "$(fmt_tps "$b")" "$(fmt_tps "$h")" \
        "$(ratio "$h" "$b")" "$(ratio "$h" "$d")" "$(ratio "$b" "$d")"
done

if [[ -n $VARIANTS ]]; then
    echo
    vfmt='%-9s | %-10s | %15s | %15s | %10s\n'
    printf "$vfmt" mode variant "HeliosProxy TPS" "variant TPS" "variant/plain"
    printf "$vfmt" --------- ---------- --------------- --------------- ----------
    for mode in $MODES; do
        for variant in $VARIANTS; do
            h=${RESULT[heliosproxy,$mode]} v=${RESULT[helios+$variant,$mode]}
            printf "$vfmt" "$mode" "$variant" "$(fmt_tps "$h")" "$(fmt_tps "$v")" "$(ratio "$v" "$h")"
        done
    done
fi
if [[ -n ${VARIANT_ADMIN[shadow]:-} ]]; then
    echo
    echo "shadow run (all modes): $(curl -s -H 'X-API-Key: bench' "http://127.0.0.1:${VARIANT_ADMIN[shadow]}/api/shadow/1")"
fi
