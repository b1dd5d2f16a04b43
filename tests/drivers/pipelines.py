"""A statement refused inside a pipeline, seen by real Python drivers (psycopg 3, asyncpg).

Usage: python3 pipelines.py HOST PORT DBNAME USER [--reference]

Through the proxy, the guardrail component refuses DELETE and UPDATE without WHERE at Parse
with SQLSTATE 42501. PostgreSQL's rule must hold: the error skips everything up to the next
Sync, ReadyForQuery follows, the session stays usable, and what ran before the error in the
same implicit transaction (no Sync in between) is rolled back.

With --reference the script runs against PostgreSQL itself: statements on a table that does
not exist (rejected at Parse with 42P01) stand in for the refusals, so every expectation below
is PostgreSQL's own behaviour.

Exits non-zero with a message on the first mismatch, and after a hard timeout when something
hangs (a pipeline that never answers must fail, not wait forever).
"""

import asyncio
import faulthandler
import os
import sys
import threading

import asyncpg
import psycopg
from psycopg.pq import TransactionStatus

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
REFERENCE = "--reference" in sys.argv[5:]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER} connect_timeout=10"

TABLE = "items"
REFUSED_TABLE = "no_such_items" if REFERENCE else TABLE
REFUSED_DELETE = f"delete from {REFUSED_TABLE}"
REFUSED_UPDATE = f"update {REFUSED_TABLE} set id = %s"
REFUSED_UPDATE_ASYNCPG = f"update {REFUSED_TABLE} set id = $1"
SQLSTATE = "42P01" if REFERENCE else "42501"

TOTAL_TIMEOUT = 60
STEP_TIMEOUT = 15
step = "start"


def watchdog():
    """Fails the whole script when it has not finished in time, even if blocked in C."""

    def fire():
        print(
            f"FAILED: no answer after {TOTAL_TIMEOUT} s during step {step!r} (a pipeline hangs)",
            file=sys.stderr,
            flush=True,
        )
        faulthandler.dump_traceback(all_threads=True)
        os._exit(3)

    timer = threading.Timer(TOTAL_TIMEOUT, fire)
    timer.daemon = True
    timer.start()
    # A backstop in case the interpreter itself is stuck.
    faulthandler.dump_traceback_later(TOTAL_TIMEOUT + 10, exit=True)


def begin(what):
    global step
    step = what
    print(f"-- {what}", flush=True)


def check(cond, what):
    if not cond:
        print(f"FAILED during {step!r}: {what}", file=sys.stderr, flush=True)
        os._exit(1)


def count(conn):
    return conn.execute(f"select count(*) from {TABLE}").fetchone()[0]


def psycopg_checks():
    begin("psycopg: connect and create the table")
    setup = psycopg.connect(DSN, autocommit=True)
    setup.execute(f"create table if not exists {TABLE}(id int)")
    setup.execute(f"delete from {TABLE} where id > -1000000000")

    begin("psycopg pipeline: INSERT, refused DELETE, SELECT, one Sync (autocommit)")
    conn = psycopg.connect(DSN, autocommit=True, prepare_threshold=0)
    insert, refused, select = conn.cursor(), conn.cursor(), conn.cursor()
    raised = None
    try:
        with conn.pipeline():
            insert.execute(f"insert into {TABLE} values (%s)", (1,))
            refused.execute(REFUSED_DELETE)
            select.execute(f"select count(*) from {TABLE}")
    except psycopg.Error as e:
        raised = e
    check(raised is not None, "the pipeline raised no error")
    check(
        isinstance(raised, psycopg.errors.lookup(SQLSTATE)),
        f"raised {type(raised).__name__} ({raised.sqlstate}): {raised}",
    )
    check(raised.sqlstate == SQLSTATE, f"sqlstate {raised.sqlstate}, wanted {SQLSTATE}")
    if not REFERENCE:
        check("component guardrail" in str(raised), f"message: {raised}")
    check(insert.rowcount == 1, f"the INSERT before the error reported {insert.rowcount} rows")
    check(select.pgresult is None, "the SELECT after the error was not skipped")
    check(
        conn.info.transaction_status == TransactionStatus.IDLE,
        f"transaction status {conn.info.transaction_status!r} after the pipeline",
    )
    check(conn.execute("select 'usable'").fetchone()[0] == "usable", "session usable")
    check(count(conn) == 0, "the INSERT in the failed pipeline was rolled back")
    check(count(setup) == 0, "another connection sees the INSERT rolled back")

    begin("psycopg: the next pipeline on the same connection works")
    with conn.pipeline():
        insert.execute(f"insert into {TABLE} values (%s)", (2,))
        select.execute(f"select count(*) from {TABLE}")
    check(insert.rowcount == 1, f"INSERT reported {insert.rowcount} rows")
    check(select.fetchone()[0] == 1, "only the second pipeline's INSERT is there")
    check(count(setup) == 1, "the second pipeline committed")

    begin("psycopg executemany (pipelined) of a refused statement")
    raised = None
    try:
        conn.cursor().executemany(REFUSED_UPDATE, [(10,), (11,)])
    except psycopg.Error as e:
        raised = e
    check(raised is not None and raised.sqlstate == SQLSTATE, f"executemany raised {raised!r}")
    check(conn.execute("select 'usable'").fetchone()[0] == "usable", "session usable")
    check(
        conn.execute(f"select array_agg(id) from {TABLE}").fetchone()[0] == [2],
        "no row was updated",
    )
    conn.close()

    begin("psycopg pipeline in a transaction (autocommit off): the transaction fails")
    conn = psycopg.connect(DSN, prepare_threshold=0)
    insert, refused, select = conn.cursor(), conn.cursor(), conn.cursor()
    raised = None
    try:
        with conn.pipeline():
            insert.execute(f"insert into {TABLE} values (%s)", (3,))
            refused.execute(REFUSED_DELETE)
            select.execute(f"select count(*) from {TABLE}")
    except psycopg.Error as e:
        raised = e
    check(raised is not None and raised.sqlstate == SQLSTATE, f"pipeline raised {raised!r}")
    check(
        conn.info.transaction_status == TransactionStatus.INERROR,
        f"transaction status {conn.info.transaction_status!r}, wanted INERROR",
    )
    raised = None
    try:
        conn.execute("select 1")
    except psycopg.Error as e:
        raised = e
    check(
        isinstance(raised, psycopg.errors.InFailedSqlTransaction),
        f"a statement in the failed transaction gave {raised!r}",
    )
    conn.rollback()
    check(conn.info.transaction_status == TransactionStatus.IDLE, "idle after rollback")
    check(count(conn) == 1, "the failed transaction's INSERT was rolled back")
    conn.rollback()

    begin("psycopg: the failed transaction's connection works in a new pipeline")
    with conn.pipeline():
        insert.execute(f"insert into {TABLE} values (%s)", (4,))
        select.execute(f"select count(*) from {TABLE}")
    check(select.fetchone()[0] == 2, "the new transaction sees its own INSERT")
    conn.commit()
    check(count(setup) == 2, "the new transaction committed")
    conn.close()

    setup.execute(f"delete from {TABLE} where id > -1000000000")
    setup.close()
    print("psycopg ok", flush=True)


