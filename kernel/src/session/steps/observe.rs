//! Observers of an in-flight statement: what PostQuery and the journal need, filled in as
//! the server answers (command tag, error, rows for the journal) and handed over when the
//! statement completes. Nothing is copied when no observer is on.

use std::sync::Arc;
use std::time::Instant;

use super::journal::JournalEntry;
use crate::hooks::{self, Pipeline, SessionInfo};
use crate::journal::Journal;
use crate::plugins::bindings::Statement;

/// What PostQuery and the journal need about a statement in flight.
#[derive(Debug)]
pub struct PostCtx {
    /// Facts for PostQuery hooks, when any component has one.
    pub stmt: Option<Arc<Statement>>,
    started: Instant,
    tag: String,
    /// SQLSTATE and message when the statement failed.
    pub error: Option<(String, String)>,
    /// What the journal records, when it is on.
    pub journal: Option<Box<JournalEntry>>,
}

/// Where a completed statement's outcome goes.
pub struct Sinks<'a> {
    /// The components, for PostQuery.
    pub pipeline: &'a Pipeline,
    /// The journal, when on.
    pub journal: Option<&'a Journal>,
    /// The session.
    pub info: &'a Arc<SessionInfo>,
    /// The session was in a transaction block when the statement completed.
    pub in_transaction: bool,
    /// The node that ran it.
    pub node: &'a str,
}

impl PostCtx {
    /// Starts observing a statement; `stmt` is set when PostQuery hooks want it.
    pub fn new(stmt: Option<Arc<Statement>>) -> Box<PostCtx> {
        Box::new(PostCtx {
            stmt,
            started: Instant::now(),
            tag: String::new(),
            error: None,
            journal: None,
        })
    }

    /// A `DataRow` passed.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        if let Some(j) = self.journal.as_mut() {
            j.note_row(body);
        }
    }

    /// The statement completed with `tag`.
    pub fn note_tag(&mut self, tag: &[u8]) {
        self.tag = String::from_utf8_lossy(tag).into_owned();
        if let Some(j) = self.journal.as_mut() {
            j.note_tag(tag);
        }
    }

    /// Hands the outcome to PostQuery and the journal.
    pub fn finish(self, sinks: Sinks<'_>) {
        let elapsed = self.started.elapsed();
        if let Some(stmt) = &self.stmt {
            let error = self.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            let outcome = hooks::outcome(&self.tag, error, elapsed, sinks.node);
            sinks
                .pipeline
                .post_query(sinks.info, sinks.in_transaction, stmt, &outcome);
        }
        if let (Some(j), Some(journal)) = (self.journal, sinks.journal) {
            j.append(
                journal,
                sinks.info,
                sinks.node,
                elapsed.as_micros() as u64,
                self.error,
            );
        }
    }
}
