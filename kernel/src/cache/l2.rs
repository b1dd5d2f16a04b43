//! The shared tier: results in Redis and invalidations published to every proxy.
//!
//! Ordering does not decide what is fresh; versions do. Every table has a version in Redis
//! (`INCR`ed by each committed write's invalidation, plus one version for "everything"). A
//! miss reads the versions of its tables *before* the statement runs; its result is stored
//! only if they are unchanged when the store lands (checked and written in one script), and
//! a reader gets a stored result only if they are still unchanged (checked in the same
//! script as the read). So a store that arrives after a write's invalidation, or a value a
//! proxy copies to its own memory, can never be older than the last acknowledged write. An
//! invalidation Redis did not acknowledge is retried until it is.
//!
//! Redis is optional at every step: a call that fails or takes longer than `timeout_ms` is a
//! miss (or a skipped store), never an error or a stall; an outage is logged once when it
//! starts and once when it ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::L2Config;

/// Counters of the shared tier.
#[derive(Debug, Default)]
pub struct L2Stats {
    /// Lookups answered.
    pub hits: AtomicU64,
    /// Lookups not answered (absent, or Redis unavailable).
    pub misses: AtomicU64,
    /// Calls that failed or timed out.
    pub errors: AtomicU64,
    /// Invalidations received from other proxies.
    pub remote_invalidations: AtomicU64,
}

