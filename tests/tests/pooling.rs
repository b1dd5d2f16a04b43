//! Pooling behaviour a user relies on: state isolation in transaction mode, prepared
//! statements across server connections, statement mode, limits, and clean-up.

use std::time::Duration;

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_set_stays_its_own_in_transaction_mode() {
    let pg = shared_pg();
    create_database(pg, "pool_state").await;
    // One server connection: both clients are forced onto it.
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 1)).await;
    let a = connect(&via_proxy(&proxy, "postgres", "pool_state"))
        .await
        .unwrap();
    let b = connect(&via_proxy(&proxy, "postgres", "pool_state"))
        .await
        .unwrap();
    let default_path: String = b.query_one("show search_path", &[]).await.unwrap().get(0);
    a.batch_execute("SET search_path TO a_schema, public")
        .await
        .unwrap();
    a.batch_execute("SET statement_timeout = '1234ms'")
        .await
        .unwrap();
    a.batch_execute("SET application_name = 'client-a'")
        .await
        .unwrap();
    for _ in 0..3 {
        let (p, t, app): (String, String, String) = {
            let r = b
                .query_one("select current_setting('search_path'), current_setting('statement_timeout'), current_setting('application_name')", &[])
                .await
                .unwrap();
            (r.get(0), r.get(1), r.get(2))
        };
        assert_eq!(p, default_path, "search_path leaked to another client");
        assert_eq!(t, "0", "statement_timeout leaked to another client");
        assert_ne!(app, "client-a");
        let r = a
            .query_one("select current_setting('search_path'), current_setting('statement_timeout'), current_setting('application_name')", &[])
            .await
            .unwrap();
        assert_eq!(
            r.get::<_, String>(0),
            "a_schema, public",
            "owner lost its search_path"
        );
        assert_eq!(r.get::<_, String>(1), "1234ms");
        assert_eq!(r.get::<_, String>(2), "client-a");
    }
    // A SET rolled back with its transaction is forgotten; RESET works.
    a.batch_execute("BEGIN; SET statement_timeout = '9s'; ROLLBACK")
        .await
        .unwrap();
    b.query_one("select 1", &[]).await.unwrap();
    let t: String = a
        .query_one("show statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "1234ms");
    a.batch_execute("RESET statement_timeout").await.unwrap();
    b.query_one("select 1", &[]).await.unwrap();
    let t: String = a
        .query_one("show statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(t, "0");
    let m = proxy.shared.pools.all()[0].metrics();
    assert_eq!(
        m.created, 1,
        "a single server connection served both clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_prepare_is_a_clients_own_in_transaction_mode() {
    let pg = shared_pg();
    create_database(pg, "pool_sql_prepare").await;
    // One server connection: both clients take turns on it with the same statement name.
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 1)).await;
    let url = via_proxy(&proxy, "postgres", "pool_sql_prepare");
    let a = connect(&url).await.unwrap();
    let b = connect(&url).await.unwrap();
    let first = |rows: Vec<tokio_postgres::SimpleQueryMessage>| -> String {
        rows.into_iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            })
            .unwrap()
    };
    a.batch_execute("PREPARE q (int) AS SELECT $1 * 2")
        .await
        .unwrap();
    b.batch_execute("PREPARE q AS SELECT 'b'").await.unwrap();
    for _ in 0..3 {
        assert_eq!(first(a.simple_query("EXECUTE q(21)").await.unwrap()), "42");
        assert_eq!(first(b.simple_query("EXECUTE q").await.unwrap()), "b");
    }
    // PREPARE is not undone by ROLLBACK; DEALLOCATE is the client's own too.
    a.batch_execute("BEGIN; PREPARE r AS SELECT 'r'; ROLLBACK")
        .await
        .unwrap();
    b.batch_execute("DEALLOCATE q").await.unwrap();
    assert_eq!(first(a.simple_query("EXECUTE r").await.unwrap()), "r");
    assert_eq!(first(a.simple_query("EXECUTE q(5)").await.unwrap()), "10");
    let err = b.simple_query("EXECUTE q").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "26000", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_survive_moving_between_server_connections() {
    let pg = shared_pg();
    create_database(pg, "pool_prep").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 3)).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(
            connect(&via_proxy(&proxy, "postgres", "pool_prep"))
                .await
                .unwrap(),
        );
    }
    let mut stmts = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        // Different SQL per client plus one shared statement.
        stmts.push((
            c.prepare(&format!("select $1::int + {i}")).await.unwrap(),
            c.prepare("select $1::text || '!'").await.unwrap(),
        ));
    }
    let mut tasks = Vec::new();
    for (i, (c, (own, shared))) in clients.into_iter().zip(stmts).enumerate() {
        tasks.push(tokio::spawn(async move {
            for n in 0..100i32 {
                let r = c.query_one(&own, &[&n]).await.unwrap();
                assert_eq!(r.get::<_, i32>(0), n + i as i32);
                let r = c.query_one(&shared, &[&format!("{n}")]).await.unwrap();
                assert_eq!(r.get::<_, String>(0), format!("{n}!"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let m = proxy.shared.pools.all()[0].metrics();
    assert!(m.created <= 3, "pool size caps server connections: {m:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_mode_refuses_transaction_blocks_clearly() {
    let pg = shared_pg();
    create_database(pg, "pool_stmt").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Statement, 1)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "pool_stmt"))
        .await
        .unwrap();
    let err = c.batch_execute("BEGIN").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "0A000");
    assert!(
        db_message(&err).contains("statement pooling mode"),
        "{}",
        db_message(&err)
    );
    assert_eq!(
        c.query_one("select 5", &[]).await.unwrap().get::<_, i32>(0),
        5
    );
    let err = c
        .batch_execute("select 1; begin; select 2")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "0A000");
    // VACUUM refuses to run inside a transaction block: the only server connection is clean.
    c.batch_execute("VACUUM")
        .await
        .expect("the server connection is not left inside a transaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_pool_gives_a_clear_error_after_the_checkout_timeout() {
    let pg = shared_pg();
    create_database(pg, "pool_exhaust").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 1);
    config.pool.checkout_timeout_ms = 300;
    let proxy = start_proxy(config).await;
    let holder = connect(&via_proxy(&proxy, "postgres", "pool_exhaust"))
        .await
        .unwrap();
    let waiter = connect(&via_proxy(&proxy, "postgres", "pool_exhaust"))
        .await
        .unwrap();
    holder.batch_execute("BEGIN").await.unwrap();
    let err = waiter.query_one("select 1", &[]).await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "53300");
    assert!(db_message(&err).contains("300 ms"), "{}", db_message(&err));
    holder.batch_execute("COMMIT").await.unwrap();
    assert_eq!(
        waiter
            .query_one("select 2", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        2
    );
    let m = proxy.shared.pools.all()[0].metrics();
    assert_eq!(m.timeouts, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnecting_mid_transaction_is_rolled_back_and_its_server_returned() {
    let pg = shared_pg();
    create_database(pg, "pool_disc").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 1)).await;
    let setup = connect(&via_proxy(&proxy, "postgres", "pool_disc"))
        .await
        .unwrap();
    setup.batch_execute("create table t(x int)").await.unwrap();
    drop(setup);
    let leaver = connect(&via_proxy(&proxy, "postgres", "pool_disc"))
        .await
        .unwrap();
    leaver
        .batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    drop(leaver);
    let next = connect(&via_proxy(&proxy, "postgres", "pool_disc"))
        .await
        .unwrap();
    let n: i64 = tokio::time::timeout(
        Duration::from_secs(5),
        next.query_one("select count(*) from t", &[]),
    )
    .await
    .expect("the only server connection came back")
    .unwrap()
    .get(0);
    assert_eq!(n, 0, "the abandoned transaction was rolled back");
    let m = proxy.shared.pools.all()[0].metrics();
    assert_eq!(
        m.created, 1,
        "the connection was reused, not leaked and replaced: {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_clients_than_max_connections_get_a_clear_error() {
    let pg = shared_pg();
    create_database(pg, "pool_maxc").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.pool.max_connections = 2;
    let proxy = start_proxy(config).await;
    let a = connect(&via_proxy(&proxy, "postgres", "pool_maxc"))
        .await
        .unwrap();
    let _b = connect(&via_proxy(&proxy, "postgres", "pool_maxc"))
        .await
        .unwrap();
    let err = connect(&via_proxy(&proxy, "postgres", "pool_maxc"))
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "53300", "{err}");
    assert!(
        db_message(&err).contains("max_connections"),
        "{}",
        db_message(&err)
    );
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "pool_maxc"))
        .await
        .unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_mid_query_fails_only_that_client() {
    let pg = shared_pg();
    create_database(pg, "pool_die").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Transaction, 2)).await;
    let victim = connect(&via_proxy(&proxy, "postgres", "pool_die"))
        .await
        .unwrap();
    let bystander = connect(&via_proxy(&proxy, "postgres", "pool_die"))
        .await
        .unwrap();
    let direct = connect(&pg.direct("pool_die")).await.unwrap();
    let victim_task = tokio::spawn(async move {
        victim
            .simple_query("select pg_sleep(20) /* victim */")
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    direct
        .batch_execute("select pg_terminate_backend(pid) from pg_stat_activity where query like '%/* victim */%' and pid <> pg_backend_pid()")
        .await
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), victim_task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        err.code().is_some() || err.is_closed(),
        "victim sees an error: {err}"
    );
    assert_eq!(
        bystander
            .query_one("select 3", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        3
    );
    let fresh = connect(&via_proxy(&proxy, "postgres", "pool_die"))
        .await
        .unwrap();
    assert_eq!(
        fresh
            .query_one("select 4", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_keeps_one_server_connection_and_resets_it_for_the_next_client() {
    let pg = shared_pg();
    create_database(pg, "pool_session").await;
    let proxy = start_proxy(proxy_config(pg, PoolMode::Session, 1)).await;
    let a = connect(&via_proxy(&proxy, "postgres", "pool_session"))
        .await
        .unwrap();
    let pid1: i32 = a
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    a.batch_execute("SET search_path TO only_a").await.unwrap();
    let pid2: i32 = a
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pid1, pid2);
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = connect(&via_proxy(&proxy, "postgres", "pool_session"))
        .await
        .unwrap();
    let r = b
        .query_one(
            "select pg_backend_pid(), current_setting('search_path')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(r.get::<_, i32>(0), pid1, "the connection was reused");
    assert_ne!(r.get::<_, String>(1), "only_a");
    // A backend that made a temporary schema is not reused: the next client would notice.
    b.batch_execute("CREATE TEMP TABLE scratch(x int)")
        .await
        .unwrap();
    drop(b);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "pool_session"))
        .await
        .unwrap();
    let r = c
        .query_one(
            "select pg_backend_pid(), to_regclass('pg_temp.scratch') is null, pg_my_temp_schema() = 0",
            &[],
        )
        .await
        .unwrap();
    assert_ne!(r.get::<_, i32>(0), pid1, "a fresh backend");
    assert!(
        r.get::<_, bool>(1),
        "temp table of the previous client is gone"
    );
    assert!(r.get::<_, bool>(2), "and so is its temporary schema");
}
