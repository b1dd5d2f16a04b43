//! Real components (built from `components/`, loaded by the proxy) on the query path against
//! a real primary and streaming replica.

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::{Grant, OnError, PoolMode};
use helios_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_sends_reads_to_the_replica_and_writes_to_the_primary() {
    let (primary, replica) = start_primary_and_replica().await;
    let direct = connect(&primary.direct("postgres")).await.unwrap();
    direct
        .batch_execute("create table kv(k int primary key, v text)")
        .await
        .unwrap();
    let mut config = proxy_config(&primary, PoolMode::Transaction, 3);
    add_replica(&mut config, &replica, "replica1", &["analytics"]);
    config.plugins.push(plugin(
        "router",
        "helios-router",
        &[Grant::Topology, Grant::Clock],
        "[workload.olap]\ntag = \"analytics\"\npatterns = [\"group by\"]\n",
    ));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    let on = |sql: &'static str| {
        let c = &c;
        async move {
            let r = c.simple_query(sql).await.unwrap();
            rows(&r)[0][0].clone().unwrap()
        }
    };
    // Simple protocol: reads on the replica (port tells which node answered).
    let port = |p: &Pg| p.port.to_string();
    assert_eq!(on("select inet_server_port()::text").await, port(&replica));
    assert_eq!(on("select pg_is_in_recovery()::text").await, "true");
    // Writes on the primary, and a read in a transaction stays there.
    c.batch_execute("insert into kv values (1, 'one')")
        .await
        .unwrap();
    c.batch_execute("begin").await.unwrap();
    assert_eq!(on("select inet_server_port()::text").await, port(&primary));
    c.batch_execute("commit").await.unwrap();
    // Hints.
    assert_eq!(
        on("/*+ route=primary */ select inet_server_port()::text").await,
        port(&primary)
    );
    assert_eq!(
        on("/*+ route=node:replica1 */ select inet_server_port()::text").await,
        port(&replica)
    );
    // Workload pattern to a tagged node (once the table has reached the replica).
    wait_for_replay(&primary, &replica).await;
    assert_eq!(
        on("select inet_server_port()::text from kv group by 1").await,
        port(&replica)
    );
    // Extended protocol too.
    let r = c
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap();
    assert!(
        r.get::<_, bool>(0),
        "extended-protocol read ran on the replica"
    );
    let n = c
        .execute("update kv set v = $1 where k = $2", &[&"uno", &1i32])
        .await
        .unwrap();
    assert_eq!(n, 1, "extended-protocol write ran on the primary");
    wait_for_replay(&primary, &replica).await;
    let v: String = c
        .query_one("select v from kv where k = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "uno");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrail_refusals_reach_a_real_driver_with_42501() {
    let pg = shared_pg();
    create_database(pg, "plug_guard").await;
    let direct = connect(&pg.direct("plug_guard")).await.unwrap();
    direct
        .batch_execute("create table users(id int, name text); create table events(id int); create table orders(id int, tenant_id int); insert into users values (1, 'a'), (2, 'b')")
        .await
        .unwrap();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.plugins.push(plugin(
        "guardrail",
        "helios-llm-guardrail",
        &[],
        "applications = [\"agent\"]\nlarge_tables = [\"events\"]\ntenant_tables = [\"orders\"]\n",
    ));
    let proxy = start_proxy(config).await;
    let agent = connect(&format!(
        "{} application_name=agent",
        via_proxy(&proxy, "postgres", "plug_guard")
    ))
    .await
    .unwrap();
    for (sql, why) in [
        ("DROP TABLE users", "DROP is not allowed"),
        ("TRUNCATE users", "TRUNCATE of public.users is not allowed"),
        ("DELETE FROM users", "without a WHERE clause"),
        ("UPDATE users SET name = 'x'", "without a WHERE clause"),
        ("SELECT * FROM events", "needs a numeric LIMIT"),
        (
            "SELECT * FROM orders WHERE id = 1",
            "top-level WHERE tenant_id = a value",
        ),
    ] {
        let err = agent.simple_query(sql).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "{sql}");
        let msg = db_message(&err);
        assert!(
            msg.contains("component guardrail") && msg.contains(why),
            "{sql}: {msg}"
        );
        // Extended protocol is guarded the same way.
        let err = agent.query(sql, &[]).await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "42501", "extended {sql}");
    }
    agent
        .batch_execute("DELETE FROM users WHERE id = 2")
        .await
        .unwrap();
    let n: i64 = agent
        .query_one("select count(*) from users", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    agent
        .query("select * from events limit 5", &[])
        .await
        .unwrap();
    agent
        .query("select * from orders where tenant_id = 3", &[])
        .await
        .unwrap();
    // Another application is not guarded.
    let admin = connect(&format!(
        "{} application_name=admin",
        via_proxy(&proxy, "postgres", "plug_guard")
    ))
    .await
    .unwrap();
    admin.batch_execute("TRUNCATE events").await.unwrap();
}

