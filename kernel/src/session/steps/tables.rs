//! The proxy's own tables (`heliosproxy_query_stats`, `heliosproxy_cache_stats`): a read
//! that names them is rewritten to carry the rows the reader may see (its own database's and
//! user's statements, every one's for an admin-console user). It runs last, so policies
//! judge what the client sent.

use std::sync::Arc;

use super::{Answer, StatementCx, Step, Verdict};
use crate::observe::queries::{Owner, QueryStats};
use crate::observe::tables::{self, Reader};
use crate::session::relay::expect::SqlError;

/// What the tables show: the analytics (none when off: the table is empty) and the result
/// cache (none when off: its table is empty).
#[derive(Clone, Default)]
pub struct TableSources {
    /// Query analytics.
    pub stats: Option<Arc<QueryStats>>,
    /// The result cache.
    pub cache: Option<Arc<crate::cache::ResultCache>>,
    /// Login users who see every database's and user's statements (`[admin] users`).
    pub admins: Arc<[String]>,
    /// The most bytes a statement may expand to (the client's memory budget).
    pub max_bytes: usize,
}

/// Puts the proxy's rows in place of the tables' names.
pub struct ProxyTables {
    sources: TableSources,
}

impl ProxyTables {
    /// The step over `sources`.
    pub fn new(sources: TableSources) -> Self {
        ProxyTables { sources }
    }
}

impl Step for ProxyTables {
    fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
        let sql = cx.effective_sql();
        if !tables::may_name_tables(sql) {
            return Verdict::Continue;
        }
        let s = &self.sources;
        let tiers = s
            .cache
            .as_deref()
            .map(crate::cache::ResultCache::tiers)
            .unwrap_or_default();
        let info = cx.info;
        let admin = s.admins.iter().any(|a| *a == info.user);
        let reader = Reader {
            scope: (!admin).then_some(Owner {
                database: &info.database,
                user: &info.user,
            }),
            max_bytes: s.max_bytes,
        };
        match tables::rewrite(sql, s.stats.as_deref(), &tiers, reader) {
            Ok(Some(new_sql)) => {
                cx.rewritten = Some(new_sql);
                cx.facts = None;
                Verdict::Continue
            }
            Ok(None) => Verdict::Continue,
            Err(e) => Verdict::Answer(Answer::Error(SqlError::new("54000", e.to_string()))),
        }
    }
}
