//! Observability as operators use it: `/metrics` read by Prometheus's own parser after known
//! traffic, the SQL admin console through psql, `heliosproxy_query_stats` through psycopg
//! after a pgbench run, and the slow-query log.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::*;

/// Log lines the proxy wrote (the slow-query log is checked in them).
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "heliosproxy::slow_query=warn",
            ))
            .with_ansi(false)
            .with_writer(move || Capture(writer.clone()))
            .try_init();
        buf
    })
    .clone()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn psql(port: u16, user: &str, db: &str, sql: &str) -> (bool, String, String) {
    let port = port.to_string();
    run_program(
        "psql",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            user,
            "-d",
            db,
            "-X",
            "-A",
            "-F",
            "|",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ],
        &[("PGCONNECT_TIMEOUT", "10")],
    )
    .await
}

/// psql's unaligned output as rows of named columns.
fn table(out: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut lines = out.lines().filter(|l| !l.starts_with('(') && !l.is_empty());
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = header.split('|').collect();
    lines
        .map(|l| {
            cols.iter()
                .zip(l.split('|'))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_with_prometheus_and_count_known_traffic() {
    let pg = shared_pg();
    create_database(pg, "obs_metrics").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("mkey".into());
    config
        .plugins
        .push(plugin("guardrail", "helios-llm-guardrail", &[], ""));
    let proxy = start_proxy(config).await;
    let c = connect(&via_proxy(&proxy, "postgres", "obs_metrics"))
        .await
        .unwrap();
    for i in 0..30 {
        c.simple_query(&format!("select {i}")).await.unwrap();
    }
    assert!(c.simple_query("select * from no_such_table").await.is_err());

    assert_eq!(
        admin_http(proxy.admin_addr, "GET", "/metrics", None, None)
            .await
            .0,
        401
    );
    let (code, text) = admin_http(proxy.admin_addr, "GET", "/metrics", Some("mkey"), None).await;
    assert_eq!(code, 200, "{text}");
    assert!(
        text.trim_end().ends_with("# EOF"),
        "OpenMetrics text ends with # EOF"
    );

    let mut child = std::process::Command::new("python3")
        .arg(format!(
            "{}/drivers/parse_metrics.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Prometheus's parser rejected /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| {
                s["name"] == name
                    && labels
                        .iter()
                        .all(|(k, v)| s["labels"][*k].as_str() == Some(*v))
            })
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no sample {name} {labels:?} in\n{text}"))
    };
    let pool = [
        ("node", "primary"),
        ("database", "obs_metrics"),
        ("user", "postgres"),
    ];
    let acquires = value("heliosproxy_pool_acquires_total", &pool);
    // 31 statements, each its own checkout in transaction mode, plus the login's.
    assert_eq!(acquires, 32.0);
    assert_eq!(
        value("heliosproxy_pool_wait_seconds_count", &pool),
        acquires
    );
    let mut inf = pool.to_vec();
    inf.push(("le", "+Inf"));
    assert_eq!(
        value("heliosproxy_pool_wait_seconds_bucket", &inf),
        acquires
    );
    assert_eq!(
        value("heliosproxy_pool_connections_created_total", &pool),
        1.0
    );
    // The one server connection: back in the pool (idle, or `used` once idle past
    // health_check_after_ms on a slow machine), or still `active` when the scrape came
    // between the client reading its last ReadyForQuery and the proxy's release after it.
    let servers = ["idle", "used", "active"]
        .iter()
        .map(|state| {
            let mut labels = pool.to_vec();
            labels.push(("state", state));
            value("heliosproxy_pool_servers", &labels)
        })
        .sum::<f64>();
    assert_eq!(servers, 1.0);
    assert_eq!(
        value(
            "heliosproxy_clients",
            &[
                ("database", "obs_metrics"),
                ("user", "postgres"),
                ("state", "idle")
            ]
        ),
        1.0
    );
    let hook = [("component", "guardrail"), ("hook", "validate")];
    // The guardrail's Validate is pure: statements of one shape are decided once.
    let calls = value("heliosproxy_hook_calls_total", &hook);
    assert!(calls >= 1.0);
    assert_eq!(
        calls + value("heliosproxy_hook_cached_decisions_total", &hook),
        31.0
    );
    assert_eq!(value("heliosproxy_hook_call_seconds_count", &hook), calls);
    assert_eq!(value("heliosproxy_hook_errors_total", &hook), 0.0);
    assert_eq!(value("heliosproxy_node_up", &[("node", "primary")]), 1.0);
    assert_eq!(
        value(
            "heliosproxy_node_role",
            &[("node", "primary"), ("role", "primary")]
        ),
        1.0
    );
    assert_eq!(value("heliosproxy_queries_total", &[]), 31.0);
    assert_eq!(value("heliosproxy_query_errors_total", &[]), 1.0);
    assert_eq!(
        value(
            "heliosproxy_sessions_pinned",
            &[("reason", "temporary_objects")]
        ),
        0.0
    );

    // Open metrics when configured so.
    let mut open = proxy_config(pg, PoolMode::Transaction, 1);
    open.admin.metrics_open = true;
    let open = start_proxy(open).await;
    assert_eq!(
        admin_http(open.admin_addr, "GET", "/metrics", None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        admin_http(open.admin_addr, "GET", "/api/analytics", None, None)
            .await
            .0,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_shows_pools_clients_servers_and_stats() {
    let pg = shared_pg();
    create_database(pg, "obs_console").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.users = vec!["ops".into()];
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port();
    let c = connect(&format!(
        "{} application_name=obs-app",
        via_proxy(&proxy, "postgres", "obs_console")
    ))
    .await
    .unwrap();
    for _ in 0..10 {
        c.simple_query("select 1").await.unwrap();
    }

    // Only listed users get in.
    let (ok, _, err) = psql(port, "postgres", "heliosproxy", "SHOW POOLS").await;
    assert!(
        !ok && err.contains("not allowed in the admin console"),
        "{err}"
    );

    let (ok, out, err) = psql(port, "ops", "heliosproxy", "SHOW POOLS").await;
    assert!(ok, "{err}");
    let pools = table(&out);
    let row = pools
        .iter()
        .find(|r| r["database"] == "obs_console")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(row["user"], "postgres");
    assert_eq!(row["cl_active"], "1", "{out}");
    assert_eq!(row["cl_waiting"], "0");
    assert_eq!(row["sv_active"], "0");
    assert_eq!(row["sv_idle"], "1");
    assert_eq!(row["pool_mode"], "transaction");

    let (ok, out, err) = psql(port, "ops", "heliosproxy", "SHOW CLIENTS").await;
    assert!(ok, "{err}");
    let clients = table(&out);
    let me = clients
        .iter()
        .find(|r| r["application_name"] == "obs-app")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(me["database"], "obs_console");
    assert_eq!(me["state"], "idle");
    assert_eq!(me["addr"], "127.0.0.1");

    let pid = rows(&c.simple_query("select pg_backend_pid()").await.unwrap())[0][0]
        .clone()
        .unwrap();
    let (ok, out, err) = psql(port, "ops", "heliosproxy", "SHOW SERVERS").await;
    assert!(ok, "{err}");
    let servers = table(&out);
    assert!(
        servers.iter().any(|r| r["database"] == "obs_console"
            && r["remote_pid"] == pid
            && r["state"] == "idle"),
        "{out}"
    );

    let (ok, out, err) = psql(port, "ops", "heliosproxy", "SHOW STATS").await;
    assert!(ok, "{err}");
    let stats = table(&out);
    let row = stats
        .iter()
        .find(|r| r["database"] == "obs_console")
        .unwrap();
    assert_eq!(row["total_query_count"], "11", "{out}");
    assert_eq!(row["total_xact_count"], "11", "{out}");
    assert!(row["total_received"].parse::<u64>().unwrap() > 11 * 14);

    for (what, want) in [
        ("SHOW VERSION", "HeliosProxy"),
        ("SHOW DATABASES", "obs_console"),
        ("SHOW CONFIG", "pool_mode|transaction"),
        ("SHOW LISTS", "used_clients"),
    ] {
        let (ok, out, err) = psql(port, "ops", "heliosproxy", what).await;
        assert!(ok && out.contains(want), "{what}: {out}{err}");
    }
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "SHOW NONSENSE").await;
    assert!(!ok && err.contains("expected POOLS"), "{err}");

    // RECONNECT: the next statement runs on a new server connection.
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "RECONNECT obs_console").await;
    assert!(ok, "{err}");
    let pid2 = rows(&c.simple_query("select pg_backend_pid()").await.unwrap())[0][0]
        .clone()
        .unwrap();
    assert_ne!(pid, pid2, "RECONNECT closed the old server connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_transactions_and_kill_ends_clients() {
    let pg = shared_pg();
    create_database(pg, "obs_pause").await;
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.users = vec!["ops".into()];
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port();
    let url = via_proxy(&proxy, "postgres", "obs_pause");
    let a = connect(&url).await.unwrap();
    a.simple_query("begin; select 1").await.unwrap();

    // PAUSE waits for the open transaction.
    let pause =
        tokio::spawn(async move { psql(port, "ops", "heliosproxy", "PAUSE obs_pause").await });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned with a transaction still open"
    );
    a.simple_query("commit").await.unwrap();
    let (ok, _, err) = tokio::time::timeout(Duration::from_secs(10), pause)
        .await
        .expect("PAUSE returned once the transaction ended")
        .unwrap();
    assert!(ok, "{err}");

    // While paused, a new statement waits; RESUME lets it run.
    let b = connect(&url).await.unwrap();
    let waiting = tokio::spawn(async move { b.simple_query("select 42").await.map(|m| rows(&m)) });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !waiting.is_finished(),
        "a statement ran while its database was paused"
    );
    let (ok, out, _) = psql(port, "ops", "heliosproxy", "SHOW DATABASES").await;
    assert!(ok);
    assert!(
        table(&out)
            .iter()
            .any(|r| r["name"] == "obs_pause" && r["paused"] == "1"),
        "{out}"
    );
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "RESUME obs_pause").await;
    assert!(ok, "{err}");
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the statement ran after RESUME")
        .unwrap()
        .unwrap();
    assert_eq!(got[0][0].as_deref(), Some("42"));
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "RESUME obs_pause").await;
    assert!(!ok && err.contains("not paused"), "{err}");

    // KILL ends the database's clients; new ones wait until RESUME.
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "KILL obs_pause").await;
    assert!(ok, "{err}");
    let e = a.simple_query("select 1").await.expect_err("killed client");
    assert!(
        e.as_db_error().is_some_and(|d| d.code().code() == "57P01") || e.is_closed(),
        "{e}"
    );
    let c = connect(&url).await.unwrap();
    let waiting = tokio::spawn(async move { c.simple_query("select 7").await.map(|m| rows(&m)) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "a killed database stays paused");
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "RESUME obs_pause").await;
    assert!(ok, "{err}");
    let got = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got[0][0].as_deref(), Some("7"));
    let (ok, _, err) = psql(port, "ops", "heliosproxy", "KILL no_such_db").await;
    assert!(!ok && err.contains("no such database"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_stats_after_pgbench_and_the_slow_query_log() {
    let logs = captured_logs();
    let pg = shared_pg();
    create_database(pg, "obs_stats").await;
    let (ok, _, err) = run_program(
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            "postgres",
            "-i",
            "-q",
            "obs_stats",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let mut config = proxy_config(pg, PoolMode::Transaction, 2);
    config.admin.api_key = Some("k".into());
    let proxy = start_proxy(config).await;
    let port = proxy.local_addr.port().to_string();
    let (ok, _, err) = run_program(
        "pgbench",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "-n",
            "-S",
            "-c",
            "2",
            "-t",
            "50",
            "-M",
            "simple",
            "obs_stats",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    let out = run_driver_script("query_stats.py", &proxy, "obs_stats").await;
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let row = &v["rows"][0];
    assert_eq!(
        row[1], "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
        "{v}"
    );
    assert_eq!(row[2], "100", "2 clients × 50 transactions: {v}");
    assert_eq!(row[3], "0");
    assert_eq!(row[4], "100", "one row each");
    let p50: f64 = row[6].as_str().unwrap().parse().unwrap();
    let p99: f64 = row[7].as_str().unwrap().parse().unwrap();
    let max: f64 = row[8].as_str().unwrap().parse().unwrap();
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{v}");
    assert_eq!(row[9], "True");

    // The same numbers over HTTP.
    let (code, body) = admin_http(
        proxy.admin_addr,
        "GET",
        "/api/analytics?order=calls&limit=5",
        Some("k"),
        None,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"call_count\":100"), "{body}");

    // The slow-query log: fingerprint, normalised text, duration and node.
    let c = connect(&via_proxy(&proxy, "postgres", "obs_stats"))
        .await
        .unwrap();
    c.simple_query("select pg_sleep(0.2) /* secret-comment */, 'literal-value'")
        .await
        .unwrap();
    c.simple_query("select 'fast'").await.unwrap();
    let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
    let line = text
        .lines()
        .find(|l| l.contains("pg_sleep"))
        .unwrap_or_else(|| panic!("no slow-query line in {text:?}"));
    assert!(line.contains("slow query"), "{line}");
    assert!(line.contains("query=select pg_sleep($1)"), "{line}");
    assert!(
        line.contains("node=\"primary\"") || line.contains("node=primary"),
        "{line}"
    );
    assert!(line.contains("fingerprint="), "{line}");
    let ms: f64 = line
        .split("duration_ms=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!((200.0..5000.0).contains(&ms), "{line}");
    assert!(
        !line.contains("literal-value") && !line.contains("secret-comment"),
        "{line}"
    );
    assert!(!text.contains("'fast'"), "fast statements are not logged");
}
