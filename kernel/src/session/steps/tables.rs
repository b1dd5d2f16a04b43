//! The proxy's own tables (`heliosproxy_query_stats`, `heliosproxy_cache_stats`): a read
//! that names them is rewritten to carry the proxy's rows. It runs last, so policies judge
//! what the client sent.

use std::sync::Arc;

use super::{StatementCx, Step, Verdict};
use crate::observe::queries::QueryStats;
use crate::observe::tables;

/// What the tables show: the analytics (none when off: the table is empty) and the result
/// cache (none when off: its table is empty).
#[derive(Clone, Default)]
pub struct TableSources {
    /// Query analytics.
    pub stats: Option<Arc<QueryStats>>,
    /// The result cache.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
}

/// Puts the proxy's rows in place of the tables' names.
pub struct ProxyTables {
    stats: Option<Arc<QueryStats>>,
    cache: Option<Arc<crate::cache::ResultCache>>,
}

impl ProxyTables {
    /// The step over `sources`.
    pub fn new(sources: TableSources) -> Self {
        ProxyTables {
            stats: sources.stats,
            cache: sources.cache,
        }
    }
}

impl Step for ProxyTables {
    fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
        let sql = cx.effective_sql();
        if !tables::may_name_tables(sql) {
            return Verdict::Continue;
        }
        let tiers = self
            .cache
            .as_deref()
            .map(crate::cache::ResultCache::tiers)
            .unwrap_or_default();
        if let Some(new_sql) = tables::rewrite(sql, self.stats.as_deref(), &tiers) {
            cx.rewritten = Some(new_sql);
            cx.facts = None;
        }
        Verdict::Continue
    }
}
