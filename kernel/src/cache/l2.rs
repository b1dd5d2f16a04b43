//! The shared tier: results in Redis (tagged by the tables they read) and invalidations
//! published to every proxy. Redis is optional at every step: a call that fails or takes
//! longer than `timeout_ms` is a miss (or a skipped store), never an error or a stall; an
//! outage is logged once when it starts and once when it ends.

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
        })
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.timeout_ms)
    }

    fn result_key(&self, key: &[u8; 32]) -> String {
        format!("{}:r:{}", self.config.prefix, hex::encode(key))
    }

    fn tag_key(&self, table: &str) -> String {
        format!("{}:t:{}", self.config.prefix, table.replace('\0', "/"))
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

    /// The stored value of `key`.
    pub async fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.result_key(key));
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

    /// Stores `value` under `key` for `ttl`, tagged with `tables`.
    pub async fn set(&self, key: &[u8; 32], value: Vec<u8>, ttl: Duration, tables: &[String]) {
        let ttl = ttl
            .min(Duration::from_secs(self.config.ttl_s))
            .as_millis()
            .max(1) as u64;
        let k = self.result_key(key);
        let mut p = redis::pipe();
        p.cmd("SET").arg(&k).arg(value).arg("PX").arg(ttl).ignore();
        for t in tables {
            let tag = self.tag_key(t);
            p.cmd("SADD").arg(&tag).arg(&k).ignore();
            p.cmd("PEXPIRE")
                .arg(&tag)
                .arg(ttl.max(self.config.ttl_s * 1000))
                .ignore();
        }
        let _: Option<()> = self.run("set", &p).await;
    }

    /// Drops every stored result that read one of `tables` and tells the other proxies.
    pub async fn invalidate(&self, tables: &[String]) {
        let mut p = redis::pipe();
        for t in tables {
            let tag = self.tag_key(t);
            // DEL of each member, then of the tag, atomically on the server side.
            p.cmd("EVAL")
                .arg("local m = redis.call('SMEMBERS', KEYS[1]) for _, k in ipairs(m) do redis.call('DEL', k) end redis.call('DEL', KEYS[1]) return #m")
                .arg(1)
                .arg(&tag)
                .ignore();
            p.cmd("PUBLISH")
                .arg(self.channel())
                .arg(format!("{}|{}", self.id, t))
                .ignore();
        }
        let _: Option<()> = self.run("invalidate", &p).await;
    }

    /// Drops every stored result (of this prefix) and tells the other proxies.
    pub async fn invalidate_all(&self) {
        let mut p = redis::pipe();
        p.cmd("EVAL")
            .arg("local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n")
            .arg(0)
            .arg(format!("{}:*", self.config.prefix))
            .ignore();
        p.cmd("PUBLISH")
            .arg(self.channel())
            .arg(format!("{}|*", self.id))
            .ignore();
        let _: Option<()> = self.run("invalidate", &p).await;
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
