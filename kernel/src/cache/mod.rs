//! The result cache the kernel keeps for statements a cache-policy component asked for
//! (`context.cache-result`): L1 in this process (`moka`, bounded by bytes, per-entry TTL),
//! L2 in Redis shared by proxies ([`l2`]), keys that hold everything that can change an
//! answer ([`key`]), and invalidation by table — at once in this proxy, in Redis and,
//! through Redis pub/sub, in every other proxy — when a write commits.
//!
//! What is never cached, whatever a policy asks: anything in a transaction block, a
//! multi-statement query, statements that write or lock, relations that are not tables and
//! functions that are not immutable ([`catalog`]), results over `max_result_bytes`.

pub mod capture;
pub mod catalog;
pub mod entry;
pub mod key;
pub mod l2;
pub mod spread;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::CacheConfig;
pub use entry::CachedResult;
pub use key::{Key, SessionKey};

/// The invalidation tag that drops every stored result (a statement changed what answers
/// may be without the proxy knowing which relations: privileges, policies, opaque code).
pub const EVERYTHING: &str = "*";

/// One tier of the result cache as `heliosproxy_cache_stats` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheTier {
    /// `l1` or `l2`.
    pub tier: String,
    /// Entries held.
    pub entries: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Hits.
    pub cache_hits: u64,
    /// Misses.
    pub cache_misses: u64,
    /// Entries dropped by writes.
    pub invalidations: u64,
}

/// A statement's description as the server gave it.
#[derive(Debug)]
pub struct Description {
    /// The `ParameterDescription` frame.
    pub parameters: Vec<u8>,
    /// The `RowDescription` frame, format codes zeroed.
    pub rows: Vec<u8>,
}

/// One L1 entry: the result and how long it may live.
#[derive(Clone)]
struct Stored {
    result: Arc<CachedResult>,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<Key, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _k: &Key, v: &Stored, _now: Instant) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Counters of the cache.
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Answers from L1.
    pub l1_hits: AtomicU64,
    /// Lookups L1 could not answer.
    pub l1_misses: AtomicU64,
    /// Results stored.
    pub stores: AtomicU64,
    /// Results not stored: too large, not a table, a write raced them, …
    pub skipped: AtomicU64,
    /// Entries dropped by writes (this proxy's and others').
    pub invalidations: AtomicU64,
}

/// The result cache.
pub struct ResultCache {
    config: CacheConfig,
    l1: moka::sync::Cache<Key, Stored>,
    /// Keys per table (`database\0schema.name`), for invalidation.
    tags: Mutex<HashMap<String, HashSet<Key>>>,
    /// Bumped by each invalidation of a table: a result whose run began before it is not
    /// stored (it may hold rows the write changed).
    generations: Mutex<HashMap<String, u64>>,
    /// Bumped by every local invalidation: a value read from Redis while one happened is
    /// answered but not copied into L1.
    epoch: AtomicU64,
    /// The shared tier, when configured.
    pub l2: Option<Arc<l2::L2>>,
    /// Catalog verdicts (tables only, immutable functions only).
    pub catalog: Arc<catalog::Catalog>,
    /// Relations whose writes reach rows their name does not cover.
    pub spread: Arc<spread::Spread>,
    /// Statement descriptions (`ParameterDescription`, `RowDescription`) of cached
    /// statements, so a driver that prepares first needs no server on a hit.
    descriptions: moka::sync::Cache<Key, Arc<Description>>,
    /// Counters.
    pub stats: CacheStats,
}

/// What a statement that missed needs to be stored when it completes.
#[derive(Debug)]
pub struct Pending {
    /// Its key.
    pub key: Key,
    /// How long to keep it.
    pub ttl: Duration,
    /// Tables it reads, `database\0schema.name`.
    pub tables: Vec<String>,
    /// The tables' generations when it started.
    pub generations: Vec<u64>,
    /// The tables' versions in Redis when it started; `None` (Redis could not say, or no
    /// Redis): the result is kept in this proxy only.
    pub versions: Option<l2::Versions>,
}

