//! The accept loop, and the wiring of the proxy's parts: it builds the pools, topology,
//! component registry, journal and failover coordinator, and hands each subsystem its own
//! narrow view of them. Nothing below this module imports it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use arc_swap::ArcSwap;

use crate::admin::AdminState;
use crate::config::{BackendSslMode, ClientTlsMode, Config};
use crate::failover::Coordinator;
use crate::hooks::Pipeline;
use crate::plugins::registry::Registry;
use crate::plugins::{self, LoadError};
use crate::pool::Pools;
use crate::session::cancel::CancelRegistry;
use crate::session::env::{LoginEnv, SessionEnv, SessionLimits};
use crate::session::login::load_users;
use crate::topology::Topology;
use crate::wire::tls;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The users file could not be read or parsed.
    #[error("auth.users_file {path}: {message}")]
    Users {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// TLS material is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The configuration has no primary.
    #[error("no primary node configured")]
    NoPrimary,
    /// A component could not be loaded.
    #[error(transparent)]
    Plugin(#[from] LoadError),
    /// The journal could not be opened.
    #[error("journal: {0}")]
    Journal(crate::journal::JournalError),
    /// The result cache could not be set up.
    #[error("cache: {0}")]
    Cache(String),
}

/// The proxy's parts, wired together: each subsystem gets only its own narrow view (sessions
/// a [`SessionEnv`], the admin API an [`AdminState`], failover its [`Coordinator`]).
pub struct Shared {
    /// The configuration the proxy started with.
    pub config: Config,
    /// What sessions see.
    pub session: Arc<SessionEnv>,
    /// Server pools.
    pub pools: Arc<Pools>,
    /// The backend nodes.
    pub topology: Arc<Topology>,
    /// The current components; swapped whole on reload.
    pub pipeline: Arc<ArcSwap<Pipeline>>,
    /// Every loaded component, enabled or not.
    pub components: Arc<Registry>,
    /// Failovers and switchovers.
    pub failover: Arc<Coordinator>,
    /// The statement journal, when configured.
    pub journal: Option<Arc<crate::journal::Journal>>,
    /// Per-fingerprint query statistics, when on.
    pub analytics: Option<Arc<crate::observe::queries::QueryStats>>,
    /// The result cache, when configured.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    client_slots: Arc<Semaphore>,
}

impl Shared {
    /// The admin API's view.
    fn admin_state(&self) -> AdminState {
        let shadows = Arc::new(crate::ops::shadow::Shadows::new(self.session.clone()));
        let upgrade = self.config.upgrade.clone().and_then(|u| {
            crate::ops::upgrade::Upgrade::new(u, self.session.clone(), shadows.clone())
                .map(Arc::new)
        });
        AdminState {
            api_key: self.config.admin.api_key.clone().filter(|k| !k.is_empty()),
            journal_api_key: self
                .config
                .admin
                .journal_api_key
                .clone()
                .filter(|k| !k.is_empty()),
            write_api_key: self
                .config
                .admin
                .write_api_key
                .clone()
                .filter(|k| !k.is_empty()),
            ha: self.config.ha.clone(),
            topology: self.topology.clone(),
            pipeline: self.pipeline.clone(),
            components: self.components.clone(),
            failover: self.failover.clone(),
            sessions: self.session.counters.clone(),
            pins: self.session.pins.clone(),
            journal: self.journal.clone(),
            metrics_open: self.config.admin.metrics_open,
            metrics: Arc::new(self.metrics_sources()),
            analytics: self.analytics.clone(),
            cache: self.cache.clone(),
            chaos: Arc::new(crate::ops::chaos::Chaos::new(
                self.config.chaos.enabled,
                self.topology
                    .nodes
                    .iter()
                    .map(|n| (n.name().to_owned(), n.target.chaos.clone()))
                    .collect(),
            )),
            replays: Arc::new(crate::ops::replay::Replays::new(
                self.session.clone(),
                self.journal.clone(),
            )),
            shadows,
            upgrade,
        }
    }

    /// What `/metrics` reads.
    fn metrics_sources(&self) -> crate::observe::metrics::Sources {
        crate::observe::metrics::Sources {
            pools: self.pools.clone(),
            topology: self.topology.clone(),
            components: self.components.clone(),
            failover: self.failover.clone(),
            sessions: self.session.counters.clone(),
            pins: self.session.pins.clone(),
            clients: self.session.clients.clone(),
            journal: self.journal.clone(),
            analytics: self.analytics.clone(),
            cache: self.cache.clone(),
        }
    }
}

/// A configured proxy, ready to serve.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
    admin: TcpListener,
}

