//! The accept loop and the state every session shares: configuration, users, pools, cancel
//! keys, TLS, and the client connection limit.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use arc_swap::ArcSwap;

use crate::config::{BackendSslMode, ClientTlsMode, Config};
use crate::hooks::Pipeline;
use crate::plugins::{self, LoadError};
use crate::pool::Pools;
use crate::session::cancel::CancelRegistry;
use crate::session::login::load_users;
use crate::topology::Topology;
use crate::wire::auth::Secret;
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
}

/// State shared by every session.
pub struct Shared {
    /// The configuration the proxy started with.
    pub config: Config,
    /// Users and their secrets from `auth.users_file`.
    pub users: HashMap<String, Secret>,
    /// Server pools.
    pub pools: Pools,
    /// The backend nodes.
    pub topology: Arc<Topology>,
    /// The loaded components; swapped whole on reload, sessions keep the one they started with.
    pub pipeline: ArcSwap<Pipeline>,
    /// The component runtime, when components are configured.
    pub plugin_runtime: Option<plugins::Runtime>,
    /// Every loaded component (config order) and which are disabled.
    pub components: std::sync::Mutex<ComponentRegistry>,
    /// Cancel keys of live sessions.
    pub cancels: Arc<CancelRegistry>,
    /// TLS acceptor for clients, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Failovers and switchovers.
    pub failover: crate::failover::Coordinator,
    /// The statement journal, when configured.
    pub journal: Option<crate::journal::Journal>,
    client_slots: Arc<Semaphore>,
}

/// The loaded components, enabled or not.
#[derive(Default)]
pub struct ComponentRegistry {
    /// In config order.
    pub loaded: Vec<Arc<plugins::LoadedPlugin>>,
    /// Names of disabled components.
    pub disabled: std::collections::HashSet<String>,
}

impl ComponentRegistry {
    fn pipeline(&self) -> Pipeline {
        Pipeline::new(
            self.loaded
                .iter()
                .filter(|p| !self.disabled.contains(&p.name))
                .cloned()
                .collect(),
        )
    }
}

impl Shared {
    /// Re-reads, verifies and instantiates a component from its configured source and swaps
    /// it in atomically: statements already past their hooks finish on the old version, new
    /// ones use the new. On any failure the old version keeps serving. Returns the new digest.
    pub fn reload_component(&self, name: &str) -> Result<String, String> {
        let runtime = self
            .plugin_runtime
            .as_ref()
            .ok_or("no components are configured")?;
        let config = self
            .config
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| format!("no component named {name}"))?;
        let fresh = runtime
            .load(config, self.topology.clone())
            .map_err(|e| e.to_string())?;
        let digest = fresh.digest.clone();
        let mut registry = self.components.lock().expect("components lock");
        if let Some(slot) = registry.loaded.iter_mut().find(|p| p.name == name) {
            *slot = fresh;
        }
        self.pipeline.store(Arc::new(registry.pipeline()));
        tracing::info!(component = name, %digest, "component reloaded");
        Ok(digest)
    }

    /// Enables or disables a component without unloading it.
    pub fn set_component_enabled(&self, name: &str, enabled: bool) -> Result<(), String> {
        let mut registry = self.components.lock().expect("components lock");
        if !registry.loaded.iter().any(|p| p.name == name) {
            return Err(format!("no component named {name}"));
        }
        if enabled {
            registry.disabled.remove(name);
        } else {
            registry.disabled.insert(name.to_owned());
        }
        self.pipeline.store(Arc::new(registry.pipeline()));
        Ok(())
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
        let tls = match (&config.tls.cert, &config.tls.key, config.tls.mode) {
            (Some(cert), Some(key), ClientTlsMode::Allow | ClientTlsMode::Require) => Some(
                tokio_rustls::TlsAcceptor::from(tls::server_config(cert, key)?),
            ),
            _ => None,
        };
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
            Some(j) => Some(crate::journal::Journal::open(j).map_err(StartError::Journal)?),
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
        let registry = ComponentRegistry {
            loaded,
            disabled: Default::default(),
        };
        let pipeline = registry.pipeline();
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
        let shared = Arc::new(Shared {
            users,
            pools: Pools::new(pool_config(&config)),
            topology,
            pipeline: ArcSwap::from_pointee(pipeline),
            plugin_runtime,
            components: std::sync::Mutex::new(registry),
            cancels: Arc::new(CancelRegistry::default()),
            tls,
            failover: Default::default(),
            journal,
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
        let admin_app = crate::admin::app(self.shared.clone());
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
                            tokio::spawn(crate::session::serve(self.shared.clone(), tcp, peer, permit));
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
    let weak = Arc::downgrade(shared);
    let primary_down: Arc<dyn Fn(usize) + Send + Sync> = Arc::new(move |node| {
        if let (true, Some(shared)) = (automatic, weak.upgrade()) {
            tokio::spawn(crate::failover::automatic(shared, node));
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
