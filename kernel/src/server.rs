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
    /// Cancel keys of live sessions.
    pub cancels: Arc<CancelRegistry>,
    /// TLS acceptor for clients, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    client_slots: Arc<Semaphore>,
}

/// A configured proxy, ready to serve.
pub struct Proxy {
    shared: Arc<Shared>,
    listener: TcpListener,
}

/// A running proxy: its address, and a way to stop it.
pub struct ProxyHandle {
    /// The address clients connect to.
    pub local_addr: SocketAddr,
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
        config.primary().ok_or(StartError::NoPrimary)?;
        let topology = Arc::new(Topology::new(&config, backend_tls));
        let (plugin_runtime, pipeline) = if config.plugins.is_empty() {
            (None, Pipeline::default())
        } else {
            let runtime = plugins::Runtime::new(&config.plugin_runtime)?;
            let mut loaded = Vec::new();
            for p in &config.plugins {
                let plugin = runtime.load(p, topology.clone())?;
                tracing::info!(component = %p.name, digest = %plugin.digest, "component loaded");
                loaded.push(plugin);
            }
            (Some(runtime), Pipeline::new(loaded))
        };
        let listener = TcpListener::bind(&config.listen_address)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_address.clone(),
                source,
            })?;
        let shared = Arc::new(Shared {
            users,
            pools: Pools::new(config.pool.clone()),
            topology,
            pipeline: ArcSwap::from_pointee(pipeline),
            plugin_runtime,
            cancels: Arc::new(CancelRegistry::default()),
            tls,
            client_slots: Arc::new(Semaphore::new(config.pool.max_connections)),
            config,
        });
        Ok(Proxy { shared, listener })
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
        let shared = self.shared.clone();
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
        });
        ProxyHandle {
            local_addr,
            shared,
            stop,
            task,
        }
    }
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
