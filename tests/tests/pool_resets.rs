//! What driver pools send when a connection goes back to them, through the proxy in every
//! pooled mode, against PostgreSQL's own answers.
//!
//! asyncpg resets a released connection with one simple query that mixes UNLISTEN with other
//! statements; the proxy answers LISTEN/UNLISTEN itself in pooled modes, so it splits such a
//! message: the server runs the rest, the proxy's tags go where PostgreSQL puts them, one
//! `ReadyForQuery` at the end, and a LISTEN takes effect only when its transaction commits.

use std::time::Duration;

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::raw::{Raw, simple_query, within};
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_pools_reset_connections_through_the_proxy_as_they_do_directly() {
    let pg = shared_pg();
    create_database(pg, "pool_resets").await;
    let direct = run_driver_script_at("pool_resets.py", pg.port, "pool_resets", &[]).await;
    assert!(direct.contains("pool resets ok"), "{direct}");
    for (mode, servers) in [(PoolMode::Transaction, 2), (PoolMode::Session, 8)] {
        let proxy = start_proxy(proxy_config(pg, mode, servers)).await;
        let out = run_driver_script("pool_resets.py", &proxy, "pool_resets").await;
        for part in ["asyncpg pool ok", "psycopg_pool ok", "sqlalchemy pool ok"] {
            assert!(out.contains(part), "{mode:?}: {out}");
        }
        let node = run_driver_script("node_pool.js", &proxy, "pool_resets").await;
        assert!(node.contains("node pool ok"), "{mode:?}: {node}");
    }
    // Statement mode refuses transaction blocks, which SQLAlchemy opens: the drivers' own
    // pools still work.
    let proxy = start_proxy(proxy_config(pg, PoolMode::Statement, 2)).await;
    let out = run_driver_script_args(
        "pool_resets.py",
        &proxy,
        "pool_resets",
        &["--no-sqlalchemy"],
    )
    .await;
    assert!(
        out.contains("asyncpg pool ok") && out.contains("psycopg_pool ok"),
        "{out}"
    );
    let node = run_driver_script("node_pool.js", &proxy, "pool_resets").await;
    assert!(node.contains("node pool ok"), "{node}");
}

/// Simple queries mixing LISTEN/UNLISTEN with other statements, in the first, middle and last
/// position, with errors before and after them, in and out of transaction blocks.
const MIXED: &[&str] = &[
    "LISTEN mix_a; SELECT 1",
    "SELECT 1; LISTEN mix_a; SELECT 2",
    "SELECT 1; SELECT 2; UNLISTEN mix_a",
    "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\nUNLISTEN *;\nRESET ALL;",
    "LISTEN mix_b; SELECT 1/0; SELECT 2",
    "SELECT 1/0; LISTEN mix_b",
    "SELECT 1; LISTEN mix_c; SELECT 1/0; UNLISTEN mix_c",
    "BEGIN; LISTEN mix_d; SELECT 1",
    "COMMIT",
    "BEGIN; SELECT 1; LISTEN mix_e",
    "ROLLBACK",
    "BEGIN",
    "SELECT 1/0",
    "LISTEN mix_f; SELECT 1",
    "SELECT 1; LISTEN mix_f",
    "ROLLBACK; LISTEN mix_g; SELECT 3",
    "LISTEN mix_h; BEGIN; SELECT 4; ROLLBACK",
    "BEGIN; LISTEN mix_i; ROLLBACK; LISTEN mix_j; SELECT 5",
    "UNLISTEN mix_a; SELECT 6",
    // A quoted "*" is a channel of its own, not every channel.
    "LISTEN mix_k",
    "UNLISTEN \"*\"",
    "SELECT 1; UNLISTEN \"*\"",
];

/// The answers to [`MIXED`] in order, then whether a notification on each channel reaches
/// the session (asked after the script, with `pg_notify` from another connection).
async fn mixed_answers(addr: std::net::SocketAddr, notify_port: u16) -> Vec<String> {
    let mut raw = Raw::login_at(addr, "pool_mixed").await;
    let mut seen = Vec::new();
    for sql in MIXED {
        let answer = raw.run(sql, &simple_query(sql)).await;
        seen.push(format!("{sql:?} -> {}", answer.join(" | ")));
    }
    let other = within(
        "connect",
        connect(&format!(
            "host=127.0.0.1 port={notify_port} user=postgres dbname=pool_mixed"
        )),
    )
    .await
    .unwrap();
    for channel in [
        "mix_a", "mix_b", "mix_c", "mix_d", "mix_e", "mix_f", "mix_g", "mix_h", "mix_i", "mix_j",
        "mix_k",
    ] {
        within(
            "notify",
            other.execute("select pg_notify($1, 'x')", &[&channel]),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let answer = raw.run("probe", &simple_query("SELECT 'probe'")).await;
        let heard = answer.iter().any(|m| m.starts_with("message 'A'"));
        seen.push(format!("{channel} heard: {heard}"));
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_listen_messages_get_postgres_own_answers_and_subscriptions() {
    let pg = shared_pg();
    create_database(pg, "pool_mixed").await;
    let addr = format!("127.0.0.1:{}", pg.port).parse().unwrap();
    let want = mixed_answers(addr, pg.port).await;
    assert!(
        ["mix_d", "mix_g", "mix_j", "mix_k"]
            .iter()
            .all(|c| want.contains(&format!("{c} heard: true")))
            && want.iter().any(|l| l == "mix_e heard: false"),
        "the reference run itself: {want:#?}"
    );
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let got = mixed_answers(proxy.local_addr, pg.port).await;
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g, "the proxy answers unlike PostgreSQL");
    }
    assert_eq!(want.len(), got.len());
}
