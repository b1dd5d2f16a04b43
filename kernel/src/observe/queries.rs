//! Query analytics: per statement fingerprint, calls, errors, rows, a latency histogram
//! (mean, p50, p99, max), first and last seen and cache hits, bounded in memory, plus the
//! slow-query log.
//!
//! Entries are per database and login user (like `pg_stat_statements`), so a reader can be
//! shown only its own. The hot path hashes the text ([`text_key`](super::text_key)) with
//! the owner and finds its entry under a read lock; PostgreSQL's fingerprint and normalised
//! text are computed once per new key, so two spellings of one statement share an entry
//! through the fingerprint.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::AnalyticsConfig;
use crate::histogram::Histogram;

pub use super::owner::Owner;
use super::text_key::text_key;

/// Shown for text PostgreSQL's scanner rejects (its own text could hold anything).
const UNREADABLE: &str = "(text PostgreSQL's scanner rejects)";
/// The longest normalised text kept per fingerprint.
const MAX_PATTERN: usize = 4096;

/// One fingerprint's counters.
#[derive(Debug)]
pub struct Entry {
    /// The database the statements ran in.
    pub database: Arc<str>,
    /// The login user that sent them.
    pub user: Arc<str>,
    /// PostgreSQL's fingerprint of the statement (first 16 hex digits of its shape hash).
    pub fingerprint: String,
    /// The statement with its constants replaced by `$n`.
    pub pattern: String,
    calls: AtomicU64,
    errors: AtomicU64,
    rows: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    durations: Histogram,
    first_seen_us: u64,
    last_seen_us: AtomicU64,
    evicted: AtomicBool,
}

/// A copy of one entry's counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EntryView {
    /// The database the statements ran in.
    pub database: String,
    /// The login user that sent them.
    pub username: String,
    /// Fingerprint.
    pub fingerprint: String,
    /// Normalised text.
    pub query_pattern: String,
    /// Calls (scaled by the sampling rate).
    pub call_count: u64,
    /// Calls that ended in an error.
    pub error_count: u64,
    /// Rows returned or written.
    pub rows: u64,
    /// Total time in milliseconds (of the sampled calls).
    pub total_duration_ms: f64,
    /// Mean time in milliseconds.
    pub avg_duration_ms: f64,
    /// Median, within 12.5 %.
    pub p50_duration_ms: f64,
    /// 99th percentile, within 12.5 %.
    pub p99_duration_ms: f64,
    /// Slowest call.
    pub max_duration_ms: f64,
    /// First call, Unix microseconds.
    pub first_seen_us: u64,
    /// Latest call, Unix microseconds.
    pub last_seen_us: u64,
    /// Answers served from the result cache.
    pub cache_hits: u64,
    /// Cacheable statements the cache did not hold.
    pub cache_misses: u64,
}

impl Entry {
    fn new(owner: &Owner<'_>, fingerprint: String, pattern: String) -> Entry {
        let now = unix_us();
        Entry {
            database: owner.database.into(),
            user: owner.user.into(),
            fingerprint,
            pattern,
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            rows: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
            cache_misses: AtomicU64::new(0),
            durations: Histogram::default(),
            first_seen_us: now,
            last_seen_us: AtomicU64::new(now),
            evicted: AtomicBool::new(false),
        }
    }

    /// Calls so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    fn view(&self) -> EntryView {
        let ms = |us: u64| us as f64 / 1000.0;
        let sampled = self.durations.count();
        EntryView {
            database: self.database.to_string(),
            username: self.user.to_string(),
            fingerprint: self.fingerprint.clone(),
            query_pattern: self.pattern.clone(),
            call_count: self.calls(),
            error_count: self.errors.load(Relaxed),
            rows: self.rows.load(Relaxed),
            total_duration_ms: ms(self.durations.total_us()),
            avg_duration_ms: if sampled == 0 {
                0.0
            } else {
                ms(self.durations.total_us()) / sampled as f64
            },
            p50_duration_ms: ms(self.durations.quantile_us(0.5)),
            p99_duration_ms: ms(self.durations.quantile_us(0.99)),
            max_duration_ms: ms(self.durations.max_us()),
            first_seen_us: self.first_seen_us,
            last_seen_us: self.last_seen_us.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
        }
    }
}

/// Where a finished statement ran and for whom, for the slow-query log.
pub struct Outcome<'a> {
    /// Time from the statement reaching the proxy to its completion.
    pub elapsed: Duration,
    /// Rows it returned or wrote.
    pub rows: u64,
    /// Whether it failed.
    pub failed: bool,
    /// The node that ran it.
    pub node: &'a str,
    /// The client's login user.
    pub user: &'a str,
    /// The client's database.
    pub database: &'a str,
}

/// The statistics of every fingerprint seen, bounded by `max_entries`.
pub struct QueryStats {
    max_entries: usize,
    sample_rate: f64,
    weight: u64,
    slow: Option<Duration>,
    by_key: RwLock<HashMap<u64, Arc<Entry>>>,
    by_fingerprint: RwLock<HashMap<(u64, String), Arc<Entry>>>,
    evictions: AtomicU64,
}

