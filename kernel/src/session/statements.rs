//! A client's prepared statements in pooled modes.
//!
//! Every `Parse` (named or unnamed) is mapped to a server-side statement named after a hash of
//! its text, parameter types and the session settings that change how PostgreSQL analyses it
//! (`search_path`, the role; see [`super::state::SessionState::analysis_salt`]), as
//! `hp_<hash>`. Server connections remember which hashes they have and in which schema epoch
//! (see [`crate::pool::statements`]), so a statement is prepared once per server connection
//! and shared by every client that uses the same SQL until a schema change; a client landing
//! on a connection that lacks it gets it re-prepared transparently before its `Bind` or
//! `Describe`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::Arc;

use crate::sql::{session_effect, split_statements};
use crate::wire::frame::write_message;
use crate::wire::messages::ParseRef;

use super::served::Served;
use super::state::Effect;

/// One client statement and its server-side identity.
#[derive(Debug)]
pub struct Prepared {
    /// Hash of query text, parameter types and the analysis settings.
    pub hash: u64,
    /// The session's analysis settings when it was parsed (see [`ClientStatements::define`]).
    salt: u64,
    /// `hp_<16 hex digits>`.
    pub server_name: [u8; 19],
    /// The `Parse` body after the name: query, NUL, parameter types.
    body_after_name: Box<[u8]>,
    /// Session-state effect of executing it, if any.
    pub effect: Option<Effect>,
    /// Running it could change session state only the server can tell (see
    /// [`super::isolation`]).
    pub needs_check: bool,
    /// What its statements mean for transaction replay, worked out on first use.
    replay_kinds: std::sync::OnceLock<Vec<super::recovery::txlog::Kind>>,
    /// Its result's column names, once a server described it (kept only while a
    /// component reads result rows).
    columns: std::sync::OnceLock<Vec<String>>,
    /// Whether PostgreSQL's grammar accepts the text, worked out on first use.
    parses: std::sync::OnceLock<bool>,
    /// What a cache policy asked at its last `Parse`: keep results this many milliseconds.
    pub cache_ttl_ms: std::sync::atomic::AtomicU32,
    /// Its query analytics entry, found on first execution.
    pub stats_entry: std::sync::OnceLock<Arc<crate::observe::queries::Entry>>,
    /// The schema epoch of the client's last `Parse` of it: a server copy analysed before
    /// that is prepared again; one analysed since is what PostgreSQL would run (it checks a
    /// kept statement against the schema itself, and says when its result type changed).
    pub parsed_epoch: std::sync::atomic::AtomicU64,
    /// A hash of the description a server gave the client for it (0: never described).
    pub described: std::sync::atomic::AtomicU64,
}

impl Prepared {
    fn new(parse: &ParseRef<'_>, salt: u64) -> Self {
        let mut h = DefaultHasher::new();
        h.write(parse.query);
        h.write_u8(0);
        h.write(parse.param_types);
        h.write_u64(salt);
        let hash = h.finish();
        let mut server_name = *b"hp_0000000000000000";
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for i in 0..16 {
            server_name[3 + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
        }
        let mut body = Vec::with_capacity(parse.query.len() + 1 + parse.param_types.len());
        body.extend_from_slice(parse.query);
        body.push(0);
        body.extend_from_slice(parse.param_types);
        let effect = std::str::from_utf8(parse.query).ok().and_then(|sql| {
            let stmts = split_statements(sql);
            match stmts.as_slice() {
                [one] => session_effect(one).map(|kind| Effect {
                    kind,
                    sql: Arc::from(*one),
                }),
                _ => None,
            }
        });
        let needs_check = super::isolation::needs_check(&String::from_utf8_lossy(parse.query));
        Prepared {
            hash,
            salt,
            server_name,
            body_after_name: body.into_boxed_slice(),
            effect,
            needs_check,
            replay_kinds: std::sync::OnceLock::new(),
            columns: std::sync::OnceLock::new(),
            parses: std::sync::OnceLock::new(),
            cache_ttl_ms: Default::default(),
            stats_entry: Default::default(),
            parsed_epoch: Default::default(),
            described: Default::default(),
        }
    }

    /// What its statements mean for transaction replay.
    pub fn replay_kinds(&self) -> &[super::recovery::txlog::Kind] {
        self.replay_kinds
            .get_or_init(|| super::recovery::txlog::kinds(self.sql()))
    }

    /// Its result's column names, when a server described it.
    pub fn columns(&self) -> Vec<String> {
        self.columns.get().cloned().unwrap_or_default()
    }

    /// Remembers the column names of the `RowDescription` a server described it with.
    pub fn describe_columns(&self, row_description: &[u8]) {
        if self.columns.get().is_none()
            && let Some(names) = crate::wire::results::column_names(row_description)
        {
            let _ = self.columns.set(names);
        }
    }

    /// Whether PostgreSQL's grammar accepts the text (checked once, with the proxy's copy of
    /// the parser): text it rejects is sent to a server at `Parse`, so the error comes where
    /// PostgreSQL gives it.
    pub fn parses(&self) -> bool {
        *self.parses.get_or_init(|| {
            let text = self.sql();
            crate::plugins::facts::analyzer()
                .analyze(text)
                .1
                .error
                .is_none()
        })
    }

    /// The query text.
    pub fn sql(&self) -> &str {
        let end = self
            .body_after_name
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(self.body_after_name.len());
        std::str::from_utf8(&self.body_after_name[..end]).unwrap_or("")
    }

    /// The parameter types its `Parse` declared (count, then OIDs), as sent.
    pub fn param_types(&self) -> &[u8] {
        let end = self
            .body_after_name
            .iter()
            .position(|&b| b == 0)
            .map_or(self.body_after_name.len(), |i| i + 1);
        &self.body_after_name[end..]
    }

    /// Appends a `Close` of this statement's server name.
    pub fn encode_close(&self, out: &mut Vec<u8>) {
        write_message(out, b'C', |b| {
            b.push(b'S');
            b.extend_from_slice(&self.server_name);
            b.push(0);
        });
    }

    /// Appends a `Parse` that creates this statement under its server name.
    pub fn encode_parse(&self, out: &mut Vec<u8>) {
        write_message(out, b'P', |b| {
            b.extend_from_slice(&self.server_name);
            b.push(0);
            b.extend_from_slice(&self.body_after_name);
        });
    }
}

/// The statements one client has prepared, by its own names.
#[derive(Debug, Default)]
pub struct ClientStatements {
    by_name: HashMap<Box<[u8]>, Arc<Prepared>>,
    /// Statements a component answered at `Parse`; they never reach a server.
    served: HashMap<Box<[u8]>, Arc<Served>>,
    /// What the statements above hold, roughly, in bytes (for the client's memory budget).
    bytes: usize,
}

/// What one statement costs beyond its text: the map entry, the `Arc`, the struct.
const STATEMENT_OVERHEAD: usize = 192;

fn cost(name: &[u8], p: &Prepared) -> usize {
    name.len() + p.body_after_name.len() + STATEMENT_OVERHEAD
}

impl ClientStatements {
    /// Records a `Parse`, replacing any statement of the same name. `salt` is the session's
    /// [`analysis_salt`](super::state::SessionState::analysis_salt): the same text parsed
    /// under another `search_path` or role is another server statement.
    pub fn define(&mut self, parse: &ParseRef<'_>, salt: u64) -> Arc<Prepared> {
        if !self.served.is_empty() {
            self.served.remove(parse.name);
        }
        if let Some(existing) = self.by_name.get(parse.name)
            && existing.salt == salt
            && existing.body_after_name.len() == parse.query.len() + 1 + parse.param_types.len()
            && existing.body_after_name[..parse.query.len()] == *parse.query
            && existing.body_after_name[parse.query.len() + 1..] == *parse.param_types
        {
            return existing.clone();
        }
        let p = Arc::new(Prepared::new(parse, salt));
        self.bytes += cost(parse.name, &p);
        if let Some(old) = self.by_name.insert(parse.name.into(), p.clone()) {
            self.bytes -= cost(parse.name, &old);
        }
        p
    }

