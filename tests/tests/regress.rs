//! PostgreSQL's own regression suite (`pg_regress`, the parallel schedule of the installed
//! server's source, fetched by `scripts/pg-regress-setup.sh`) run directly and through the
//! proxy in session and transaction mode, each on a fresh cluster. The tests that fail
//! through the proxy but pass directly must be exactly the known ones below (named with
//! their reason in the README): anything else is a regression in what clients see.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use helios_tests::heliosproxy::config::PoolMode;
use helios_tests::heliosproxy::embedded::{InitOptions, LocalPostgres, find_bindir, free_port};
use helios_tests::*;

/// What a reused server connection cannot hide, in every pooled mode.
const REUSE: &[(&str, &str)] = &[
    (
        "guc",
        "a server connection an earlier client used has plpgsql loaded (LOAD cannot be undone)",
    ),
    (
        "stats",
        "pg_stat_database.sessions does not grow when a client reconnects to a pooled backend",
    ),
    (
        "indirect_toast",
        "sometimes: on a connection `guc` used, its custom setting stays a placeholder \
         (RESET ALL keeps it) and PostgreSQL warns about it when plpgsql loads",
    ),
];

/// What transaction pooling cannot give, beyond [`REUSE`].
const TRANSACTION: &[(&str, &str)] = &[
    (
        "sequence",
        "currval/lastval live in the backend that ran nextval, another transaction's",
    ),
    (
        "constraints",
        "currval after nextval in an earlier transaction",
    ),
    (
        "plancache",
        "a SQL-level prepared statement whose table was dropped cannot be prepared again \
         on another connection: EXECUTE reports it missing",
    ),
    (
        "prepare",
        "pg_prepared_statements on a shared server connection also lists the proxy's hp_… \
         statements (psql's \\gdesc in an earlier test prepares one); which connection the test \
         gets decides whether it sees them",
    ),
];

fn suite() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pg-regress");
    assert!(
        root.join("regress.so").exists() && root.join("regress/parallel_schedule").exists(),
        "PostgreSQL's regression suite is missing: run scripts/pg-regress-setup.sh (scripts/setup.sh does)"
    );
    root
}

/// A fresh cluster on a free port.
fn fresh_cluster(label: &str) -> LocalPostgres {
    let dir = temp_dir(&format!("regress-{label}"));
    let mut pg = LocalPostgres::init(&dir.join("data"), &InitOptions::default()).unwrap();
    pg.start(free_port()).unwrap();
    pg
}

/// Runs the parallel schedule against `port`; returns the failing tests.
async fn run_suite(label: &str, port: u16) -> BTreeSet<String> {
    let suite = suite();
    let bindir = find_bindir().unwrap();
    let pg_regress = bindir.join("../lib/pgxs/src/test/regress/pg_regress");
    let out = temp_dir(&format!("regress-out-{label}"));
    // The server (another user) writes COPY results there.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::create_dir_all(out.join("results")).unwrap();
    std::fs::set_permissions(out.join("results"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = tokio::process::Command::new(pg_regress)
        .arg(format!("--inputdir={}", suite.join("regress").display()))
        .arg(format!("--bindir={}", bindir.display()))
        .arg(format!("--dlpath={}", suite.display()))
        .arg(format!(
            "--schedule={}",
            suite.join("regress/parallel_schedule").display()
        ))
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .arg("--user=postgres")
        .arg(format!("--outputdir={}", out.display()))
        .arg("--max-connections=20")
        .current_dir(&out)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("tests passed") || stdout.contains("tests failed"),
        "pg_regress did not run ({label}):\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let failed: BTreeSet<String> = stdout
        .lines()
        .filter(|l| l.contains("... FAILED"))
        .filter_map(|l| {
            let l = l
                .trim_start()
                .strip_prefix("test ")
                .unwrap_or(l.trim_start());
            l.split_whitespace().next().map(str::to_owned)
        })
        .collect();
    let summary = stdout
        .lines()
        .find(|l| l.contains("tests failed") || l.contains("tests passed"))
        .unwrap_or_default()
        .trim();
    println!("{label}: {summary} {failed:?}");
    // The temp dir goes with the test process: the diffs are kept under target/ for a reader.
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/regress-diffs");
    if std::fs::create_dir_all(&kept).is_ok() {
        let _ = std::fs::copy(
            out.join("regression.diffs"),
            kept.join(format!("{label}.diffs")),
        );
    }
    failed
}

async fn through_proxy(label: &str, mode: PoolMode) -> BTreeSet<String> {
    let pg = fresh_cluster(label);
    let mut config = proxy_config(
        &Pg {
            port: pg.port,
            user: "postgres".into(),
            password: None,
            data_dir: pg.data_dir.clone(),
        },
        mode,
        30,
    );
    config.pool.max_connections = 200;
    let proxy = start_proxy(config).await;
    let failed = run_suite(label, proxy.local_addr.port()).await;
    drop(pg);
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_regression_suite_sees_the_proxy_as_postgresql() {
    let direct = {
        let pg = fresh_cluster("direct");
        run_suite("direct", pg.port).await
    };
    for (mode, known) in [
        (PoolMode::Session, REUSE.to_vec()),
        (PoolMode::Transaction, [REUSE, TRANSACTION].concat()),
    ] {
        let label = format!("{mode:?}").to_lowercase();
        let failed = through_proxy(&label, mode).await;
        let extra: Vec<&String> = failed.difference(&direct).collect();
        let unexplained: Vec<&&String> = extra
            .iter()
            .filter(|t| !known.iter().any(|(k, _)| *k == t.as_str()))
            .collect();
        let passing: Vec<&str> = known
            .iter()
            .map(|(k, _)| *k)
            .filter(|k| !failed.contains(*k))
            .collect();
        println!(
            "{label} mode: {} fail only through the proxy {extra:?}; known and passing now: {passing:?}",
            extra.len()
        );
        assert!(
            unexplained.is_empty(),
            "{label} mode: tests that pass directly fail through the proxy: {unexplained:?} \
             (their regression.diffs is kept as target/regress-diffs/{label}.diffs)"
        );
    }
}
