//! The statements a server connection holds under the proxy's `hp_` names, each with the
//! schema epoch it was analysed in.
//!
//! PostgreSQL analyses a `Parse` when it receives it. A statement kept on a server answers for
//! later `Parse`s of the same text only while no schema change could have altered that
//! analysis: the proxy counts such changes in one epoch ([`StatementEpoch`]), and a statement
//! analysed in an older epoch is closed and prepared again before it is used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// An epoch value that never goes stale (statements whose analysis no schema change alters).
const FIXED: u64 = u64::MAX;
/// The epoch of a statement the server may or may not hold (an error skipped its `Parse`, or
/// its re-preparation): it is closed before it is prepared again, which is safe either way.
const UNKNOWN: u64 = 0;

/// Schema changes seen by the proxy, counted; shared by every session.
#[derive(Debug)]
pub struct StatementEpoch(AtomicU64);

impl Default for StatementEpoch {
    fn default() -> Self {
        StatementEpoch(AtomicU64::new(1))
    }
}

impl StatementEpoch {
    /// The current epoch.
    #[inline]
    pub fn current(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A schema change happened (or may have): every statement analysed before it is stale.
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }
}

/// Whether a server connection holds a statement, and how fresh it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Prepared in the current epoch: it answers for a `Parse` of the same text.
    Current,
    /// Held (or perhaps held) from an older epoch: close it, then prepare it again.
    Stale,
    /// Not on the server.
    Absent,
}

/// The `hp_` statements of one server connection.
#[derive(Debug, Default)]
pub struct ServerStatements {
    epochs: HashMap<u64, u64>,
}

impl ServerStatements {
    /// Whether `hash` is held, judged against the current `epoch`.
    #[inline]
    pub fn held(&self, hash: u64, epoch: u64) -> Held {
        match self.epochs.get(&hash) {
            Some(&e) if e >= epoch => Held::Current,
            Some(_) => Held::Stale,
            None => Held::Absent,
        }
    }

    /// The epoch `hash` was analysed in, when held.
    #[inline]
    pub fn epoch_of(&self, hash: u64) -> Option<u64> {
        self.epochs.get(&hash).copied()
    }

    /// Records that a `Parse` of `hash` was sent in `epoch`.
    #[inline]
    pub fn prepared(&mut self, hash: u64, epoch: u64) {
        self.epochs.insert(hash, epoch);
    }

    /// Records a statement whose analysis never goes stale; `true` when it was not held.
    pub fn insert_fixed(&mut self, hash: u64) -> bool {
        self.epochs.insert(hash, FIXED).is_none()
    }

    /// The server may or may not hold `hash` (its `Parse` was skipped or failed after a
    /// `Close`): the next use closes it first.
    pub fn uncertain(&mut self, hash: u64) {
        if let Some(e) = self.epochs.get_mut(&hash) {
            *e = UNKNOWN;
        } else {
            self.epochs.insert(hash, UNKNOWN);
        }
    }

    /// Forgets a statement the server does not hold.
    pub fn remove(&mut self, hash: u64) {
        self.epochs.remove(&hash);
    }

    /// Forgets every statement (after `DISCARD ALL` or `DEALLOCATE ALL`).
    pub fn clear(&mut self) {
        self.epochs.clear();
    }

    /// How many statements the server holds.
    pub fn len(&self) -> usize {
        self.epochs.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.epochs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_from_before_a_schema_change_is_stale() {
        let epoch = StatementEpoch::default();
        let mut held = ServerStatements::default();
        assert_eq!(held.held(7, epoch.current()), Held::Absent);
        held.prepared(7, epoch.current());
        assert_eq!(held.held(7, epoch.current()), Held::Current);
        epoch.advance();
        assert_eq!(held.held(7, epoch.current()), Held::Stale);
        held.prepared(7, epoch.current());
        assert_eq!(held.held(7, epoch.current()), Held::Current);
    }

    #[test]
    fn an_uncertain_statement_is_closed_before_it_is_prepared_again() {
        let mut held = ServerStatements::default();
        held.uncertain(3);
        assert_eq!(held.held(3, 1), Held::Stale);
        held.prepared(4, 5);
        held.uncertain(4);
        assert_eq!(held.held(4, 5), Held::Stale);
    }

    #[test]
    fn fixed_statements_never_go_stale() {
        let mut held = ServerStatements::default();
        assert!(held.insert_fixed(9));
        assert!(!held.insert_fixed(9));
        assert_eq!(held.held(9, 1000), Held::Current);
    }
}
