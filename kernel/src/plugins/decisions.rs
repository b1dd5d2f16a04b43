//! Decisions of hooks a component declared pure (`context.declare-pure`), cached by the
//! kernel so components keep no verdict caches of their own. The key is the statement's
//! analysis key (SHA-256 of its text) plus every session value the hook read through
//! `context` — a hook that looked at `application-name` is asked again for a session with
//! another one. Each loaded component has its own cache, so a reload starts empty.

use std::collections::HashMap;
use std::sync::Mutex;

use helios_analysis::Key;

use super::bindings::{PreQueryAction, RouteTarget, Verdict};
use super::host::{Read, SessionInfo};
use crate::config::HookName;

/// Cached (statement, hook) pairs before the cache is emptied.
const MAX_ENTRIES: usize = 50_000;

/// A cached decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// PreQuery's.
    PreQuery(PreQueryAction),
    /// Validate's.
    Verdict(Verdict),
    /// Route's.
    Route(RouteTarget),
}

/// The values a decision depended on, and the decision.
type Entry = (Vec<(Read, String)>, Decision);

/// One component's cached decisions.
#[derive(Default)]
pub struct Decisions {
    entries: Mutex<HashMap<(HookName, Key, bool), Vec<Entry>>>,
}

impl Decisions {
    /// The decision cached for `hook` on the statement `key` in `session` (inside a
    /// transaction or not), if the values it read then equal this session's.
    pub fn get(
        &self,
        hook: HookName,
        key: &Key,
        in_transaction: bool,
        session: &SessionInfo,
    ) -> Option<Decision> {
        let entries = self.entries.lock().expect("decisions lock");
        entries
            .get(&(hook, *key, in_transaction))?
            .iter()
            .find_map(|(reads, d)| {
                reads
                    .iter()
                    .all(|(r, v)| r.returns(session, v))
                    .then(|| d.clone())
            })
    }

    /// Remembers a decision and the session values it read.
    pub fn put(
        &self,
        hook: HookName,
        key: &Key,
        in_transaction: bool,
        reads: &[Read],
        session: &SessionInfo,
        decision: Decision,
    ) {
        let reads = reads.iter().map(|r| (*r, r.value(session))).collect();
        let mut entries = self.entries.lock().expect("decisions lock");
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let slot = entries.entry((hook, *key, in_transaction)).or_default();
        // A statement seen from many different sessions keeps a bounded list.
        if slot.len() >= 16 {
            slot.remove(0);
        }
        slot.push((reads, decision));
    }

    /// Statements with a cached decision.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("decisions lock").len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
