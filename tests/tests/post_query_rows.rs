//! PostQuery receives a statement's result rows when its component asks for them
//! (`post_query_rows_bytes`), in both protocols, cut at the component's byte limit; a
//! component that does not ask gets none. The component is `misbehave` in `audit` mode: its
//! PostQuery keeps the column names, the first column of every row and whether rows were
//! left out, and `select helios_audit` reports them (its sixth column).

use helios_tests::heliosproxy::config::{Grant, PoolMode};
use helios_tests::heliosproxy::server::ProxyHandle;
use helios_tests::*;

async fn auditing_proxy(db: &str, rows_bytes: usize) -> ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    let mut p = plugin(
        "audit",
        "helios-misbehave",
        &[Grant::Kv],
        "mode = \"audit\"\n",
    );
    p.post_query_rows_bytes = rows_bytes;
    config.plugins.push(p);
    start_proxy(config).await
}

/// What the component's PostQuery saw of the last statement's rows.
async fn seen_rows(c: &tokio_postgres::Client) -> Option<String> {
    let r = c.simple_query("select helios_audit").await.unwrap();
    rows(&r)[0][5].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_query_reads_result_rows_in_both_protocols_within_its_byte_limit() {
    let proxy = auditing_proxy("rows_on", 64).await;
    let c = connect(&via_proxy(&proxy, "postgres", "rows_on"))
        .await
        .unwrap();

    c.simple_query("select n::text as n from generate_series(1, 3) n")
        .await
        .unwrap();
    assert_eq!(seen_rows(&c).await.as_deref(), Some("n|1,2,3|false"));

    // Extended protocol (tokio-postgres prepares, then binds with binary results: the text
    // type's binary form is its text).
    let r = c
        .query("select x::text as x from generate_series(4, 5) x", &[])
        .await
        .unwrap();
    assert_eq!(r.len(), 2, "the client still gets every row");
    assert_eq!(seen_rows(&c).await.as_deref(), Some("x|4,5|false"));

    // NULLs, and a result larger than the limit: rows past 64 bytes are left out.
    c.simple_query("select null::text as v union all select 'b'")
        .await
        .unwrap();
    assert_eq!(seen_rows(&c).await.as_deref(), Some("v|NULL,b|false"));
    let r = c
        .query(
            "select repeat('a', 40) as big from generate_series(1, 3)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 3, "the client still gets every row");
    let seen = seen_rows(&c).await.unwrap();
    assert_eq!(seen, format!("big|{}|true", "a".repeat(40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_does_not_ask_gets_no_rows() {
    let proxy = auditing_proxy("rows_off", 0).await;
    let c = connect(&via_proxy(&proxy, "postgres", "rows_off"))
        .await
        .unwrap();
    c.simple_query("select 1 as one").await.unwrap();
    c.query("select 2 as two", &[]).await.unwrap();
    let r = c.simple_query("select helios_audit").await.unwrap();
    assert_eq!(rows(&r)[0][0].as_deref(), Some("2"), "PostQuery still ran");
    assert_eq!(rows(&r)[0][5], None, "no rows were offered");
}
