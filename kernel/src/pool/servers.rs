//! Every open server connection, for `SHOW SERVERS`: each connection carries a registration
//! that removes it from the list when the connection is dropped, however it ends.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// What `SHOW SERVERS` shows about one server connection.
#[derive(Debug)]
pub struct ServerInfo {
    /// Proxy-wide id.
    pub id: u64,
    /// Node name.
    pub node: String,
    /// Database.
    pub database: String,
    /// Backend role.
    pub user: String,
    /// Node host (or socket directory).
    pub host: String,
    /// Node port.
    pub port: u16,
    /// The backend's process id.
    pub pid: i32,
    /// Whether TLS protects it.
    pub tls: bool,
    /// When it was opened, Unix microseconds.
    pub connect_time_us: u64,
    /// Lent to a client right now.
    pub active: AtomicBool,
    /// When it was last lent, Unix microseconds.
    pub request_time_us: AtomicU64,
    /// The pool generation it was opened in (older ones are closed on release after
    /// `RECONNECT`).
    pub generation: u64,
    /// A duplicate of its socket, so the connection can be severed from outside while a
    /// session waits on it (see [`ServerList::sever_node`]).
    pub socket: Option<std::os::fd::OwnedFd>,
}

impl ServerInfo {
    /// Shuts the socket down both ways: whoever waits on the connection sees it end at
    /// once, as if the server had gone, whatever the server is doing (frozen, partitioned
    /// away). The descriptor stays open until the connection is dropped.
    pub fn sever(&self) -> bool {
        use std::os::fd::AsRawFd;
        match &self.socket {
            // SAFETY: shutdown(2) on a descriptor this entry owns (a dup of the socket).
            Some(fd) => unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_RDWR) == 0 },
            None => false,
        }
    }
}

/// The list of open server connections.
#[derive(Debug, Default)]
pub struct ServerList {
    next: AtomicU64,
    open: Mutex<BTreeMap<u64, Arc<ServerInfo>>>,
}

/// A connection's place in the list; dropping it (with the connection) removes it.
#[derive(Debug)]
pub struct Registration {
    /// What is shown.
    pub info: Arc<ServerInfo>,
    list: Arc<ServerList>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.list
            .open
            .lock()
            .expect("servers lock")
            .remove(&self.info.id);
    }
}

impl ServerList {
    /// Adds a connection; `info.id` is assigned here.
    pub fn register(self: &Arc<Self>, mut info: ServerInfo) -> Registration {
        info.id = self.next.fetch_add(1, Relaxed) + 1;
        let info = Arc::new(info);
        self.open
            .lock()
            .expect("servers lock")
            .insert(info.id, info.clone());
        Registration {
            info,
            list: self.clone(),
        }
    }

    /// Severs every connection to `node`, lent or idle; how many. Used when the node stopped
    /// being the primary: a session whose request is in flight there moves like after a
    /// crash instead of waiting on a server that may never answer.
    pub fn sever_node(&self, node: &str) -> usize {
        self.all()
            .iter()
            .filter(|s| s.node == node)
            .filter(|s| s.sever())
            .count()
    }

    /// Every open connection, oldest first.
    pub fn all(&self) -> Vec<Arc<ServerInfo>> {
        self.open
            .lock()
            .expect("servers lock")
            .values()
            .cloned()
            .collect()
    }
}

/// Unix microseconds now.
pub fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
