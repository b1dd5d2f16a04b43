//! The shadow comparator through the admin API, as an operator drives it with curl: live
//! traffic through the proxy mirrored to a candidate server, answers compared in and out of
//! order (simple and extended protocol, binary results), the one differing row found;
//! writes skipped in a reads-only run and rolled back otherwise; a stalled shadow never
//! delays clients (the queue drops and counts); the refusals.

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;
use serde_json::Value;

const KEY: &str = "shadow-key";
/// Mirroring to a server outside `[[nodes]]` sends it every client's statements: the
/// journal's own key.
const JOURNAL_KEY: &str = "shadow-journal-key";

async fn api(
    proxy: &heliosproxy::ProxyHandle,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let key = if path == "/api/shadow/start" {
        JOURNAL_KEY
    } else {
        KEY
    };
    admin_api::admin_json(proxy, key, method, path, body).await
}

/// Waits until the run has compared or skipped `n` statements in all.
async fn settled(proxy: &heliosproxy::ProxyHandle, id: &Value, n: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, s) = api(proxy, "GET", &format!("/api/shadow/{id}"), None).await;
        assert_eq!(code, 200, "{s}");
        let done = s["compared"].as_u64().unwrap() + s["skipped"].as_u64().unwrap();
        if done >= n {
            return s;
        }
        assert!(Instant::now() < deadline, "shadow still behind: {s}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_reads_are_compared_with_a_shadow_and_the_difference_is_reported() {
    let pg = shared_pg();
    create_database(pg, "shadowed").await;
    let candidate = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    create_database(&candidate, "shadowed").await;
    let primary = connect(&pg.direct("shadowed")).await.unwrap();
    primary
        .batch_execute(
            "create table items (id int primary key, name text); \
             insert into items select i, 'item ' || i from generate_series(1, 20) i",
        )
        .await
        .unwrap();
    // The candidate holds the same rows in the opposite physical order, and one renamed.
    let cand = connect(&candidate.direct("shadowed")).await.unwrap();
    cand.batch_execute(
        "create table items (id int primary key, name text); \
         insert into items select i, 'item ' || i from generate_series(20, 1, -1) i; \
         update items set name = 'renamed' where id = 13",
    )
    .await
    .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 4);
    config.admin.api_key = Some(KEY.into());
    config.admin.journal_api_key = Some(JOURNAL_KEY.into());
    let proxy = start_proxy(config).await;
    let dsn = format!("postgres://postgres@127.0.0.1:{}/shadowed", candidate.port);
    let (code, text) = admin_api::admin_json(
        &proxy,
        KEY,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{dsn}"}}"#)),
    )
    .await;
    assert_eq!(
        code, 403,
        "the admin key alone cannot mirror to a DSN: {text}"
    );

    for (body, want) in [
        (r#"{"target":"primary"}"#.to_owned(), 409),
        (r#"{"target":"nope"}"#.to_owned(), 404),
        (format!(r#"{{"target":"{dsn}","sample":0}}"#), 400),
        (format!(r#"{{"target":"{dsn}","window":0}}"#), 400),
        (format!(r#"{{"target":"{dsn}","mirror":"all"}}"#), 400),
    ] {
        let (code, text) = api(&proxy, "POST", "/api/shadow/start", Some(&body)).await;
        assert_eq!(code, want, "{body}: {text}");
    }
    let (code, run) = api(
        &proxy,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{dsn}","window":120}}"#)),
    )
    .await;
    assert_eq!(code, 201, "{run}");
    let id = run["shadow_id"].clone();
    let (code, _) = api(
        &proxy,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{dsn}"}}"#)),
    )
    .await;
    assert_eq!(code, 409, "one run at a time");

    let c = connect(&via_proxy(&proxy, "postgres", "shadowed"))
        .await
        .unwrap();
    // Same rows, other order, no ORDER BY: a match.
    c.simple_query("select id, name from items where id <= 10")
        .await
        .unwrap();
    c.simple_query("select id, name from items order by id limit 5")
        .await
        .unwrap();
    let by_id = c
        .prepare("select name from items where id = $1")
        .await
        .unwrap();
    for id in [2i32, 13] {
        c.query(&by_id, &[&id]).await.unwrap();
    }
    // Not mirrored: a write in a reads-only run, and a read inside a transaction.
    c.execute("update items set name = 'changed' where id = 1", &[])
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    c.simple_query("select count(*) from items").await.unwrap();
    c.batch_execute("commit").await.unwrap();

    // select ×2, execute ×2 compared; the update and the BEGIN skipped (what follows the
    // BEGIN runs in a transaction block and is not mirrored at all).
    let s = settled(&proxy, &id, 6).await;
    assert_eq!(s["compared"], 4, "{s}");
    assert_eq!(s["matched"], 3, "{s}");
    assert_eq!(s["diff_count"], 1, "{s}");
    assert_eq!(s["skipped"], 2, "{s}");
    assert_eq!(s["mirrored"], 6, "{s}");
    assert_eq!(s["dropped"], 0, "{s}");
    let (code, diff) = api(&proxy, "GET", &format!("/api/shadow/{id}/diff"), None).await;
    assert_eq!(code, 200);
    let d = &diff["divergent"][0];
    assert_eq!(
        d["statement"], "select name from items where id = $1",
        "{diff}"
    );
    assert_eq!(
        (d["primary"]["rows"].clone(), d["shadow"]["rows"].clone()),
        (1.into(), 1.into())
    );
    assert_ne!(d["primary"]["digest"], d["shadow"]["digest"]);
    let row = cand
        .query_one("select name from items where id = 1", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        "item 1",
        "the write never reached the shadow"
    );

    let (code, stopped) = api(&proxy, "POST", &format!("/api/shadow/{id}/stop"), None).await;
    assert_eq!((code, stopped["state"].clone()), (200, "stopped".into()));
    c.simple_query("select 1").await.unwrap();
    let (_, after) = api(&proxy, "GET", &format!("/api/shadow/{id}"), None).await;
    assert_eq!(
        after["mirrored"], s["mirrored"],
        "nothing mirrored once stopped"
    );

    // Writes allowed: mirrored, compared by row count, rolled back on the shadow.
    let (code, run) = api(
        &proxy,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{dsn}","reads_only":false}}"#)),
    )
    .await;
    assert_eq!(code, 201, "{run}");
    let id = run["shadow_id"].clone();
    c.execute("delete from items where id > $1", &[&15i32])
        .await
        .unwrap();
    let s = settled(&proxy, &id, 1).await;
    assert_eq!(
        (s["compared"].clone(), s["matched"].clone()),
        (1.into(), 1.into()),
        "{s}"
    );
    let n: i64 = cand
        .query_one("select count(*) from items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 20, "rolled back on the shadow");
    api(&proxy, "POST", &format!("/api/shadow/{id}/stop"), None).await;

    // A stalled shadow: its table locked. Clients keep their speed, the queue drops.
    let locker = connect(&candidate.direct("shadowed")).await.unwrap();
    locker
        .batch_execute("begin; lock table items in access exclusive mode")
        .await
        .unwrap();
    let (code, run) = api(
        &proxy,
        "POST",
        "/api/shadow/start",
        Some(&format!(
            r#"{{"target":"{dsn}","queue":4,"connections":1}}"#
        )),
    )
    .await;
    assert_eq!(code, 201, "{run}");
    let id = run["shadow_id"].clone();
    let started = Instant::now();
    for i in 0..200i32 {
        c.query(&by_id, &[&(i % 10 + 1)]).await.unwrap();
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "clients were held up: {:?}",
        started.elapsed()
    );
    let (_, s) = api(&proxy, "GET", &format!("/api/shadow/{id}"), None).await;
    assert!(s["dropped"].as_u64().unwrap() >= 190, "{s}");
    assert_eq!(
        s["mirrored"].as_u64().unwrap() + s["dropped"].as_u64().unwrap(),
        200,
        "{s}"
    );
    locker.batch_execute("rollback").await.unwrap();
    let mirrored = s["mirrored"].as_u64().unwrap();
    let s = settled(&proxy, &id, mirrored).await;
    assert_eq!(s["compared"].as_u64().unwrap(), mirrored, "{s}");
    api(&proxy, "POST", &format!("/api/shadow/{id}/stop"), None).await;
    let (_, list) = api(&proxy, "GET", "/api/shadow", None).await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let (code, text) = api(&proxy, "POST", "/api/upgrade/start", None).await;
    assert_eq!(code, 404, "no [upgrade] configured: {text}");
}
