//! The result cache on the query path: a statement a cache policy asked for is answered
//! from the cache (simple `Query`, or a `Bind` whose portal the proxy then serves), or its
//! result is copied as it passes; statement descriptions are kept too, so a driver that
//! prepares before it binds is answered without a server. Writes are noted as they run and
//! invalidate when their transaction commits — locally at once, in Redis and in the other
//! proxies before the client sees its `ReadyForQuery`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::Relay;
use super::expect::Synthetic;
use crate::cache::capture::Capture;
use crate::cache::{Key, ResultCache, SessionKey, key};
use crate::hooks::Facts;
use crate::session::served::ServedPortal;
use crate::session::statements::Prepared;
use crate::wire::messages::BindRef;
use crate::wire::results;

/// What the cache did with a statement.
pub(in crate::session) enum CacheStep {
    /// The proxy answered it.
    Answered,
    /// It runs, and its result is copied.
    Capture(Box<Capture>),
    /// The cache is not involved.
    Pass,
}

/// What a session keeps for the cache between messages.
#[derive(Default)]
pub(in crate::session) struct CacheState {
    /// Tables the open transaction (or the running statement) wrote, `database\0name`.
    writes: Vec<String>,
    /// The transaction is failed or rolled back: its writes invalidate nothing.
    rollback: bool,
    /// Committed writes Redis and the other proxies are yet to hear of.
    invalidate: Vec<String>,
    /// Portals bound on a miss, whose results are copied when they execute.
    captures: Vec<(Box<[u8]>, Box<Capture>)>,
    /// Row descriptions of this session's statements (format codes zeroed), by hash.
    described: std::collections::HashMap<u64, Vec<u8>>,
    /// A statement `Describe` in flight: its hash, description key, and parameters frame.
    describing: Option<(u64, Option<Key>, Vec<u8>)>,
    /// A portal `Describe` in flight for a portal whose result is copied: where its
    /// `RowDescription` goes.
    describing_portal: Option<Arc<std::sync::Mutex<Vec<u8>>>>,
}

/// What the cache needs to know about one statement.
struct Subject {
    spelling: [u8; 32],
    /// `database\0schema.name`.
    tables: Vec<String>,
    relations: Vec<String>,
    functions: Vec<String>,
}

impl Relay {
    /// The cache, when this session may use it for its next statement: outside any
    /// transaction block and batch, with no write of its own pending, and with nothing on
    /// its connection the proxy cannot see (a role or setting it could not track).
    fn usable_cache(&self) -> Option<Arc<ResultCache>> {
        let cache = self.env.cache.as_ref()?;
        let clear = !self.status.in_transaction()
            && !self.batch_open
            && self.pins.is_empty()
            && !self.computed_setting
            && self.cached.writes.is_empty();
        clear.then(|| cache.clone())
    }

    fn search_path(&self) -> Vec<String> {
        self.state
            .search_path()
            .unwrap_or_else(|| self.info.search_path.clone())
    }

    fn subject(&self, sql: &str) -> Option<Subject> {
        let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
        let [s] = analysis.statements.as_slice() else {
            return None;
        };
        let plain = s.kind == "select"
            && s.writes.is_empty()
            && s.modifications.is_empty()
            && s.locking.is_empty()
            && s.opaque.is_empty()
            && s.executes.is_none()
            && !s.reads.is_empty();
        if !plain {
            return None;
        }
        let path = self.search_path();
        let relations: Vec<String> = s.reads.iter().map(|t| t.resolved(&path)).collect();
        let database = &self.pool.key.database;
        let mut tables: Vec<String> = relations
            .iter()
            .map(|r| format!("{database}\0{r}"))
            .collect();
        for t in &s.reads {
            if let Some(other) = self.user_schema_name(&path, t).ok()? {
                tables.push(format!("{database}\0{other}"));
            }
        }
        Some(Subject {
            spelling: helios_analysis::spelling(sql)?,
            tables,
            relations,
            functions: s.functions.clone(),
        })
    }

    /// For an unqualified name when `search_path` holds `"$user"` (or is the server's): the same name in the
    /// schema `"$user"` stands for (the server login role), which PostgreSQL reads first when
    /// it exists. `Err` when a `SET ROLE` may have changed whom `"$user"` means.
    fn user_schema_name(
        &self,
        path: &[String],
        t: &helios_analysis::TableName,
    ) -> Result<Option<String>, ()> {
        // No path of the session's own: the server's default, `"$user", public` unless
        // configured otherwise there.
        let has_user =
            path.is_empty() || path.iter().any(|s| s.trim().trim_matches('"') == "$user");
        if t.schema.is_some() || !has_user {
            return Ok(None);
        }
        if !self.state.role_sets().is_empty() {
            return Err(());
        }
        Ok(Some(format!("{}.{}", self.server_user, t.name)))
    }

