//! The host interfaces a component may import (`kv`, `crypto`, `log`, `clock`, `topology`,
//! and the always-available `context`), implemented on the per-instance store state. Which
//! ones a component may import is checked at load against its grants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::StoreLimits;

use super::bindings::Hooks;
use super::bindings::helios::plugin::{
    clock, context, crypto, documents, kv, log, topology, types,
};
use super::facts::Facts;

/// Limits on one component's key/value namespace.
const KV_MAX_KEYS: usize = 100_000;
const KV_MAX_VALUE: usize = 1 << 20;

/// A stored value and when it expires.
type KvEntry = (Vec<u8>, Option<Instant>);

/// A component's key/value namespace, shared by all its instances.
#[derive(Default)]
pub struct KvStore {
    entries: Mutex<HashMap<String, KvEntry>>,
}

impl KvStore {
    fn live(entry: &KvEntry) -> bool {
        entry.1.is_none_or(|exp| exp > Instant::now())
    }

    /// The value under `key`, unless absent or expired.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let entries = self.entries.lock().expect("kv lock");
        entries
            .get(key)
            .filter(|e| Self::live(e))
            .map(|e| e.0.clone())
    }

    /// Stores a value (values over 1 MiB and keys past 100k are refused silently, as a
    /// cache would drop them).
    pub fn set(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) {
        if value.len() > KV_MAX_VALUE {
            return;
        }
        let mut entries = self.entries.lock().expect("kv lock");
        if entries.len() >= KV_MAX_KEYS && !entries.contains_key(&key) {
            entries.retain(|_, e| Self::live(e));
            if entries.len() >= KV_MAX_KEYS {
                return;
            }
        }
        entries.insert(key, (value, ttl.map(|t| Instant::now() + t)));
    }

    /// Removes a key.
    pub fn delete(&self, key: &str) {
        self.entries.lock().expect("kv lock").remove(key);
    }

    /// Adds to the integer under `key` atomically.
    pub fn incr(&self, key: String, delta: i64, ttl: Option<Duration>) -> i64 {
        let mut entries = self.entries.lock().expect("kv lock");
        let entry = entries.get(&key).filter(|e| Self::live(e));
        let current = entry
            .and_then(|e| <[u8; 8]>::try_from(e.0.as_slice()).ok())
            .map(i64::from_le_bytes)
            .unwrap_or(0);
        let expiry = match entry {
            Some(e) => e.1,
            None => ttl.map(|t| Instant::now() + t),
        };
        let next = current.wrapping_add(delta);
        entries.insert(key, (next.to_le_bytes().to_vec(), expiry));
        next
    }
}

/// A node as the `topology` interface reports it.
#[derive(Debug, Clone)]
pub struct NodeFacts {
    /// Name.
    pub name: String,
    /// "primary" or "replica".
    pub role: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Accepting connections.
    pub healthy: bool,
    /// Replay lag in bytes, when known.
    pub lag_bytes: Option<u64>,
}

/// Where the `topology` interface reads from.
pub trait TopologySource: Send + Sync {
    /// Current facts about every node.
    fn nodes(&self) -> Vec<NodeFacts>;
}

/// Who a hook call is for; components read it through the `context` interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionInfo {
    /// Unique per client connection.
    pub session_id: u64,
    /// Login user.
    pub user: String,
    /// Database.
    pub database: String,
    /// `application_name`, or empty.
    pub application_name: String,
    /// Client address, `ip:port`.
    pub client_addr: String,
    /// Tenant set by an Authenticate hook.
    pub tenant: Option<String>,
    /// Attributes set by an Authenticate hook.
    pub attributes: Vec<(String, String)>,
    /// `search_path` from the startup packet (empty: PostgreSQL's default), for resolving
    /// unqualified table names.
    pub search_path: Vec<String>,
}

/// A session value a hook read through `context`, for keying cached decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Read {
    /// `user`.
    User,
    /// `database`.
    Database,
    /// `application-name`.
    ApplicationName,
    /// `client-addr`.
    ClientAddr,
    /// `tenant`.
    Tenant,
    /// `attributes`.
    Attributes,
    /// `tables` or `analysis`, whose names are resolved against the `search_path`.
    SearchPath,
}

