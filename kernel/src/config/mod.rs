//! Typed, strict configuration (`heliosproxy.toml`).
//!
//! Unknown keys are refused, defaults live in one place ([`Default`] impls below), and
//! [`Config::validate`] reports every semantic problem at once, each with its key path.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

mod admin;
mod cache;
mod ha;
mod plugins;
mod upgrade;
mod validate;
pub use admin::{AdminConfig, AnalyticsConfig, ChaosConfig};
pub use cache::{CacheConfig, L2Config};
pub use ha::{FailoverMode, FsyncPolicy, HaConfig, JournalConfig};
pub use plugins::{Grant, HookName, OnError, PluginConfig, PluginRuntimeConfig};
pub use upgrade::{StageConfig, StageServer, UpgradeConfig};

/// Errors found while loading a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why, including the key path.
        message: String,
    },
    /// The values parsed but are inconsistent; every problem is listed.
    #[error("{path}: invalid configuration:\n{}", .problems.join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// One line per problem, each starting with the key path.
        problems: Vec<String>,
    },
}

/// The whole proxy configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where clients connect (`host:port`).
    pub listen_address: String,
    /// Where the admin API listens (`host:port`).
    pub admin_address: String,
    /// Pooling.
    pub pool: PoolConfig,
    /// Client authentication.
    pub auth: AuthConfig,
    /// TLS towards clients.
    pub tls: TlsConfig,
    /// TLS towards backends.
    pub backend_tls: BackendTlsConfig,
    /// Protocol limits.
    pub limits: LimitsConfig,
    /// Backend nodes.
    pub nodes: Vec<NodeConfig>,
    /// WebAssembly components, in the order their hooks run.
    pub plugins: Vec<PluginConfig>,
    /// Settings of the component runtime.
    pub plugin_runtime: PluginRuntimeConfig,
    /// The admin API.
    pub admin: AdminConfig,
    /// Topology tracking and failover; off when absent.
    pub ha: Option<HaConfig>,
    /// The statement journal; off when absent.
    pub journal: Option<JournalConfig>,
    /// Per-fingerprint query analytics and the slow-query log.
    pub analytics: AnalyticsConfig,
    /// The result cache; off when absent.
    pub cache: Option<CacheConfig>,
    /// Chaos mode (fault injection through the admin API); off by default.
    pub chaos: ChaosConfig,
    /// The major-version upgrade orchestrator; off when absent.
    pub upgrade: Option<UpgradeConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen_address: "127.0.0.1:6432".into(),
            admin_address: "127.0.0.1:9090".into(),
            pool: PoolConfig::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            backend_tls: BackendTlsConfig::default(),
            limits: LimitsConfig::default(),
            nodes: Vec::new(),
            plugins: Vec::new(),
            plugin_runtime: PluginRuntimeConfig::default(),
            admin: AdminConfig::default(),
            ha: None,
            journal: None,
            analytics: AnalyticsConfig::default(),
            cache: None,
            chaos: ChaosConfig::default(),
            upgrade: None,
        }
    }
}

/// When a client gives its server connection back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolMode {
    /// The client keeps one server connection for its whole session.
    Session,
    /// The server connection returns to the pool after each transaction.
    Transaction,
    /// The server connection returns after each statement; transaction blocks are refused.
    Statement,
}

impl PoolMode {
    /// The configuration spelling (and PgBouncer's).
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// `[pool]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoolConfig {
    /// Pooling mode.
    pub mode: PoolMode,
    /// Maximum simultaneous client connections.
    pub max_connections: usize,
    /// Maximum server connections per (node, database, user).
    pub server_connections: usize,
    /// How long a client waits for a server connection before it gets an error.
    pub checkout_timeout_ms: u64,
    /// Idle server connections older than this are closed.
    pub idle_timeout_s: u64,
    /// Server connections are closed after this lifetime (when idle).
    pub server_lifetime_s: u64,
    /// An idle connection unused for longer than this is checked for liveness before reuse.
    pub health_check_after_ms: u64,
    /// Timeout for establishing a server connection (TCP + TLS + auth).
    pub connect_timeout_ms: u64,
    /// Server-side prepared statements kept per server connection before they are dropped.
    pub max_prepared_statements: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            mode: PoolMode::Transaction,
            max_connections: 1000,
            server_connections: 20,
            checkout_timeout_ms: 5000,
            idle_timeout_s: 600,
            server_lifetime_s: 3600,
            health_check_after_ms: 1000,
            connect_timeout_ms: 5000,
            max_prepared_statements: 1000,
        }
    }
}

