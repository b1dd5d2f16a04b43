//! The `heliosproxy` binary: run from a config file, check a config file, or (with no
//! arguments) run the first-run default on a local PostgreSQL it starts itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use heliosproxy::config::{
    AuthMethod, Config, FailoverMode, Grant, HaConfig, JournalConfig, NodeConfig, NodeRole,
    PluginConfig, PoolMode,
};
use heliosproxy::embedded::{self, InitOptions, LocalPostgres};
use heliosproxy::oci::{Artifact, trust};
use heliosproxy::server::Proxy;

/// A PostgreSQL proxy with pooling, built as a small kernel plus signed WebAssembly policies.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file. Without one, a local PostgreSQL is started and served.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print every problem with its key path.
    CheckConfig {
        /// The file to check.
        file: PathBuf,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Command::CheckConfig { file }) = &cli.command {
        return check_config(file);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // Worker threads default to one per core; HELIOS_WORKER_THREADS overrides it.
    if let Some(n) = std::env::var("HELIOS_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async {
        match cli.config {
            Some(path) => {
                let config = Config::load(&path)?;
                serve(config).await
            }
            None => run_embedded_default().await,
        }
    })
}

fn check_config(file: &Path) -> Result<()> {
    match Config::load(file) {
        Ok(_) => {
            println!("{}: OK", file.display());
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}

async fn serve(config: Config) -> Result<()> {
    let proxy = Proxy::bind(config).await?;
    let addr = proxy.local_addr();
    let handle = proxy.start();
    tracing::info!("HeliosProxy listening on {addr}");
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// The directory holding the first-party `.wasm` components: `HELIOS_COMPONENTS_DIR`, else
/// `target/wasm/wasm32-wasip2/wasm` next to a binary built in `target/<profile>/`.
fn components_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("HELIOS_COMPONENTS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?;
    let dir = target.join("wasm").join("wasm32-wasip2").join("wasm");
    dir.join("helios_router.wasm").exists().then_some(dir)
}

/// Packs and signs the first-party components with a key made on first run, whose public
/// half is the trust root: a newcomer sees verified components from minute one.
fn first_party_components(state: &Path) -> Result<Option<(PathBuf, Vec<PluginConfig>)>> {
    let Some(dir) = components_dir() else {
        return Ok(None);
    };
    let keys = state.join("keys");
    let trust_root = state.join("trust");
    let out = state.join("components");
    for d in [&keys, &trust_root, &out] {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let key_path = keys.join("first-run.key");
    if !key_path.exists() {
        let (private, public) = trust::generate_key_pair();
        trust::write_private_key(&key_path, &private)
            .with_context(|| format!("writing {}", key_path.display()))?;
        std::fs::write(trust_root.join("first-run.pub"), public)?;
    }
    let key = trust::load_signing_key(&key_path)?;
    let mut plugins = Vec::new();
    for (name, file, hooks, grants, config) in [
        (
            "router",
            "helios_router.wasm",
            "route",
            vec![Grant::Topology, Grant::Clock],
            "",
        ),
        (
            "llm-guardrail",
            "helios_llm_guardrail.wasm",
            "validate",
            vec![],
            "applications = [\"llm-agent\"]\n",
        ),
    ] {
        let wasm = std::fs::read(dir.join(file))
            .with_context(|| format!("reading {}", dir.join(file).display()))?;
        let mut artifact = Artifact::new(
            name,
            env!("CARGO_PKG_VERSION"),
            vec![hooks.into()],
            vec![],
            wasm,
        );
        artifact.sign(&key);
        let path = out.join(format!("{name}.tar.gz"));
        std::fs::write(&path, artifact.pack()?)?;
        plugins.push(PluginConfig {
            name: name.into(),
            source: path.display().to_string(),
            hooks: vec![],
            grants,
            on_error: None,
            timeout_ms: 10,
            memory_mb: 16,
            instances: 2,
            config: toml::from_str(config)?,
            post_query_rows_bytes: 0,
            documents: Default::default(),
        });
    }
    Ok(Some((trust_root, plugins)))
}

/// A key of the first-run default (the admin API's, the journal's), made on first run
/// (mode 0600).
fn admin_key(state: &Path, file: &str) -> Result<String> {
    let path = state.join(file);
    if let Ok(key) = std::fs::read_to_string(&path) {
        return Ok(key.trim().to_owned());
    }
    let mut raw = [0u8; 24];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let key = hex::encode(raw);
    trust::write_private_key(&path, &key).with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// The first-run default's client login: `postgres` with a password made on first run,
/// kept (0600) in a PgBouncer-style users file beside the admin key. Returns the file and,
/// on the run that made it, the password to show once.
fn client_login(state: &Path) -> Result<(PathBuf, Option<String>)> {
    let path = state.join("users.txt");
    if path.exists() {
        return Ok((path, None));
    }
    let mut raw = [0u8; 18];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut raw);
    let password = hex::encode(raw);
    trust::write_private_key(&path, &format!("\"postgres\" \"{password}\"\n"))
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((path, Some(password)))
}

/// Where the first-run default keeps its PostgreSQL data.
fn state_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("HELIOS_STATE_DIR") {
        return PathBuf::from(dir);
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        // Root's home is private; the server runs as an unprivileged user and needs access.
        return PathBuf::from("/var/lib/heliosproxy");
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("heliosproxy")
}

async fn run_embedded_default() -> Result<()> {
    let data_dir = state_dir().join("pgdata");
    let mut pg = if data_dir.join("PG_VERSION").exists() {
        LocalPostgres::existing(&data_dir)?
    } else {
        println!(
            "First run: creating a local PostgreSQL in {}",
            data_dir.display()
        );
        if let Some(parent) = data_dir.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        LocalPostgres::init(&data_dir, &InitOptions::default())?
    };
    // No TCP: the server is reachable only through its socket in a private directory, so
    // nothing on this machine gets around the proxy's authentication and policies.
    let pg_port = embedded::free_port();
    let socket_dir = state_dir().join("pgsocket");
    tokio::task::block_in_place(|| pg.start_private(pg_port, &socket_dir))
        .context("starting the local PostgreSQL")?;
    let mut config = Config::default();
    // Addresses can be moved for a second instance (or a test) without a config file.
    if let Ok(addr) = std::env::var("HELIOS_LISTEN") {
        config.listen_address = addr;
    }
    if let Ok(addr) = std::env::var("HELIOS_ADMIN") {
        config.admin_address = addr;
    }
    config.pool.mode = PoolMode::Transaction;
    let state = state_dir();
    let (users_file, new_password) = client_login(&state)?;
    config.auth.method = AuthMethod::ScramSha256;
    config.auth.users_file = Some(users_file.clone());
    config.nodes.push(NodeConfig {
        name: "local".into(),
        host: socket_dir.display().to_string(),
        port: pg_port,
        role: NodeRole::Primary,
        tags: vec!["embedded".into()],
        data_dir: None,
    });
    let components = first_party_components(&state)?;
    if let Some((trust_root, plugins)) = &components {
        config.plugin_runtime.trust_root = Some(trust_root.clone());
        config.plugin_runtime.cache_dir = Some(state.join("component-cache"));
        config.plugins = plugins.clone();
    }
    config.admin.api_key = Some(admin_key(&state, "admin.key")?);
    config.admin.journal_api_key = Some(admin_key(&state, "journal.key")?);
    // The first-run user may open the SQL admin console too (`psql … heliosproxy`).
    config.admin.users = vec!["postgres".into()];
    // One node: topology tracking shows its health and WAL position; nothing to fail over to.
    config.ha = Some(HaConfig {
        failover: FailoverMode::Manual,
        ..HaConfig::default()
    });
    config.journal = Some(JournalConfig {
        dir: state.join("journal"),
        retention_bytes: 256 << 20,
        ..JournalConfig::default()
    });
    let proxy = Proxy::bind(config.clone()).await?;
    let addr = proxy.local_addr();
    let handle = proxy.start();
    println!();
    println!(
        "HeliosProxy is serving a local PostgreSQL (data in {})",
        data_dir.display()
    );
    match &components {
        Some((trust_root, _)) => {
            for (p, _) in handle.shared.components.all() {
                let signed = p
                    .provenance
                    .lock()
                    .expect("provenance lock")
                    .signed_by
                    .clone();
                println!(
                    "  component {:<13} signature verified by {} (trust root {})",
                    p.name,
                    signed.unwrap_or_default(),
                    trust_root.display()
                );
            }
            println!("  the llm-guardrail applies to sessions with application_name=llm-agent");
        }
        None => println!(
            "  no first-party components found (build them with scripts/run-default.sh, or set HELIOS_COMPONENTS_DIR)"
        ),
    }
    println!(
        "  admin API: http://{} (key in {})",
        config.admin_address,
        state.join("admin.key").display()
    );
    println!(
        "  topology: GET /api/topology; statement journal in {} (GET /api/journal, key in {})",
        state.join("journal").display(),
        state.join("journal.key").display()
    );
    println!(
        "  metrics: GET /metrics (same key); admin console: psql … user=postgres dbname={}",
        config.admin.database
    );
    println!(
        "  pool mode: transaction, server connections per database/user: {}",
        config.pool.server_connections
    );
    match &new_password {
        Some(pw) => println!(
            "  clients log in as postgres with password {pw} (shown once; kept in {})",
            users_file.display()
        ),
        None => println!(
            "  clients log in as postgres with the password kept in {}",
            users_file.display()
        ),
    }
    println!(
        "  PostgreSQL: fsync on, no TCP; only the proxy reaches its socket in {}",
        socket_dir.display()
    );
    println!();
    println!("Connect with:");
    println!(
        "  psql \"host={} port={} user=postgres dbname=postgres\"   (password as above)",
        addr.ip(),
        addr.port()
    );
    println!();
    println!("Press Ctrl-C to stop.");
    shutdown_signal().await;
    handle.stop().await;
    tokio::task::block_in_place(|| pg.stop())?;
    Ok(())
}