impl Read {
    /// Whether this read returns `value` for `session` (no allocation for the common reads).
    pub fn returns(self, session: &SessionInfo, value: &str) -> bool {
        match self {
            Read::User => session.user == value,
            Read::Database => session.database == value,
            Read::ApplicationName => session.application_name == value,
            Read::ClientAddr => session.client_addr == value,
            _ => self.value(session) == value,
        }
    }

    /// The value this read returns for `session`, as text.
    pub fn value(self, session: &SessionInfo) -> String {
        match self {
            Read::User => session.user.clone(),
            Read::Database => session.database.clone(),
            Read::ApplicationName => session.application_name.clone(),
            Read::ClientAddr => session.client_addr.clone(),
            Read::Tenant => session.tenant.clone().unwrap_or_else(|| "\0".into()),
            Read::Attributes => format!("{:?}", session.attributes),
            Read::SearchPath => session.search_path.join(","),
        }
    }
}

/// The session and statement of the hook call in progress.
#[derive(Clone)]
pub struct CallScope {
    /// The session.
    pub session: Arc<SessionInfo>,
    /// The statement, for statement hooks.
    pub stmt: Option<Arc<Facts>>,
    /// The statement's result rows, in PostQuery when a component asked for rows.
    pub rows: Option<Arc<CapturedRows>>,
}

/// Result rows the kernel captured for PostQuery, up to the largest limit any component
/// asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapturedRows {
    /// Column names, when the server described the result.
    pub columns: Vec<String>,
    /// Values as the server sent them; `None` is NULL.
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// Bytes of row data of each row, in order.
    pub row_bytes: Vec<usize>,
    /// Rows were left out at the capture limit.
    pub truncated: bool,
}

impl CapturedRows {
    /// The rows one component may see: those that fit in `limit` bytes.
    pub fn within(&self, limit: usize) -> context::RowSet {
        let mut used = 0;
        let fit = self
            .row_bytes
            .iter()
            .take_while(|&&b| {
                used += b;
                used <= limit
            })
            .count();
        context::RowSet {
            columns: self.columns.clone(),
            rows: self.rows[..fit].to_vec(),
            truncated: self.truncated || fit < self.rows.len(),
        }
    }
}

/// State of one component instance's store.
pub struct HostState {
    /// Component name, for log lines.
    pub component: Arc<str>,
    /// Shared key/value namespace.
    pub kv: Arc<KvStore>,
    /// Node facts.
    pub topology: Arc<dyn TopologySource>,
    /// Memory limits.
    pub limits: StoreLimits,
    /// The call in progress (set for the duration of a hook call).
    pub scope: Option<CallScope>,
    /// Deadline bookkeeping of the call in progress.
    pub deadline: super::DeadlineWatch,
    /// Bytes of result rows this component may read in PostQuery (0 = none).
    pub rows_bytes: usize,
    /// Hooks the component declared pure (during `init`).
    pub pure: Hooks,
    /// Session values read through `context` during the call in progress.
    pub reads: Vec<Read>,
    /// The files its `[[plugins]]` entry names.
    pub documents: Arc<super::documents::Documents>,
}

impl documents::Host for HostState {
    fn get(&mut self, name: String) -> Option<Vec<u8>> {
        self.documents.get(&name).map(|b| b.as_ref().clone())
    }

    fn refresh(&mut self, name: String) {
        self.documents.refresh(&name);
    }
}

impl types::Host for HostState {}

impl HostState {
    fn session(&self) -> Option<&SessionInfo> {
        self.scope.as_ref().map(|s| &*s.session)
    }

    fn read(&mut self, r: Read) -> Option<&SessionInfo> {
        if !self.reads.contains(&r) {
            self.reads.push(r);
        }
        self.session()
    }

    fn facts(&self) -> Option<&Facts> {
        self.scope.as_ref().and_then(|s| s.stmt.as_deref())
    }

    fn search_path(&self) -> &[String] {
        self.session().map_or(&[], |s| s.search_path.as_slice())
    }
}

impl context::Host for HostState {
    fn user(&mut self) -> String {
        self.read(Read::User)
            .map(|s| s.user.clone())
            .unwrap_or_default()
    }

    fn database(&mut self) -> String {
        self.read(Read::Database)
            .map(|s| s.database.clone())
            .unwrap_or_default()
    }

    fn application_name(&mut self) -> String {
        self.read(Read::ApplicationName)
            .map(|s| s.application_name.clone())
            .unwrap_or_default()
    }

    fn client_addr(&mut self) -> String {
        self.read(Read::ClientAddr)
            .map(|s| s.client_addr.clone())
            .unwrap_or_default()
    }

