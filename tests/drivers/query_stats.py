"""Reads heliosproxy_query_stats through psycopg (extended protocol, text and binary
results) and prints the pgbench statement's row as JSON."""
import json
import sys

import psycopg

host, port, db, user = sys.argv[1:5]
with psycopg.connect(host=host, port=port, dbname=db, user=user, autocommit=True) as conn:
    q = (
        "SELECT fingerprint, query_pattern, call_count, error_count, rows, avg_duration, "
        "p50_duration, p99_duration, max_duration, last_seen >= first_seen "
        "FROM heliosproxy_query_stats WHERE query_pattern LIKE %s ORDER BY call_count DESC"
    )
    text = conn.execute(q, ("%pgbench_accounts%",)).fetchall()
    binary = conn.cursor(binary=True).execute(q, ("%pgbench_accounts%",)).fetchall()
    assert [r[:5] for r in text] == [r[:5] for r in binary], (text, binary)
    total = conn.execute(
        "SELECT count(*), sum(call_count) FROM heliosproxy_query_stats"
    ).fetchone()
    print(json.dumps({"rows": [list(map(str, r)) for r in text], "total": list(map(str, total))}))
