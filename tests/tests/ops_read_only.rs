//! Shadow runs and replays never write where they must not: `SELECT create_order(…)` is a read
//! to the parser and inserts a row, so every mirrored or replayed read runs in a read-only
//! transaction (rolled back) unless writes are explicitly allowed. The target's rows are
//! checked afterwards.

use std::time::{Duration, Instant};

use helios_tests::admin_api::admin_json;
use helios_tests::heliosproxy::config::{JournalConfig, PoolMode};
use helios_tests::*;
use serde_json::Value;

const KEY: &str = "ops-key";
const JOURNAL_KEY: &str = "ops-journal-key";

const SCHEMA: &str = "
    create table orders (id serial primary key, item text);
    create function create_order(item text) returns int language sql
        as $$ insert into orders(item) values (item) returning id $$;
";

/// A primary and a candidate with the same schema, and a proxy that journals.
async fn setup(db: &str) -> (ProxyHandle, Pg) {
    let pg = shared_pg();
    create_database(pg, db).await;
    let candidate = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    create_database(&candidate, db).await;
    for server in [pg, &candidate] {
        let c = connect(&server.direct(db)).await.unwrap();
        c.batch_execute(SCHEMA).await.unwrap();
    }
    let mut config = proxy_config(pg, PoolMode::Transaction, 4);
    config.admin.api_key = Some(KEY.into());
    config.admin.journal_api_key = Some(JOURNAL_KEY.into());
    config.journal = Some(JournalConfig {
        dir: temp_dir("ops-journal"),
        ..Default::default()
    });
    (start_proxy(config).await, candidate)
}

use helios_tests::heliosproxy::server::ProxyHandle;

async fn orders(server: &Pg, db: &str) -> i64 {
    let c = connect(&server.direct(db)).await.unwrap();
    c.query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_run_never_commits_a_read_that_writes() {
    let db = "ops_shadow";
    let (proxy, candidate) = setup(db).await;
    let dsn = format!("postgres://postgres@127.0.0.1:{}/{db}", candidate.port);
    let (code, run) = admin_json(
        &proxy,
        JOURNAL_KEY,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{dsn}"}}"#)),
    )
    .await;
    assert_eq!(code, 201, "{run}");
    let id = run["shadow_id"].clone();
    let c = connect(&via_proxy(&proxy, "postgres", db)).await.unwrap();
    c.simple_query("select create_order('book')").await.unwrap();
    c.query("select create_order($1)", &[&"pen"]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, s) = admin_json(&proxy, KEY, "GET", &format!("/api/shadow/{id}"), None).await;
        let done = s["compared"].as_u64().unwrap_or(0) + s["errors"].as_u64().unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the shadow never ran them: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin_json(&proxy, KEY, "POST", &format!("/api/shadow/{id}/stop"), None).await;
    assert_eq!(orders(shared_pg(), db).await, 2, "the primary took both");
    assert_eq!(
        orders(&candidate, db).await,
        0,
        "the shadow committed a write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_without_allow_writes_never_commits_a_read_that_writes() {
    let db = "ops_replay";
    let (proxy, candidate) = setup(db).await;
    let from = now_ms();
    let c = connect(&via_proxy(&proxy, "postgres", db)).await.unwrap();
    c.simple_query("select create_order('book')").await.unwrap();
    c.batch_execute("begin").await.unwrap();
    c.query("select create_order($1)", &[&"pen"]).await.unwrap();
    c.batch_execute("commit").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let to = now_ms();
    let dsn = format!("postgres://postgres@127.0.0.1:{}/{db}", candidate.port);
    for shadow in [false, true] {
        let body = format!(r#"{{"from":{from},"to":{to},"target":"{dsn}","shadow":{shadow}}}"#);
        let (code, started) =
            admin_json(&proxy, JOURNAL_KEY, "POST", "/api/replay", Some(&body)).await;
        assert_eq!(code, 202, "{body}: {started}");
        let id = started["replay_id"].clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        let status: Value = loop {
            let (_, s) = admin_json(&proxy, KEY, "GET", &format!("/api/replay/{id}"), None).await;
            if s["state"] != "running" {
                break s;
            }
            assert!(Instant::now() < deadline, "replay still running: {s}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(status["state"], "done", "{status}");
        assert_eq!(
            orders(&candidate, db).await,
            0,
            "shadow = {shadow}: the replay committed a write: {status}"
        );
    }
    assert_eq!(orders(shared_pg(), db).await, 2);
}

/// The live-primary guard asks the servers who they are: a DSN naming the primary as
/// `localhost` (not the `127.0.0.1` of `[[nodes]]`) is the primary all the same, and a
/// shadow run or a replay without `allow_writes` is refused (409). A different server is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_primary_under_another_name_is_still_the_live_primary() {
    let db = "ops_identity";
    let (proxy, candidate) = setup(db).await;
    let c = connect(&via_proxy(&proxy, "postgres", db)).await.unwrap();
    let from = now_ms();
    c.simple_query("select count(*) from orders").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let disguised = format!("postgres://postgres@localhost:{}/{db}", shared_pg().port);
    let (code, body) = admin_json(
        &proxy,
        JOURNAL_KEY,
        "POST",
        "/api/shadow/start",
        Some(&format!(r#"{{"target":"{disguised}"}}"#)),
    )
    .await;
    assert_eq!(code, 409, "shadowing the primary itself: {body}");
    let (code, body) = admin_json(
        &proxy,
        JOURNAL_KEY,
        "POST",
        "/api/replay",
        Some(&format!(
            r#"{{"from":{from},"to":{},"target":"{disguised}","shadow":true}}"#,
            now_ms()
        )),
    )
    .await;
    assert_eq!(code, 409, "replaying onto the primary itself: {body}");
    let other = format!("postgres://postgres@localhost:{}/{db}", candidate.port);
    let (code, body) = admin_json(
        &proxy,
        JOURNAL_KEY,
        "POST",
        "/api/replay",
        Some(&format!(
            r#"{{"from":{from},"to":{},"target":"{other}"}}"#,
            now_ms()
        )),
    )
    .await;
    assert_eq!(code, 202, "another server is a fine target: {body}");
}
