//! Clients that share server connections in transaction mode see nothing of each other's
//! sessions, as separate PostgreSQL sessions would: settings however they were changed,
//! temporary tables, advisory locks, roles, and the proxy's own statements. Each test forces
//! the clients onto one or two server connections and asserts what the other client sees.

use std::time::Duration;

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::raw::{Raw, simple_query};
use helios_tests::*;
use heliosproxy::wire::frame::write_message;
use heliosproxy::wire::messages;

const KEY: &str = "isolation-key";

async fn proxy(db: &str, mode: PoolMode, servers: usize) -> heliosproxy::server::ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let mut config = proxy_config(pg, mode, servers);
    config.admin.api_key = Some(KEY.into());
    start_proxy(config).await
}

async fn one(c: &tokio_postgres::Client, sql: &str) -> Option<String> {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Waits (the proxy checks a session just after the client got its answer) until
/// `/api/topology` counts `n` sessions pinned for `reason`.
async fn pinned(proxy: &heliosproxy::server::ProxyHandle, reason: &str, n: u64) {
    let mut seen = serde_json::Value::Null;
    for _ in 0..40 {
        let (code, body) =
            admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
        assert_eq!(code, 200, "{body}");
        seen = serde_json::from_str::<serde_json::Value>(&body).unwrap()["pinned"].clone();
        if seen[reason] == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("pinned for {reason}: expected {n}, /api/topology says {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_changed_any_way_stay_with_their_owner() {
    let proxy = proxy("iso_settings", PoolMode::Transaction, 1).await;
    let url = via_proxy(&proxy, "postgres", "iso_settings");
    let a = connect(&format!("{url} options='-c DateStyle=German'"))
        .await
        .unwrap();
    let b = connect(&url).await.unwrap();
    let default_work_mem = one(&b, "show work_mem").await;
    let default_datestyle = one(&b, "show datestyle").await;

    one(&a, "select set_config('work_mem', '7MB', false)").await;
    one(&a, "select set_config('app.tenant', '42', false)").await;
    a.batch_execute(
        "BEGIN; SET statement_timeout = '5s'; SAVEPOINT s; SET statement_timeout = '9s'; \
         ROLLBACK TO s; SELECT set_config('work_mem', '1MB', true); COMMIT",
    )
    .await
    .unwrap();
    a.batch_execute("RESET datestyle").await.unwrap();

    for _ in 0..2 {
        assert_eq!(one(&b, "show work_mem").await, default_work_mem);
        assert_eq!(
            one(&b, "show statement_timeout").await.as_deref(),
            Some("0")
        );
        assert_eq!(one(&b, "show datestyle").await, default_datestyle);
        let tenant = one(&b, "select current_setting('app.tenant', true)").await;
        assert!(tenant.as_deref() != Some("42"), "B saw A's app.tenant");

        assert_eq!(one(&a, "show work_mem").await.as_deref(), Some("7MB"));
        assert_eq!(
            one(&a, "select current_setting('app.tenant')")
                .await
                .as_deref(),
            Some("42")
        );
        assert_eq!(
            one(&a, "show statement_timeout").await.as_deref(),
            Some("5s"),
            "ROLLBACK TO SAVEPOINT keeps what was set before the savepoint"
        );
        assert_eq!(
            one(&a, "show datestyle").await.as_deref(),
            Some("German, DMY"),
            "RESET returns to the startup packet's value, as in PostgreSQL"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_returns_to_the_startup_value_in_session_mode() {
    let proxy = proxy("iso_reset", PoolMode::Session, 2).await;
    let url = via_proxy(&proxy, "postgres", "iso_reset");
    let a = connect(&format!(
        "{url} options='-c DateStyle=German -c TimeZone=Asia/Tokyo'"
    ))
    .await
    .unwrap();
    a.batch_execute("SET datestyle = 'SQL'; SET timezone = 'UTC'")
        .await
        .unwrap();
    a.batch_execute("RESET datestyle").await.unwrap();
    assert_eq!(
        one(&a, "show datestyle").await.as_deref(),
        Some("German, DMY")
    );
    assert_eq!(one(&a, "show timezone").await.as_deref(), Some("UTC"));
    a.batch_execute("RESET ALL").await.unwrap();
    assert_eq!(
        one(&a, "show timezone").await.as_deref(),
        Some("Asia/Tokyo")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_tables_pin_their_client_until_they_are_gone() {
    let proxy = proxy("iso_temp", PoolMode::Transaction, 1).await;
    let url = via_proxy(&proxy, "postgres", "iso_temp");
    let a = connect(&url).await.unwrap();
    let b = connect(&url).await.unwrap();
    a.batch_execute("CREATE TEMP TABLE mine (secret text); INSERT INTO mine VALUES ('a-only')")
        .await
        .unwrap();
    pinned(&proxy, "temporary_objects", 1).await;
    // B needs the only server connection, which A's temporary table holds.
    let waiting = tokio::spawn(async move {
        let n: i64 = b
            .query_one(
                "select count(*) from pg_class where relnamespace = pg_my_temp_schema()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !waiting.is_finished(),
        "B ran on A's pinned server connection"
    );
    assert_eq!(
        one(&a, "select secret from mine").await.as_deref(),
        Some("a-only")
    );
    a.batch_execute("DISCARD TEMP").await.unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("B got the connection once A's temporary table was gone")
        .unwrap();
    assert_eq!(seen, 0, "B saw A's temporary objects");
    pinned(&proxy, "temporary_objects", 0).await;

    // A client that leaves with its temporary table leaves nothing behind either.
    let c = connect(&url).await.unwrap();
    c.batch_execute("CREATE TEMP TABLE left_behind (x int)")
        .await
        .unwrap();
    drop(c);
    let d = connect(&url).await.unwrap();
    let mut left = None;
    for _ in 0..50 {
        match d
            .query_one(
                "select count(*) from pg_class where relnamespace = pg_my_temp_schema()",
                &[],
            )
            .await
        {
            Ok(r) => {
                left = Some(r.get::<_, i64>(0));
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    assert_eq!(left, Some(0));
    pinned(&proxy, "temporary_objects", 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advisory_locks_and_roles_belong_to_their_session() {
    let proxy = proxy("iso_locks", PoolMode::Transaction, 2).await;
    let url = via_proxy(&proxy, "postgres", "iso_locks");
    let a = connect(&url).await.unwrap();
    let b = connect(&url).await.unwrap();
    a.batch_execute("SELECT pg_advisory_lock(42)")
        .await
        .unwrap();
    let got: bool = b
        .query_one("select pg_try_advisory_lock(42)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!got, "B took the lock A holds");
    let released: bool = b
        .query_one("select pg_advisory_unlock(42)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(!released, "B released A's lock");
    pinned(&proxy, "advisory_locks", 1).await;
    let released: bool = a
        .query_one("select pg_advisory_unlock(42)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(released);
    pinned(&proxy, "advisory_locks", 0).await;
    let got: bool = b
        .query_one("select pg_try_advisory_lock(42)", &[])
        .await
        .unwrap()
        .get(0);
    assert!(got);
    b.batch_execute("SELECT pg_advisory_unlock_all()")
        .await
        .unwrap();

    a.batch_execute(
        "DROP ROLE IF EXISTS iso_reader; CREATE ROLE iso_reader; GRANT iso_reader TO postgres",
    )
    .await
    .unwrap();
    for how in [
        "SET ROLE iso_reader",
        "SELECT set_config('role', 'iso_reader', false)",
    ] {
        a.batch_execute(how).await.unwrap();
        pinned(&proxy, "role", 1).await;
        for _ in 0..3 {
            assert_eq!(
                one(&b, "select current_user::text").await.as_deref(),
                Some("postgres")
            );
            assert_eq!(
                one(&a, "select current_user::text").await.as_deref(),
                Some("iso_reader")
            );
        }
        a.batch_execute("RESET ROLE").await.unwrap();
        pinned(&proxy, "role", 0).await;
        assert_eq!(
            one(&a, "select current_user::text").await.as_deref(),
            Some("postgres")
        );
    }
}

fn bind(statement: &str) -> Vec<u8> {
    let mut out = Vec::new();
    write_message(&mut out, b'B', |b| {
        b.push(0);
        b.extend_from_slice(statement.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    });
    write_message(&mut out, b'E', |b| {
        b.push(0);
        b.extend_from_slice(&0i32.to_be_bytes());
    });
    messages::sync(&mut out);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_statements_are_out_of_every_clients_reach() {
    let proxy = proxy("iso_names", PoolMode::Transaction, 1).await;
    let url = via_proxy(&proxy, "postgres", "iso_names");
    let a = connect(&url).await.unwrap();
    let stmt = a.prepare("select 'from a'::text").await.unwrap();
    assert_eq!(
        a.query_one(&stmt, &[]).await.unwrap().get::<_, String>(0),
        "from a"
    );
    let mut b = Raw::login(&proxy, "iso_names").await;
    for sql in [
        "PREPARE hp_0000000000000001 AS SELECT 'from b'",
        "DEALLOCATE hp_0000000000000001",
        "EXECUTE hp_xid",
        "select 1; prepare \"HP_1\" as select 2",
        "PREPARE U&\"\\0068p_xid\" AS SELECT 'from b'",
        "PREPARE hp_q1 AS SELECT 'a name of the client''s own'",
    ] {
        let seen = b.run(sql, &simple_query(sql)).await;
        let not_ours = sql.contains("\"HP_1\"") || sql.contains("hp_q1");
        if not_ours {
            // A quoted upper-case name is not the proxy's: PostgreSQL keeps the case.
            assert!(b.errors.is_empty(), "{sql}: {seen:?}");
            continue;
        }
        assert_eq!(b.errors.len(), 1, "{sql}: {seen:?}");
        assert_eq!(b.errors[0].code, "42501", "{sql}");
    }
    // A Bind (or Describe) of a statement B never prepared is answered by the proxy.
    for name in ["", "hp_0000000000000001", "never_prepared"] {
        let seen = b.run(name, &bind(name)).await;
        assert_eq!(b.errors.len(), 1, "{name}: {seen:?}");
        assert_eq!(b.errors[0].code, "26000", "{name}");
    }
    // A SQL-level prepared statement may still be bound by name, as in PostgreSQL.
    b.run("prepare", &simple_query("PREPARE mine AS SELECT 'mine'"))
        .await;
    let seen = b.run("bind mine", &bind("mine")).await;
    assert!(seen.contains(&"DataRow mine".to_owned()), "{seen:?}");
    // A's statement still runs A's SQL.
    assert_eq!(
        a.query_one(&stmt, &[]).await.unwrap().get::<_, String>(0),
        "from a"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_and_notify_work_in_transaction_mode() {
    let proxy = proxy("iso_listen", PoolMode::Transaction, 1).await;
    let stdout = run_driver_script("listen.py", &proxy, "iso_listen").await;
    assert!(stdout.contains("ok psycopg"), "{stdout}");
    assert!(stdout.contains("ok asyncpg"), "{stdout}");
    // LISTEN mixed with other statements in one message is answered statement by statement
    // (tests/pool_resets.rs compares every answer with PostgreSQL's).
    let url = via_proxy(&proxy, "postgres", "iso_listen");
    let c = connect(&url).await.unwrap();
    c.batch_execute("LISTEN x; SELECT 1; UNLISTEN x")
        .await
        .unwrap();
}
