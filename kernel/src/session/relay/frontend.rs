//! One function per client message: what is sent to the server, what the proxy answers
//! itself, and what the queue expects back.

use super::Relay;
use super::cached::CacheStep;
use super::expect::{Expect, SqlError, Synthetic};
use super::listen::ListenStep;
use super::text::{names_proxy_statement, not_utf8, query_effects};
use crate::session::SessionError;
use crate::session::served::{Served, ServedPortal};
use crate::session::statements::Prepared;
use crate::session::steps::journal::BoundParams;
use crate::session::steps::{Answer, BindCx, Protocol, StatementCx};
use crate::wire::frontend::{self, Frontend};
use crate::wire::messages::{self, BindRef, ParseRef, TargetRef};
use crate::wire::results;

impl Relay {
    /// Handles one client message; `Ok(false)` on `Terminate`.
    pub(super) async fn on_client_message(
        &mut self,
        tag: u8,
        msg: &[u8],
    ) -> Result<bool, SessionError> {
        tracing::trace!(tag = %(tag as char), len = msg.len(), "client message");
        let decoded =
            frontend::parse(tag, &msg[5..]).map_err(|e| SessionError::Protocol(e.to_string()))?;
        if self.skip_until_sync {
            match decoded {
                Frontend::Sync => self.on_sync_after_error(msg),
                Frontend::Terminate => return Ok(false),
                _ => {}
            }
            return Ok(true);
        }
        match decoded {
            Frontend::Query(sql) => self.on_query(msg, sql).await,
            Frontend::Parse(parse) => self.on_parse(parse).await,
            Frontend::Bind(bind) => self.on_bind(msg, bind).await,
            Frontend::Describe(target) => self.on_describe(msg, target).await,
            Frontend::Execute { portal, max_rows } => self.on_execute(msg, portal, max_rows).await,
            Frontend::Close(target) => self.on_close(msg, target).await,
            Frontend::Sync => self.on_sync(msg),
            Frontend::CopyDone | Frontend::CopyFail => {
                if self.server.is_some() {
                    self.sout.extend_from_slice(msg);
                    if !std::mem::take(&mut self.syncs_ignored_in_copy) {
                        self.queue.push(Expect::CopyEnd);
                    }
                }
            }
            Frontend::Flush | Frontend::CopyData => {
                // Flush and COPY data only mean something to a server already in use.
                if self.server.is_some() {
                    self.sout.extend_from_slice(msg);
                }
            }
            Frontend::FunctionCall if self.pipeline.has_pre_query_or_validate() => {
                // A fast-path call names a function by OID with binary arguments: no text a
                // policy could judge, so it is refused rather than let past them.
                let e = SqlError::new(
                    "0A000",
                    "FunctionCall messages are not accepted while PreQuery or Validate \
                     components are loaded; call the function with SELECT instead",
                );
                self.answer(Answer::Error(e), Protocol::Simple);
            }
            Frontend::FunctionCall => {
                if self.attach(Protocol::Simple).await {
                    self.sout.extend_from_slice(msg);
                    self.queue.push(Expect::FunctionCall);
                }
            }
            Frontend::Terminate => return Ok(false),
        }
        Ok(true)
    }

