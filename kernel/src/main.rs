//! The `heliosproxy` binary: run from a config file, check a config file, or (with no
//! arguments) run the first-run default on a local PostgreSQL it starts itself.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use heliosproxy::config::{AuthMethod, Config, NodeConfig, NodeRole, PoolMode};
use heliosproxy::embedded::{self, InitOptions, LocalPostgres};
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
    let pg_port = embedded::free_port();
    tokio::task::block_in_place(|| pg.start(pg_port)).context("starting the local PostgreSQL")?;
    let mut config = Config::default();
    config.pool.mode = PoolMode::Transaction;
    config.auth.method = AuthMethod::Trust;
    config.nodes.push(NodeConfig {
        name: "local".into(),
        host: "127.0.0.1".into(),
        port: pg_port,
        role: NodeRole::Primary,
        tags: vec!["embedded".into()],
    });
    let proxy = Proxy::bind(config.clone()).await?;
    let addr = proxy.local_addr();
    let handle = proxy.start();
    println!();
    println!(
        "HeliosProxy is serving a local PostgreSQL (data in {})",
        data_dir.display()
    );
    println!(
        "  pool mode: transaction, server connections per database/user: {}",
        config.pool.server_connections
    );
    println!("  auth: trust on loopback (development default; use --config for real deployments)");
    println!();
    println!("Connect with:");
    println!(
        "  psql \"host={} port={} user=postgres dbname=postgres\"",
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
