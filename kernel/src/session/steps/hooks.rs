//! The components' PreQuery and Validate hooks as a step: a rewrite replaces the SQL, a
//! block or deny answers with the component's error, a component's own result is served
//! by the proxy.

use std::sync::Arc;

use super::{Answer, StatementCx, Step, Verdict};
use crate::hooks::{Pipeline, PreQuery};
use crate::session::relay::expect::SqlError;

/// Calls PreQuery then Validate of every component that has them.
pub struct Hooks {
    pipeline: Arc<Pipeline>,
}

impl Hooks {
    /// The step for `pipeline`.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Hooks { pipeline }
    }
}

impl Step for Hooks {
    fn on_statement(&self, cx: &mut StatementCx<'_>) -> Verdict {
        let state = cx.session;
        if let Some(r) = state.and_then(|s| {
            crate::hooks::startup_breaks_analysis(
                s.startup_value("client_encoding"),
                s.startup_value("standard_conforming_strings"),
            )
        }) {
            return Verdict::Answer(Answer::Error(SqlError::new(r.code, r.message)));
        }
        let prepared = |name: &str| state.and_then(|s| s.prepare_text(name));
        // Table names resolve against the search_path the session SET, if it did.
        let moved = state.and_then(|s| s.search_path()).map(|path| {
            Arc::new(crate::hooks::SessionInfo {
                search_path: path,
                ..(**cx.info).clone()
            })
        });
        let (decision, facts) = self.pipeline.pre_query_and_validate(
            moved.as_ref().unwrap_or(cx.info),
            cx.in_transaction,
            cx.effective_sql(),
            &prepared,
        );
        cx.facts = Some(facts);
        match decision {
            PreQuery::Proceed(rewritten) => {
                if rewritten.is_some() {
                    cx.rewritten = rewritten;
                }
                Verdict::Continue
            }
            PreQuery::Block(r) => Verdict::Answer(Answer::Error(SqlError::new(r.code, r.message))),
            PreQuery::Respond(rows) => Verdict::Answer(Answer::Rows(rows)),
        }
    }
}
