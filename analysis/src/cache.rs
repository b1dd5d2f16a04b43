//! The analysis cache: analyses by the SHA-256 of the exact text, so equal text is parsed
//! once (a prepared statement, a repeated query) and a collision cannot hand one
//! statement's verdict to another. Simple queries that differ only in constants (`… WHERE
//! aid = 17`, `… = 18`) share one analysis through their [`shape`](crate::shape) when
//! nothing in it depends on a constant's value; such texts cost a scan, not a parse.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::{Analysis, Limit, analyze, shape};

/// The cache key of SQL text: its SHA-256.
pub type Key = [u8; 32];

/// The key of `sql`.
pub fn key(sql: &str) -> Key {
    Sha256::digest(sql.as_bytes()).into()
}

/// A bounded, concurrent cache of analyses.
pub struct Analyzer {
    cache: quick_cache::sync::Cache<Key, (Key, Arc<Analysis>)>,
    shapes: quick_cache::sync::Cache<Key, Arc<Analysis>>,
}

impl Analyzer {
    /// A cache holding up to `capacity` analyses.
    pub fn new(capacity: usize) -> Self {
        Analyzer {
            cache: quick_cache::sync::Cache::new(capacity.max(16)),
            shapes: quick_cache::sync::Cache::new(capacity.max(16)),
        }
    }

    /// The analysis of `sql` and its key, parsed on first sight. The key identifies the
    /// analysis: the text's own key, or its shape's when it shares the analysis of texts
    /// that differ only in constants.
    pub fn analyze(&self, sql: &str) -> (Key, Arc<Analysis>) {
        let k = key(sql);
        if let Some(hit) = self.cache.get(&k) {
            return hit;
        }
        let shape = shape(sql);
        // A shared analysis keeps the statement text of the first text of its shape.
        if let Some(s) = &shape
            && let Some(a) = self.shapes.get(s)
        {
            return (*s, a);
        }
        let a = Arc::new(analyze(sql));
        let analysis_key = match shape {
            Some(s) if shareable(&a) => {
                self.shapes.insert(s, a.clone());
                s
            }
            _ => k,
        };
        self.cache.insert(k, (analysis_key, a.clone()));
        (analysis_key, a)
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

/// Whether nothing in an analysis depends on the value of a constant, so texts of the same
/// shape may share it: one plain SELECT/INSERT/UPDATE/DELETE without a row count limit,
/// opaque code, a `set_config` name or a COPY command (the facts that read constants).
fn shareable(a: &Analysis) -> bool {
    let [s] = a.statements.as_slice() else {
        return false;
    };
    matches!(s.kind.as_str(), "select" | "insert" | "update" | "delete")
        && s.setting.is_none()
        && s.server_copy.is_none()
        && s.opaque.is_empty()
        && s.blocks.iter().all(|b| !matches!(b.limit, Limit::Count(_)))
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new(10_000)
    }
}