    fn key_of(
        &self,
        subject: &Subject,
        types: &[u8],
        params: &[Option<&[u8]>],
        pf: &[i16],
        rf: &[i16],
    ) -> Key {
        let role = self.state.role_sets();
        let path = self.search_path().join(",");
        let session = SessionKey {
            database: &self.pool.key.database,
            server_user: &self.server_user,
            role: &role,
            search_path: &path,
            state_hash: self.state.hash(),
        };
        key::key(&session, &subject.spelling, types, pf, params, rf)
    }

    /// After a miss: copy the result when the catalog vouches for every relation and
    /// function; when it does not know yet, ask it in the background.
    async fn capture_for(
        &self,
        cache: &Arc<ResultCache>,
        subject: Subject,
        key: Key,
        ttl_ms: u32,
    ) -> CacheStep {
        let database = &self.pool.key.database;
        match cache
            .catalog
            .verdict(database, &subject.relations, &subject.functions)
        {
            Some(true) => {
                let pending = cache.pending(key, cache.ttl(ttl_ms), subject.tables).await;
                CacheStep::Capture(Capture::new(cache.clone(), pending))
            }
            Some(false) => CacheStep::Pass,
            None => {
                let pool = self.primary_pool();
                cache.spread.load(pool.clone());
                cache
                    .catalog
                    .resolve(pool, subject.relations, subject.functions);
                CacheStep::Pass
            }
        }
    }

    fn note_analytics(&self, sql: &str, hit: bool) {
        if let Some(a) = &self.env.analytics {
            let owner = crate::observe::queries::Owner {
                database: &self.info.database,
                user: &self.info.user,
            };
            a.note_cache(owner, sql, hit);
        }
    }

    /// A simple query a policy asked to cache (`facts`): answered from the cache, or run
    /// with its result copied.
    pub(super) async fn cache_simple(
        &mut self,
        sql: &str,
        facts: Option<&Arc<Facts>>,
    ) -> CacheStep {
        let ttl_ms = facts.map_or(0, |f| f.cache_ttl_ms.load(Relaxed));
        if ttl_ms == 0 {
            return CacheStep::Pass;
        }
        // Statements pipelined before this one may have opened a transaction.
        if self.server.is_some() && !self.queue.is_empty() {
            return CacheStep::Pass;
        }
        let Some(cache) = self.usable_cache() else {
            return CacheStep::Pass;
        };
        let Some(subject) = self.subject(sql) else {
            return CacheStep::Pass;
        };
        let key = self.key_of(&subject, &[], &[], &[], &[]);
        if let Some(hit) = cache.get(&key, cache.ttl(ttl_ms)).await {
            let mut out =
                Vec::with_capacity(hit.row_description.len() + hit.rows.len() + hit.complete.len());
            out.extend_from_slice(&hit.row_description);
            out.extend_from_slice(&hit.rows);
            out.extend_from_slice(&hit.complete);
            self.queue.push_synthetic(Synthetic::Raw(out));
            self.queue.push_synthetic(Synthetic::ReadyForQuery);
            self.note_analytics(sql, true);
            return CacheStep::Answered;
        }
        self.note_analytics(sql, false);
        self.capture_for(&cache, subject, key, ttl_ms).await
    }

    /// A `Bind` of a statement a policy asked to cache: a hit binds a portal the proxy
    /// serves; a miss notes what to copy when the portal executes.
    pub(super) async fn cache_bind(&mut self, bind: &BindRef<'_>, p: &Prepared) -> bool {
        let ttl_ms = p.cache_ttl_ms.load(Relaxed);
        if ttl_ms == 0 || (self.server.is_some() && !self.queue.is_empty()) {
            return false;
        }
        let Some(cache) = self.usable_cache() else {
            return false;
        };
        let Some(subject) = self.subject(p.sql()) else {
            return false;
        };
        let (pf, values) = bind.params();
        let rf = bind.result_formats();
        let key = self.key_of(&subject, p.param_types(), &values, &pf, &rf);
        if let Some(hit) = cache.get(&key, cache.ttl(ttl_ms)).await {
            self.portals
                .bind_served(ServedPortal::cached(bind.portal, hit, rf));
            self.queue
                .push_synthetic(Synthetic::Raw(results::BIND_COMPLETE.to_vec()));
            self.note_analytics(p.sql(), true);
            return true;
        }
        self.note_analytics(p.sql(), false);
        if let CacheStep::Capture(c) = self.capture_for(&cache, subject, key, ttl_ms).await {
            if let Some(t) = self.cached.described.get(&p.hash) {
                c.set_row_description(t.clone());
            }
            self.cached
                .captures
                .retain(|(name, _)| **name != *bind.portal);
            self.cached.captures.push((bind.portal.into(), c));
        }
        false
    }

