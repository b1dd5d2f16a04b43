//! Every logged-in client, for `SHOW CLIENTS`, the client gauges of `/metrics` and `KILL`:
//! each session holds a [`ClientHandle`] whose drop removes it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

/// What a client is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ClientState {
    /// Between transactions, no server.
    Idle = 0,
    /// Holds a server connection.
    Active = 1,
    /// Waiting for a server connection.
    Waiting = 2,
}

impl ClientState {
    /// PgBouncer's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientState::Idle => "idle",
            ClientState::Active => "active",
            ClientState::Waiting => "waiting",
        }
    }
}

/// One logged-in client.
#[derive(Debug)]
pub struct ClientInfo {
    /// Proxy-wide id.
    pub id: u64,
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// The client's address.
    pub addr: std::net::SocketAddr,
    /// Whether it connected over TLS.
    pub tls: bool,
    /// `application_name` from its startup packet.
    pub application_name: String,
    /// When it logged in, Unix microseconds.
    pub connect_time_us: u64,
    /// When it last asked for a server, Unix microseconds.
    pub request_time_us: AtomicU64,
    /// Since when it has been waiting for a server, Unix microseconds (0 = not waiting).
    pub wait_since_us: AtomicU64,
    state: AtomicU8,
    kill: Notify,
}

impl ClientInfo {
    /// What it is doing now.
    pub fn state(&self) -> ClientState {
        match self.state.load(Relaxed) {
            1 => ClientState::Active,
            2 => ClientState::Waiting,
            _ => ClientState::Idle,
        }
    }
}

/// Traffic counters of one database (`SHOW STATS`), kept across its clients' lives.
#[derive(Debug, Default)]
pub struct DbCounters {
    /// Transactions completed (each `ReadyForQuery` back to idle after work).
    pub xacts: AtomicU64,
    /// Statements completed.
    pub queries: AtomicU64,
    /// Time statements took, microseconds.
    pub query_us: AtomicU64,
    /// Bytes received from clients.
    pub received: AtomicU64,
    /// Bytes sent to clients.
    pub sent: AtomicU64,
}

/// The registry of logged-in clients.
#[derive(Debug, Default)]
pub struct Clients {
    next: AtomicU64,
    live: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    databases: Mutex<BTreeMap<String, Arc<DbCounters>>>,
}

/// A session's entry; dropping it removes the client.
#[derive(Debug)]
pub struct ClientHandle {
    info: Arc<ClientInfo>,
    clients: Arc<Clients>,
    /// Its database's traffic counters.
    pub db: Arc<DbCounters>,
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        self.clients
            .live
            .lock()
            .expect("clients lock")
            .remove(&self.info.id);
    }
}

impl ClientHandle {
    /// Sets what the client is doing.
    #[inline]
    pub fn set_state(&self, state: ClientState) {
        if state == ClientState::Waiting {
            let now = crate::pool::servers::unix_us();
            self.info.wait_since_us.store(now, Relaxed);
            self.info.request_time_us.store(now, Relaxed);
        } else if self.info.state.load(Relaxed) == ClientState::Waiting as u8 {
            self.info.wait_since_us.store(0, Relaxed);
        }
        self.info.state.store(state as u8, Relaxed);
    }

    /// Resolves when an administrator killed this client.
    pub async fn killed(&self) {
        self.info.kill.notified().await;
    }

    /// The client's entry.
    pub fn info(&self) -> &Arc<ClientInfo> {
        &self.info
    }
}

/// What a new client is.
pub struct NewClient {
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// Its address.
    pub addr: std::net::SocketAddr,
    /// TLS.
    pub tls: bool,
    /// `application_name`.
    pub application_name: String,
}

impl Clients {
    /// Registers a logged-in client.
    pub fn register(self: &Arc<Self>, c: NewClient) -> ClientHandle {
        let now = crate::pool::servers::unix_us();
        let info = Arc::new(ClientInfo {
            id: self.next.fetch_add(1, Relaxed) + 1,
            user: c.user,
            database: c.database,
            addr: c.addr,
            tls: c.tls,
            application_name: c.application_name,
            connect_time_us: now,
            request_time_us: AtomicU64::new(now),
            wait_since_us: AtomicU64::new(0),
            state: AtomicU8::new(ClientState::Idle as u8),
            kill: Notify::new(),
        });
        self.live
            .lock()
            .expect("clients lock")
            .insert(info.id, info.clone());
        let db = self
            .databases
            .lock()
            .expect("clients lock")
            .entry(info.database.clone())
            .or_default()
            .clone();
        ClientHandle {
            info,
            clients: self.clone(),
            db,
        }
    }

    /// Every database's traffic counters.
    pub fn databases(&self) -> Vec<(String, Arc<DbCounters>)> {
        self.databases
            .lock()
            .expect("clients lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every client, in login order.
    pub fn all(&self) -> Vec<Arc<ClientInfo>> {
        self.live
            .lock()
            .expect("clients lock")
            .values()
            .cloned()
            .collect()
    }

    /// Ends every client of `database` (all when `None`); returns how many.
    pub fn kill(&self, database: Option<&str>) -> usize {
        let mut n = 0;
        for c in self.all() {
            if database.is_none_or(|d| d == c.database) {
                // `notify_one` keeps the wake-up for a session not waiting right now.
                c.kill.notify_one();
                n += 1;
            }
        }
        n
    }
}
