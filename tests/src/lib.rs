//! Test harness: real PostgreSQL servers started with `initdb` + `pg_ctl` on free loopback
//! ports, the proxy started in-process on a free port, and real client drivers.
//!
//! Servers are stopped when the test binary exits (an `atexit` hook), so a failing test does
//! not leave PostgreSQL processes behind.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use heliosproxy::config::{
    AuthMethod, Config, Grant, NodeConfig, NodeRole, PluginConfig, PoolMode,
};
use heliosproxy::embedded::{self, HostAuth, InitOptions, LocalPostgres};
use heliosproxy::server::{Proxy, ProxyHandle};

pub mod admin_api;
pub use admin_api::{admin_http, admin_http_with};
pub mod cache;
pub mod link;
pub mod pg17;
pub mod pgbench;
pub mod published;
pub mod raw;
pub mod redis;
pub mod signals;
pub mod sync_pair;
pub mod tokens;
pub mod write_load;

pub use heliosproxy;
pub use tokio_postgres;

pub(crate) static SERVERS: Mutex<Vec<LocalPostgres>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

extern "C" fn stop_everything() {
    if let Ok(mut servers) = SERVERS.lock() {
        servers.clear();
    }
    if let Ok(dirs) = DIRS.lock() {
        for d in dirs.iter() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn register_cleanup() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc_atexit(stop_everything) };
    });
}

unsafe extern "C" {
    #[link_name = "atexit"]
    fn libc_atexit(cb: extern "C" fn()) -> i32;
}

