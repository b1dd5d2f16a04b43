//! The console's commands, with PgBouncer's semantics:
//! - `PAUSE [db]`: new checkouts wait; returns once no server connection (of `db`) is lent,
//!   or reports the ones still busy after [`PAUSE_WAIT`];
//! - `RESUME [db]`: checkouts go on;
//! - `KILL db`: ends every client of `db` and closes its server connections; new clients of
//!   `db` wait until `RESUME`;
//! - `RECONNECT [db]`: closes idle server connections now and busy ones when released;
//! - `RELOAD`: re-reads the users file and reloads every component from its source.

use std::sync::Arc;
use std::time::Duration;

use super::{Answer, ConsoleError, known_database};
use crate::config::Config;
use crate::session::env::SessionEnv;
use crate::wire::messages::sqlstate;

/// How long `PAUSE` waits for lent connections to come back.
const PAUSE_WAIT: Duration = Duration::from_secs(30);

fn check_db(env: &SessionEnv, db: Option<&str>) -> Result<(), ConsoleError> {
    match db {
        Some(d) if !known_database(env, d) => {
            Err((sqlstate::UNDEFINED_OBJECT, format!("no such database: {d}")))
        }
        _ => Ok(()),
    }
}

fn lent(env: &SessionEnv, db: Option<&str>) -> usize {
    env.pools
        .all()
        .iter()
        .filter(|p| db.is_none_or(|d| d == p.key.database))
        .map(|p| p.in_use())
        .sum()
}

