//! Server connection pools, one per (node, database, user): lazy creation up to the limit,
//! reuse, liveness checks for connections that sat idle, expiry, and lock-free counters.

pub mod internal;
pub mod pause;
pub mod server;
pub mod servers;
pub mod slots;
pub mod statements;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::OwnedSemaphorePermit;

pub use server::{ConnectTarget, ServerConn, ServerError};
pub use slots::{Acquired, MetricsSnapshot, PoolMetrics, Slots, Timeout};

use crate::config::PoolConfig;

/// `ParameterStatus` name/value pairs a server reported at login.
pub type ServerParams = Arc<Vec<(String, String)>>;

/// Identifies a pool.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Node name.
    pub node: String,
    /// Database.
    pub database: String,
    /// Backend user.
    pub user: String,
}

/// Why a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Every connection stayed busy for the whole checkout timeout.
    #[error("no server connection became available within {} ms (pool.server_connections = {limit})", .waited.as_millis())]
    Exhausted {
        /// How long the client waited.
        waited: Duration,
        /// The pool size.
        limit: usize,
    },
    /// A new connection could not be opened.
    #[error(transparent)]
    Connect(#[from] ServerError),
    /// The connection could not be brought to the client's session state (a setting the
    /// server now rejects). The client's problem, not the node's: its health is untouched.
    #[error("restoring the session's state on a server connection failed: {message}")]
    State {
        /// SQLSTATE the server gave.
        code: String,
        /// Its message.
        message: String,
    },
}

/// A pool of server connections for one (node, database, user).
pub struct Pool {
    /// Which pool.
    pub key: PoolKey,
    target: Arc<ConnectTarget>,
    password: RwLock<Option<String>>,
    slots: Slots<ServerConn>,
    params: Mutex<Option<ServerParams>>,
    checkout_timeout: Duration,
    health_check_after: Duration,
    servers: Arc<servers::ServerList>,
    /// Bumped by `RECONNECT`: connections opened before are closed when released.
    generation: AtomicU64,
}

/// A server connection lent to one client; give it back with [`Pool::release`] or
/// [`Pool::discard`].
pub struct Checkout {
    /// The connection.
    pub conn: ServerConn,
    permit: OwnedSemaphorePermit,
}

impl Pool {
    /// Creates an empty pool.
    pub fn new(
        key: PoolKey,
        target: Arc<ConnectTarget>,
        password: Option<String>,
        config: &PoolConfig,
        servers: Arc<servers::ServerList>,
    ) -> Self {
        Pool {
            key,
            target,
            password: RwLock::new(password),
            slots: Slots::new(config.server_connections),
            params: Mutex::new(None),
            checkout_timeout: config.checkout_timeout(),
            health_check_after: Duration::from_millis(config.health_check_after_ms),
            servers,
            generation: AtomicU64::new(0),
        }
    }

    /// The configured maximum of server connections.
    pub fn limit(&self) -> usize {
        self.slots.limit()
    }

    /// The raw counters (for the wait-time histogram and the waiting gauge).
    pub fn counters(&self) -> &PoolMetrics {
        &self.slots.metrics
    }

    /// Closes idle connections now and the busy ones when they are released (`RECONNECT`).
    pub fn reconnect(&self) -> usize {
        self.generation.fetch_add(1, Relaxed);
        self.close_idle()
    }

    fn mark_lent(conn: &ServerConn) {
        if let Some(r) = &conn.registration {
            r.info.active.store(true, Relaxed);
            r.info.request_time_us.store(servers::unix_us(), Relaxed);
        }
    }

    /// The node this pool connects to.
    pub fn target(&self) -> &Arc<ConnectTarget> {
        &self.target
    }