    /// The copy to make of a portal's result when it executes (a miss at its `Bind`).
    pub(super) fn take_capture(&mut self, portal: &[u8], max_rows: i32) -> Option<Box<Capture>> {
        let i = self
            .cached
            .captures
            .iter()
            .position(|(n, _)| **n == *portal)?;
        let (_, c) = self.cached.captures.swap_remove(i);
        // A result read in parts is not kept.
        (max_rows == 0).then_some(c)
    }

    /// The key of a statement's description for this session.
    fn description_key(&self, p: &Prepared) -> Option<Key> {
        let subject = self.subject(p.sql())?;
        // A description is keyed apart from any result: a format code no `Bind` can send.
        Some(self.key_of(&subject, p.param_types(), &[], &[-1], &[]))
    }

    /// A `Describe` of a statement a policy asked to cache, with no server attached: the
    /// description the server gave before, when the proxy has it.
    pub(super) fn cached_description(&mut self, p: &Prepared) -> bool {
        if self.server.is_some() || p.cache_ttl_ms.load(Relaxed) == 0 {
            return false;
        }
        let (Some(cache), Some(key)) = (self.usable_cache(), self.description_key(p)) else {
            return false;
        };
        match cache.description(&key) {
            Some(d) => {
                self.cached.described.insert(p.hash, d.rows.clone());
                let mut out = d.parameters.clone();
                out.extend_from_slice(&d.rows);
                self.queue.push_synthetic(Synthetic::Raw(out));
                true
            }
            None => false,
        }
    }

    /// Notes a statement `Describe` going to the server, to keep its answer.
    pub(super) fn note_describe(&mut self, p: &Prepared) {
        if p.cache_ttl_ms.load(Relaxed) > 0 && self.env.cache.is_some() {
            self.cached.describing = Some((p.hash, self.description_key(p), Vec::new()));
        }
    }

    /// A portal `Describe` going to the server for a portal whose result is copied.
    pub(super) fn note_portal_describe(&mut self, portal: &[u8]) {
        if let Some((_, c)) = self.cached.captures.iter().find(|(n, _)| **n == *portal) {
            self.cached.describing_portal = Some(c.columns_slot());
        }
    }

    /// `ParameterDescription`, `RowDescription` or `NoData` from the server.
    pub(super) fn on_description(&mut self, tag: u8, body: &[u8]) {
        let mut frame = Vec::with_capacity(body.len() + 5);
        crate::wire::frame::write_message(&mut frame, tag, |b| b.extend_from_slice(body));
        if let Some(slot) = self.cached.describing_portal.take() {
            if tag == b'T' {
                crate::cache::capture::set_columns(&slot, body);
            }
            return;
        }
        let Some((hash, key, mut parameters)) = self.cached.describing.take() else {
            return;
        };
        if tag == b't' {
            parameters = frame;
            self.cached.describing = Some((hash, key, parameters));
            return;
        }
        if tag == b'T' {
            let mut zeroed = Vec::new();
            if crate::cache::entry::with_formats(&frame, &[], &mut zeroed).is_none() {
                return;
            }
            self.cached.described.insert(hash, zeroed.clone());
            if let (Some(cache), Some(key)) = (self.env.cache.as_ref(), key) {
                cache.describe(key, parameters, zeroed);
            }
        }
    }