/// `PAUSE [db]`.
pub async fn pause(env: &SessionEnv, db: Option<&str>) -> Result<Answer, ConsoleError> {
    check_db(env, db)?;
    env.pools.pause.pause(db);
    tracing::warn!(
        database = db.unwrap_or("(all)"),
        "PAUSE from the admin console"
    );
    let deadline = tokio::time::Instant::now() + PAUSE_WAIT;
    while lent(env, db) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return Err((
                sqlstate::QUERY_CANCELED,
                format!(
                    "paused, but {} server connection(s) are still in use after {}s; new \
                     checkouts wait until RESUME",
                    lent(env, db),
                    PAUSE_WAIT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Answer::done("PAUSE"))
}

/// `RESUME [db]`.
pub fn resume(env: &SessionEnv, db: Option<&str>) -> Result<Answer, ConsoleError> {
    let paused = env.pools.pause.paused();
    let is_paused = match db {
        None => paused.all || !paused.databases.is_empty(),
        Some(d) => paused.blocks(d),
    };
    if !is_paused {
        return Err((
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("{} is not paused", db.unwrap_or("the proxy")),
        ));
    }
    env.pools.pause.resume(db);
    tracing::warn!(
        database = db.unwrap_or("(all)"),
        "RESUME from the admin console"
    );
    Ok(Answer::done("RESUME"))
}

/// `KILL db`.
pub fn kill(env: &SessionEnv, db: Option<&str>, user: &str) -> Result<Answer, ConsoleError> {
    let Some(db) = db else {
        return Err((sqlstate::SYNTAX_ERROR, "KILL needs a database name".into()));
    };
    check_db(env, Some(db))?;
    env.pools.pause.pause(Some(db));
    let clients = env.clients.kill(Some(db));
    let servers = reconnect_pools(env, Some(db));
    tracing::warn!(database = db, %user, clients, servers, "KILL from the admin console");
    Ok(Answer::done("KILL"))
}

fn reconnect_pools(env: &SessionEnv, db: Option<&str>) -> usize {
    env.pools
        .all()
        .iter()
        .filter(|p| db.is_none_or(|d| d == p.key.database))
        .map(|p| p.reconnect())
        .sum()
}

/// `RECONNECT [db]`.
pub fn reconnect(env: &SessionEnv, db: Option<&str>) -> Result<Answer, ConsoleError> {
    check_db(env, db)?;
    let closed = reconnect_pools(env, db);
    tracing::warn!(
        database = db.unwrap_or("(all)"),
        closed,
        "RECONNECT from the admin console"
    );
    Ok(Answer::done("RECONNECT"))
}

/// `RELOAD`.
pub async fn reload(env: &Arc<SessionEnv>, user: &str) -> Result<Answer, ConsoleError> {
    let Some(console) = env.console.clone() else {
        return Err((sqlstate::FEATURE_NOT_SUPPORTED, "nothing to reload".into()));
    };
    if let Some(path) = &console.config.auth.users_file {
        let users = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| crate::session::login::load_users(&t))
            .map_err(|e| {
                (
                    sqlstate::FEATURE_NOT_SUPPORTED,
                    format!(
                        "RELOAD: users file {}: {e}; still using the previous one",
                        path.display()
                    ),
                )
            })?;
        env.login.users.store(Arc::new(users));
    }
    let names: Vec<String> = console
        .config
        .plugins
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let c = console.clone();
    // Loading compiles wasm: keep it off the async workers.
    let result = tokio::task::spawn_blocking(move || {
        let publish = |enabled| {
            c.pipeline
                .store(Arc::new(crate::hooks::Pipeline::new(enabled)))
        };
        names
            .iter()
            .map(|n| {
                c.components
                    .reload(n, publish)
                    .map_err(|e| format!("{n}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| (sqlstate::FEATURE_NOT_SUPPORTED, e.to_string()))?;
    match result {
        Ok(digests) => {
            tracing::warn!(%user, components = digests.len(), "RELOAD from the admin console");
            Ok(Answer::done("RELOAD"))
        }
        Err(e) => Err((
            sqlstate::FEATURE_NOT_SUPPORTED,
            format!("RELOAD: {e}; that component keeps its previous version"),
        )),
    }
}

/// The settings `SHOW CONFIG` lists, as (key, value); secrets are never shown.
pub fn settings(c: &Config) -> Vec<(&'static str, String)> {
    let set = |v: bool| if v { "set" } else { "unset" }.to_owned();
    vec![
        ("listen_address", c.listen_address.clone()),
        ("admin_address", c.admin_address.clone()),
        ("pool_mode", c.pool.mode.as_str().into()),
        ("max_client_conn", c.pool.max_connections.to_string()),
        ("default_pool_size", c.pool.server_connections.to_string()),
        (
            "query_wait_timeout_ms",
            c.pool.checkout_timeout_ms.to_string(),
        ),
        ("server_idle_timeout", c.pool.idle_timeout_s.to_string()),
        ("server_lifetime", c.pool.server_lifetime_s.to_string()),
        (
            "server_check_delay_ms",
            c.pool.health_check_after_ms.to_string(),
        ),
        (
            "server_connect_timeout_ms",
            c.pool.connect_timeout_ms.to_string(),
        ),
        (
            "max_prepared_statements",
            c.pool.max_prepared_statements.to_string(),
        ),
        ("auth_type", c.auth.method.as_str().into()),
        ("auth_passthrough", c.auth.passthrough.to_string()),
        (
            "auth_file",
            c.auth
                .users_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("server_password", set(c.auth.server_password.is_some())),
        (
            "max_packet_size",
            c.limits.max_client_message_bytes.to_string(),
        ),
        (
            "client_login_timeout_ms",
            c.limits.client_login_timeout_ms.to_string(),
        ),
        (
            "max_client_memory_bytes",
            c.limits.max_client_memory_bytes.to_string(),
        ),
        ("max_memory_bytes", c.limits.max_memory_bytes.to_string()),
        ("nodes", c.nodes.len().to_string()),
        ("components", c.plugins.len().to_string()),
        ("ha", set(c.ha.is_some())),
        ("journal", set(c.journal.is_some())),
        ("admin_database", c.admin.database.clone()),
        ("admin_users", c.admin.users.join(",")),
        ("admin_api_key", set(c.admin.api_key.is_some())),
        ("metrics_open", c.admin.metrics_open.to_string()),
        ("analytics", c.analytics.enabled.to_string()),
        ("analytics_max_entries", c.analytics.max_entries.to_string()),
        ("analytics_sample_rate", c.analytics.sample_rate.to_string()),
        ("slow_query_ms", c.analytics.slow_query_ms.to_string()),
    ]
}