    /// Counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.slots.metrics.snapshot()
    }

    /// Connections lent out right now.
    pub fn in_use(&self) -> usize {
        self.slots.in_use()
    }

    /// Idle connections right now.
    pub fn idle(&self) -> usize {
        self.slots.idle_count()
    }

    /// Idle connections that sat long enough to be checked before reuse (PgBouncer's
    /// `sv_used`).
    pub fn idle_needing_check(&self) -> usize {
        let after = self.health_check_after;
        self.slots.count_idle(|c| c.last_used.elapsed() >= after)
    }

    /// Sets the password used for new server connections (pass-through authentication).
    pub fn set_password(&self, password: &str) {
        *self.password.write().expect("password lock") = Some(password.to_owned());
    }

    /// Opens a connection outside the pool's accounting (used to verify pass-through logins).
    pub async fn connect_with(&self, password: Option<&str>) -> Result<ServerConn, ServerError> {
        ServerConn::connect(
            self.target.clone(),
            &self.key.user,
            &self.key.database,
            password,
        )
        .await
    }

    /// Lends a connection: an idle one that is still alive, or a new one.
    pub async fn checkout(&self) -> Result<Checkout, CheckoutError> {
        let mut acquired = self
            .slots
            .acquire(self.checkout_timeout)
            .await
            .map_err(|_| CheckoutError::Exhausted {
                waited: self.checkout_timeout,
                limit: self.slots.limit(),
            })?;
        loop {
            match acquired {
                Acquired::Idle(conn, permit) => {
                    if conn.last_used.elapsed() < self.health_check_after || conn.looks_alive() {
                        Self::mark_lent(&conn);
                        return Ok(Checkout { conn, permit });
                    }
                    self.slots.metrics.record_health_check_failure();
                    self.slots.metrics.record_closed();
                    drop(conn);
                    acquired = Acquired::Vacant(permit);
                }
                Acquired::Vacant(permit) => {
                    let password = self.password.read().expect("password lock").clone();
                    let mut conn = self.connect_with(password.as_deref()).await?;
                    self.slots.metrics.record_created();
                    self.remember_params(&conn);
                    conn.registration = Some(self.servers.register(servers::ServerInfo {
                        id: 0,
                        node: self.key.node.clone(),
                        database: self.key.database.clone(),
                        user: self.key.user.clone(),
                        host: self.target.host.clone(),
                        port: self.target.port,
                        pid: conn.key.0,
                        tls: conn.stream.is_tls(),
                        connect_time_us: servers::unix_us(),
                        active: true.into(),
                        request_time_us: servers::unix_us().into(),
                        generation: self.generation.load(Relaxed),
                        socket: dup_socket(&conn),
                    }));
                    return Ok(Checkout { conn, permit });
                }
            }
        }
    }

    /// Returns a healthy, idle connection for reuse (or closes it, when `RECONNECT` asked
    /// for connections opened before it).
    pub fn release(&self, mut checkout: Checkout) {
        if let Some(r) = &checkout.conn.registration {
            if r.info.generation < self.generation.load(Relaxed) {
                self.discard(checkout);
                return;
            }
            r.info.active.store(false, Relaxed);
        }
        checkout.conn.last_used = Instant::now();
        self.slots.release(checkout.conn, checkout.permit);
    }

    /// Closes a connection that must not be reused and frees its slot.
    pub fn discard(&self, checkout: Checkout) {
        self.slots.metrics.record_closed();
        drop(checkout);
    }

    fn remember_params(&self, conn: &ServerConn) {
        let mut params = self.params.lock().expect("params lock");
        if params.is_none() {
            *params = Some(Arc::new(conn.params.clone()));
        }
    }

    /// The `ParameterStatus` values a server of this pool reports at login; opens a connection
    /// the first time to learn them (and to check that the backend accepts this login).
    pub async fn server_params(&self) -> Result<ServerParams, CheckoutError> {
        if let Some(p) = self.params.lock().expect("params lock").clone() {
            return Ok(p);
        }
        let checkout = self.checkout().await?;
        self.release(checkout);
        Ok(self
            .params
            .lock()
            .expect("params lock")
            .clone()
            .unwrap_or_default())
    }

    /// Closes every idle connection (its node is gone or fenced).
    pub fn close_idle(&self) -> usize {
        let closed = self.slots.take_expired(|_| true);
        for _ in &closed {
            self.slots.metrics.record_closed();
        }
        closed.len()
    }

    /// Closes idle connections past their idle timeout or lifetime.
    pub fn close_expired(&self, idle_timeout: Duration, lifetime: Duration) -> usize {
        let expired = self.slots.take_expired(|c| {
            c.last_used.elapsed() >= idle_timeout || c.created.elapsed() >= lifetime
        });
        for _ in &expired {
            self.slots.metrics.record_closed();
        }
        expired.len()
    }
}