impl QueryStats {
    /// Statistics per `config`; `None` when analytics are off.
    pub fn new(config: &AnalyticsConfig) -> Option<QueryStats> {
        config.enabled.then(|| QueryStats {
            max_entries: config.max_entries.max(1),
            sample_rate: config.sample_rate,
            weight: (1.0 / config.sample_rate).round().max(1.0) as u64,
            slow: (config.slow_query_ms > 0).then(|| Duration::from_millis(config.slow_query_ms)),
            by_key: RwLock::new(HashMap::new()),
            by_fingerprint: RwLock::new(HashMap::new()),
            evictions: AtomicU64::new(0),
        })
    }

    /// The entry `sql` from `owner` counts under, or `None` when this call is not sampled.
    #[inline]
    pub fn entry(&self, owner: Owner<'_>, sql: &str) -> Option<Arc<Entry>> {
        if self.sample_rate < 1.0 && rand::random::<f64>() >= self.sample_rate {
            return None;
        }
        let owner_key = owner.key();
        let key = text_key(sql.as_bytes()) ^ owner_key;
        if let Some(e) = self.by_key.read().expect("stats lock").get(&key)
            && owner.owns(e)
        {
            return Some(e.clone());
        }
        Some(self.insert(owner, owner_key, key, sql))
    }

    /// Like [`QueryStats::entry`], remembering the entry in `memo` (a prepared statement's),
    /// so a statement executed again skips the lookup.
    #[inline]
    pub fn entry_memo(
        &self,
        owner: Owner<'_>,
        sql: &str,
        memo: &std::sync::OnceLock<Arc<Entry>>,
    ) -> Option<Arc<Entry>> {
        if let Some(e) = memo.get()
            && !e.evicted.load(Relaxed)
        {
            if self.sample_rate < 1.0 && rand::random::<f64>() >= self.sample_rate {
                return None;
            }
            return Some(e.clone());
        }
        let e = self.entry(owner, sql)?;
        let _ = memo.set(e.clone());
        Some(e)
    }

    #[cold]
    fn insert(&self, owner: Owner<'_>, owner_key: u64, key: u64, sql: &str) -> Arc<Entry> {
        let shape = helios_analysis::fingerprint(sql);
        let (fingerprint, pattern) = if shape.is_empty() {
            (format!("text:{key:016x}"), UNREADABLE.to_owned())
        } else {
            let mut pattern =
                helios_analysis::normalize(sql).unwrap_or_else(|| UNREADABLE.to_owned());
            if pattern.len() > MAX_PATTERN {
                let mut end = MAX_PATTERN;
                while !pattern.is_char_boundary(end) {
                    end -= 1;
                }
                pattern.truncate(end);
                pattern.push('…');
            }
            let pattern = pattern.trim().trim_end_matches(';').trim_end().to_owned();
            (shape[..16].to_owned(), pattern)
        };
        let entry = {
            let mut by_fp = self.by_fingerprint.write().expect("stats lock");
            let fp_key = (owner_key, fingerprint);
            match by_fp.get(&fp_key) {
                Some(e) if owner.owns(e) => e.clone(),
                _ => {
                    if by_fp.len() >= self.max_entries {
                        self.evict(&mut by_fp);
                    }
                    let e = Arc::new(Entry::new(&owner, fp_key.1.clone(), pattern));
                    by_fp.insert(fp_key, e.clone());
                    e
                }
            }
        };
        let mut by_key = self.by_key.write().expect("stats lock");
        // Texts the scan hashes exactly can each get a key: keep the index bounded too.
        if by_key.len() >= self.max_entries * 4 {
            by_key.clear();
        }
        by_key.insert(key, entry.clone());
        entry
    }

    /// Drops the least-called tenth of the fingerprints to make room.
    fn evict(&self, by_fp: &mut HashMap<(u64, String), Arc<Entry>>) {
        let mut calls: Vec<u64> = by_fp.values().map(|e| e.calls()).collect();
        let drop_n = (by_fp.len() / 10).max(1);
        calls.select_nth_unstable(drop_n - 1);
        let threshold = calls[drop_n - 1];
        let mut dropped = 0;
        by_fp.retain(|_, e| {
            let keep = dropped >= drop_n || e.calls() > threshold;
            if !keep {
                e.evicted.store(true, Relaxed);
                dropped += 1;
            }
            keep
        });
        self.evictions.fetch_add(dropped as u64, Relaxed);
        self.by_key
            .write()
            .expect("stats lock")
            .retain(|_, e| !e.evicted.load(Relaxed));
    }

    /// Counts a finished statement, and logs it when it was slow.
    pub fn finish(&self, entry: &Entry, outcome: Outcome<'_>) {
        entry.calls.fetch_add(self.weight, Relaxed);
        entry.rows.fetch_add(outcome.rows * self.weight, Relaxed);
        if outcome.failed {
            entry.errors.fetch_add(self.weight, Relaxed);
        }
        entry.durations.record(outcome.elapsed);
        entry.last_seen_us.store(unix_us(), Relaxed);
        if let Some(slow) = self.slow
            && outcome.elapsed >= slow
        {
            tracing::warn!(
                target: "heliosproxy::slow_query",
                fingerprint = %entry.fingerprint,
                query = %entry.pattern,
                duration_ms = outcome.elapsed.as_secs_f64() * 1000.0,
                node = outcome.node,
                user = outcome.user,
                database = outcome.database,
                rows = outcome.rows,
                failed = outcome.failed,
                "slow query"
            );
        }
    }

