//! A client's own session state (startup parameters, successful `SET`s and SQL-level
//! `PREPARE`d statements) in pooled modes: recorded per client, `SET`s committed or discarded
//! with the transaction that made them (`PREPARE` is not transactional), and replayed on
//! whichever server connection the client lands on.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use super::isolation::literal;
use crate::sql::SessionEffect;

/// The state hash of a server connection exactly as it logged in.
pub const PRISTINE: u64 = 0;
/// The state hash of a server connection whose state is unknown and must be reset.
pub const DIRTY: u64 = 1;

/// A session-state statement that completed, with its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// What it does.
    pub kind: SessionEffect,
    /// The statement as the client wrote it.
    pub sql: Arc<str>,
}

/// Startup parameters the proxy handles itself instead of replaying.
const NOT_REPLAYED: &[&str] = &["user", "database", "replication", "options"];

/// One client's session state.
#[derive(Debug, Default)]
pub struct SessionState {
    startup: Vec<(String, String)>,
    sets: Vec<(String, Arc<str>)>,
    /// SQL-level prepared statements: name (as the server resolves it) and `PREPARE` text.
    prepares: Vec<(String, Arc<str>)>,
    /// A `PREPARE`/`DEALLOCATE` changed the state since the last `ReadyForQuery`.
    changed_now: bool,
    pending: Vec<Effect>,
    rollback_seen: bool,
    reset_since_commit: bool,
    /// A `RESET` went back to the server's defaults: the client's startup values must be set
    /// again on the attached server (PostgreSQL resets to the startup packet's values).
    startup_lost: bool,
    /// Settings the server reported (see [`SessionState::adopt_settings`]), by name.
    adopted: Vec<(String, String)>,
    hash: u64,
    /// See [`SessionState::analysis_salt`].
    salt: u64,
}

/// Settings that change how PostgreSQL analyses a statement's text.
const ANALYSIS_SETTINGS: &[&str] = &[
    "search_path",
    "role",
    "session_authorization",
    "standard_conforming_strings",
];

/// How an adopted setting is replayed: `set_config` takes the value exactly as
/// `current_setting` printed it (a list such as `search_path` stays a list).
const ADOPTED_PREFIX: &str = "SELECT pg_catalog.set_config(";