async fn misbehaving_proxy(
    db: &str,
    mode: &str,
    on_error: Option<OnError>,
) -> heliosproxy::server::ProxyHandle {
    let pg = shared_pg();
    create_database(pg, db).await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    let mut p = plugin(
        "misbehave",
        "helios-misbehave",
        &[Grant::Kv],
        &format!("mode = \"{mode}\"\n"),
    );
    p.on_error = on_error;
    p.memory_mb = 8;
    config.plugins.push(p);
    start_proxy(config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_components_cost_only_their_own_call() {
    for mode in ["loop", "trap", "panic", "hog"] {
        let db = format!("plug_bad_{mode}");
        let proxy = misbehaving_proxy(&db, mode, Some(OnError::Deny)).await;
        let c = connect(&via_proxy(&proxy, "postgres", &db)).await.unwrap();
        let bystander = connect(&via_proxy(&proxy, "postgres", &db)).await.unwrap();
        let started = Instant::now();
        let err = c.simple_query("select 1").await.unwrap_err();
        assert_eq!(err.code().unwrap().code(), "58000", "{mode}: {err}");
        let msg = db_message(&err);
        assert!(
            msg.contains("component misbehave failed in pre-query"),
            "{mode}: {msg}"
        );
        if mode == "loop" {
            assert!(msg.contains("timed out"), "{msg}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{mode} took {:?}",
            started.elapsed()
        );
        // The session, the component (a fresh instance) and other clients keep working.
        let r = c.simple_query("select 'spare-me'").await.unwrap();
        assert_eq!(rows(&r)[0][0].as_deref(), Some("spare-me"), "{mode}");
        let r = bystander
            .simple_query("select 'spare-me', 2")
            .await
            .unwrap();
        assert_eq!(rows(&r)[0][1].as_deref(), Some("2"), "{mode}");
        let plugin = &proxy.shared.pipeline.load().plugins()[0].clone();
        let stats = &plugin.stats;
        assert!(
            stats.errors.load(std::sync::atomic::Ordering::Relaxed) >= 1,
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_error_allow_lets_the_statement_through() {
    let proxy = misbehaving_proxy("plug_allow", "trap", Some(OnError::Allow)).await;
    let c = connect(&via_proxy(&proxy, "postgres", "plug_allow"))
        .await
        .unwrap();
    let r = c.simple_query("select 7").await.unwrap();
    assert_eq!(rows(&r)[0][0].as_deref(), Some("7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_blocks_and_responses_reach_the_client() {
    let proxy = misbehaving_proxy("plug_rw", "bad-rewrite", None).await;
    let c = connect(&via_proxy(&proxy, "postgres", "plug_rw"))
        .await
        .unwrap();
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(
        err.code().unwrap().code(),
        "42601",
        "the rewritten SQL reached the server: {err}"
    );
    assert_eq!(
        rows(&c.simple_query("select 'spare-me'").await.unwrap())[0][0].as_deref(),
        Some("spare-me")
    );

    let proxy = misbehaving_proxy("plug_block", "block", None).await;
    let c = connect(&via_proxy(&proxy, "postgres", "plug_block"))
        .await
        .unwrap();
    let err = c.simple_query("select 1").await.unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    assert!(db_message(&err).contains("component misbehave: blocked on purpose"));

    let proxy = misbehaving_proxy("plug_respond", "respond", None).await;
    let c = connect(&via_proxy(&proxy, "postgres", "plug_respond"))
        .await
        .unwrap();
    let r = c.simple_query("select anything").await.unwrap();
    assert_eq!(
        rows(&r),
        vec![
            vec![Some("42".to_owned()), Some("component".to_owned())],
            vec![None, Some("null row".to_owned())]
        ]
    );
    assert_eq!(server_acquires(&proxy), 1, "only login touched a backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_query_and_kv_see_every_outcome() {
    let proxy = misbehaving_proxy("plug_audit", "audit", None).await;
    let c = connect(&via_proxy(&proxy, "postgres", "plug_audit"))
        .await
        .unwrap();
    c.simple_query("select generate_series(1, 3)")
        .await
        .unwrap();
    c.query("select $1::int", &[&5i32]).await.unwrap();
    assert!(c.simple_query("select 1/0").await.is_err());
    let r = rows(&c.simple_query("select helios_audit").await.unwrap());
    assert_eq!(r[0][0].as_deref(), Some("2"), "ok statements: {r:?}");
    assert_eq!(r[0][1].as_deref(), Some("1"), "failed statements: {r:?}");
    assert_eq!(r[0][2].as_deref(), Some("4"), "rows: {r:?}");
    assert_eq!(r[0][3].as_deref(), Some("select 1/0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticate_hook_denies_and_sets_the_tenant() {
    let pg = shared_pg();
    create_database(pg, "plug_auth").await;
    let direct = connect(&pg.direct("plug_auth")).await.unwrap();
    let _ = direct.batch_execute("create role mallory login").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.plugins.push(plugin(
        "gate",
        "helios-misbehave",
        &[Grant::Kv],
        "mode = \"gatekeeper\"\n",
    ));
    config.plugins.push(plugin(
        "audit",
        "helios-misbehave",
        &[Grant::Kv],
        "mode = \"audit\"\n",
    ));
    let proxy = start_proxy(config).await;
    let err = connect(&via_proxy(&proxy, "mallory", "plug_auth"))
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "28000");
    assert!(db_message(&err).contains("mallory may not log in"));
    let c = connect(&via_proxy(&proxy, "postgres", "plug_auth"))
        .await
        .unwrap();
    let r = rows(&c.simple_query("select helios_audit").await.unwrap());
    assert_eq!(
        r[0][4].as_deref(),
        Some("acme"),
        "tenant from Authenticate reaches later hooks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_importing_an_ungranted_interface_is_refused_at_load() {
    let pg = shared_pg();
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config
        .plugins
        .push(plugin("router", "helios-router", &[Grant::Clock], ""));
    let err = match heliosproxy::server::Proxy::bind(config).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("loading must fail"),
    };
    assert!(err.contains("router") && err.contains("topology"), "{err}");
}
