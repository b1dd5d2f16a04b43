"""LISTEN/NOTIFY through a proxy in transaction pooling mode, read by real drivers: psycopg 3
with `notifies()` and asyncpg with `add_listener`. A listener gets exactly its channels'
notifications, also while it sits idle between transactions, and none after UNLISTEN.

Usage: python3 listen.py HOST PORT DBNAME USER
"""

import asyncio
import sys

import asyncpg
import psycopg

HOST, PORT, DB, USER = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
DSN = f"host={HOST} port={PORT} dbname={DB} user={USER} connect_timeout=10"


def check(what, got, want):
    if got != want:
        print(f"FAILED {what}: got {got!r}, want {want!r}")
        sys.exit(1)


def received(conn, count):
    out = []
    for n in conn.notifies(timeout=5, stop_after=count):
        out.append((n.channel, n.payload))
    return sorted(out)


def with_psycopg():
    with psycopg.connect(DSN, autocommit=True) as listener, psycopg.connect(
        DSN, autocommit=True
    ) as other:
        listener.execute("LISTEN chan_a")
        listener.execute('LISTEN "Chan B"')
        # The listener's server connection went back to the pool: it is idle now.
        other.execute("NOTIFY chan_a, 'one'")
        other.execute("select pg_notify('Chan B', 'two')")
        other.execute("NOTIFY chan_other, 'not for the listener'")
        check("psycopg notifies", received(listener, 2), [("Chan B", "two"), ("chan_a", "one")])
        # A notification in a transaction arrives when it commits.
        with other.transaction():
            other.execute("NOTIFY chan_a, 'committed'")
        with other.transaction():
            other.execute("NOTIFY chan_a, 'rolled back'")
            raise psycopg.Rollback()
        check("psycopg commit", received(listener, 1), [("chan_a", "committed")])
        listener.execute("UNLISTEN chan_a")
        other.execute("NOTIFY chan_a, 'after unlisten'")
        other.execute("NOTIFY \"Chan B\", 'still listening'")
        check("psycopg unlisten", received(listener, 1), [("Chan B", "still listening")])
        # Statements work as usual in between.
        check("psycopg query", listener.execute("select 1").fetchall(), [(1,)])
    print("ok psycopg")


async def with_asyncpg():
    args = dict(host=HOST, port=PORT, user=USER, database=DB)
    listener = await asyncpg.connect(**args)
    other = await asyncpg.connect(**args)
    got = asyncio.Queue()

    def on_event(_conn, _pid, channel, payload):
        got.put_nowait((channel, payload))

    await listener.add_listener("events", on_event)
    await other.execute("NOTIFY events, 'from asyncpg'")
    await other.execute("NOTIFY elsewhere, 'no'")
    check("asyncpg listener", await asyncio.wait_for(got.get(), 5), ("events", "from asyncpg"))
    await listener.remove_listener("events", on_event)
    check("asyncpg query", await listener.fetchval("select 2"), 2)
    await other.execute("NOTIFY events, 'after remove'")
    await asyncio.sleep(0.3)
    check("asyncpg nothing else", got.empty(), True)
    await listener.close()
    await other.close()
    print("ok asyncpg")


with_psycopg()
asyncio.run(with_asyncpg())