    /// Notes the tables a statement about to run writes (DML, DDL, TRUNCATE, COPY FROM, and
    /// what an `EXECUTE` runs). A write that reaches rows the text does not name — to a
    /// relation the catalog says spreads (views, partitions, inheritance, triggers, rules,
    /// cascading foreign keys), a `TRUNCATE … CASCADE`, opaque code, an `EXECUTE` of an
    /// unknown statement, or any write while the catalog has not said — is noted as a
    /// write to everything.
    pub(super) fn note_cache_writes(&mut self, sql: &str) {
        let Some(cache) = self.env.cache.clone() else {
            return;
        };
        let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
        let path = self.search_path();
        let database = self.pool.key.database.clone();
        let mut everything = false;
        let mut named = Vec::new();
        for s in &analysis.statements {
            let executed;
            let s = match s.executes.as_deref() {
                Some(name) => match self.state.prepare_text(name) {
                    Some(text) => {
                        executed = crate::plugins::facts::analyzer().analyze(&text).1;
                        match executed.statements.first() {
                            Some(body) => body,
                            None => continue,
                        }
                    }
                    None => {
                        everything = true;
                        continue;
                    }
                },
                None => s,
            };
            if changes_unnamed_relations(s) || truncates_with_cascade(s) {
                everything = true;
            }
            if s.class == helios_analysis::StatementClass::Ddl {
                cache.spread.forget(&database);
            }
            for t in s
                .writes
                .iter()
                .chain(s.modifications.iter().map(|m| &m.table))
            {
                named.push(t.resolved(&path));
                match self.user_schema_name(&path, t) {
                    Ok(Some(other)) => named.push(other),
                    Ok(None) => {}
                    Err(()) => everything = true,
                }
            }
        }
        if !named.is_empty() {
            match cache.spread.of(&database) {
                Some(known) => everything |= named.iter().any(|n| known.spreads(n)),
                None => {
                    everything = true;
                    cache.spread.load(self.primary_pool());
                }
            }
        }
        if everything {
            let all = crate::cache::EVERYTHING.to_owned();
            if !self.cached.writes.contains(&all) {
                self.cached.writes.push(all);
            }
        }
        for name in named {
            cache.catalog.forget(&database, &name);
            let tag = format!("{database}\0{name}");
            if !self.cached.writes.contains(&tag) {
                self.cached.writes.push(tag);
            }
        }
    }

    /// A pool on the primary, for catalog lookups.
    fn primary_pool(&self) -> Arc<crate::pool::Pool> {
        let primary = self.env.topology.primary();
        self.node_pools
            .get(primary)
            .cloned()
            .flatten()
            .unwrap_or_else(|| self.pool.clone())
    }

    /// `ReadyForQuery`: writes of a transaction that committed invalidate (the shared tier
    /// before the client sees this `ReadyForQuery`); a rolled-back one's are forgotten. A
    /// `ROLLBACK TO SAVEPOINT` keeps them: what came before the savepoint still commits.
    pub(super) fn cache_on_ready(&mut self, status: u8) {
        match status {
            b'E' => self.cached.rollback = true,
            b'T' => self.cached.rollback = false,
            b'I' => {
                let writes = std::mem::take(&mut self.cached.writes);
                if !std::mem::take(&mut self.cached.rollback)
                    && !writes.is_empty()
                    && let Some(cache) = &self.env.cache
                {
                    cache.invalidate_local(&writes);
                    if cache.l2.is_some() {
                        self.cached.invalidate.extend(writes);
                    }
                }
            }
            _ => {}
        }
    }

    /// A `ROLLBACK` completed: the transaction's writes never happened.
    pub(super) fn cache_on_rollback(&mut self) {
        if self.env.cache.is_some() {
            self.cached.rollback = true;
        }
    }

    /// Tells Redis and the other proxies of committed writes; called before the client's
    /// `ReadyForQuery` is written.
    pub(super) async fn flush_invalidations(&mut self) {
        if self.cached.invalidate.is_empty() {
            return;
        }
        let tables = std::mem::take(&mut self.cached.invalidate);
        if let Some(cache) = &self.env.cache {
            cache.invalidate(&tables).await;
        }
    }
}

/// Whether a statement is a `TRUNCATE … CASCADE` (it empties every table referencing the
/// named ones). Read from the text: a false positive only invalidates more.
fn truncates_with_cascade(s: &helios_analysis::StatementFacts) -> bool {
    s.kind == "truncate" && s.text.to_ascii_lowercase().contains("cascade")
}

/// Whether a statement may change cached answers of relations the analysis does not name:
/// DDL that names no table (`GRANT`, `REVOKE`, `CREATE POLICY`, `ALTER … OWNER`, `DROP
/// POLICY`, function and view changes, …) and opaque code (`DO`, `CALL`).
fn changes_unnamed_relations(s: &helios_analysis::StatementFacts) -> bool {
    use helios_analysis::StatementClass;
    match s.class {
        StatementClass::Ddl => s.writes.is_empty() || s.kind == "drop" || s.kind == "grant",
        StatementClass::Other => matches!(s.kind.as_str(), "do" | "call"),
        _ => !s.opaque.is_empty(),
    }
}
