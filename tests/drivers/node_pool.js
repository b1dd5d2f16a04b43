// node-postgres' Pool through the proxy: clients checked out and released many times, a
// LISTEN on one client heard when another notifies, and a multi-statement reset sent as one
// simple query before release (what pools such as pg-pool users configure on release).
//
// Usage: node node_pool.js HOST PORT DBNAME USER   (NODE_PATH names where `pg` is installed)
// The suite runs it directly against PostgreSQL too. Exits non-zero on the first mismatch.
'use strict';
const { Pool, Client } = require('pg');

const [host, port, database, user] = process.argv.slice(2);
const config = { host, port: Number(port), database, user, connectionTimeoutMillis: 10000 };
setTimeout(() => {
  console.error('FAILED: no answer within 60 s');
  process.exit(3);
}, 60000).unref();

function check(cond, what) {
  if (!cond) {
    console.error(`FAILED: ${what}`);
    process.exit(1);
  }
}

async function main() {
  const pool = new Pool({ ...config, max: 2 });
  for (let i = 0; i < 8; i++) {
    const c = await pool.connect();
    const r = await c.query('select $1::int as v', [i]);
    check(r.rows[0].v === i, `checkout ${i}`);
    c.release();
  }
  const listener = await pool.connect();
  const heard = new Promise((resolve) => listener.on('notification', (n) => resolve(n.payload)));
  await listener.query('LISTEN node_chan');
  const other = new Client(config);
  await other.connect();
  await other.query("select pg_notify('node_chan', 'hello')");
  const payload = await Promise.race([heard, new Promise((r) => setTimeout(() => r(null), 5000))]);
  check(payload === 'hello', `notification: ${payload}`);
  // A reset before release, as one simple query mixing UNLISTEN with other statements.
  const results = await listener.query('SELECT pg_advisory_unlock_all(); UNLISTEN *; RESET ALL');
  check(Array.isArray(results) && results.length === 3, `reset answered ${JSON.stringify(results.map((r) => r.command))}`);
  check(results[1].command === 'UNLISTEN', `second answer ${results[1].command}`);
  listener.release();
  for (let i = 0; i < 4; i++) {
    const r = await pool.query("select 'usable' as v");
    check(r.rows[0].v === 'usable', `after reset ${i}`);
  }
  await other.end();
  await pool.end();
  console.log('node pool ok');
}

main().catch((e) => {
  console.error(`FAILED: ${e.stack || e}`);
  process.exit(1);
});
