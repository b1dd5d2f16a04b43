"""Reads through the proxy with psycopg (text and binary results) and asyncpg, `rounds`
times each, and prints what each returned as JSON; with `expect_down`, also checks that a
statement nobody cached fails (the backend is stopped)."""
import asyncio
import json
import sys

import asyncpg
import psycopg

host, port, db, user = sys.argv[1:5]
rounds = int(sys.argv[5])
expect_down = len(sys.argv) > 6 and sys.argv[6] == "down"
SQL_PG = "select id, name, price from items where id = %s"
SQL_A = "select id, name, price from items where id = $1"

out = {}
with psycopg.connect(host=host, port=port, dbname=db, user=user, autocommit=True) as conn:
    for _ in range(rounds):
        out["psycopg_text"] = [list(map(str, r)) for r in conn.execute(SQL_PG, (2,)).fetchall()]
        out["psycopg_binary"] = [
            list(map(str, r)) for r in conn.cursor(binary=True).execute(SQL_PG, (3,)).fetchall()
        ]
    if expect_down:
        try:
            conn.execute("select count(*) from items where id > %s", (100,)).fetchall()
            out["uncached"] = "answered"
        except psycopg.Error as e:
            out["uncached"] = "error"


async def with_asyncpg():
    conn = await asyncpg.connect(host=host, port=int(port), database=db, user=user)
    try:
        for _ in range(rounds):
            rows = await conn.fetch(SQL_A, 4)
            out["asyncpg"] = [[str(v) for v in r.values()] for r in rows]
    finally:
        await conn.close(timeout=5)


asyncio.run(with_asyncpg())
print(json.dumps(out, sort_keys=True))
