"""Statements whose analysis a schema change alters, through real drivers (psycopg 3, asyncpg).

Usage: python3 stale_statements.py HOST PORT DBNAME USER [--no-transactions]

With --no-transactions (statement pooling mode) the savepoint part is left out;
with --only-savepoints only that part runs.

PostgreSQL analyses an unnamed Parse afresh every time, and a named Parse when it is made. A
proxy that shares server statements between clients must never answer a Parse with a
statement analysed before a schema change: the sequences below come from SQLAlchemy's own test
suite (tables dropped and created again with other column types, an enum recreated) and must
give PostgreSQL's answers. The second part is a psycopg pipeline after a failed pipeline inside
a savepoint, whose ParseComplete once went missing.

Every expectation is what PostgreSQL itself answers (the suite runs this script directly
against PostgreSQL too). Exits non-zero on the first mismatch, and after a hard timeout when
something hangs.
"""

import asyncio
import sys

from steps import begin, check, watchdog

import asyncpg
import psycopg

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
NO_TRANSACTIONS = "--no-transactions" in sys.argv[5:]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER} connect_timeout=10"
TOTAL_TIMEOUT = 90


def recreated_column_type(conn, tag):
    """An INSERT of a cidr, then the table recreated with a macaddr8 column: same INSERT text."""
    t = f"r1_{tag}"
    conn.execute(f"drop table if exists {t}")
    conn.execute(f"create table {t} (v cidr)")
    conn.execute(f"insert into {t} (v) values (%s)", ("10.0.0.0/8",))
    conn.execute(f"insert into {t} (v) values (%s)", ("10.1.0.0/16",))
    conn.execute(f"drop table {t}")
    conn.execute(f"create table {t} (v macaddr8)")
    conn.execute(f"insert into {t} (v) values (%s)", ("08:00:2b:01:02:03:04:05",))
    conn.execute(f"insert into {t} (v) values (%s)", ("08:00:2b:01:02:03:04:06",))
    got = conn.execute(f"select v::text from {t} order by v").fetchall()
    check(got == [("08:00:2b:01:02:03:04:05",), ("08:00:2b:01:02:03:04:06",)], f"rows {got}")
    conn.execute(f"drop table {t}")


def recreated_result_type(conn, tag):
    """A SELECT * of a table, then the table recreated with other columns: same SELECT text."""
    t = f"r2_{tag}"
    conn.execute(f"drop table if exists {t}")
    conn.execute(f"create table {t} (a int)")
    conn.execute(f"insert into {t} values (1)")
    for _ in range(2):
        got = conn.execute(f"select * from {t} where a = %s", (1,)).fetchall()
        check(got == [(1,)], f"first table: {got}")
    conn.execute(f"drop table {t}")
    conn.execute(f"create table {t} (a int, b text)")
    conn.execute(f"insert into {t} values (1, 'x')")
    for _ in range(2):
        got = conn.execute(f"select * from {t} where a = %s", (1,)).fetchall()
        check(got == [(1, "x")], f"recreated table: {got}")
    conn.execute(f"drop table {t}")


def recreated_enum(conn, tag):
    """An enum dropped and created again (a new type OID) under the same name."""
    t, e = f"r3_{tag}", f"mood_{tag}"
    conn.execute(f"drop table if exists {t}")
    conn.execute(f"drop type if exists {e}")
    for labels, value in ((("sad", "ok"), "ok"), (("happy", "ok", "meh"), "meh")):
        conn.execute(f"create type {e} as enum ({', '.join(repr(x) for x in labels)})")
        conn.execute(f"create table {t} (m {e})")
        conn.execute(f"insert into {t} (m) values (%s)", (value,))
        got = conn.execute(f"select m::text from {t} where m = %s", (value,)).fetchall()
        check(got == [(value,)], f"enum {labels}: {got}")
        conn.execute(f"drop table {t}")
        conn.execute(f"drop type {e}")