/// Reads a result and checks its tables' versions, in one step on the server: the stored
/// hash holds the value (`d`), its version keys (`k`) and the versions it was read at (`g`).
/// A result whose versions moved is deleted and not returned.
const GET_SCRIPT: &str = r"
local h = redis.call('HMGET', KEYS[1], 'd', 'k', 'g')
if not h[1] then return false end
local gens = {}
for g in string.gmatch(h[3], '[^\n]+') do gens[#gens + 1] = g end
local i = 0
for k in string.gmatch(h[2], '[^\n]+') do
  i = i + 1
  if (redis.call('GET', k) or '0') ~= gens[i] then
    redis.call('DEL', KEYS[1])
    return false
  end
end
return h[1]
";

/// Stores a result only if its tables' versions are still those read before it ran.
const SET_SCRIPT: &str = r"
local keys = {}
for k in string.gmatch(ARGV[3], '[^\n]+') do keys[#keys + 1] = k end
local i = 0
for g in string.gmatch(ARGV[4], '[^\n]+') do
  i = i + 1
  if (redis.call('GET', keys[i]) or '0') ~= g then return 0 end
end
redis.call('HSET', KEYS[1], 'd', ARGV[1], 'k', ARGV[3], 'g', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Tables whose invalidation is waiting for Redis, beyond which everything is invalidated.
const MAX_UNACKED: usize = 10_000;

/// The versions a miss read before its statement ran, in the order of its version keys.
#[derive(Debug, Clone)]
pub struct Versions {
    keys: Vec<String>,
    values: Vec<String>,
}

/// The Redis tier.
pub struct L2 {
    client: redis::Client,
    config: L2Config,
    conn: tokio::sync::Mutex<Option<ConnectionManager>>,
    /// No new connection attempt before this.
    retry_at: std::sync::Mutex<Option<Instant>>,
    down: AtomicBool,
    /// Counters.
    pub stats: L2Stats,
    /// This proxy's id in published invalidations (its own are ignored when they come back).
    id: u64,
    /// Invalidations Redis has not acknowledged (tables, or `*`), retried until it does.
    unacked: std::sync::Mutex<HashSet<String>>,
}

impl L2 {
    /// The tier for `config`; connects on first use.
    pub fn new(config: &L2Config) -> Result<L2, String> {
        let client = redis::Client::open(config.url.as_str()).map_err(|e| e.to_string())?;
        Ok(L2 {
            client,
            config: config.clone(),
            conn: tokio::sync::Mutex::new(None),
            retry_at: std::sync::Mutex::new(None),
            down: AtomicBool::new(false),
            stats: L2Stats::default(),
            id: rand::random(),
            unacked: std::sync::Mutex::default(),
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn result_key(&self, key: &[u8; 32]) -> String {
        format!("{}:r2:{}", self.config.prefix, hex::encode(key))
    }

    /// The version key of `table` (`database\0schema.name`), or of everything for `*`.
    fn version_key(&self, table: &str) -> String {
        if table == super::EVERYTHING {
            format!("{}:v:*", self.config.prefix)
        } else {
            format!("{}:v:{}", self.config.prefix, hex::encode(table))
        }
    }

    fn channel(&self) -> String {
        format!("{}:invalidate", self.config.prefix)
    }

    fn failed(&self, what: &str, e: &dyn std::fmt::Display) {
        self.stats.errors.fetch_add(1, Relaxed);
        if !self.down.swap(true, Relaxed) {
            tracing::warn!(url = %self.config.url, "result cache: Redis unavailable ({what}: {e}); serving from the backend until it is back");
        }
    }

    fn recovered(&self) {
        if self.down.swap(false, Relaxed) {
            tracing::info!(url = %self.config.url, "result cache: Redis is back");
        }
    }

    /// A connection, or `None` while Redis is unreachable (one attempt per second).
    async fn connection(&self) -> Option<ConnectionManager> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref() {
            return Some(c.clone());
        }
        {
            let retry_at = self.retry_at.lock().expect("l2 lock");
            if retry_at.is_some_and(|t| Instant::now() < t) {
                return None;
            }
        }
        let config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(self.timeout().max(Duration::from_millis(200)))
            .set_response_timeout(self.timeout());
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            self.client.get_connection_manager_with_config(config),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                *guard = Some(c.clone());
                Some(c)
            }
            Ok(Err(e)) => {
                self.failed("connect", &e);
                *self.retry_at.lock().expect("l2 lock") =
                    Some(Instant::now() + Duration::from_secs(1));
                None
            }
            Err(_) => {
                self.failed("connect", &"timed out");
                *self.retry_at.lock().expect("l2 lock") =
                    Some(Instant::now() + Duration::from_secs(1));
                None
            }
        }
    }

    /// Runs one command pipeline within the timeout.
    async fn run<T: redis::FromRedisValue>(&self, what: &str, pipe: &redis::Pipeline) -> Option<T> {
        let mut conn = self.connection().await?;
        match tokio::time::timeout(self.timeout(), pipe.query_async::<T>(&mut conn)).await {
            Ok(Ok(v)) => {
                self.recovered();
                Some(v)
            }
            Ok(Err(e)) => {
                self.failed(what, &e);
                None
            }
            Err(_) => {
                self.failed(what, &"timed out");
                None
            }
        }
    }

    /// The versions of `tables` (and of everything) now; `None` when Redis cannot say.
    pub async fn versions(&self, tables: &[String]) -> Option<Versions> {
        let keys: Vec<String> = std::iter::once(self.version_key(super::EVERYTHING))
            .chain(tables.iter().map(|t| self.version_key(t)))
            .collect();
        let mut p = redis::pipe();
        p.cmd("MGET").arg(&keys);
        let (values,): (Vec<Option<String>>,) = self.run("versions", &p).await?;
        let values = values
            .into_iter()
            .map(|v| v.unwrap_or_else(|| "0".into()))
            .collect();
        Some(Versions { keys, values })
    }

    /// The stored value of `key`, when its tables' versions are those it was stored at.
    pub async fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg(GET_SCRIPT)
            .arg(1)
            .arg(self.result_key(key));
        let got: Option<(Option<Vec<u8>>,)> = self.run("get", &p).await;
        match got.and_then(|(v,)| v) {
            Some(v) => {
                self.stats.hits.fetch_add(1, Relaxed);
                Some(v)
            }
            None => {
                self.stats.misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Stores `value` under `key` for `ttl`, unless a write changed `versions` since they
    /// were read.
    pub async fn set(&self, key: &[u8; 32], value: Vec<u8>, ttl: Duration, versions: &Versions) {
        let ttl = ttl
            .min(Duration::from_secs(self.config.ttl_s))
            .as_millis()
            .max(1) as u64;
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg(SET_SCRIPT)
            .arg(1)
            .arg(self.result_key(key))
            .arg(value)
            .arg(ttl)
            .arg(versions.keys.join("\n"))
            .arg(versions.values.join("\n"))
            .ignore();
        let _: Option<()> = self.run("set", &p).await;
    }

    /// Moves the versions of `tables` (`*`: everything) and tells the other proxies; when
    /// Redis does not acknowledge it, it is kept and retried (see [`L2::retry_unacked`]).
    pub async fn invalidate(&self, tables: &[String]) {
        if !self.try_invalidate(tables).await {
            let mut unacked = self.unacked.lock().expect("l2 lock");
            unacked.extend(tables.iter().cloned());
            if unacked.len() > MAX_UNACKED {
                unacked.clear();
                unacked.insert(super::EVERYTHING.to_owned());
            }
        }
    }

    /// Drops every stored result (of this prefix) and tells the other proxies.
    pub async fn invalidate_all(&self) {
        self.invalidate(&[super::EVERYTHING.to_owned()]).await;
    }

    async fn try_invalidate(&self, tables: &[String]) -> bool {
        let mut p = redis::pipe();
        for t in tables {
            p.cmd("INCR").arg(self.version_key(t)).ignore();
            p.cmd("PUBLISH")
                .arg(self.channel())
                .arg(format!("{}|{}", self.id, t))
                .ignore();
        }
        self.run::<()>("invalidate", &p).await.is_some()
    }

    /// Retries unacknowledged invalidations every 200 ms for as long as the proxy runs.
    pub fn retry_unacked(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Some(l2) = weak.upgrade() else {
                    return;
                };
                let tables: Vec<String> = {
                    let unacked = l2.unacked.lock().expect("l2 lock");
                    unacked.iter().cloned().collect()
                };
                if tables.is_empty() || !l2.try_invalidate(&tables).await {
                    continue;
                }
                let mut unacked = l2.unacked.lock().expect("l2 lock");
                for t in &tables {
                    unacked.remove(t);
                }
                tracing::info!(
                    tables = tables.len(),
                    "result cache: invalidations Redis missed were delivered"
                );
            }
        });
    }

    /// Invalidations waiting for Redis.
    pub fn unacked(&self) -> usize {
        self.unacked.lock().expect("l2 lock").len()
    }

    /// Listens for other proxies' invalidations for as long as the proxy runs, calling
    /// `apply` with each table (`*` = everything); reconnects after a loss.
    pub fn listen(self: &Arc<Self>, apply: impl Fn(&str) + Send + Sync + 'static) {
        let l2 = self.clone();
        tokio::spawn(async move {
            loop {
                let pubsub =
                    tokio::time::timeout(Duration::from_secs(1), l2.client.get_async_pubsub())
                        .await;
                let mut pubsub = match pubsub {
                    Ok(Ok(p)) => p,
                    _ => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if pubsub.subscribe(l2.channel()).await.is_err() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                // Anything cached while nobody listened may have missed an invalidation.
                apply("*");
                let mut messages = pubsub.into_on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Some((from, table)) = payload.split_once('|') else {
                        continue;
                    };
                    if from == l2.id.to_string() {
                        continue;
                    }
                    l2.stats.remote_invalidations.fetch_add(1, Relaxed);
                    apply(table);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    /// Whether Redis is believed reachable.
    pub fn up(&self) -> bool {
        !self.down.load(Relaxed)
    }
}
