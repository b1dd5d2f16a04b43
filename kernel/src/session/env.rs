//! What a session may reach, and nothing more: the pools, the topology, the current
//! component pipeline, the journal, the limits it enforces, the counters it feeds, and (for
//! login only) users, client TLS and the cancel registry. `server` builds it; nothing in a
//! session sees the rest of the proxy.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::cancel::CancelRegistry;
use super::isolation::PinCounters;
use super::recovery::SessionCounters;
use crate::config::{AuthConfig, ClientTlsMode, HaConfig, PoolMode};
use crate::hooks::Pipeline;
use crate::journal::Journal;
use crate::pool::Pools;
use crate::topology::Topology;
use crate::wire::auth::Secret;

/// The session's view of the proxy.
pub struct SessionEnv {
    /// What the session enforces.
    pub limits: SessionLimits,
    /// High-availability settings (transaction replay), when `[ha]` is configured.
    pub ha: Option<HaConfig>,
    /// Server pools.
    pub pools: Arc<Pools>,
    /// The backend nodes.
    pub topology: Arc<Topology>,
    /// The components; swapped whole on reload, sessions pick the new one up between batches.
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    /// The statement journal, when configured.
    pub journal: Option<Arc<Journal>>,
    /// What sessions went through when their server was lost.
    pub counters: Arc<SessionCounters>,
    /// Sessions pinned to their server connection right now, by reason.
    pub pins: Arc<PinCounters>,
    /// What all sessions hold together (their memory budgets).
    pub memory: Arc<super::relay::budget::MemoryGauge>,
    /// The proxy's listening connections (LISTEN/NOTIFY in pooled modes).
    pub notifications: Arc<crate::notify::Notifications>,
    /// Per-fingerprint query statistics, when `[analytics]` is on.
    pub analytics: Option<Arc<crate::observe::queries::QueryStats>>,
    /// Whether clients may read the proxy's own tables (`heliosproxy_query_stats`).
    pub sql_tables: bool,
    /// Login users who read every owner's rows in those tables (`[admin] users`).
    pub table_admins: Arc<[String]>,
    /// Every logged-in client (`SHOW CLIENTS`, `KILL`).
    pub clients: Arc<crate::observe::clients::Clients>,
    /// The result cache, when `[cache]` is configured.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// Where statements are mirrored while a shadow run is active.
    pub shadow: Arc<crate::ops::shadow::tap::ShadowTap>,
    /// What the SQL admin console reaches beyond the rest of this view.
    pub console: Option<Arc<ConsoleEnv>>,
    /// What login needs.
    pub login: LoginEnv,
}

impl SessionEnv {
    /// What the proxy-tables step reads (analytics, result cache), when clients may read
    /// the tables.
    pub fn tables(&self) -> Option<super::steps::tables::TableSources> {
        self.sql_tables.then(|| super::steps::tables::TableSources {
            stats: self.analytics.clone(),
            cache: self.cache.clone(),
            admins: self.table_admins.clone(),
            max_bytes: self.limits.max_client_memory_bytes,
        })
    }
}

/// The limits and modes a session enforces.
#[derive(Debug, Clone)]
pub struct SessionLimits {
    /// Pooling mode.
    pub mode: PoolMode,
    /// Largest client message accepted.
    pub max_message_bytes: usize,
    /// What one client may make the proxy hold.
    pub max_client_memory_bytes: usize,
    /// What all clients together may make the proxy hold.
    pub max_memory_bytes: usize,
    /// Statements a server connection may hold before `DEALLOCATE ALL`.
    pub max_prepared_statements: usize,
    /// Client connections (for the "too many clients" message).
    pub max_connections: usize,
    /// How long a client may take to log in.
    pub login_timeout_ms: u64,
}

/// What the admin console reaches: the configuration (`SHOW CONFIG`, `RELOAD`) and the
/// components (`RELOAD`).
pub struct ConsoleEnv {
    /// The configuration the proxy started with.
    pub config: crate::config::Config,
    /// Every loaded component.
    pub components: Arc<crate::plugins::registry::Registry>,
    /// Where a reload publishes the new component list.
    pub pipeline: Arc<ArcSwap<Pipeline>>,
}

/// What login needs: users, authentication settings, client TLS, cancel keys.
pub struct LoginEnv {
    /// Users and their secrets from `auth.users_file`; replaced by the console's `RELOAD`.
    pub users: ArcSwap<HashMap<String, Secret>>,
    /// Authentication settings.
    pub auth: AuthConfig,
    /// Whether clients must use TLS.
    pub tls_mode: ClientTlsMode,
    /// TLS acceptor for clients, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Cancel keys of live sessions.
    pub cancels: Arc<CancelRegistry>,
    /// What authentication keeps between logins (stand-in salts, derived verifiers,
    /// pass-through bounds, failed-login counts, channel-binding data).
    pub auth_state: super::auth::AuthState,
}
