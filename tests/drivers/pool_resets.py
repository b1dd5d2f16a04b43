"""Driver connection pools that reset a connection when it goes back to the pool.

Usage: python3 pool_resets.py HOST PORT DBNAME USER [--no-sqlalchemy]

--no-sqlalchemy leaves SQLAlchemy out (statement pooling mode refuses the transaction blocks
it opens).

asyncpg's Pool resets a released connection with ONE simple query mixing LISTEN/UNLISTEN
with other statements (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`);
psycopg_pool runs a reset callback; SQLAlchemy's pool rolls back on return and runs `reset`
events. Each must work as it does against PostgreSQL directly, including LISTEN registered
before a release and notifications that arrive after a new LISTEN.

The suite runs this script directly against PostgreSQL too, so every expectation is
PostgreSQL's own. Exits non-zero on the first mismatch, and after a hard timeout.
"""

import asyncio
import sys

from steps import begin, check, watchdog

import asyncpg
import psycopg
import psycopg_pool
import sqlalchemy
from sqlalchemy import event, text

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER} connect_timeout=10"
TOTAL_TIMEOUT = 90
STEP_TIMEOUT = 10


async def asyncpg_pool():
    begin("asyncpg Pool: acquire and release, min_size 2")
    pool = await asyncpg.create_pool(
        host=HOST, port=PORT, user=USER, database=DB, min_size=2, max_size=2
    )
    for i in range(6):
        async with pool.acquire() as c:
            check(await c.fetchval("select $1::int", i) == i, f"acquire {i}")

    begin("asyncpg Pool: a LISTEN registered before release hears nothing after it")
    heard = []
    async with pool.acquire() as c:
        await c.add_listener("pool_chan", lambda *args: heard.append(args[3]))
        await c.execute("select pg_notify('pool_chan', 'while held')")
        for _ in range(50):
            if heard:
                break
            await asyncio.sleep(0.05)
        check(heard == ["while held"], f"notifications while held: {heard}")
    async with pool.acquire() as c:
        await c.execute("select pg_notify('pool_chan', 'after release')")
    await asyncio.sleep(0.3)
    check(heard == ["while held"], f"notifications after release: {heard}")

    begin("asyncpg Connection.reset() called explicitly, then a new listener")
    async with pool.acquire() as c:
        await c.execute("select pg_advisory_lock(42)")
        await c.reset()
        other = await asyncpg.connect(host=HOST, port=PORT, user=USER, database=DB)
        got = await other.fetchval("select pg_try_advisory_lock(42)")
        check(got is True, "the advisory lock was not released by reset()")
        await other.execute("select pg_advisory_unlock(42)")
        heard2 = []
        await c.add_listener("pool_chan2", lambda *args: heard2.append(args[3]))
        await other.execute("select pg_notify('pool_chan2', 'after reset')")
        for _ in range(50):
            if heard2:
                break
            await asyncio.sleep(0.05)
        check(heard2 == ["after reset"], f"notifications after reset: {heard2}")
        await other.close()

    begin("asyncpg Pool: the reset query itself, as one simple query")
    async with pool.acquire() as c:
        reset = c.get_reset_query()
        check("UNLISTEN" in reset, f"reset query {reset!r}")
        await c.execute("LISTEN pool_chan3; SELECT 1; UNLISTEN pool_chan3; SELECT 2")
        await c.execute(reset)
    for i in range(4):
        async with pool.acquire() as c:
            check(await c.fetchval("select 'usable'") == "usable", f"after reset {i}")
    await pool.close()
    print("asyncpg pool ok", flush=True)


def psycopg_pool_checks():
    begin("psycopg_pool: a reset callback with UNLISTEN, then LISTEN on the next checkout")

    def reset(conn):
        conn.execute("UNLISTEN *; RESET ALL")

    pool = psycopg_pool.ConnectionPool(
        DSN, min_size=2, max_size=2, reset=reset, kwargs={"autocommit": True}, open=True
    )
    pool.wait(timeout=STEP_TIMEOUT)
    for i in range(6):
        with pool.connection(timeout=STEP_TIMEOUT) as c:
            check(c.execute("select %s::int", (i,)).fetchone()[0] == i, f"checkout {i}")
    with pool.connection(timeout=STEP_TIMEOUT) as c:
        c.execute("LISTEN pp_chan")
        with psycopg.connect(DSN, autocommit=True) as other:
            other.execute("select pg_notify('pp_chan', 'hello')")
        got = [n.payload for n in c.notifies(timeout=5, stop_after=1)]
        check(got == ["hello"], f"notifications: {got}")
    for i in range(4):
        with pool.connection(timeout=STEP_TIMEOUT) as c:
            check(c.execute("select 'usable'").fetchone()[0] == "usable", f"after reset {i}")
    pool.close()
    print("psycopg_pool ok", flush=True)


def sqlalchemy_checks():
    begin("SQLAlchemy pool: pool_reset_on_return rollback and a reset event with UNLISTEN")
    url = f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{DB}"
    engine = sqlalchemy.create_engine(url, pool_size=2, max_overflow=0, pool_reset_on_return="rollback")

    @event.listens_for(engine, "reset")
    def _reset(dbapi_connection, record, reset_state):
        cur = dbapi_connection.cursor()
        cur.execute("UNLISTEN *; SELECT pg_advisory_unlock_all()")
        dbapi_connection.rollback()

    for i in range(6):
        with engine.connect() as c:
            check(c.execute(text("select :i"), {"i": i}).scalar() == i, f"connect {i}")
            c.execute(text("LISTEN sa_chan"))
    with engine.begin() as c:
        c.execute(text("create temp table if not exists t_sa (x int)"))
    with engine.connect() as c:
        check(c.execute(text("select 'usable'")).scalar() == "usable", "usable")
    engine.dispose()
    print("sqlalchemy pool ok", flush=True)


def main():
    watchdog(TOTAL_TIMEOUT)
    asyncio.run(asyncpg_pool())
    psycopg_pool_checks()
    if "--no-sqlalchemy" not in sys.argv[5:]:
        sqlalchemy_checks()
    print("pool resets ok", flush=True)


main()