/// A running proxy: its address, and a way to stop it.
pub struct ProxyHandle {
    /// The address clients connect to.
    pub local_addr: SocketAddr,
    /// The admin API address.
    pub admin_addr: SocketAddr,
    /// The shared state (pools and their counters).
    pub shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ProxyHandle {
    /// Stops accepting clients and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

impl Proxy {
    /// Builds the shared state and binds the listen address.
    pub async fn bind(config: Config) -> Result<Proxy, StartError> {
        let users = match &config.auth.users_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| StartError::Users {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?;
                load_users(&text).map_err(|message| StartError::Users {
                    path: path.display().to_string(),
                    message,
                })?
            }
            None => HashMap::new(),
        };
        let (tls, tls_end_point) = match (&config.tls.cert, &config.tls.key, config.tls.mode) {
            (Some(cert), Some(key), ClientTlsMode::Allow | ClientTlsMode::Require) => (
                Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                    cert, key,
                )?)),
                Some(crate::wire::scram::tls_server_end_point(&tls::leaf_der(
                    cert,
                )?)),
            ),
            _ => (None, None),
        };
        // Unknown users' stand-in salts are derived from the users file, so they stay the
        // same across restarts (as real users' do) and cannot be predicted without it.
        let auth_seed = match &config.auth.users_file {
            Some(path) => std::fs::read(path).unwrap_or_default(),
            None => config.listen_address.clone().into_bytes(),
        };
        let auth_state = crate::session::auth::AuthState::new(
            &auth_seed,
            tls_end_point,
            config.auth.passthrough_max_checks,
            config.auth.max_failed_logins,
            std::time::Duration::from_secs(config.auth.failed_login_window_s),
        );
        let backend_tls = match config.backend_tls.sslmode {
            BackendSslMode::Disable => None,
            BackendSslMode::Prefer | BackendSslMode::Require => Some(tls::client_config(None)?),
            BackendSslMode::VerifyFull => {
                Some(tls::client_config(config.backend_tls.ca.as_deref())?)
            }
        };
        if config.primary().is_none() && config.ha.is_none() {
            return Err(StartError::NoPrimary);
        }
        let topology = Arc::new(Topology::new(&config, backend_tls));
        if let Some(ha) = &config.ha {
            crate::topology::tracker::discover(&topology, ha).await;
        }
        let journal = match &config.journal {
            Some(j) => Some(Arc::new(
                crate::journal::Journal::open(j).map_err(StartError::Journal)?,
            )),
            None => None,
        };
        let (plugin_runtime, loaded) = if config.plugins.is_empty() {
            (None, Vec::new())
        } else {
            let runtime = plugins::Runtime::new(&config.plugin_runtime)?;
            let mut loaded = Vec::new();
            for p in &config.plugins {
                let plugin = runtime.load(p, topology.clone())?;
                tracing::info!(component = %p.name, digest = %plugin.digest, "component loaded");
                loaded.push(plugin);
            }
            (Some(runtime), loaded)
        };
        let components = Arc::new(Registry::new(
            plugin_runtime,
            config.plugins.clone(),
            topology.clone(),
            loaded,
        ));
        let pipeline = Arc::new(ArcSwap::from_pointee(Pipeline::new(components.enabled())));
        let listener = TcpListener::bind(&config.listen_address)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_address.clone(),
                source,
            })?;
        let admin = TcpListener::bind(&config.admin_address)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.admin_address.clone(),
                source,
            })?;
        let pools = Arc::new(Pools::new(pool_config(&config)));
        let analytics = crate::observe::queries::QueryStats::new(&config.analytics).map(Arc::new);
        let cache = match &config.cache {
            Some(c) => {
                let cache = Arc::new(crate::cache::ResultCache::new(c).map_err(StartError::Cache)?);
                cache.start();
                Some(cache)
            }
            None => None,
        };
        let session = Arc::new(SessionEnv {
            limits: SessionLimits {
                mode: config.pool.mode,
                max_message_bytes: config.limits.max_client_message_bytes,
                max_client_memory_bytes: config.limits.max_client_memory_bytes,
                max_memory_bytes: config.limits.max_memory_bytes,
                max_prepared_statements: config.pool.max_prepared_statements,
                max_connections: config.pool.max_connections,
                login_timeout_ms: config.limits.client_login_timeout_ms,
            },
            ha: config.ha.clone(),
            pools: pools.clone(),
            topology: topology.clone(),
            pipeline: pipeline.clone(),
            journal: journal.clone(),
            counters: Default::default(),
            pins: Default::default(),
            memory: Default::default(),
            notifications: Arc::new(crate::notify::Notifications::new(topology.clone())),
            analytics: analytics.clone(),
            sql_tables: config.analytics.sql_tables,
            table_admins: config.admin.users.clone().into(),
            clients: Default::default(),
            cache: cache.clone(),
            shadow: Default::default(),
            console: Some(Arc::new(crate::session::env::ConsoleEnv {
                config: config.clone(),
                components: components.clone(),
                pipeline: pipeline.clone(),
            })),
            login: LoginEnv {
                users: ArcSwap::from_pointee(users),
                auth: config.auth.clone(),
                tls_mode: config.tls.mode,
                tls,
                cancels: Arc::new(CancelRegistry::default()),
                auth_state,
            },
        });
        let failover = Arc::new(Coordinator::new(
            config.ha.clone(),
            topology.clone(),
            pools.clone(),
        ));
        let shared = Arc::new(Shared {
            session,
            pools,
            topology,
            pipeline,
            components,
            failover,
            journal,
            analytics,
            cache,
            client_slots: Arc::new(Semaphore::new(config.pool.max_connections)),
            config,
        });
        Ok(Proxy {
            shared,
            listener,
            admin,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Starts serving in the background.
    pub fn start(self) -> ProxyHandle {
        let (stop, mut stopped) = watch::channel(false);
        let local_addr = self.local_addr();
        let admin_addr = self
            .admin
            .local_addr()
            .expect("bound listener has an address");
        let shared = self.shared.clone();
        let admin_app = crate::admin::app(Arc::new(self.shared.admin_state()));
        let admin_listener = self.admin;
        let mut admin_stopped = stop.subscribe();
        tokio::spawn(async move {
            let serve = axum::serve(admin_listener, admin_app).with_graceful_shutdown(async move {
                let _ = admin_stopped.changed().await;
            });
            if let Err(e) = serve.await {
                tracing::warn!("admin API stopped: {e}");
            }
        });
        let trackers = spawn_trackers(&self.shared);
        let task = tokio::spawn(async move {
            let reaper = tokio::spawn(reap(self.shared.clone()));
            loop {
                tokio::select! {
                    _ = stopped.changed() => break,
                    accepted = self.listener.accept() => match accepted {
                        Ok((tcp, peer)) => {
                            let permit = self.shared.client_slots.clone().try_acquire_owned().ok();
                            tokio::spawn(crate::session::serve(self.shared.session.clone(), tcp, peer, permit));
                        }
                        Err(e) => {
                            // Out of file descriptors and the like: back off, keep serving.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
            reaper.abort();
            for t in trackers {
                t.abort();
            }
        });
        ProxyHandle {
            local_addr,
            admin_addr,
            shared,
            stop,
            task,
        }
    }
}

/// The pool settings in effect: with `[ha]` every reused connection gets the (one
/// non-blocking read) liveness check, so a connection that died with its server is never
/// handed out and a statement is never sent into it.
fn pool_config(config: &Config) -> crate::config::PoolConfig {
    let mut pool = config.pool.clone();
    if config.ha.is_some() {
        pool.health_check_after_ms = 0;
    }
    pool
}

/// Starts a health-check task per node when `[ha]` is configured.
fn spawn_trackers(shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let Some(ha) = shared.config.ha.clone() else {
        return Vec::new();
    };
    let automatic = ha.failover == crate::config::FailoverMode::Automatic;
    let weak = Arc::downgrade(&shared.failover);
    let primary_down: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |node| {
        if let (true, Some(coordinator)) = (automatic, weak.upgrade()) {
            tokio::spawn(crate::failover::automatic(coordinator, node));
        }
    });
    (0..shared.topology.nodes.len())
        .map(|i| {
            tokio::spawn(crate::topology::tracker::watch_node(
                shared.topology.clone(),
                i,
                ha.clone(),
                primary_down.clone(),
            ))
        })
        .collect()
}

/// Closes idle server connections past their idle timeout or lifetime.
async fn reap(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let closed = shared.pools.close_expired();
        if closed > 0 {
            tracing::debug!(closed, "closed expired idle server connections");
        }
    }
}