    fn tenant(&mut self) -> Option<String> {
        self.read(Read::Tenant).and_then(|s| s.tenant.clone())
    }

    fn attributes(&mut self) -> Vec<(String, String)> {
        self.read(Read::Attributes)
            .map(|s| s.attributes.clone())
            .unwrap_or_default()
    }

    fn tables(&mut self) -> Vec<String> {
        self.read(Read::SearchPath);
        let path = self.search_path().to_vec();
        self.facts().map(|f| f.tables(&path)).unwrap_or_default()
    }

    fn hints(&mut self) -> Vec<(String, String)> {
        self.facts()
            .map(|f| crate::sql::hints(&f.stmt.sql))
            .unwrap_or_default()
    }

    fn fingerprint(&mut self) -> String {
        self.facts()
            .map(|f| f.fingerprint().to_owned())
            .unwrap_or_default()
    }

    fn analysis(&mut self) -> context::StatementAnalysis {
        self.read(Read::SearchPath);
        let path = self.search_path().to_vec();
        match self.facts() {
            Some(f) => f.to_wit(&path),
            None => Facts::of("").first().expect("one entry").to_wit(&path),
        }
    }

    fn cache_result(&mut self, ttl_ms: u32) {
        if let Some(f) = self.facts() {
            f.cache_ttl_ms
                .store(ttl_ms.max(1), std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn declare_pure(&mut self, hooks: Hooks) {
        // Only `init` runs without a scope; a hook cannot change its own caching.
        if self.scope.is_none() {
            self.pure = hooks;
        }
    }

    fn result_rows(&mut self) -> Option<context::RowSet> {
        if self.rows_bytes == 0 {
            return None;
        }
        let rows = self.scope.as_ref()?.rows.as_ref()?;
        Some(rows.within(self.rows_bytes))
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Option<Vec<u8>> {
        self.kv.get(&key)
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        self.kv.set(key, value, ttl_ms.map(Duration::from_millis));
    }

    fn delete(&mut self, key: String) {
        self.kv.delete(&key);
    }

    fn incr(&mut self, key: String, delta: i64, ttl_ms: Option<u64>) -> i64 {
        self.kv.incr(key, delta, ttl_ms.map(Duration::from_millis))
    }
}

impl crypto::Host for HostState {
    fn sha256_hex(&mut self, data: Vec<u8>) -> String {
        hex::encode(Sha256::digest(&data))
    }

    fn hmac_sha256_hex(&mut self, key: Vec<u8>, data: Vec<u8>) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(&data);
        hex::encode(mac.finalize().into_bytes())
    }

    fn verify_signature(
        &mut self,
        algorithm: String,
        key: crypto::VerifyingKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> bool {
        use super::verify::{Key, verify};
        let key = match &key {
            crypto::VerifyingKey::Rsa((n, e)) => Key::Rsa(n, e),
            crypto::VerifyingKey::Point(p) => Key::Point(p),
            crypto::VerifyingKey::Secret(s) => Key::Secret(s),
        };
        verify(&algorithm, key, &message, &signature)
    }
}

impl log::Host for HostState {
    fn write(&mut self, level: log::Level, message: String) {
        let component = &*self.component;
        match level {
            log::Level::Trace => tracing::trace!(component, "{message}"),
            log::Level::Debug => tracing::debug!(component, "{message}"),
            log::Level::Info => tracing::info!(component, "{message}"),
            log::Level::Warn => tracing::warn!(component, "{message}"),
            log::Level::Error => tracing::error!(component, "{message}"),
        }
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

impl topology::Host for HostState {
    fn nodes(&mut self) -> Vec<topology::Node> {
        self.topology
            .nodes()
            .into_iter()
            .map(|n| topology::Node {
                name: n.name,
                role: n.role,
                tags: n.tags,
                healthy: n.healthy,
                lag_bytes: n.lag_bytes,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_expires_and_increments_atomically() {
        let kv = KvStore::default();
        kv.set("a".into(), b"1".to_vec(), Some(Duration::from_millis(20)));
        assert_eq!(kv.get("a"), Some(b"1".to_vec()));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(kv.get("a"), None);
        assert_eq!(kv.incr("n".into(), 5, None), 5);
        assert_eq!(kv.incr("n".into(), -2, None), 3);
        kv.delete("n");
        assert_eq!(kv.incr("n".into(), 1, None), 1);
    }
}