    /// Counts a result-cache hit (or miss) for `sql` from `owner`.
    pub fn note_cache(&self, owner: Owner<'_>, sql: &str, hit: bool) {
        if let Some(e) = self.entry(owner, sql) {
            let c = if hit { &e.cache_hits } else { &e.cache_misses };
            c.fetch_add(self.weight, Relaxed);
        }
    }

    /// Every entry, most called first.
    pub fn snapshot(&self) -> Vec<EntryView> {
        self.snapshot_of(None)
    }

    /// The entries of `owner` (every owner's when `None`), most called first.
    pub fn snapshot_of(&self, owner: Option<Owner<'_>>) -> Vec<EntryView> {
        let mut out: Vec<EntryView> = self
            .by_fingerprint
            .read()
            .expect("stats lock")
            .values()
            .filter(|e| owner.is_none_or(|o| o.owns(e)))
            .map(|e| e.view())
            .collect();
        out.sort_by(|a, b| {
            b.call_count
                .cmp(&a.call_count)
                .then_with(|| a.fingerprint.cmp(&b.fingerprint))
                .then_with(|| (&a.database, &a.username).cmp(&(&b.database, &b.username)))
        });
        out
    }

    /// Fingerprints dropped to stay within `max_entries`.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// Forgets every entry.
    pub fn reset(&self) {
        self.by_key.write().expect("stats lock").clear();
        // Prepared statements remember their entry: tell them it is gone.
        for (_, e) in self.by_fingerprint.write().expect("stats lock").drain() {
            e.evicted.store(true, Relaxed);
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(max: usize) -> QueryStats {
        QueryStats::new(&AnalyticsConfig {
            max_entries: max,
            slow_query_ms: 0,
            ..AnalyticsConfig::default()
        })
        .unwrap()
    }

    const OWNER: Owner<'static> = Owner {
        database: "d",
        user: "u",
    };

    fn run(s: &QueryStats, sql: &str, ms: u64) {
        let e = s.entry(OWNER, sql).unwrap();
        s.finish(
            &e,
            Outcome {
                elapsed: Duration::from_millis(ms),
                rows: 1,
                failed: false,
                node: "n",
                user: "u",
                database: "d",
            },
        );
    }

    #[test]
    fn spellings_of_one_statement_share_an_entry() {
        let s = stats(10);
        run(&s, "SELECT abalance FROM pgbench_accounts WHERE aid = 1", 1);
        run(&s, "select abalance from pgbench_accounts where aid=2", 3);
        run(
            &s,
            "select  ABALANCE from pgbench_accounts /* c */ where aid = 3",
            5,
        );
        run(&s, "select 1", 1);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 2, "{snap:#?}");
        assert_eq!(snap[0].call_count, 3);
        assert_eq!(
            snap[0].query_pattern,
            "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
        );
        assert_eq!(snap[0].rows, 3);
        assert!((snap[0].avg_duration_ms - 3.0).abs() < 0.01);
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_busiest() {
        let s = stats(10);
        for _ in 0..5 {
            run(&s, "select * from busy", 1);
        }
        for i in 0..50 {
            run(&s, &format!("select * from t{i}"), 1);
        }
        let snap = s.snapshot();
        assert!(snap.len() <= 10);
        assert_eq!(snap[0].call_count, 5);
        assert!(s.evictions() >= 40);
    }

    #[test]
    fn constants_never_reach_the_pattern() {
        let s = stats(10);
        run(&s, "select * from users where password = 'hunter2'", 1);
        let snap = s.snapshot();
        assert!(!snap[0].query_pattern.contains("hunter2"), "{snap:?}");
        run(&s, "select 'unterminated", 1);
        assert!(
            s.snapshot()
                .iter()
                .all(|e| !e.query_pattern.contains("unterminated"))
        );
    }
}

#[cfg(test)]
mod owner_tests {
    use super::*;

    #[test]
    fn owners_count_apart_and_see_their_own() {
        let s = QueryStats::new(&AnalyticsConfig::default()).unwrap();
        let a = Owner {
            database: "db1",
            user: "alice",
        };
        let b = Owner {
            database: "db1",
            user: "bob",
        };
        s.entry(a, "select 1 from t")
            .unwrap()
            .calls
            .fetch_add(1, Relaxed);
        s.entry(b, "select 2 from t")
            .unwrap()
            .calls
            .fetch_add(1, Relaxed);
        s.entry(b, "select 3 from t")
            .unwrap()
            .calls
            .fetch_add(1, Relaxed);
        assert_eq!(s.snapshot().len(), 2);
        let mine = s.snapshot_of(Some(b));
        assert_eq!(mine.len(), 1);
        assert_eq!((mine[0].username.as_str(), mine[0].call_count), ("bob", 2));
    }
}
