//! The major-version upgrade orchestrator end to end, as an operator drives it with curl:
//! PostgreSQL 15 (Debian) to 17 (the npm package's binaries) under pgbench writing through
//! the proxy. Logical replication set up by the orchestrator, a stage ticking on the new
//! server, live reads compared over a shadow window, the cut with 0 failed transactions and
//! every committed row on PostgreSQL 17, the rollback path kept current and then taken, and
//! the refusals.

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::{
    NodeRole, PoolMode, StageConfig, StageServer, UpgradeConfig,
};
use helios_tests::*;
use serde_json::Value;

const KEY: &str = "upgrade-key";

async fn api(
    proxy: &heliosproxy::ProxyHandle,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    admin_api::admin_json(proxy, KEY, method, path, body).await
}

/// Waits for `phase`; on failure shows the servers' logs' tails.
async fn wait_phase(
    proxy: &heliosproxy::ProxyHandle,
    phase: &str,
    secs: u64,
    servers: &[&Pg],
) -> Value {
    let logs = || {
        servers
            .iter()
            .map(|pg| {
                let log =
                    std::fs::read_to_string(pg.data_dir.join("server.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                format!(
                    "--- {}:\n{}",
                    pg.port,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (code, s) = api(proxy, "GET", "/api/upgrade", None).await;
        assert_eq!(code, 200, "{s}");
        if s["phase"] == phase {
            return s;
        }
        assert!(s["phase"] != "failed", "upgrade failed: {s:#}\n{}", logs());
        assert!(
            Instant::now() < deadline,
            "still not {phase}: {s:#}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn server_version(c: &tokio_postgres::Client) -> String {
    c.query_one("show server_version_num", &[])
        .await
        .unwrap()
        .get(0)
}

async fn count(pg: &Pg, sql: &str) -> i64 {
    let c = connect(&pg.direct("shop")).await.unwrap();
    c.query_one(sql, &[]).await.unwrap().get(0)
}

fn pgbench_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["-h", "127.0.0.1", "-p", port, "-U", "postgres"];
    args.extend_from_slice(extra);
    args.push("shop");
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg15_to_pg17_under_pgbench_cuts_with_no_failed_transaction_and_rolls_back() {
    let old = start_pg(heliosproxy::embedded::HostAuth::Trust, None);
    let c = connect(&old.direct("postgres")).await.unwrap();
    c.batch_execute("alter system set wal_level = logical")
        .await
        .unwrap();
    drop(c);
    stop(&old);
    restart(&old);
    let new = pg17::start_pg17();
    create_database(&old, "shop").await;
    let old_port = old.port.to_string();
    let (ok, _, err) = run_program(
        "pgbench",
        &pgbench_args(&old_port, &["-i", "-s", "1", "-q"]),
        &[],
    )
    .await;
    assert!(ok, "{err}");
    // A sequence: logical replication does not carry it, the cut copies it.
    let c = connect(&old.direct("shop")).await.unwrap();
    c.batch_execute(
        "create table orders (id serial primary key, note text); \
         insert into orders (note) select 'before' from generate_series(1, 5); \
         create table outside (n int); \
         create role outside_app login; grant all on outside to outside_app",
    )
    .await
    .unwrap();
    drop(c);
    // A client that talks to the old server directly, not through the proxy.
    let outside = |pg: &Pg| {
        let url = format!(
            "host=127.0.0.1 port={} user=outside_app dbname=shop",
            pg.port
        );
        async move {
            let c = connect(&url).await.unwrap();
            c.batch_execute("insert into outside values (1)").await
        }
    };
    outside(&old).await.unwrap();

    let mut config = proxy_config(&old, PoolMode::Transaction, 8);
    config.nodes[0].name = "pg15".into();
    add_replica(&mut config, &new, "pg17", &[]);
    config.nodes[1].role = NodeRole::Replica;
    config.admin.api_key = Some(KEY.into());
    config.upgrade = Some(UpgradeConfig {
        enabled: true,
        from_backend: "pg15".into(),
        to_backend: "pg17".into(),
        databases: vec!["shop".into()],
        user: "postgres".into(),
        password: None,
        copy_schema: true,
        shadow_window: Duration::from_secs(3),
        cut_threshold: 0,
        min_compared: 1,
        auto_cut: true,
        catch_up_timeout: Duration::from_secs(10),
        stages: vec![StageConfig {
            name: "verify".into(),
            tick: Duration::from_millis(300),
            sql: "select count(*) from pgbench_history".into(),
            on: StageServer::To,
            database: None,
        }],
    });
    let proxy = start_proxy(config).await;

    for (path, want) in [
        ("/api/upgrade/cut", 409),
        ("/api/upgrade/rollback", 409),
        ("/api/upgrade/confirm", 409),
    ] {
        let (code, body) = api(&proxy, "POST", path, None).await;
        assert_eq!(code, want, "{path}: {body}");
    }
    let (code, _) = admin_http(proxy.admin_addr, "GET", "/api/upgrade", None, None).await;
    assert_eq!(code, 401);

    // pgbench writes (accounts and history; branches and tellers stay as they are), and a
    // reader the shadow windows compare on PostgreSQL 17.
    let proxy_port = proxy.local_addr.port().to_string();
    let bench = tokio::spawn(async move {
        run_program(
            "pgbench",
            &pgbench_args(&proxy_port, &["-n", "-N", "-c", "4", "-j", "2", "-T", "14"]),
            &[],
        )
        .await
    });
    let reader_url = via_proxy(&proxy, "postgres", "shop");
    let reader = tokio::spawn(async move {
        let c = connect(&reader_url).await.unwrap();
        let started = Instant::now();
        let mut errors = Vec::new();
        while started.elapsed() < Duration::from_secs(13) {
            for sql in [
                "select bid, bbalance from pgbench_branches",
                "select count(*), sum(tbalance) from pgbench_tellers",
            ] {
                if let Err(e) = c.simple_query(sql).await {
                    errors.push(e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        errors
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, body) = api(&proxy, "POST", "/api/upgrade/start", None).await;
    assert_eq!(code, 202, "{body}");
    let (code, body) = api(&proxy, "POST", "/api/upgrade/start", None).await;
    assert_eq!(code, 409, "{body}");
    let status = wait_phase(&proxy, "cut", 40, &[&old, &new]).await;
    let (ok, out, err) = bench.await.unwrap();
    let reader_errors = reader.await.unwrap();
    println!("upgrade: {status:#}\n{out}");
    assert!(ok, "pgbench failed:\n{out}\n{err}");
    assert!(out.contains("number of failed transactions: 0 "), "{out}");
    assert!(reader_errors.is_empty(), "{reader_errors:?}");
    let processed: i64 = pgbench::processed(&out);

    // What the orchestrator reports: a passed window with reads compared and no diff, the
    // stage's runs on PostgreSQL 17, the pause at the cut.
    let last = status["windows"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["passed"], true, "{status:#}");
    assert_eq!(last["diff_count"], 0, "{status:#}");
    assert!(last["compared"].as_u64().unwrap() > 10, "{status:#}");
    let stage = &status["stages"][0];
    assert!(
        stage["runs"].as_u64().unwrap() > 0 && stage["errors"] == 0,
        "{status:#}"
    );
    assert!(
        stage["last_result"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .is_ok(),
        "{status:#}"
    );
    assert!(status["cut"]["pause_ms"].as_u64().is_some(), "{status:#}");

    // Every committed transaction is on PostgreSQL 17, and (through the rollback path) on
    // PostgreSQL 15 too; the balances agree with the history.
    let on_new = count(&new, "select count(*) from pgbench_history").await;
    assert_eq!(on_new, processed, "every committed row on PostgreSQL 17");
    assert_eq!(
        count(&new, "select sum(abalance)::int8 from pgbench_accounts").await,
        count(
            &new,
            "select coalesce(sum(delta), 0)::int8 from pgbench_history"
        )
        .await
    );
    let c17 = connect(&via_proxy(&proxy, "postgres", "shop"))
        .await
        .unwrap();
    let version = server_version(&c17).await;
    assert!(
        version.starts_with("17"),
        "writes go to PostgreSQL 17: {version}"
    );
    c17.batch_execute("insert into pgbench_history (tid, bid, aid, delta) values (1, 1, 1, 0)")
        .await
        .unwrap();
    assert_eq!(status["cut"]["sequences"], 1, "{status:#}");
    let id: i32 = c17
        .query_one(
            "insert into orders (note) values ('after') returning id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 6, "the sequence continues where PostgreSQL 15 left it");
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&old, "select count(*) from pgbench_history").await != processed + 1
        || count(&old, "select count(*) from orders").await != 6
    {
        assert!(
            Instant::now() < deadline,
            "the rollback path did not carry the write back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After the cut the old server refuses writes from clients outside the proxy too (the
    // rollback path above still applied there).
    let refused = outside(&old)
        .await
        .expect_err("the old server refuses writes");
    assert_eq!(refused.code().map(|c| c.code()), Some("25006"), "{refused}");

    // Rollback: writes go to PostgreSQL 15 again, with nothing lost.
    let (code, body) = api(&proxy, "POST", "/api/upgrade/rollback", None).await;
    assert_eq!(code, 202, "{body}");
    let status = wait_phase(&proxy, "rolled_back", 20, &[&old, &new]).await;
    println!("rollback: {}", status["rollback"]);
    let version = server_version(&c17).await;
    assert!(
        version.starts_with("15"),
        "writes are back on PostgreSQL 15: {version}"
    );
    assert_eq!(
        count(&old, "select count(*) from pgbench_history").await,
        processed + 1
    );
    outside(&old)
        .await
        .expect("after the rollback the old server takes writes from everyone again");
}
