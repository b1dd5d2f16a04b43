//! The observers a statement gets before it is sent: PostQuery (with its facts and result
//! rows on request), the journal, the query analytics, a copy for the result cache and a
//! probe for the shadow comparator.

use std::sync::Arc;

use super::Relay;
use crate::hooks;
use crate::session::steps::PostCtx;
use crate::session::steps::journal::JournalEntry;
use crate::session::steps::observe::RowCapture;

impl Relay {
    /// The observers of a statement about to run: PostQuery (with `facts`, computed when
    /// not given, and the result rows when a component asked, with `columns` when known),
    /// the journal (with the bound `params`) and the analytics; `None` when none is on.
    pub(super) fn observe(
        &self,
        sql: &str,
        facts: Option<Arc<crate::hooks::Facts>>,
        params: Option<crate::session::steps::journal::BoundParams>,
        columns: impl FnOnce() -> Vec<String>,
        capture: Option<Box<crate::cache::capture::Capture>>,
        memo: Option<&std::sync::OnceLock<Arc<crate::observe::queries::Entry>>>,
    ) -> Option<Box<PostCtx>> {
        let post_query = self.pipeline.has_post_query();
        let journal = self.env.journal.is_some();
        let owner = crate::observe::queries::Owner {
            database: &self.info.database,
            user: &self.info.user,
        };
        let stats = self.env.analytics.as_ref().and_then(|a| match memo {
            Some(m) => a.entry_memo(owner, sql, m),
            None => a.entry(owner, sql),
        });
        let shadow = if self.status.in_transaction() {
            None
        } else {
            self.env.shadow.probe(|| {
                let p = params.clone().unwrap_or_default();
                crate::ops::statement::Statement {
                    sql: sql.to_owned(),
                    param_formats: p.formats,
                    params: p.values,
                    result_formats: p.result_formats,
                }
            })
        };
        if !post_query && !journal && stats.is_none() && capture.is_none() && shadow.is_none() {
            return None;
        }
        let mut ctx =
            PostCtx::new(post_query.then(|| facts.unwrap_or_else(|| hooks::statement(sql))));
        ctx.stats = stats;
        ctx.capture = capture;
        ctx.shadow = shadow;
        let rows_limit = self.pipeline.rows_limit();
        if rows_limit > 0 {
            ctx.rows = Some(RowCapture::new(rows_limit, columns()));
        }
        if journal {
            let transaction_id = if self.status.in_transaction() {
                self.transactions
            } else {
                0
            };
            ctx.journal = Some(JournalEntry::new(sql, params, transaction_id));
        }
        Some(ctx)
    }
}
