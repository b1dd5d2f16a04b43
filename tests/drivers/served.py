"""Served results (a component's own answer) read by real Python drivers in the extended
protocol: psycopg 3 with server-side prepare (text and binary results) and asyncpg (binary
results, prepared statements, and a cursor that fetches one row per Execute).

Usage: python3 served.py HOST PORT DBNAME USER

The component answers every statement with two rows, ("42", "component") and
(NULL, "null row"), except statements containing "spare-me", which reach the server.
"""

import asyncio
import sys

import asyncpg
import psycopg

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER} connect_timeout=10"
WANT = [("42", "component"), (None, "null row")]


def check(what, got, want):
    if got != want:
        print(f"FAILED {what}: got {got!r}, want {want!r}")
        sys.exit(1)


def with_psycopg():
    with psycopg.connect(DSN, prepare_threshold=0, autocommit=True) as conn:
        check("text results", conn.execute("select anything").fetchall(), WANT)
        with conn.cursor(binary=True) as cur:
            cur.execute("select anything", prepare=True)
            check("binary results", cur.fetchall(), WANT)
        with conn.pipeline():
            a = conn.execute("select anything")
            b = conn.execute("select %s::text as \"spare-me\"", ["spare-me"])
            c = conn.execute("select anything again")
        check("pipeline served", a.fetchall(), WANT)
        check("pipeline server", b.fetchall(), [("spare-me",)])
        check("pipeline served again", c.fetchall(), WANT)
    print("psycopg ok")


async def with_asyncpg():
    conn = await asyncpg.connect(host=HOST, port=PORT, database=DB, user=USER, timeout=10)
    try:
        rows = await asyncio.wait_for(conn.fetch("select anything"), 15)
        check("fetch", [tuple(r) for r in rows], WANT)
        stmt = await conn.prepare("select anything")
        check("columns", [a.name for a in stmt.get_attributes()], ["answer", "source"])
        check("prepared", [tuple(r) for r in await stmt.fetch()], WANT)
        # The component answers BEGIN too unless it says spare-me; cursors need a transaction.
        await conn.execute("begin /* spare-me */")
        got = [tuple(r) async for r in conn.cursor("select anything", prefetch=1)]
        await conn.execute("commit /* spare-me */")
        check("cursor, one row per Execute", got, WANT)
        check("server", await conn.fetchval("select 'spare-me'::text"), "spare-me")
    finally:
        await conn.close()
    print("asyncpg ok")


with_psycopg()
asyncio.run(with_asyncpg())
