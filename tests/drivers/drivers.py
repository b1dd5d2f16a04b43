"""Real Python drivers through the proxy in transaction mode: psycopg 3 and asyncpg.

Usage: python3 drivers.py HOST PORT DBNAME USER
Exits non-zero with a message on the first mismatch. Both drivers use protocol-level named
prepared statements (psycopg's `_pg3_N`, asyncpg's `__asyncpg_stmt_N__`) that must keep
working when their connection lands on a different server connection.
"""

import asyncio
import sys

import asyncpg
import psycopg

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER}"


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)


def psycopg_checks():
    conns = [psycopg.connect(DSN, autocommit=True, prepare_threshold=0) for _ in range(5)]
    with conns[0].cursor() as cur:
        cur.execute("drop table if exists drv_items")
        cur.execute("create table drv_items(id int primary key, name text)")
    # Interleave connections so each lands on varying server connections.
    for n in range(40):
        for i, c in enumerate(conns):
            row = c.execute("select %s::int + %s::int", (n, i)).fetchone()
            check(row[0] == n + i, f"psycopg arithmetic {n}+{i} gave {row}")
    c = conns[1]
    with c.transaction():
        c.cursor().executemany(
            "insert into drv_items values (%s, %s)", [(i, f"n{i}") for i in range(200)]
        )
    check(c.execute("select count(*) from drv_items").fetchone()[0] == 200, "executemany")
    with c.cursor().copy("copy drv_items (id, name) from stdin") as copy:
        for i in range(200, 300):
            copy.write_row((i, f"n{i}"))
    check(conns[2].execute("select count(*) from drv_items").fetchone()[0] == 300, "copy")
    conns[3].execute("set search_path to pg_catalog")
    for other in (conns[0], conns[4]):
        sp = other.execute("show search_path").fetchone()[0]
        check("pg_catalog" != sp, f"search_path leaked: {sp}")
    check(conns[3].execute("show search_path").fetchone()[0] == "pg_catalog", "own SET kept")
    try:
        conns[4].execute("select 1/0")
        check(False, "division by zero must fail")
    except psycopg.errors.DivisionByZero:
        pass
    check(conns[4].execute("select 'ok'").fetchone()[0] == "ok", "usable after error")
    for c in conns:
        c.close()
    print("psycopg ok")


async def asyncpg_checks():
    conns = [
        await asyncpg.connect(host=HOST, port=PORT, database=DB, user=USER, statement_cache_size=100)
        for _ in range(5)
    ]

    async def work(i, c):
        stmt = await c.prepare("select $1::int * 2 + $2::int")
        for n in range(50):
            v = await stmt.fetchval(n, i)
            check(v == n * 2 + i, f"asyncpg prepared {n},{i} gave {v}")
            v = await c.fetchval("select $1::text || $2::text", str(n), "x")
            check(v == f"{n}x", f"asyncpg fetchval {v}")
        async with c.transaction():
            await c.execute("insert into drv_items values ($1, $2)", 1000 + i, "tx")
            v = await c.fetchval("select count(*) from drv_items where id = $1", 1000 + i)
            check(v == 1, "inside transaction")

    await asyncio.gather(*(work(i, c) for i, c in enumerate(conns)))
    rows = await conns[0].fetch("select id from drv_items where id >= 1000 order by id")
    check([r["id"] for r in rows] == [1000, 1001, 1002, 1003, 1004], f"asyncpg rows {rows}")
    n = await conns[1].copy_records_to_table(
        "drv_items", records=[(2000 + i, "copied") for i in range(50)], columns=["id", "name"]
    )
    check(await conns[2].fetchval("select count(*) from drv_items where name = 'copied'") == 50, "asyncpg copy")
    for c in conns:
        await c.close()
    print("asyncpg ok")


psycopg_checks()
asyncio.run(asyncpg_checks())