    /// A simple `Query`: the steps judge it, then it goes to the server as sent (or as a
    /// component rewrote it).
    async fn on_query(&mut self, msg: &[u8], sql: &[u8]) {
        let lossy;
        let sql = match std::str::from_utf8(sql) {
            Ok(s) => s,
            Err(_) if self.pipeline.has_statement_hooks() => {
                self.answer(Answer::Error(not_utf8()), Protocol::Simple);
                return;
            }
            // Nothing judges it: the server decides; the journal keeps a readable copy.
            Err(_) => {
                lossy = String::from_utf8_lossy(sql).into_owned();
                &lossy
            }
        };
        let mut rewritten = None;
        let mut facts = None;
        if !self.steps.is_empty() {
            let mut cx = self.statement_cx(sql, Protocol::Simple);
            if let Some(answer) = self.steps.on_statement(&mut cx).await {
                self.answer(answer, Protocol::Simple);
                return;
            }
            let route = cx.route;
            rewritten = cx.rewritten;
            facts = cx.facts;
            if let Some(node) = route {
                self.route_to = node;
            }
        }
        let effective = rewritten.as_deref().unwrap_or(sql);
        if let Some(e) = names_proxy_statement(effective) {
            self.answer(Answer::Error(e), Protocol::Simple);
            return;
        }
        let (stripped, channels) = match self.listen_simple(effective).await {
            ListenStep::Answered => return,
            ListenStep::Pass => (None, None),
            ListenStep::Mixed { server_sql, splice } => (Some(server_sql), Some(splice)),
        };
        let effective = stripped.as_deref().unwrap_or(effective);
        let capture = match rewritten {
            Some(_) => None,
            None if channels.is_some() => None,
            None => match self.cache_simple(effective, facts.as_ref()).await {
                CacheStep::Answered => return,
                CacheStep::Capture(c) => Some(c),
                CacheStep::Pass => None,
            },
        };
        let post = self.observe(effective, facts, None, Vec::new, capture, None);
        let effects = query_effects(effective);
        if self.attach(Protocol::Simple).await {
            self.note_cache_writes(effective);
            self.note_for_isolation(effective, crate::session::isolation::needs_check(effective));
            self.cursors.note(effective);
            let in_tx = self.status.in_transaction();
            if let Some(tx) = self.tx.as_deref_mut() {
                tx.note_statements(effective, in_tx);
            }
            match (&rewritten, &stripped) {
                (_, Some(server_sql)) => messages::query(&mut self.sout, server_sql),
                (Some(new_sql), None) => messages::query(&mut self.sout, new_sql),
                (None, None) => self.sout.extend_from_slice(msg),
            }
            let channels = channels.map(|mut splice| {
                let mut leading = Vec::new();
                splice.leading(&mut leading);
                if !leading.is_empty() {
                    self.queue.push_synthetic(Synthetic::Raw(leading));
                }
                splice
            });
            self.queue.push(Expect::Query {
                effects,
                post,
                channels,
            });
            self.capture_xid();
        }
    }

    /// A `Parse`: judged by the steps, then recorded under the client's name. Between
    /// transactions it needs no server: it is prepared on whichever connection first binds
    /// or describes it (clients that prepare with a blocking call, like pgbench -M prepared,
    /// would otherwise wait for a server another of their own connections holds).
    async fn on_parse(&mut self, parse: ParseRef<'_>) {
        let mut rewritten = None;
        let mut cache_ttl_ms = 0;
        if !self.steps.is_empty() {
            let lossy;
            let sql = match std::str::from_utf8(parse.query) {
                Ok(s) => s,
                Err(_) if self.pipeline.has_statement_hooks() => {
                    self.answer(Answer::Error(not_utf8()), Protocol::Extended);
                    return;
                }
                // Only the statement-mode guard looks, and only at the leading keyword.
                Err(_) => {
                    lossy = String::from_utf8_lossy(parse.query).into_owned();
                    &lossy
                }
            };
            let mut cx = self.statement_cx(sql, Protocol::Extended);
            match self.steps.on_statement(&mut cx).await {
                None => {
                    cache_ttl_ms = cx.facts.as_ref().map_or(0, |f| {
                        f.cache_ttl_ms.load(std::sync::atomic::Ordering::Relaxed)
                    });
                    rewritten = cx.rewritten;
                }
                Some(Answer::Rows(result)) => {
                    // A component answered: the proxy serves this statement's portals.
                    let served = Served::new(parse.param_types, result);
                    self.stmts.serve(parse.name, served);
                    self.queue.push_synthetic(Synthetic::ParseComplete);
                    return;
                }
                Some(answer) => {
                    self.answer(answer, Protocol::Extended);
                    return;
                }
            }
        }
        // A lossy copy keeps the check on text in another client encoding (names are ASCII).
        let text = rewritten.as_deref().map_or(parse.query, str::as_bytes);
        if let Some(e) = names_proxy_statement(&String::from_utf8_lossy(text)) {
            self.answer(Answer::Error(e), Protocol::Extended);
            return;
        }
        if self.listen_parse(&parse).await {
            return;
        }
        let parse = match &rewritten {
            Some(q) => ParseRef {
                name: parse.name,
                query: q.as_bytes(),
                param_types: parse.param_types,
            },
            None => parse,
        };
        let prepared = self.stmts.define(&parse, self.state.analysis_salt());
        prepared.cache_ttl_ms.store(
            if rewritten.is_some() { 0 } else { cache_ttl_ms },
            std::sync::atomic::Ordering::Relaxed,
        );
        // Text PostgreSQL's grammar rejects goes to a server now: its error belongs to the
        // `Parse` (psql's `\gdesc` points into the query only then).
        if self.server.is_none() && !prepared.parses() && !self.attach(Protocol::Extended).await {
            return;
        }
        // A `Parse` is analysed afresh: server copies from before a schema change do not
        // answer for it.
        let epoch = self.env.pools.statement_epoch.current();
        prepared
            .parsed_epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
        if self.server.is_some() && self.prepare_on_server(&prepared, epoch, false) {
            self.batch_open = true;
        } else {
            self.queue.push_synthetic(Synthetic::ParseComplete);
        }
    }

