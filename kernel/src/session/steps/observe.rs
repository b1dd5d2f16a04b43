//! Observers of an in-flight statement: what PostQuery, the journal and the query analytics
//! need, filled in as the server answers (command tag, error, rows for the journal) and
//! handed over when the statement completes. Nothing is copied when no observer is on.

use std::sync::Arc;
use std::time::Instant;

use super::journal::JournalEntry;
use crate::hooks::Facts;
use crate::hooks::{self, CapturedRows, Pipeline, SessionInfo};
use crate::journal::Journal;
use crate::observe::queries::{Entry, Outcome, QueryStats};
use crate::wire::messages::tag_rows;
use crate::wire::results;

/// What PostQuery and the journal need about a statement in flight.
#[derive(Debug)]
pub struct PostCtx {
    /// Facts for PostQuery hooks, when any component has one.
    pub stmt: Option<Arc<Facts>>,
    started: Instant,
    tag: String,
    /// SQLSTATE and message when the statement failed.
    pub error: Option<(String, String)>,
    /// What the journal records, when it is on.
    pub journal: Option<Box<JournalEntry>>,
    /// Result rows for PostQuery, when a component asked for them.
    pub rows: Option<Box<RowCapture>>,
    /// The analytics entry the statement counts under, when analytics sampled it.
    pub stats: Option<Arc<Entry>>,
    /// The result being copied for the result cache (a miss).
    pub capture: Option<Box<crate::cache::capture::Capture>>,
    /// The statement being summed for the shadow comparator.
    pub shadow: Option<Box<crate::ops::shadow::tap::Probe>>,
    /// Rows the command tags reported.
    tag_rows: u64,
}

/// Result rows copied for PostQuery, up to the largest byte limit a component asked for.
#[derive(Debug)]
pub struct RowCapture {
    limit: usize,
    bytes: usize,
    rows: CapturedRows,
}

impl RowCapture {
    /// Starts capturing up to `limit` bytes of row data; `columns` when already known.
    pub fn new(limit: usize, columns: Vec<String>) -> Box<Self> {
        Box::new(RowCapture {
            limit,
            bytes: 0,
            rows: CapturedRows {
                columns,
                ..CapturedRows::default()
            },
        })
    }

    fn note_columns(&mut self, body: &[u8]) {
        if let Some(names) = results::column_names(body) {
            self.rows.columns = names;
        }
    }

    fn note_row(&mut self, body: &[u8]) {
        if self.rows.truncated {
            return;
        }
        let size = body.len().saturating_sub(2);
        if self.bytes + size > self.limit {
            self.rows.truncated = true;
            return;
        }
        let Some(values) = results::row_values(body) else {
            return;
        };
        self.bytes += size;
        self.rows.row_bytes.push(size);
        self.rows
            .rows
            .push(values.into_iter().map(|v| v.map(<[u8]>::to_vec)).collect());
    }
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
    /// That node is the primary: only its results may be stored in the result cache (a
    /// replica may not have applied the commits whose invalidations the cache has seen).
    pub from_primary: bool,
    /// The query analytics, when on.
    pub analytics: Option<&'a QueryStats>,
    /// The database's traffic counters (`SHOW STATS`).
    pub db: &'a crate::observe::clients::DbCounters,
}

impl PostCtx {
    /// Starts observing a statement; `stmt` is set when PostQuery hooks want it.
    pub fn new(stmt: Option<Arc<Facts>>) -> Box<PostCtx> {
        Box::new(PostCtx {
            stmt,
            started: Instant::now(),
            tag: String::new(),
            error: None,
            journal: None,
            rows: None,
            stats: None,
            capture: None,
            shadow: None,
            tag_rows: 0,
        })
    }

    /// A `RowDescription` passed.
    #[inline]
    pub fn note_columns(&mut self, body: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            c.note_columns(body);
        }
        if let Some(c) = self.rows.as_mut() {
            c.note_columns(body);
        }
    }

    /// A `DataRow` passed.
    #[inline]
    pub fn note_row(&mut self, body: &[u8]) {
        if let Some(c) = self.capture.as_mut() {
            c.note_row(body);
        }
        if let Some(j) = self.journal.as_mut() {
            j.note_row(body);
        }
        if let Some(c) = self.rows.as_mut() {
            c.note_row(body);
        }
        if let Some(s) = self.shadow.as_mut() {
            s.note_row(body);
        }
    }

    /// The statement completed with `tag`.
    pub fn note_tag(&mut self, tag: &[u8]) {
        if self.stats.is_some() {
            self.tag_rows += tag_rows(tag).unwrap_or(0);
        }
        if let Some(s) = self.shadow.as_mut() {
            s.note_tag(tag);
        }
        if let Some(c) = self.capture.as_mut() {
            c.note_tag(tag);
        }
        if self.stmt.is_none() && self.journal.is_none() {
            return;
        }
        self.tag = String::from_utf8_lossy(tag).into_owned();
        if let Some(j) = self.journal.as_mut() {
            j.note_tag(tag);
        }
    }

    /// Hands the outcome to PostQuery and the journal.
    pub fn finish(mut self, sinks: Sinks<'_>) {
        let elapsed = self.started.elapsed();
        if let Some(c) = self.capture.take() {
            c.finish(
                self.error.is_some() || !sinks.from_primary,
                sinks.in_transaction,
            );
        }
        if let Some(s) = self.shadow.take() {
            let code = self.error.as_ref().map(|(c, _)| c.clone());
            s.send(&sinks.info.user, &sinks.info.database, code);
        }
        {
            use std::sync::atomic::Ordering::Relaxed;
            sinks.db.queries.fetch_add(1, Relaxed);
            sinks
                .db
                .query_us
                .fetch_add(elapsed.as_micros() as u64, Relaxed);
        }
        if let (Some(entry), Some(stats)) = (&self.stats, sinks.analytics) {
            stats.finish(
                entry,
                Outcome {
                    elapsed,
                    rows: self.tag_rows,
                    failed: self.error.is_some(),
                    node: sinks.node,
                    user: &sinks.info.user,
                    database: &sinks.info.database,
                },
            );
        }
        if let Some(stmt) = &self.stmt {
            let error = self.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            let outcome = hooks::outcome(&self.tag, error, elapsed, sinks.node);
            let rows = self.rows.take().map(|c| Arc::new(c.rows));
            sinks
                .pipeline
                .post_query(sinks.info, sinks.in_transaction, stmt, &outcome, rows);
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