impl SessionState {
    /// State implied by the client's startup parameters: those that differ from what a fresh
    /// server connection reports (`server`) are replayed as `SET`s.
    pub fn from_startup(client: &[(String, String)], server: &[(String, String)]) -> Self {
        let mut startup = Vec::new();
        for (name, value) in client {
            if NOT_REPLAYED.contains(&name.as_str()) || !valid_guc_name(name) {
                continue;
            }
            let same = server
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v.eq_ignore_ascii_case(value));
            if !same {
                startup.push((name.to_ascii_lowercase(), value.clone()));
            }
        }
        if let Some((_, options)) = client.iter().find(|(n, _)| n == "options") {
            for (name, value) in parse_options(options) {
                if valid_guc_name(&name) {
                    startup.push((name.to_ascii_lowercase(), value));
                }
            }
        }
        let mut s = SessionState {
            startup,
            ..Default::default()
        };
        s.rehash();
        s
    }

    /// The hash a server carries once this state is applied to it.
    #[inline]
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Records a completed session-state statement: a `SET` applies when its transaction
    /// commits, a `PREPARE`/`DEALLOCATE` at once.
    pub fn record(&mut self, effect: Effect) {
        match &effect.kind {
            SessionEffect::Prepare(name) => {
                self.prepares.retain(|(n, _)| n != name);
                self.prepares.push((name.clone(), effect.sql.clone()));
            }
            SessionEffect::Deallocate(name) => self.prepares.retain(|(n, _)| n != name),
            SessionEffect::DeallocateAll => self.prepares.clear(),
            _ => {
                self.pending.push(effect);
                return;
            }
        }
        self.changed_now = true;
        self.rehash();
    }

    /// The value the client's startup packet (or its `options`) gave a setting.
    pub fn startup_value(&self, name: &str) -> Option<&str> {
        self.startup
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `PREPARE` text of the SQL-level prepared statement `EXECUTE name` runs (`name` as
    /// PostgreSQL's parser gives it: folded, without quotes).
    pub fn prepare_text(&self, name: &str) -> Option<Arc<str>> {
        self.prepares
            .iter()
            .find(|(n, _)| {
                n == name || n.strip_prefix('"').and_then(|n| n.strip_suffix('"')) == Some(name)
            })
            .map(|(_, sql)| sql.clone())
    }

    /// The `search_path` a committed `SET search_path` gave the session, if any (schema
    /// names, quotes removed).
    pub fn search_path(&self) -> Option<Vec<String>> {
        let (_, sql) = self.sets.iter().find(|(n, _)| n == "search_path")?;
        if sql.starts_with(ADOPTED_PREFIX) {
            let (_, value) = self.adopted.iter().find(|(n, _)| n == "search_path")?;
            return Some(
                value
                    .split(',')
                    .map(|p| p.trim().trim_matches('"').to_owned())
                    .filter(|p| !p.is_empty())
                    .collect(),
            );
        }
        let words = crate::sql::leading_words(sql, 3);
        let skip = if words.get(1).map(String::as_str) == Some("session") {
            3
        } else {
            2
        };
        let rest = crate::sql::skip_space_and_comments(sql);
        // After `SET [SESSION] search_path`, then `TO` or `=`.
        let mut value = rest;
        for _ in 0..skip {
            let end = value
                .find(|c: char| c.is_whitespace() || c == '=')
                .unwrap_or(value.len());
            value = value[end..].trim_start();
        }
        let value = value
            .strip_prefix('=')
            .or_else(|| {
                value
                    .get(..2)
                    .filter(|w| w.eq_ignore_ascii_case("to"))
                    .map(|_| &value[2..])
            })
            .unwrap_or(value);
        Some(
            value
                .split(',')
                .map(|p| {
                    p.trim()
                        .trim_end_matches(';')
                        .trim()
                        .trim_matches(['\'', '"'])
                        .to_owned()
                })
                .filter(|p| !p.is_empty())
                .collect(),
        )
    }

    /// Names of the SQL-level prepared statements the server must have.
    pub fn prepared_names(&self) -> Vec<String> {
        self.prepares.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Notes that a transaction ended in `ROLLBACK`.
    pub fn saw_rollback(&mut self) {
        self.rollback_seen = true;
    }

    /// Handles `ReadyForQuery`; returns the hash the server now carries when this changed it.
    pub fn on_ready(&mut self, status: u8) -> Option<u64> {
        let changed_now = std::mem::take(&mut self.changed_now).then_some(self.hash);
        if status != b'I' {
            return changed_now;
        }
        let rolled_back = std::mem::take(&mut self.rollback_seen);
        if self.pending.is_empty() {
            return changed_now;
        }
        let pending = std::mem::take(&mut self.pending);
        if rolled_back {
            return changed_now;
        }
        for effect in pending {
            match &effect.kind {
                SessionEffect::Set(name) => {
                    self.sets.retain(|(n, _)| n != name);
                    self.sets.push((name.clone(), effect.sql.clone()));
                }
                SessionEffect::Reset(name) => {
                    self.sets.retain(|(n, _)| n != name);
                    self.reset_since_commit |= self.startup.iter().any(|(n, _)| n == name);
                }
                SessionEffect::ResetAll => {
                    self.sets.clear();
                    self.reset_since_commit |= !self.startup.is_empty();
                }
                SessionEffect::DiscardAll => {
                    self.sets.clear();
                    self.prepares.clear();
                    self.reset_since_commit |= !self.startup.is_empty();
                }
                SessionEffect::Prepare(_)
                | SessionEffect::Deallocate(_)
                | SessionEffect::DeallocateAll => {}
            }
        }
        self.rehash();
        // A RESET on the server went back to its own defaults, not to this client's startup
        // values: mark it dirty so the next checkout replays everything, and have the
        // attached server take them again now.
        if std::mem::take(&mut self.reset_since_commit) {
            self.startup_lost = true;
            Some(DIRTY)
        } else {
            Some(self.hash)
        }
    }

    /// SQL that turns a server carrying `server_hash` and the SQL-level prepared statements
    /// `server_prepares` into one carrying this state's settings (and no SQL-level prepared
    /// statements: [`SessionState::prepares`] are run after it, one message each).
    pub fn restore_settings_sql(&self, server_hash: u64, server_prepares: &[String]) -> String {
        let mut sql = String::new();
        for name in server_prepares {
            sql.push_str("DEALLOCATE ");
            sql.push_str(name);
            sql.push(';');
        }
        if server_hash != PRISTINE {
            sql.push_str("SET SESSION AUTHORIZATION DEFAULT;RESET ALL;");
        }
        for (name, value) in &self.startup {
            sql.push_str("SET ");
            sql.push_str(name);
            sql.push_str(" TO ");
            sql.push_str(&literal(value));
            sql.push(';');
        }
        for (_, stmt) in &self.sets {
            sql.push_str(stmt);
            sql.push(';');
        }
        sql
    }

    /// The SQL-level prepared statements to create again, each as the client sent it (run
    /// one per message, so one that no longer prepares — its table was dropped — fails
    /// alone, and the server records each statement's own text).
    pub fn prepares(&self) -> impl Iterator<Item = (&str, &str)> {
        self.prepares.iter().map(|(n, s)| (n.as_str(), &**s))
    }

    /// Forgets a prepared statement that could not be created again.
    pub fn forget_prepare(&mut self, name: &str) {
        self.prepares.retain(|(n, _)| n != name);
        self.rehash();
    }

    /// Replaces the recorded settings with the ones the server reports this session changed
    /// (its answer is complete where the text is not: `set_config`, savepoints, dynamic
    /// SQL); `SET`s waiting for their transaction are superseded. Returns the new hash.
    pub fn adopt_settings(&mut self, settings: Vec<(String, String)>) -> u64 {
        self.pending.clear();
        self.sets.clear();
        self.adopted.clear();
        for (name, value) in settings {
            let name = name.to_ascii_lowercase();
            if self.startup_value(&name) == Some(value.as_str()) {
                continue;
            }
            let stmt = format!(
                "{ADOPTED_PREFIX}{}, {}, false)",
                literal(&name),
                literal(&value)
            );
            self.sets.push((name.clone(), stmt.into()));
            self.adopted.push((name, value));
        }
        self.rehash();
        self.hash
    }

    /// Names of the custom (dotted) settings the session has, which the server only reports
    /// when asked by name.
    pub fn custom_names(&self) -> impl Iterator<Item = &str> {
        self.sets
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| n.contains('.'))
    }

    /// SQL that sets the client's startup values again after a `RESET` took them away, once
    /// (`None` when nothing was reset).
    pub fn take_startup_restore(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.startup_lost) {
            return None;
        }
        let mut sql = String::new();
        for (name, value) in &self.startup {
            if self.sets.iter().any(|(n, _)| n == name) {
                continue;
            }
            sql.push_str("SET ");
            sql.push_str(name);
            sql.push_str(" TO ");
            sql.push_str(&literal(value));
            sql.push(';');
        }
        (!sql.is_empty()).then_some(sql)
    }

    /// The session's `SET ROLE` and `SET SESSION AUTHORIZATION` statements, as sent (the
    /// role its statements run as, for keys of cached results).
    pub fn role_sets(&self) -> String {
        let mut out = String::new();
        for (name, sql) in &self.sets {
            if name == "role" || name == "session_authorization" {
                out.push_str(sql);
                out.push('\0');
            }
        }
        for (name, value) in &self.startup {
            if name == "role" {
                out.push_str(value);
            }
        }
        out
    }

    /// A hash of the settings that change how PostgreSQL analyses a statement (which objects
    /// its names resolve to, how its literals read): `search_path`, the role and
    /// `standard_conforming_strings`, from startup and `SET`s; 0 when none is set.
    pub fn analysis_salt(&self) -> u64 {
        self.salt
    }

    /// The tracked `SET` statements, in order (for inspection and tests).
    pub fn sets(&self) -> impl Iterator<Item = &str> {
        self.sets.iter().map(|(_, s)| &**s)
    }

    fn rehash(&mut self) {
        self.salt = self.compute_salt();
        if self.startup.is_empty() && self.sets.is_empty() && self.prepares.is_empty() {
            self.hash = PRISTINE;
            return;
        }
        let mut h = DefaultHasher::new();
        self.startup.hash(&mut h);
        for (n, s) in self.sets.iter().chain(&self.prepares) {
            n.hash(&mut h);
            s.hash(&mut h);
        }
        self.hash = match h.finish() {
            PRISTINE | DIRTY => 2,
            x => x,
        };
    }
}

impl SessionState {
    fn compute_salt(&self) -> u64 {
        let analysis = |name: &str| ANALYSIS_SETTINGS.contains(&name);
        let startup = self.startup.iter().filter(|(n, _)| analysis(n));
        let sets = self.sets.iter().filter(|(n, _)| analysis(n));
        let adopted = self.adopted.iter().filter(|(n, _)| analysis(n));
        let mut h = DefaultHasher::new();
        let mut any = false;
        for (n, v) in startup.chain(adopted) {
            (n, v).hash(&mut h);
            any = true;
        }
        for (n, sql) in sets {
            (n, &**sql).hash(&mut h);
            any = true;
        }
        if any { h.finish() | 1 } else { 0 }
    }
}

fn valid_guc_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Parses `-c name=value` and `--name=value` from the `options` startup parameter.
fn parse_options(options: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(w) = words.next() {
        let pair = if w == "-c" {
            words.next()
        } else if let Some(rest) = w.strip_prefix("-c") {
            Some(rest)
        } else {
            w.strip_prefix("--")
        };
        if let Some((name, value)) = pair.and_then(|p| p.split_once('=')) {
            out.push((name.replace('-', "_"), value.to_owned()));
        }
    }
    out
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