/// A duplicate of the connection's socket descriptor (none when the system refuses one).
fn dup_socket(conn: &ServerConn) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::{BorrowedFd, RawFd};
    let fd: RawFd = conn.stream.raw_fd();
    // SAFETY: the connection owns `fd` and outlives this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed.try_clone_to_owned().ok()
}

/// Every pool of the process, created on first use.
pub struct Pools {
    pools: RwLock<HashMap<PoolKey, Arc<Pool>>>,
    config: PoolConfig,
    /// Every open server connection.
    pub servers: Arc<servers::ServerList>,
    /// `PAUSE` / `RESUME`.
    pub pause: pause::PauseGate,
    /// Schema changes seen, which make statements kept on servers stale.
    pub statement_epoch: statements::StatementEpoch,
}

impl Pools {
    /// An empty registry.
    pub fn new(config: PoolConfig) -> Self {
        Pools {
            pools: RwLock::new(HashMap::new()),
            config,
            servers: Default::default(),
            pause: Default::default(),
            statement_epoch: Default::default(),
        }
    }

    /// The pool for `key`, created with `password` when it does not exist yet.
    pub fn get_or_create(
        &self,
        key: PoolKey,
        target: &Arc<ConnectTarget>,
        password: Option<String>,
    ) -> Arc<Pool> {
        if let Some(p) = self.pools.read().expect("pools lock").get(&key) {
            return p.clone();
        }
        let mut pools = self.pools.write().expect("pools lock");
        pools
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Pool::new(
                    key,
                    target.clone(),
                    password,
                    &self.config,
                    self.servers.clone(),
                ))
            })
            .clone()
    }

    /// The password a pool for `user` on `database` logs in with (on any node), when one
    /// is known: what pass-through authentication learnt from the client, or the configured
    /// one.
    pub fn password_for(&self, database: &str, user: &str) -> Option<String> {
        let pools = self.pools.read().expect("pools lock");
        pools
            .values()
            .filter(|p| p.key.database == database && p.key.user == user)
            .find_map(|p| p.password.read().expect("password lock").clone())
    }

    /// All pools.
    pub fn all(&self) -> Vec<Arc<Pool>> {
        self.pools
            .read()
            .expect("pools lock")
            .values()
            .cloned()
            .collect()
    }

    /// Closes the idle connections of every pool on `node`.
    pub fn close_idle_on(&self, node: &str) -> usize {
        self.all()
            .iter()
            .filter(|p| p.key.node == node)
            .map(|p| p.close_idle())
            .sum()
    }

    /// Severs every connection to `node` (see [`servers::ServerList::sever_node`]).
    pub fn sever_on(&self, node: &str) -> usize {
        self.close_idle_on(node);
        self.servers.sever_node(node)
    }

    /// Connections lent out on `node`.
    pub fn in_use_on(&self, node: &str) -> usize {
        self.all()
            .iter()
            .filter(|p| p.key.node == node)
            .map(|p| p.in_use())
            .sum()
    }

    /// The pool settings.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Closes expired idle connections in every pool.
    pub fn close_expired(&self) -> usize {
        let idle = Duration::from_secs(self.config.idle_timeout_s);
        let life = Duration::from_secs(self.config.server_lifetime_s);
        self.all().iter().map(|p| p.close_expired(idle, life)).sum()
    }
}
