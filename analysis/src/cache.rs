//! The analysis cache: analyses by the SHA-256 of the exact text, so equal text is parsed
//! once (a prepared statement, a repeated query) and a collision cannot hand one
//! statement's verdict to another.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{Analysis, analyze};

/// The cache key of SQL text: its SHA-256.
pub type Key = [u8; 32];

/// The key of `sql`.
pub fn key(sql: &str) -> Key {
    Sha256::digest(sql.as_bytes()).into()
}

/// A bounded, concurrent cache of analyses.
pub struct Analyzer {
    cache: quick_cache::sync::Cache<Key, Arc<Analysis>>,
}

impl Analyzer {
    /// A cache holding up to `capacity` analyses.
    pub fn new(capacity: usize) -> Self {
        Analyzer {
            cache: quick_cache::sync::Cache::new(capacity.max(16)),
        }
    }

    /// The analysis of `sql` and its key, parsed on first sight.
    pub fn analyze(&self, sql: &str) -> (Key, Arc<Analysis>) {
        let k = key(sql);
        if let Some(a) = self.cache.get(&k) {
            return (k, a);
        }
        let a = Arc::new(analyze(sql));
        self.cache.insert(k, a.clone());
        (k, a)
    }

    /// Analyses held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(10_000)
    }
}