def psycopg_checks():
    for threshold in (None, 1, 0):
        tag = f"p{threshold}"
        begin(f"psycopg prepare_threshold={threshold}: a table recreated with another column type")
        conn = psycopg.connect(DSN, autocommit=True, prepare_threshold=threshold)
        recreated_column_type(conn, tag)
        begin(f"psycopg prepare_threshold={threshold}: a table recreated with other columns")
        recreated_result_type(conn, tag)
        begin(f"psycopg prepare_threshold={threshold}: an enum recreated")
        recreated_enum(conn, tag)
        begin(f"psycopg prepare_threshold={threshold}: a second client sees the new table")
        other = psycopg.connect(DSN, autocommit=True, prepare_threshold=threshold)
        t = f"r4_{tag}"
        conn.execute(f"drop table if exists {t}")
        conn.execute(f"create table {t} (v int)")
        other.execute(f"insert into {t} (v) values (%s)", (1,))
        conn.execute(f"drop table {t}")
        conn.execute(f"create table {t} (v text)")
        other.execute(f"insert into {t} (v) values (%s)", ("two",))
        got = other.execute(f"select v from {t}").fetchall()
        check(got == [("two",)], f"the other client's rows: {got}")
        conn.execute(f"drop table {t}")
        other.close()
        conn.close()


def savepoint_pipelines(threshold):
    """A pipeline whose first Execute fails inside a savepoint, then the first statement again."""
    tag = f"sp{threshold}"
    t = f"sp_{tag}"
    setup = psycopg.connect(DSN, autocommit=True)
    setup.execute(f"drop table if exists {t}")
    setup.execute(f"create table {t} (id serial primary key, name text not null)")
    conn = psycopg.connect(DSN, prepare_threshold=threshold)
    first = f"insert into {t} (name) values (%s)"
    second = f"insert into {t} (id, name) values (%s, %s)"
    for attempt in range(5):
        conn.execute(first, ("a",))
        conn.execute("savepoint sp")
        raised = None
        try:
            with conn.pipeline():
                cur = conn.cursor()
                cur.executemany(second, [(1000 + attempt, None), (2000 + attempt, "y")])
        except psycopg.errors.NotNullViolation as e:
            raised = e
        check(raised is not None, "the NOT NULL violation was not raised")
        conn.execute("rollback to savepoint sp")
        with conn.pipeline():
            conn.cursor().executemany(first, [("b",), ("c",)])
        conn.commit()
    got = setup.execute(f"select count(*) from {t}").fetchone()[0]
    check(got == 15, f"{got} rows committed, wanted 15")
    setup.execute(f"drop table {t}")
    setup.close()
    conn.close()


async def asyncpg_checks():
    begin("asyncpg: a table recreated with other columns, statements cached by the driver")
    conn = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DB)
    other = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DB)
    t = "r5_asyncpg"
    await conn.execute(f"drop table if exists {t}")
    await conn.execute(f"create table {t} (a int)")
    await conn.execute(f"insert into {t} values (1)")
    for c in (conn, other):
        got = await c.fetch(f"select * from {t} where a = $1", 1)
        check([tuple(r) for r in got] == [(1,)], f"first table: {got}")
    await conn.execute(f"drop table {t}")
    await conn.execute(f"create table {t} (a int, b text)")
    await conn.execute(f"insert into {t} values (1, 'x')")
    for c in (conn, other, conn, other):
        got = await c.fetch(f"select * from {t} where a = $1", 1)
        check([tuple(r) for r in got] == [(1, "x")], f"recreated table: {got}")
    begin("asyncpg: a column type changed under a cached INSERT")
    await conn.execute(f"drop table {t}")
    await conn.execute(f"create table {t} (a int, b int)")
    for c in (conn, other):
        await c.execute(f"insert into {t} values ($1, $2)", 1, 2)
    await conn.execute(f"alter table {t} alter column b type text")
    for c in (conn, other):
        try:
            await c.execute(f"insert into {t} values ($1, $2)", 1, "three")
        except asyncpg.exceptions.DataError:
            # asyncpg encodes by its cached parameter types (int): PostgreSQL's own answer
            # through a direct connection is the same, so re-prepare and go on.
            await c.reload_schema_state()
            await c.execute(f"insert into {t} values ($1, $2)", 1, "three")
    got = await conn.fetchval(f"select count(*) from {t} where b = 'three'")
    check(got == 2, f"{got} rows with the text value")
    await conn.execute(f"drop table {t}")
    await conn.close()
    await other.close()


def main():
    watchdog(TOTAL_TIMEOUT)
    only_savepoints = "--only-savepoints" in sys.argv[5:]
    if not only_savepoints:
        psycopg_checks()
    for threshold in () if NO_TRANSACTIONS else (None, 1):
        begin(f"psycopg prepare_threshold={threshold}: a pipeline after a failed pipeline in a savepoint")
        savepoint_pipelines(threshold)
    if not only_savepoints:
        asyncio.run(asyncpg_checks())
    print("stale statements ok", flush=True)


main()