impl ResultCache {
    /// A cache per `config`.
    pub fn new(config: &CacheConfig) -> Result<ResultCache, String> {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(config.l1_bytes)
            .weigher(|_k: &Key, v: &Stored| v.result.bytes().min(u32::MAX as usize) as u32)
            .expire_after(PerEntryTtl)
            .build();
        let l2 = match &config.l2 {
            Some(c) => Some(Arc::new(l2::L2::new(c)?)),
            None => None,
        };
        Ok(ResultCache {
            config: config.clone(),
            l1,
            tags: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            l2,
            catalog: Arc::default(),
            spread: Arc::default(),
            descriptions: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(config.max_ttl_s))
                .build(),
            stats: CacheStats::default(),
        })
    }

    /// Starts listening for other proxies' invalidations (with L2); [`EVERYTHING`] clears all.
    pub fn start(self: &Arc<Self>) {
        if let Some(l2) = &self.l2 {
            l2.retry_unacked();
            let weak = Arc::downgrade(self);
            l2.listen(move |table| {
                if let Some(cache) = weak.upgrade() {
                    if table == EVERYTHING {
                        cache.clear_local();
                    } else {
                        cache.invalidate_local(&[table.to_owned()]);
                    }
                }
            });
        }
    }

    /// The TTL to keep a result for, as the policy asked within `max_ttl_s`.
    pub fn ttl(&self, asked_ms: u32) -> Duration {
        Duration::from_millis(u64::from(asked_ms)).min(Duration::from_secs(self.config.max_ttl_s))
    }

    /// The largest result stored.
    pub fn max_result_bytes(&self) -> usize {
        self.config.max_result_bytes
    }

    /// L1's answer for `key`.
    #[inline]
    pub fn get_local(&self, key: &Key) -> Option<Arc<CachedResult>> {
        match self.l1.get(key) {
            Some(s) => {
                self.stats.l1_hits.fetch_add(1, Relaxed);
                Some(s.result)
            }
            None => {
                self.stats.l1_misses.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// L1's answer, else L2's (then kept in L1 for `ttl`).
    pub async fn get(&self, key: &Key, ttl: Duration) -> Option<Arc<CachedResult>> {
        if let Some(r) = self.get_local(key) {
            return Some(r);
        }
        let l2 = self.l2.as_ref()?;
        let epoch = self.epoch.load(Relaxed);
        let bytes = l2.get(key).await?;
        let result = Arc::new(CachedResult::decode(&bytes)?);
        // Redis vouched for it when it answered; an invalidation that reached this proxy
        // since may be newer, so the copy is not kept.
        if self.epoch.load(Relaxed) == epoch {
            self.insert_local(*key, result.clone(), ttl);
        }
        Some(result)
    }

    /// What a miss records to be stored later: read before the statement runs, so a write
    /// that commits while it runs is seen at the store.
    pub async fn pending(&self, key: Key, ttl: Duration, tables: Vec<String>) -> Pending {
        let generations = {
            let gens = self.generations.lock().expect("cache lock");
            tables
                .iter()
                .map(|t| gens.get(t).copied().unwrap_or(0))
                .collect()
        };
        let versions = match &self.l2 {
            Some(l2) => l2.versions(&tables).await,
            None => None,
        };
        Pending {
            key,
            ttl,
            tables,
            generations,
            versions,
        }
    }

    /// Stores a completed result, unless a write to one of its tables raced it.
    pub fn store(self: &Arc<Self>, pending: Pending, result: CachedResult) {
        if result.bytes() > self.config.max_result_bytes {
            self.stats.skipped.fetch_add(1, Relaxed);
            return;
        }
        {
            let gens = self.generations.lock().expect("cache lock");
            let raced = pending
                .tables
                .iter()
                .zip(&pending.generations)
                .any(|(t, g)| gens.get(t).copied().unwrap_or(0) != *g);
            if raced {
                self.stats.skipped.fetch_add(1, Relaxed);
                return;
            }
        }
        let result = Arc::new(result);
        self.insert_local(pending.key, result.clone(), pending.ttl);
        self.stats.stores.fetch_add(1, Relaxed);
        if let (Some(l2), Some(versions)) = (self.l2.clone(), pending.versions) {
            let bytes = result.encode();
            tokio::spawn(async move {
                l2.set(&pending.key, bytes, pending.ttl, &versions).await;
            });
        }
    }

    fn insert_local(&self, key: Key, result: Arc<CachedResult>, ttl: Duration) {
        {
            let mut tags = self.tags.lock().expect("cache lock");
            for t in &result.tables {
                let keys = tags.entry(t.clone()).or_default();
                // Keys of entries that expired or were evicted linger; prune now and then.
                if keys.len() > 4096 {
                    keys.retain(|k| self.l1.contains_key(k));
                }
                keys.insert(key);
            }
        }
        self.l1.insert(key, Stored { result, ttl });
    }

    /// Drops this proxy's entries that read `tables` (`database\0schema.name`).
    pub fn invalidate_local(&self, tables: &[String]) {
        if tables.iter().any(|t| t == EVERYTHING) {
            self.clear_local();
            return;
        }
        let mut dropped = 0;
        self.epoch.fetch_add(1, Relaxed);
        {
            let mut gens = self.generations.lock().expect("cache lock");
            for t in tables {
                *gens.entry(t.clone()).or_default() += 1;
            }
        }
        let mut tags = self.tags.lock().expect("cache lock");
        for t in tables {
            if let Some(keys) = tags.remove(t) {
                for k in keys {
                    if self.l1.contains_key(&k) {
                        dropped += 1;
                    }
                    self.l1.invalidate(&k);
                }
            }
        }
        self.stats.invalidations.fetch_add(dropped, Relaxed);
    }

    /// Drops `tables` here, in Redis and in every other proxy; returns when Redis has it (or
    /// gave up within its timeout: then it is retried until Redis acknowledges it).
    pub async fn invalidate(&self, tables: &[String]) {
        if tables.iter().any(|t| t == EVERYTHING) {
            return self.invalidate_all().await;
        }
        self.invalidate_local(tables);
        if let Some(l2) = &self.l2 {
            l2.invalidate(tables).await;
        }
    }

    fn clear_local(&self) {
        self.epoch.fetch_add(1, Relaxed);
        let n = self.l1.entry_count();
        self.l1.invalidate_all();
        self.tags.lock().expect("cache lock").clear();
        let mut gens = self.generations.lock().expect("cache lock");
        for g in gens.values_mut() {
            *g += 1;
        }
        self.stats.invalidations.fetch_add(n, Relaxed);
    }

    /// Drops everything, everywhere.
    pub async fn invalidate_all(&self) {
        self.clear_local();
        if let Some(l2) = &self.l2 {
            l2.invalidate_all().await;
        }
    }

    /// A statement description kept before.
    pub fn description(&self, key: &Key) -> Option<Arc<Description>> {
        self.descriptions.get(key)
    }

    /// Keeps a statement description (`ParameterDescription` and `RowDescription` frames).
    pub fn describe(&self, key: Key, parameters: Vec<u8>, rows: Vec<u8>) {
        if !parameters.is_empty() {
            self.descriptions
                .insert(key, Arc::new(Description { parameters, rows }));
        }
    }

    /// The tiers as `heliosproxy_cache_stats`, `/api/cache` and `/metrics` show them.
    pub fn tiers(&self) -> Vec<CacheTier> {
        let (entries, bytes) = self.l1_size();
        let s = &self.stats;
        let mut out = vec![CacheTier {
            tier: "l1".into(),
            entries,
            bytes,
            cache_hits: s.l1_hits.load(Relaxed),
            cache_misses: s.l1_misses.load(Relaxed),
            invalidations: s.invalidations.load(Relaxed),
        }];
        if let Some(l2) = &self.l2 {
            out.push(CacheTier {
                tier: "l2".into(),
                entries: 0,
                bytes: 0,
                cache_hits: l2.stats.hits.load(Relaxed),
                cache_misses: l2.stats.misses.load(Relaxed),
                invalidations: l2.stats.remote_invalidations.load(Relaxed),
            });
        }
        out
    }

    /// Entries and bytes in L1.
    pub fn l1_size(&self) -> (u64, u64) {
        self.l1.run_pending_tasks();
        (self.l1.entry_count(), self.l1.weighted_size())
    }
}
