"""Resident memory of idle clients: opens N clients to a proxy, each logs in (trust auth,
user postgres) and runs one query, then stays idle; prints the proxy RSS before and after
and the bytes per client. Usage: python3 bench/idle-clients.py PORT PROXY_PID N"""
import asyncio, struct, sys

PORT, PID, N = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

def rss():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])

async def read_until_ready(r):
    while True:
        hdr = await r.readexactly(5)
        body = await r.readexactly(struct.unpack("!I", hdr[1:])[0] - 4)
        if hdr[:1] == b"Z":
            return
        if hdr[:1] == b"E":
            raise RuntimeError(body)

async def client(sem, held):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", PORT)
        params = b"user\0postgres\0database\0postgres\0\0"
        w.write(struct.pack("!II", 8 + len(params), 196608) + params)
        await read_until_ready(r)
        q = b"select 1\0"
        w.write(b"Q" + struct.pack("!I", 4 + len(q)) + q)
        await w.drain()
        await read_until_ready(r)
        held.append((r, w))

async def main():
    before = rss()
    held = []
    sem = asyncio.Semaphore(200)
    await asyncio.gather(*(client(sem, held) for _ in range(N)))
    await asyncio.sleep(2)
    after = rss()
    print(f"clients={len(held)} rss_before_kB={before} rss_after_kB={after} per_client_B={(after-before)*1024//len(held)}")

asyncio.run(main())