/// A fresh directory for this test process, removed at exit; readable by the server user.
pub fn temp_dir(label: &str) -> PathBuf {
    register_cleanup();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("helios-test-{}-{label}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    DIRS.lock().unwrap().push(dir.clone());
    dir
}

/// A running test server: its port and the superuser credentials.
#[derive(Debug, Clone)]
pub struct Pg {
    /// Loopback port.
    pub port: u16,
    /// Superuser.
    pub user: String,
    /// Superuser password, when the server asks for one.
    pub password: Option<String>,
    /// Data directory.
    pub data_dir: PathBuf,
}

impl Pg {
    /// A libpq-style connection string straight to the server.
    pub fn direct(&self, database: &str) -> String {
        let mut s = format!(
            "host=127.0.0.1 port={} user={} dbname={database}",
            self.port, self.user
        );
        if let Some(pw) = &self.password {
            s.push_str(&format!(" password={pw}"));
        }
        s
    }
}

/// Starts a new PostgreSQL server with the given TCP authentication.
pub fn start_pg(host_auth: HostAuth, password: Option<&str>) -> Pg {
    let dir = temp_dir("pg");
    let data = dir.join("data");
    let options = InitOptions {
        superuser: "postgres".into(),
        password: password.map(str::to_owned),
        host_auth,
    };
    let mut pg = LocalPostgres::init(&data, &options).expect("initdb");
    pg.start(embedded::free_port()).expect("start postgres");
    let info = Pg {
        port: pg.port,
        user: "postgres".into(),
        password: password.map(str::to_owned),
        data_dir: data,
    };
    SERVERS.lock().unwrap().push(pg);
    info
}

/// A trust-auth primary and a streaming replica of it (caught up when this returns).
pub async fn start_primary_and_replica() -> (Pg, Pg) {
    let primary = start_pg(HostAuth::Trust, None);
    let info = start_standby_of(&primary, "");
    let c = connect(&info.direct("postgres"))
        .await
        .expect("replica accepts connections");
    let in_recovery: bool = c
        .query_one("select pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(in_recovery, "the replica is a standby");
    (primary, info)
}

/// A streaming standby of `primary` (`pg_basebackup -R`) with `settings` appended to its
/// `postgresql.conf`, started on a free port.
pub fn start_standby_of(primary: &Pg, settings: &str) -> Pg {
    let data = temp_dir("standby").join("data");
    let mut standby = {
        let servers = SERVERS.lock().unwrap();
        let p = servers
            .iter()
            .find(|s| s.port == primary.port)
            .expect("primary registered");
        LocalPostgres::standby_of(p, &data, "postgres").expect("pg_basebackup")
    };
    standby.configure(settings).expect("configure standby");
    standby.start(embedded::free_port()).expect("start standby");
    let info = Pg {
        port: standby.port,
        user: "postgres".into(),
        password: None,
        data_dir: data,
    };
    SERVERS.lock().unwrap().push(standby);
    info
}

/// Waits until `replica` has replayed everything `primary` has written so far.
pub async fn wait_for_replay(primary: &Pg, replica: &Pg) {
    let p = connect(&primary.direct("postgres")).await.unwrap();
    let lsn: String = p
        .query_one("select pg_current_wal_lsn()::text", &[])
        .await
        .unwrap()
        .get(0);
    let r = connect(&replica.direct("postgres")).await.unwrap();
    for _ in 0..200 {
        let caught_up: bool = r
            .query_one(
                "select pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&lsn],
            )
            .await
            .unwrap()
            .get(0);
        if caught_up {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("replica did not catch up with {lsn}");
}

/// The path of a first-party component built for `wasm32-wasip2` (built on first use, in
/// its own target directory so it never waits on the test build's lock).
pub fn component_wasm(crate_name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = root.join("target").join("wasm");
            let out = std::process::Command::new(env!("CARGO"))
                .current_dir(&root)
                .env("CARGO_TARGET_DIR", &target)
                .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
                .args(["-p", "helios-router", "-p", "helios-llm-guardrail", "-p", "helios-misbehave"])
                .args(["-p", "helios-legacy-v02", "-p", "helios-cache-policy", "-p", "helios-auth"])
                .output()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "building components failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`):\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(target.join("wasm32-wasip2").join("wasm"))
        })
        .as_ref()
        .expect("components build");
    let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// A `[[plugins]]` entry for a first-party component.
pub fn plugin(name: &str, crate_name: &str, grants: &[Grant], config: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        source: component_wasm(crate_name).display().to_string(),
        hooks: vec![],
        grants: grants.to_vec(),
        on_error: None,
        timeout_ms: 10,
        memory_mb: 16,
        instances: 2,
        config: toml::from_str(config).expect("plugin config parses"),
        post_query_rows_bytes: 0,
        documents: Default::default(),
    }
}

/// Adds a replica node to a proxy config.
pub fn add_replica(config: &mut Config, replica: &Pg, name: &str, tags: &[&str]) {
    config.nodes.push(NodeConfig {
        name: name.into(),
        host: "127.0.0.1".into(),
        port: replica.port,
        role: NodeRole::Replica,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        data_dir: None,
    });
}

/// One trust-auth server shared by every test in this binary.
pub fn shared_pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(|| start_pg(HostAuth::Trust, None))
}

/// A fresh database on `pg` so a test's tables and pools are its own.
pub async fn create_database(pg: &Pg, name: &str) {
    let client = connect(&pg.direct("postgres"))
        .await
        .expect("direct connection");
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .await
        .expect("drop database");
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
}

/// A proxy config in front of `pg` with trust auth.
pub fn proxy_config(pg: &Pg, mode: PoolMode, server_connections: usize) -> Config {
    let mut c = Config {
        listen_address: "127.0.0.1:0".into(),
        admin_address: "127.0.0.1:0".into(),
        ..Config::default()
    };
    c.pool.mode = mode;
    c.pool.server_connections = server_connections;
    c.pool.checkout_timeout_ms = 5000;
    c.auth.method = AuthMethod::Trust;
    static CACHE: OnceLock<PathBuf> = OnceLock::new();
    c.plugin_runtime.cache_dir = Some(CACHE.get_or_init(|| temp_dir("component-cache")).clone());
    c.auth.server_password = pg.password.clone();
    c.nodes.push(NodeConfig {
        name: "primary".into(),
        host: "127.0.0.1".into(),
        port: pg.port,
        role: NodeRole::Primary,
        tags: vec![],
        data_dir: None,
    });
    c
}

/// A transaction-mode proxy over a primary (`pg1`) and its standby (`replica`), roles
/// discovered, quick health checks (a node is down after two failed checks 50 ms apart).
pub fn ha_proxy_config(primary: &Pg, standby: &Pg) -> Config {
    let mut c = proxy_config(primary, PoolMode::Transaction, 8);
    c.nodes[0].name = "pg1".into();
    c.nodes[0].role = NodeRole::Auto;
    add_replica(&mut c, standby, "replica", &[]);
    c.nodes[1].role = NodeRole::Auto;
    c.ha = Some(heliosproxy::config::HaConfig {
        check_interval_ms: 100,
        retry_interval_ms: 50,
        check_timeout_ms: 500,
        failure_threshold: 2,
        buffer_timeout_ms: 20_000,
        ..Default::default()
    });
    c
}

/// Starts the proxy in this runtime.
pub async fn start_proxy(config: Config) -> ProxyHandle {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
    let problems = config.validate();
    assert!(problems.is_empty(), "test config invalid: {problems:?}");
    Proxy::bind(config).await.expect("proxy binds").start()
}

/// Connects with tokio-postgres and drives the connection in the background.
pub async fn connect(conn_str: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conn_str, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// A connection string to the proxy.
pub fn via_proxy(proxy: &ProxyHandle, user: &str, database: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user={user} dbname={database} connect_timeout=10",
        proxy.local_addr.port()
    )
}

/// The path of a PostgreSQL client program (`psql`, `pgbench`).
pub fn pg_program(name: &str) -> PathBuf {
    embedded::find_bindir()
        .expect("PostgreSQL binaries")
        .join(name)
}

/// Runs a client program with a timeout and returns (success, stdout, stderr).
pub async fn run_program(
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut cmd = tokio::process::Command::new(pg_program(program));
    cmd.args(args).kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("program finished in time")
        .expect("program runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The server's (or proxy's) message text of a driver error, for assertions.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_else(|| e.to_string())
}

/// A Distribution (docker-registry) server on a free loopback port, stopped on drop.
pub struct Registry {
    /// `127.0.0.1:port`.
    pub addr: String,
    child: std::process::Child,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts Debian's `docker-registry` with filesystem storage in a temp dir.
    pub fn start() -> Registry {
        let dir = temp_dir("registry");
        let port = embedded::free_port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker-registry is installed (apt-get install docker-registry)");
        let registry = Registry { addr, child };
        for _ in 0..200 {
            if std::net::TcpStream::connect(&registry.addr).is_ok() {
                return registry;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("docker-registry did not start on {}", registry.addr);
    }
}

/// A trust-auth primary and a streaming standby named `replica` (its `cluster_name`, which
/// the primary's `pg_stat_replication` reports); with `sync` the primary waits for the
/// standby to flush every commit (`synchronous_standby_names = 'replica'`).
pub async fn start_ha_pair(sync: bool) -> (Pg, Pg) {
    let primary = start_pg(HostAuth::Trust, None);
    // Promotion must not wait for the 5 s default WAL-source retry (see the README).
    let info = start_standby_of(
        &primary,
        "\ncluster_name = 'replica'\nwal_retrieve_retry_interval = '200ms'\nwal_receiver_timeout = '2s'\n",
    );
    let p = connect(&primary.direct("postgres")).await.unwrap();
    if sync {
        p.batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'replica'")
            .await
            .unwrap();
        p.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    }
    wait_for_standby(&p, sync).await;
    (primary, info)
}

/// Waits until the standby named `replica` streams from `p` (and, with `sync`, is
/// synchronous).
pub(crate) async fn wait_for_standby(p: &tokio_postgres::Client, sync: bool) {
    for _ in 0..200 {
        let state: Option<String> = p
            .query_opt(
                "select sync_state from pg_stat_replication where application_name = 'replica'",
                &[],
            )
            .await
            .unwrap()
            .map(|r| r.get(0));
        match state.as_deref() {
            Some("sync") => return,
            Some(_) if !sync => return,
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    panic!("the standby did not start streaming");
}

/// Kills the server's postmaster with SIGKILL, like a crash of the machine's database.
pub fn kill_9(pg: &Pg) {
    let pid_file = std::fs::read_to_string(pg.data_dir.join("postmaster.pid"))
        .expect("postmaster.pid of a running server");
    let pid = pid_file.lines().next().expect("pid line").trim().to_owned();
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -9 {pid}");
}

/// Stops a harness server (fast shutdown); [`restart`] starts it again on the same port.
pub fn stop(pg: &Pg) {
    let mut servers = SERVERS.lock().unwrap();
    let s = servers
        .iter_mut()
        .find(|s| s.port == pg.port)
        .expect("server registered");
    s.stop().expect("pg_ctl stop");
}

/// Starts a stopped harness server again on its port.
pub fn restart(pg: &Pg) {
    let mut servers = SERVERS.lock().unwrap();
    let s = servers
        .iter_mut()
        .find(|s| s.port == pg.port)
        .expect("server registered");
    s.start(pg.port).expect("pg_ctl start");
}

/// Runs `tests/drivers/<script>` with python3 against the proxy (`HOST PORT DB USER`) and
/// returns its standard output; fails the test when it exits non-zero or takes over 120 s
/// (a driver waiting forever for an answer is a failure, not a hang of the suite).
pub async fn run_driver_script(script: &str, proxy: &ProxyHandle, db: &str) -> String {
    run_driver_script_args(script, proxy, db, &[]).await
}

/// [`run_driver_script`] with more arguments after the user.
pub async fn run_driver_script_args(
    script: &str,
    proxy: &ProxyHandle,
    db: &str,
    extra: &[&str],
) -> String {
    run_driver_script_at(script, proxy.local_addr.port(), db, extra).await
}

/// Runs `tests/drivers/<script>` (python3, or node for `.js` with the drivers `scripts/setup.sh`
/// installs under `target/node-drivers`) against `127.0.0.1:port` — the proxy, or PostgreSQL
/// itself for the reference run.
pub async fn run_driver_script_at(script: &str, port: u16, db: &str, extra: &[&str]) -> String {
    let path = format!("{}/drivers/{script}", env!("CARGO_MANIFEST_DIR"));
    let port = port.to_string();
    let program = if script.ends_with(".js") {
        "node"
    } else {
        "python3"
    };
    let node_path = format!(
        "{}/../target/node-drivers/node_modules",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = tokio::process::Command::new(program)
        .args([&path, "127.0.0.1", &port, db, "postgres"])
        .args(extra)
        .env("NODE_PATH", node_path)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within 120 s"))
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    stdout
}

/// The rows of a simple query's answer, as text (`None` is NULL).
pub fn rows(msgs: &[tokio_postgres::SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    msgs.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// Server connections checked out so far, over every pool of the proxy.
pub fn server_acquires(proxy: &ProxyHandle) -> u64 {
    proxy
        .shared
        .pools
        .all()
        .iter()
        .map(|p| p.metrics().acquires)
        .sum()
}
