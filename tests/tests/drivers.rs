//! Python drivers (psycopg 3, asyncpg) through the proxy in transaction mode, with fewer
//! server connections than clients.

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_and_asyncpg_work_in_transaction_mode() {
    let pg = shared_pg();
    create_database(pg, "drivers").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/drivers/drivers.py");
    let port = proxy.local_addr.port().to_string();
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        tokio::process::Command::new("python3")
            .args([script, "127.0.0.1", &port, "drivers", "postgres"])
            .output(),
    )
    .await
    .expect("driver script finished in time")
    .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "driver checks failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("psycopg ok") && stdout.contains("asyncpg ok"),
        "{stdout}"
    );
    let m = proxy.shared.pools.all()[0].metrics();
    assert!(m.created <= 2, "{m:?}");
}
