//! Python drivers (psycopg 3, asyncpg) through the proxy in transaction mode, with fewer
//! server connections than clients.

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_asyncpg_work_in_transaction_mode() {
    let pg = shared_pg();
    create_database(pg, "drivers").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let stdout = run_driver_script("drivers.py", &proxy, "drivers").await;
    assert!(
        stdout.contains("psycopg ok") && stdout.contains("asyncpg ok"),
        "{stdout}"
    );
    let m = proxy.shared.pools.all()[0].metrics();
    assert!(m.created <= 2, "{m:?}");
}
