//! High availability against a real primary and a real streaming standby (`pg_basebackup
//! -R`): discovered roles and lag, circuit breakers, automatic failover after `kill -9` of
//! the primary under write load, a session that moves to the new primary with its state,
//! prepared statement, held cursor and open transaction, and a planned switchover under
//! pgbench. Every assertion is on what clients see.

use std::time::{Duration, Instant};

use helios_tests::heliosproxy::config::{Config, Grant, PoolMode};
use helios_tests::*;

const KEY: &str = "ha-admin-key";

fn ha_config(primary: &Pg, standby: &Pg) -> Config {
    let mut c = ha_proxy_config(primary, standby);
    c.admin.api_key = Some(KEY.into());
    c
}

async fn topology(proxy: &heliosproxy::ProxyHandle) -> serde_json::Value {
    let (code, body) = admin_http(proxy.admin_addr, "GET", "/api/topology", Some(KEY), None).await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn node<'a>(t: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap()
}

/// Polls the topology until `cond` holds (at most `secs`).
async fn wait_topology(
    proxy: &heliosproxy::ProxyHandle,
    secs: u64,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let t = topology(proxy).await;
        if cond(&t) {
            return t;
        }
        assert!(Instant::now() < deadline, "{what}; topology: {t:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn in_recovery(c: &tokio_postgres::Client) -> bool {
    let rows = c.simple_query("select pg_is_in_recovery()").await.unwrap();
    match &rows[1] {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_are_discovered_and_reads_avoid_a_lagging_standby_and_an_open_breaker() {
    let (primary, standby) = start_ha_pair(false).await;
    let mut config = ha_config(&primary, &standby);
    {
        let ha = config.ha.as_mut().unwrap();
        ha.max_replica_lag_bytes = 256 * 1024;
        ha.breaker_failures = 2;
        ha.breaker_reset_ms = 1500;
        ha.breaker_half_open_requests = 2;
    }
    config.plugins.push(plugin(
        "router",
        "helios-router",
        &[Grant::Topology, Grant::Clock],
        "max_replica_lag_bytes = 262144\n",
    ));
    let proxy = start_proxy(config).await;
    let t = topology(&proxy).await;
    assert_eq!(t["primary"], "pg1", "{t:#}");
    assert_eq!(node(&t, "pg1")["role"], "primary");
    assert_eq!(node(&t, "replica")["role"], "replica");
    assert_eq!(node(&t, "replica")["configured_role"], "auto");
    assert_eq!(node(&t, "replica")["breaker"], "closed");

    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    assert!(in_recovery(&c).await, "reads go to the standby");

    // The standby stops replaying while the primary writes ~2 MB of WAL.
    let s = connect(&standby.direct("postgres")).await.unwrap();
    s.batch_execute("select pg_wal_replay_pause()")
        .await
        .unwrap();
    let p = connect(&primary.direct("postgres")).await.unwrap();
    p.batch_execute(
        "create table lag_filler as select repeat('x', 1000) as pad from generate_series(1, 2000)",
    )
    .await
    .unwrap();
    let t = wait_topology(&proxy, 10, "the standby's lag is seen", |t| {
        node(t, "replica")["lag_bytes"].as_u64().unwrap_or(0) > 256 * 1024
    })
    .await;
    assert_eq!(node(&t, "replica")["readable"], false);
    tokio::time::sleep(Duration::from_millis(300)).await; // the router's node cache
    for _ in 0..5 {
        assert!(!in_recovery(&c).await, "no reads on a lagging standby");
    }
    s.batch_execute("select pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_topology(&proxy, 10, "the standby catches up", |t| {
        node(t, "replica")["readable"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(in_recovery(&c).await, "reads return to the standby");

    // The standby goes away: its breaker opens and reads stay on the primary, error-free.
    drop(s);
    stop(&standby);
    wait_topology(&proxy, 10, "the breaker opens", |t| {
        node(t, "replica")["breaker"] == "open"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..5 {
        assert!(!in_recovery(&c).await, "an open breaker receives nothing");
    }
    restart(&standby);
    wait_topology(&proxy, 15, "probes close the breaker", |t| {
        node(t, "replica")["breaker"] == "closed" && node(t, "replica")["readable"] == true
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        in_recovery(&c).await,
        "reads return after the probes succeeded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_primary_under_write_load_loses_no_acknowledged_commit() {
    let (primary, standby) = start_ha_pair(true).await;
    write_load::prepare(&primary, 8).await;
    let proxy = start_proxy(ha_config(&primary, &standby)).await;
    let load = write_load::WriteLoad::start(&via_proxy(&proxy, "postgres", "postgres"), 8);
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill_9(&primary);
    load.disrupted();
    let outcome = load.finish(Duration::from_secs(20)).await;
    let t = topology(&proxy).await;
    let errors = outcome.errors();
    // The new primary has every acknowledged commit, each applied once.
    let s = connect(&standby.direct("postgres")).await.unwrap();
    assert!(!in_recovery(&s).await, "the standby was promoted");
    let missing = outcome.missing_on(&standby).await;
    println!(
        "failover: longest client-visible pause {:?} (largest gap between two commits of one client), {} commits acknowledged, \
         {} client errors {errors:?}, {missing} acknowledged commits missing; last failover: {}",
        outcome.pause,
        outcome.acked(),
        errors.len(),
        t["last_failover"]
    );
    assert_eq!(outcome.blocked, 0, "clients never answered");
    assert_eq!(t["primary"], "replica", "{t:#}");
    assert_eq!(t["last_failover"]["kind"], "failover");
    println!("sessions: {}", t["sessions"]);
    assert!(
        t["sessions"]["moved"].as_u64().unwrap() > 0,
        "sessions moved to the new primary: {}",
        t["sessions"]
    );
    assert_eq!(missing, 0, "acknowledged commits missing after failover");
    assert!(errors.is_empty(), "client errors: {errors:?}");
    let pause = outcome.pause.expect("commits resumed after the failover");
    assert!(pause < Duration::from_secs(5), "pause {pause:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_moves_to_the_new_primary_with_its_state_statements_cursor_and_transaction() {
    // Synchronous: with an asynchronous standby a backend orphaned by the crash can still
    // acknowledge a commit the standby never receives (PostgreSQL's own semantics).
    let (primary, standby) = start_ha_pair(true).await;
    let p = connect(&primary.direct("postgres")).await.unwrap();
    p.batch_execute(
        "create table items (id int primary key, label text);
         insert into items select g, 'item ' || g from generate_series(1, 100) g;",
    )
    .await
    .unwrap();
    wait_for_replay(&primary, &standby).await;
    let proxy = start_proxy(ha_config(&primary, &standby)).await;
    let url = via_proxy(&proxy, "postgres", "postgres");
    let c = connect(&url).await.unwrap();
    c.batch_execute("SET work_mem = '7MB'; SET application_name = 'mover'")
        .await
        .unwrap();
    let by_id = c
        .prepare("select label from items where id = $1")
        .await
        .unwrap();
    c.batch_execute("PREPARE sql_by_id (int) AS SELECT label FROM items WHERE id = $1")
        .await
        .unwrap();
    c.batch_execute("DECLARE cur CURSOR WITH HOLD FOR SELECT id FROM items ORDER BY id")
        .await
        .unwrap();
    let ids = |msgs: Vec<tokio_postgres::SimpleQueryMessage>| -> Vec<i32> {
        msgs.iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
                _ => None,
            })
            .collect()
    };
    assert_eq!(
        ids(c.simple_query("FETCH 10 FROM cur").await.unwrap()),
        (1..=10).collect::<Vec<_>>()
    );
    // Another session is inside a transaction that has written.
    let w = connect(&url).await.unwrap();
    w.batch_execute("BEGIN; INSERT INTO items VALUES (1000, 'before the crash')")
        .await
        .unwrap();

    kill_9(&primary);

    // The open transaction continues on the new primary and commits.
    w.batch_execute("INSERT INTO items VALUES (1001, 'after the crash')")
        .await
        .expect("the transaction was replayed on the new primary");
    w.batch_execute("COMMIT").await.expect("and commits there");
    // The cursor continues where it was, with the session's settings and statement.
    assert_eq!(
        ids(c
            .simple_query("FETCH 5 FROM cur")
            .await
            .expect("cursor restored")),
        (11..=15).collect::<Vec<_>>()
    );
    let work_mem: String = c.query_one("SHOW work_mem", &[]).await.unwrap().get(0);
    assert_eq!(work_mem, "7MB");
    let app: String = c
        .query_one("SHOW application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(app, "mover");
    let label: String = c.query_one(&by_id, &[&42i32]).await.unwrap().get(0);
    assert_eq!(label, "item 42");
    let rows = c.simple_query("EXECUTE sql_by_id(7)").await.unwrap();
    assert!(
        rows.iter().any(
            |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("item 7"))
        ),
        "SQL-level prepared statement restored"
    );
    assert!(!in_recovery(&c).await, "served by the promoted standby");

    let s = connect(&standby.direct("postgres")).await.unwrap();
    let rows: i64 = s
        .query_one("select count(*) from items where id in (1000, 1001)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        rows, 2,
        "both writes of the replayed transaction committed once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_switchover_under_pgbench_fails_no_transaction() {
    let (primary, standby) = start_ha_pair(false).await;
    let port = primary.port.to_string();
    let (ok, _, err) = run_program(
        "pgbench",
        &[
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "postgres",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    wait_for_replay(&primary, &standby).await;
    let proxy = start_proxy(ha_config(&primary, &standby)).await;
    let proxy_port = proxy.local_addr.port().to_string();
    let bench = tokio::spawn(async move {
        run_program(
            "pgbench",
            &[
                "-n",
                "-c",
                "4",
                "-j",
                "2",
                "-T",
                "6",
                "-h",
                "127.0.0.1",
                "-p",
                &proxy_port,
                "-U",
                "postgres",
                "postgres",
            ],
            &[],
        )
        .await
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (code, body) = admin_http(
        proxy.admin_addr,
        "POST",
        "/api/topology/switchover",
        Some(KEY),
        Some(r#"{"target":"replica"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["to"], "replica");
    let (ok, out, err) = bench.await.unwrap();
    println!("switchover: {report}\n{out}");
    assert!(ok, "pgbench failed:\n{out}\n{err}");
    let processed: i64 = pgbench::processed(&out);
    assert!(
        out.contains("number of failed transactions: 0 "),
        "no failed transactions:\n{out}"
    );
    let t = topology(&proxy).await;
    assert_eq!(t["primary"], "replica");
    assert_eq!(node(&t, "pg1")["role"], "fenced");
    // Every transaction pgbench counted is on the new primary, once.
    let s = connect(&standby.direct("postgres")).await.unwrap();
    assert!(!in_recovery(&s).await);
    let history: i64 = s
        .query_one("select count(*) from pgbench_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, processed);
}

const JOURNAL_KEY: &str = "journal-reader-key";

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_records_statements_with_parameters_rows_errors_and_transactions() {
    let pg = shared_pg();
    create_database(pg, "journaled").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some(KEY.into());
    config.admin.journal_api_key = Some(JOURNAL_KEY.into());
    let journal_dir = temp_dir("journal");
    config.journal = Some(helios_tests::heliosproxy::config::JournalConfig {
        dir: journal_dir.clone(),
        ..Default::default()
    });
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "journaled"))
        .await
        .unwrap();
    c.batch_execute("create table t (id int, label text)")
        .await
        .unwrap();
    c.execute("insert into t values ($1, $2)", &[&7i32, &"seven"])
        .await
        .unwrap();
    c.batch_execute("begin; insert into t values (8, 'eight'); insert into t values (9, 'nine')")
        .await
        .unwrap();
    c.batch_execute("commit").await.unwrap();
    let rows = c.query("select id from t order by id", &[]).await.unwrap();
    assert_eq!(rows.len(), 3);
    c.query("select id from t order by id", &[]).await.unwrap();
    // Secrets never reach the journal: a role's password, a secret setting's value, the
    // parameters of a statement that matches a configured pattern.
    c.batch_execute(
        "DROP ROLE IF EXISTS journal_secret_role; \
         CREATE ROLE journal_secret_role PASSWORD 'hunter2-secret'",
    )
    .await
    .unwrap();
    c.batch_execute("select set_config('app.api_key', 'sk-live-123', false)")
        .await
        .unwrap();
    c.query("select $1::text as password", &[&"param-secret"])
        .await
        .unwrap();
    let err = c
        .batch_execute("select * from missing_table")
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42P01");

    // Records are written off the client's path: the last one may land just after the
    // client saw its answer.
    let mut j = serde_json::Value::Null;
    let (code, _) = admin_http(proxy.admin_addr, "GET", "/api/journal", Some(KEY), None).await;
    assert_eq!(code, 401, "the journal needs its own key");
    for _ in 0..100 {
        let (code, body) = admin_http(
            proxy.admin_addr,
            "GET",
            "/api/journal",
            Some(JOURNAL_KEY),
            None,
        )
        .await;
        assert_eq!(code, 200, "{body}");
        j = serde_json::from_str(&body).unwrap();
        if body.contains("missing_table") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let records = j["records"].as_array().unwrap();
    let everything = j.to_string();
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(&journal_dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(file_mode(&path), 0o600, "{}", path.display());
        on_disk.extend(std::fs::read(&path).unwrap());
    }
    assert_eq!(file_mode(&journal_dir), 0o700);
    let on_disk = String::from_utf8_lossy(&on_disk);
    for secret in ["hunter2-secret", "sk-live-123", "param-secret"] {
        assert!(!everything.contains(secret), "{secret} in GET /api/journal");
        assert!(!on_disk.contains(secret), "{secret} in a journal file");
    }
    assert!(everything.contains("CREATE ROLE journal_secret_role PASSWORD '[redacted]'"));
    let find = |prefix: &str| -> Vec<&serde_json::Value> {
        records
            .iter()
            .filter(|r| r["sql"].as_str().unwrap().starts_with(prefix))
            .collect()
    };
    let insert = find("insert into t values ($1")[0];
    assert_eq!(insert["rows"], 1);
    assert_eq!(insert["user"], "postgres");
    assert_eq!(insert["database"], "journaled");
    assert_eq!(insert["node"], "primary");
    assert_eq!(insert["params"][1], "seven", "{insert}");
    assert_eq!(insert["transaction_id"], 0, "autocommit");
    let tx = find("begin;")[0];
    assert_eq!(tx["rows"], 2, "two rows inserted by the batch");
    let commit = find("commit")[0];
    assert_ne!(commit["transaction_id"], 0, "{commit}");
    let selects = find("select id from t");
    assert_eq!(selects.len(), 2);
    assert_eq!(selects[0]["rows"], 3);
    assert_eq!(
        selects[0]["checksum"], selects[1]["checksum"],
        "same results, same checksum"
    );
    assert_ne!(selects[0]["checksum"], insert["checksum"]);
    let failed = find("select * from missing_table")[0];
    assert_eq!(failed["error"][0], "42P01");
    assert!(failed["duration_us"].as_u64().is_some());
    assert_eq!(j["dropped"], 0);
    let seqs: Vec<u64> = records.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_manual_failover_queries_wait_a_bounded_time_then_an_operator_promotes() {
    let (primary, standby) = start_ha_pair(false).await;
    let mut config = ha_config(&primary, &standby);
    {
        let ha = config.ha.as_mut().unwrap();
        ha.failover = helios_tests::heliosproxy::config::FailoverMode::Manual;
        ha.buffer_timeout_ms = 1500;
    }
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    c.batch_execute("create table m (x int)").await.unwrap();
    kill_9(&primary);
    wait_topology(&proxy, 10, "the primary is seen down", |t| {
        node(t, "pg1")["down"] == true
    })
    .await;
    // Nobody promotes: the query waits for the buffer timeout, then fails clearly.
    let started = Instant::now();
    let err = c
        .batch_execute("insert into m values (1)")
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert_eq!(err.code().unwrap().code(), "08006", "{err}");
    assert!(
        db_message(&err).contains("no new primary took over within 1500 ms"),
        "{}",
        db_message(&err)
    );
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(10),
        "{waited:?}"
    );
    // The operator promotes the standby; the session (or a new one) writes there.
    let (code, body) = admin_http(
        proxy.admin_addr,
        "POST",
        "/api/topology/switchover",
        Some(KEY),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let c = connect(&via_proxy(&proxy, "postgres", "postgres"))
        .await
        .unwrap();
    c.batch_execute("insert into m values (2)").await.unwrap();
    assert!(!in_recovery(&c).await);
}