impl PoolConfig {
    /// The checkout timeout as a [`Duration`].
    pub fn checkout_timeout(&self) -> Duration {
        Duration::from_millis(self.checkout_timeout_ms)
    }
}

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    /// No password is asked.
    Trust,
    /// Cleartext password (only sensible over TLS).
    Password,
    /// MD5 challenge.
    Md5,
    /// SCRAM-SHA-256 (the default); PostgreSQL's and PgBouncer's spelling
    /// `scram-sha-256` is the documented one.
    #[serde(rename = "scram-sha-256", alias = "scram-sha256")]
    ScramSha256,
    /// The password is a token (a JWT, an API key) that Authenticate components judge: it is
    /// asked in cleartext — over TLS only, unless `trusted_network` — and never checked
    /// against the users file or the backend.
    Component,
}

/// `[auth]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Method asked of clients.
    pub method: AuthMethod,
    /// PgBouncer-style users file: lines of `"user" "secret"` where the secret is a
    /// plaintext password, an `md5…` hash or a `SCRAM-SHA-256$…` verifier.
    pub users_file: Option<PathBuf>,
    /// With `method = "password"`: check the client's password by logging in to the backend
    /// with it, and use it for that user's server connections.
    pub passthrough: bool,
    /// Password used for server connections of users the users file has no plaintext for.
    pub server_password: Option<String>,
    /// Pass-through password checks (backend logins) running at once per backend node.
    pub passthrough_max_checks: usize,
    /// Failed logins from one address within `failed_login_window_s` before the address
    /// is refused for the rest of the window.
    pub max_failed_logins: u32,
    /// The window of `max_failed_logins`, in seconds.
    pub failed_login_window_s: u64,
    /// With `method = "component"`: accept tokens over plain TCP (a network where no one can
    /// read them); otherwise a client without TLS is refused before it sends one.
    pub trusted_network: bool,
    /// Backend roles an Authenticate component may map a session to (its `backend-role`);
    /// any other is refused, so a forged claim cannot pick `postgres`. Empty: a component
    /// may not change the role at all.
    pub allowed_roles: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            method: AuthMethod::ScramSha256,
            users_file: None,
            passthrough: false,
            server_password: None,
            passthrough_max_checks: 4,
            max_failed_logins: 10,
            failed_login_window_s: 60,
            trusted_network: false,
            allowed_roles: Vec::new(),
        }
    }
}

/// Whether clients may, or must, use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientTlsMode {
    /// Refuse TLS.
    Disable,
    /// Offer TLS when a certificate is configured.
    Allow,
    /// Refuse clients that do not use TLS.
    Require,
}

/// `[tls]`: TLS towards clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Mode.
    pub mode: ClientTlsMode,
    /// PEM certificate chain.
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            mode: ClientTlsMode::Allow,
            cert: None,
            key: None,
        }
    }
}

/// libpq-like `sslmode` for backend connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendSslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without certificate checks.
    Prefer,
    /// TLS always, without certificate checks.
    Require,
    /// TLS always, certificate chain and host name verified against `ca`.
    VerifyFull,
}

/// `[backend_tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackendTlsConfig {
    /// Mode.
    pub sslmode: BackendSslMode,
    /// PEM CA bundle for `verify-full`.
    pub ca: Option<PathBuf>,
}

impl Default for BackendTlsConfig {
    fn default() -> Self {
        BackendTlsConfig {
            sslmode: BackendSslMode::Disable,
            ca: None,
        }
    }
}

/// `[limits]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message a client may send, in bytes.
    pub max_client_message_bytes: usize,
    /// How long a new client may take to finish startup and authentication.
    pub client_login_timeout_ms: u64,
    /// What one client may make the proxy hold (buffers, statements, portals, responses
    /// it waits for); past it the client gets 54000 and is disconnected.
    pub max_client_memory_bytes: usize,
    /// What all clients together may make the proxy hold; past it, the client that holds
    /// more than 1 MiB and asks for more is disconnected (54000).
    pub max_memory_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_client_message_bytes: 64 << 20,
            client_login_timeout_ms: 15_000,
            max_client_memory_bytes: 256 << 20,
            max_memory_bytes: 4 << 30,
        }
    }
}

/// The role a node is expected to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Accepts writes.
    Primary,
    /// Read-only standby.
    Replica,
    /// Discovered by the topology tracker (`[ha]`): primary when not in recovery.
    Auto,
}

/// `[[nodes]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Unique name.
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// Expected role.
    #[serde(default = "default_role")]
    pub role: NodeRole,
    /// Free-form tags used by routing policies.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The node's data directory, when it runs on this machine and the proxy may stop,
    /// rewind and start it (`[ha] rejoin`).
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
}

fn default_pg_port() -> u16 {
    5432
}

fn default_role() -> NodeRole {
    NodeRole::Primary
}

impl AuthMethod {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Trust => "trust",
            AuthMethod::Password => "password",
            AuthMethod::Md5 => "md5",
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Component => "component",
        }
    }
}

#[cfg(test)]
mod tests;