async def within(what, aw):
    try:
        return await asyncio.wait_for(aw, STEP_TIMEOUT)
    except asyncio.TimeoutError:
        check(False, f"{what}: no answer within {STEP_TIMEOUT} s (a pipeline hangs)")


async def refused_with(what, aw):
    try:
        await within(what, aw)
    except asyncpg.PostgresError as e:
        check(e.sqlstate == SQLSTATE, f"{what}: sqlstate {e.sqlstate}, wanted {SQLSTATE}: {e}")
        if not REFERENCE:
            check("component guardrail" in str(e), f"{what}: message {e}")
        return
    check(False, f"{what} was not refused")


async def asyncpg_checks():
    conn = await within(
        "connect",
        asyncpg.connect(host=HOST, port=PORT, database=DB, user=USER, statement_cache_size=100),
    )

    async def usable():
        check(await within("select 1", conn.fetchval("select 1")) == 1, "session usable")

    begin("asyncpg: preparing a refused statement")
    await refused_with("prepare", conn.prepare(REFUSED_DELETE))
    await usable()

    begin("asyncpg: fetch of a refused statement")
    await refused_with("fetch", conn.fetch(REFUSED_DELETE))
    await usable()

    begin("asyncpg: executemany of a refused statement")
    await within("insert", conn.execute(f"insert into {TABLE} values ($1)", 5))
    await refused_with(
        "executemany", conn.executemany(REFUSED_UPDATE_ASYNCPG, [(20,), (21,)])
    )
    await usable()
    ids = await within("ids", conn.fetchval(f"select array_agg(id) from {TABLE}"))
    check(ids == [5], f"no row was updated: {ids}")

    begin("asyncpg: executemany still pipelines allowed statements")
    await within(
        "executemany",
        conn.executemany(f"insert into {TABLE} values ($1)", [(i,) for i in range(100, 110)]),
    )
    n = await within("count", conn.fetchval(f"select count(*) from {TABLE}"))
    check(n == 11, f"{n} rows after executemany")

    begin("asyncpg: a refusal inside a transaction rolls it back")
    try:
        async with conn.transaction():
            await within("insert", conn.execute(f"insert into {TABLE} values ($1)", 6))
            await within("refused", conn.fetch(REFUSED_DELETE))
        check(False, "the refused statement in the transaction raised nothing")
    except asyncpg.PostgresError as e:
        check(e.sqlstate == SQLSTATE, f"sqlstate {e.sqlstate}: {e}")
    check(not conn.is_in_transaction(), "the transaction is over")
    n = await within("count", conn.fetchval(f"select count(*) from {TABLE} where id = 6"))
    check(n == 0, "the transaction's INSERT was rolled back")
    await usable()

    await within("cleanup", conn.execute(f"delete from {TABLE} where id > -1000000000"))
    await within("close", conn.close())
    print("asyncpg ok", flush=True)


watchdog()
psycopg_checks()
asyncio.run(asyncpg_checks())
faulthandler.cancel_dump_traceback_later()