    /// Roughly what the client's statements hold, in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes + self.served.len() * STATEMENT_OVERHEAD
    }

    /// The statement a client name refers to.
    #[inline]
    pub fn get(&self, name: &[u8]) -> Option<&Arc<Prepared>> {
        self.by_name.get(name)
    }

    /// Every statement the client has defined.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Prepared>> {
        self.by_name.values()
    }

    /// Forgets a statement (client `Close`).
    pub fn remove(&mut self, name: &[u8]) {
        if let Some(old) = self.by_name.remove(name) {
            self.bytes -= cost(name, &old);
        }
        self.served.remove(name);
    }

    /// Records a statement a component answered, replacing any statement of the same name.
    pub fn serve(&mut self, name: &[u8], served: Served) {
        if let Some(old) = self.by_name.remove(name) {
            self.bytes -= cost(name, &old);
        }
        self.served.insert(name.into(), Arc::new(served));
    }

    /// The served statement a client name refers to.
    #[inline]
    pub fn served(&self, name: &[u8]) -> Option<&Arc<Served>> {
        if self.served.is_empty() {
            return None;
        }
        self.served.get(name)
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(name: &'a [u8], query: &'a [u8]) -> ParseRef<'a> {
        ParseRef {
            name,
            query,
            param_types: &[0, 0],
        }
    }

    #[test]
    fn same_sql_same_server_name_across_clients() {
        let mut a = ClientStatements::default();
        let mut b = ClientStatements::default();
        let pa = a.define(&parse(b"s1", b"select 1"), 0);
        let pb = b.define(&parse(b"__asyncpg_1", b"select 1"), 0);
        assert_eq!(pa.server_name, pb.server_name);
        let pc = b.define(&parse(b"x", b"select 2"), 0);
        assert_ne!(pa.server_name, pc.server_name);
        assert!(pa.server_name.starts_with(b"hp_"));
    }

    #[test]
    fn same_sql_under_another_search_path_is_another_server_statement() {
        let mut a = ClientStatements::default();
        let pa = a.define(&parse(b"s1", b"select * from t"), 0);
        let pb = a.define(&parse(b"s1", b"select * from t"), 42);
        assert_ne!(pa.server_name, pb.server_name);
        assert_eq!(a.get(b"s1").unwrap().hash, pb.hash);
    }

    #[test]
    fn redefining_a_name_replaces_it() {
        let mut a = ClientStatements::default();
        a.define(&parse(b"", b"select 1"), 0);
        let p2 = a.define(&parse(b"", b"select 2"), 0);
        assert_eq!(a.get(b"").unwrap().hash, p2.hash);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn encoded_parse_uses_the_server_name() {
        let mut a = ClientStatements::default();
        let p = a.define(&parse(b"mine", b"select $1"), 0);
        let mut out = Vec::new();
        p.encode_parse(&mut out);
        let (_, body) = crate::wire::frame::split_message(&out, 1000)
            .unwrap()
            .unwrap();
        let back = ParseRef::parse(body).unwrap();
        assert_eq!(back.name, &p.server_name[..]);
        assert_eq!(back.query, b"select $1");
    }
}