    /// A `Bind`: renamed to the server's statement, which is prepared first when the server
    /// lacks it.
    async fn on_bind(&mut self, msg: &[u8], bind: BindRef<'_>) {
        if let Some(served) = self.stmts.served(bind.statement) {
            let portal = ServedPortal::new(bind.portal, served.clone(), bind.result_formats());
            self.portals.bind_served(portal);
            self.queue
                .push_synthetic(Synthetic::Raw(results::BIND_COMPLETE.to_vec()));
            return;
        }
        let prepared = self.stmts.get(bind.statement).cloned();
        if prepared.is_none() && !self.sql_prepared(bind.statement) {
            self.portals.close(bind.portal);
            self.refuse(
                SqlError::unknown_statement(bind.statement),
                Protocol::Extended,
            );
            return;
        }
        if let Some(p) = &prepared
            && !self.bind_steps(p).await
        {
            return;
        }
        if let Some(p) = &prepared
            && self.cache_bind(&bind, p).await
        {
            return;
        }
        if !self.attach(Protocol::Extended).await {
            return;
        }
        if let Some(p) = &prepared
            && !self.prepared_as_described(p).await
        {
            self.portals.close(bind.portal);
            self.refuse(SqlError::stale_plan(), Protocol::Extended);
            return;
        }
        match prepared {
            Some(p) => {
                self.note_cache_writes(p.sql());
                // The journal and a shadow run need the bound parameters.
                let journal = self.env.journal.is_some() || self.env.shadow.active();
                // Analytics and the result cache watch the portal's `Execute` too.
                let observed = journal
                    || self.pipeline.has_post_query()
                    || self.env.analytics.is_some()
                    || self.env.cache.is_some();
                self.portals.bind(bind.portal, &p, observed, || {
                    journal.then(|| {
                        let (formats, values) = bind.params();
                        let values = values.into_iter().map(|v| v.map(<[u8]>::to_vec));
                        BoundParams {
                            formats,
                            values: values.collect(),
                            result_formats: bind.result_formats(),
                        }
                    })
                });
                self.note_for_isolation(p.sql(), p.needs_check);
                self.cursors.note(p.sql());
                let in_tx = self.status.in_transaction();
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.note_kinds(p.replay_kinds(), in_tx);
                }
                self.ensure_prepared(&p);
                bind.encode_renamed(&mut self.sout, &p.server_name);
            }
            // A SQL-level `PREPARE`d statement, which the server has under that name.
            None => {
                self.portals.close(bind.portal);
                self.sout.extend_from_slice(msg);
            }
        }
        self.batch_open = true;
        self.queue.push(Expect::Bind);
    }

    /// A `Describe` of a statement (renamed, prepared first when needed) or a portal.
    async fn on_describe(&mut self, msg: &[u8], target: TargetRef<'_>) {
        let mut served = Vec::new();
        if target.kind == b'S'
            && let Some(stmt) = self.stmts.served(target.name)
        {
            stmt.describe(&mut served);
        } else if target.kind == b'P'
            && let Some(portal) = self.portals.served_mut(target.name)
        {
            portal.describe(&mut served);
        }
        if !served.is_empty() {
            self.queue.push_synthetic(Synthetic::Raw(served));
            return;
        }
        let prepared = (target.kind == b'S')
            .then(|| self.stmts.get(target.name).cloned())
            .flatten();
        if target.kind == b'S' && prepared.is_none() && !self.sql_prepared(target.name) {
            self.refuse(SqlError::unknown_statement(target.name), Protocol::Extended);
            return;
        }
        if let Some(p) = &prepared
            && self.cached_description(p)
        {
            return;
        }
        if let Some(p) = &prepared
            && !self.bind_steps(p).await
        {
            return;
        }
        if self.attach(Protocol::Extended).await {
            let (columns_of, statement) = match prepared {
                Some(p) => {
                    self.note_describe(&p);
                    self.ensure_prepared(&p);
                    target.encode_renamed(&mut self.sout, b'D', &p.server_name);
                    ((self.pipeline.rows_limit() > 0).then(|| p.clone()), Some(p))
                }
                None => {
                    if target.kind == b'P' {
                        self.note_portal_describe(target.name);
                    }
                    self.sout.extend_from_slice(msg);
                    (None, None)
                }
            };
            self.batch_open = true;
            self.queue.push(Expect::Describe {
                columns_of,
                statement,
            });
        }
    }

    /// An `Execute`: forwarded, with its portal's session-state effect and observers.
    async fn on_execute(&mut self, msg: &[u8], portal: &[u8], max_rows: i32) {
        if let Some(served) = self.portals.served_mut(portal) {
            let mut out = Vec::new();
            served.execute(max_rows, &mut out);
            self.queue.push_synthetic(Synthetic::Raw(out));
            return;
        }
        let capture = self.take_capture(portal, max_rows);
        let (effect, post) = match self.portals.get(portal) {
            Some(p) => {
                let stmt = p.stmt.clone();
                let params = p.params.clone();
                let post = self.observe(
                    stmt.sql(),
                    None,
                    params,
                    || stmt.columns(),
                    capture,
                    Some(&stmt.stats_entry),
                );
                (stmt.effect.clone(), post)
            }
            None => (None, None),
        };
        if self.attach(Protocol::Extended).await {
            self.sout.extend_from_slice(msg);
            self.batch_open = true;
            self.queue.push(Expect::Execute { effect, post });
        }
    }

    /// A `Close`: statements are the client's names for shared server statements, so only
    /// the name goes; portals are closed on the server.
    async fn on_close(&mut self, msg: &[u8], target: TargetRef<'_>) {
        if target.kind == b'S' {
            self.stmts.remove(target.name);
            self.queue.push_synthetic(Synthetic::CloseComplete);
        } else if self.portals.close(target.name) {
            self.queue.push_synthetic(Synthetic::CloseComplete);
        } else if self.attach(Protocol::Extended).await {
            self.sout.extend_from_slice(msg);
            self.batch_open = true;
            self.queue.push(Expect::Close { hidden: false });
        }
    }

    /// A `Sync`: answered by the proxy when no server is attached.
    fn on_sync(&mut self, msg: &[u8]) {
        if self.server.is_none() {
            self.queue.push_synthetic(Synthetic::ReadyForQuery);
        } else {
            self.sout.extend_from_slice(msg);
            if !self.syncs_ignored_in_copy {
                self.batch_open = false;
                self.queue.push(Expect::Sync);
                self.capture_xid();
            }
        }
    }

    /// The `Sync` that ends a batch the proxy refused part of: the server's batch was failed
    /// too when one is attached, and its `ReadyForQuery` tells the transaction's state.
    fn on_sync_after_error(&mut self, msg: &[u8]) {
        self.skip_until_sync = false;
        if self.server.is_some() {
            self.on_sync(msg);
        } else {
            self.queue.push_synthetic(Synthetic::ReadyForQuery);
        }
    }

    /// What the steps see of a statement the client sent.
    fn statement_cx<'a>(&'a self, sql: &'a str, protocol: Protocol) -> StatementCx<'a> {
        StatementCx {
            sql,
            protocol,
            in_transaction: self.status.in_transaction(),
            attached: self.server.is_some(),
            info: &self.info,
            rewritten: None,
            facts: None,
            route: None,
            session: Some(&self.state),
        }
    }

    /// Runs the steps' bind phase for a statement that may start a checkout; `false` when
    /// the client was answered instead.
    async fn bind_steps(&mut self, p: &Prepared) -> bool {
        if self.server.is_some() || self.steps.is_empty() {
            return true;
        }
        let mut cx = BindCx {
            stmt: p,
            in_transaction: self.status.in_transaction(),
            attached: false,
            info: &self.info,
            route: None,
        };
        match self.steps.on_bind(&mut cx).await {
            None => {
                if let Some(node) = cx.route {
                    self.route_to = node;
                }
                true
            }
            Some(answer) => {
                self.answer(answer, Protocol::Extended);
                false
            }
        }
    }

    /// Whether `name` is one of the client's SQL-level `PREPARE`d statements (which a `Bind`
    /// may name too).
    fn sql_prepared(&self, name: &[u8]) -> bool {
        std::str::from_utf8(name)
            .is_ok_and(|n| !n.is_empty() && self.state.prepare_text(n).is_some())
    }
}
