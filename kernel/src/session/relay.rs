//! The query loop of one client session.
//!
//! Client messages are forwarded to a server connection borrowed from the pool when the first
//! message that needs one arrives; in transaction and statement mode the connection goes back
//! as soon as the server reports `ReadyForQuery` idle with nothing outstanding. A queue of
//! expected responses, in the order the server will send them, lets the relay answer some
//! messages itself (`ParseComplete` for statements the server already has, `CloseComplete`,
//! errors) at exactly the position the client expects them, and hide the responses to
//! messages the proxy injected. Server bytes that need no change are forwarded untouched.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::login::LoggedIn;
use super::state::{Effect, PRISTINE, SessionState};
use super::statements::{ClientStatements, Prepared};
use super::{SessionError, fatal};
use crate::config::PoolMode;
use crate::hooks::SessionInfo;
use crate::hooks::{self, Pipeline, PreQuery, Route};
use crate::plugins::bindings::Statement;
use crate::pool::{Checkout, CheckoutError, Pool, PoolKey};
use crate::server::Shared;
use crate::sql::{opens_transaction, session_effect, split_statements};
use crate::topology::Role;
use crate::wire::WireError;
use crate::wire::frame::peek_header;
use crate::wire::frontend::{self, Frontend};
use crate::wire::messages::ParseRef;
use crate::wire::messages::{self, sqlstate};
use crate::wire::stream::Stream;

use super::cancel::Registration;
use super::cursors::Cursors;
use super::replay::{self, TxLog};
use crate::journal::Record;
use crate::pool::server::MAX_SERVER_MESSAGE;

/// What the server will answer to a message already sent (or what the relay answers itself).
#[derive(Debug)]
enum Expect {
    /// `ParseComplete`; hidden from the client when the proxy injected the `Parse`.
    Parse { hidden: bool, hash: u64 },
    /// `BindComplete`.
    Bind,
    /// `ParameterDescription` then `RowDescription` or `NoData`.
    Describe,
    /// Rows then `CommandComplete`, `EmptyQueryResponse` or `PortalSuspended`.
    Execute {
        effect: Option<Effect>,
        post: Option<Box<PostCtx>>,
    },
    /// `CloseComplete`.
    Close,
    /// `ReadyForQuery` after an extended-protocol batch.
    Sync,
    /// Everything up to `ReadyForQuery` for a simple query; the session-state effect of each
    /// statement in order, when any statement has one.
    Query {
        effects: Option<VecDeque<Option<Effect>>>,
        post: Option<Box<PostCtx>>,
    },
    /// `FunctionCallResponse` then `ReadyForQuery`.
    FunctionCall,
    /// A message the proxy sends itself when this position is reached.
    Synthetic(Synthetic),
    /// Where the client ended a COPY (`CopyDone`/`CopyFail`); no response of its own.
    CopyEnd,
    /// The answer to the hidden `txid_current_if_assigned()` sent before a `COMMIT`.
    Xid,
}

#[derive(Debug)]
enum Synthetic {
    ParseComplete,
    CloseComplete,
    ReadyForQuery,
    Error(String, String),
    /// Pre-encoded messages (a component's result set).
    Raw(Vec<u8>),
}

/// The session's query loop and everything it owns.
pub struct Relay {
    shared: Arc<Shared>,
    /// The pool of the attached server (or the primary's when none is attached).
    pool: Arc<Pool>,
    /// Pools per node for this session's database and role, created on first use.
    node_pools: Vec<Option<Arc<Pool>>>,
    /// The node the next checkout goes to.
    route_to: usize,
    server_user: String,
    server_password: Option<String>,
    pipeline: Arc<Pipeline>,
    info: Arc<SessionInfo>,
    /// Statements bound to portals, kept only when PostQuery hooks need them.
    /// Statements (and, with the journal on, parameters) bound to portals, kept only when
    /// PostQuery hooks or the journal need them.
    portal_stmts: Vec<PortalStmt>,
    mode: PoolMode,
    client: Stream,
    cbuf: BytesMut,
    cout: Vec<u8>,
    server: Option<Checkout>,
    sout: Vec<u8>,
    queue: VecDeque<Expect>,
    stmts: ClientStatements,
    state: SessionState,
    status: u8,
    in_copy: bool,
    skip_until_sync: bool,
    /// The server is in COPY IN started by `Execute`: it ignores `Sync` until the copy ends.
    syncs_ignored_in_copy: bool,
    rollback_after_flush: bool,
    cancel: Registration,
    max_message: usize,
    /// The open transaction's log, when transaction replay is on.
    tx: Option<Box<TxLog>>,
    /// Cursors declared `WITH HOLD`.
    cursors: Cursors,
    /// The server holding the cursors was lost: re-create them on the next one.
    restore_cursors: bool,
    /// A re-sent `COMMIT` or `ROLLBACK` runs outside a transaction: hide the server's
    /// "there is no transaction in progress" warning until the next `ReadyForQuery`.
    hide_no_tx_warning: bool,
    /// Transactions this session started (journal transaction ids).
    transactions: u64,
    /// The topology generation when the attached server was checked out.
    attached_generation: u64,
}

/// What PostQuery and the journal need about a statement in flight.
#[derive(Debug)]
struct PostCtx {
    /// Facts for PostQuery hooks, when any component has one.
    stmt: Option<Arc<Statement>>,
    started: Instant,
    tag: String,
    error: Option<(String, String)>,
    /// What the journal records, when it is on.
    journal: Option<Box<JournalEntry>>,
}

/// A journal record being filled in while its statement runs.
#[derive(Debug)]
struct JournalEntry {
    sql: String,
    param_formats: Vec<i16>,
    params: Vec<Option<Vec<u8>>>,
    started_at_us: u64,
    transaction_id: u64,
    rows: u64,
    crc: crc32fast::Hasher,
}

/// Parameters bound to a portal, for the journal.
type BoundParams = (Vec<i16>, Vec<Option<Vec<u8>>>);

/// A portal's name, statement and (for the journal) parameters.
type PortalStmt = (Box<[u8]>, Arc<Prepared>, Option<BoundParams>);

enum Event {
    Client(std::io::Result<usize>),
    Server(std::io::Result<usize>),
}

const READ_CHUNK: usize = 16 * 1024;

impl Relay {
    /// Prepares the loop for a client that passed login.
    pub fn new(shared: Arc<Shared>, login: LoggedIn) -> Self {
        let mut cbuf = login.leftover;
        cbuf.reserve(READ_CHUNK);
        let primary = shared.topology.primary();
        let mut node_pools = vec![None; shared.topology.nodes.len()];
        let shared_config_ha = shared.config.ha.clone();
        node_pools[primary] = Some(login.pool.clone());
        Relay {
            mode: shared.config.pool.mode,
            max_message: shared.config.limits.max_client_message_bytes,
            pipeline: shared.pipeline.load_full(),
            shared,
            pool: login.pool,
            node_pools,
            route_to: primary,
            server_user: login.server_user,
            server_password: login.server_password,
            info: login.info,
            portal_stmts: Vec::new(),
            client: login.stream,
            cbuf,
            cout: Vec::with_capacity(READ_CHUNK),
            server: None,
            sout: Vec::with_capacity(1024),
            queue: VecDeque::with_capacity(16),
            stmts: ClientStatements::default(),
            state: login.state,
            status: b'I',
            in_copy: false,
            skip_until_sync: false,
            syncs_ignored_in_copy: false,
            rollback_after_flush: false,
            cancel: login.cancel,
            tx: shared_tx_log(&shared_config_ha),
            cursors: Cursors::default(),
            restore_cursors: false,
            hide_no_tx_warning: false,
            transactions: 0,
            attached_generation: 0,
        }
    }

    /// Runs until the client leaves; the server connection is cleaned up and returned.
    pub async fn run(mut self) -> Result<(), SessionError> {
        let result = self.serve().await;
        self.finish().await;
        result
    }

    async fn serve(&mut self) -> Result<(), SessionError> {
        if !self.cbuf.is_empty() && !self.on_client_data().await? {
            return Ok(());
        }
        loop {
            if self.cbuf.capacity() - self.cbuf.len() < 1024 {
                self.cbuf.reserve(READ_CHUNK);
            }
            let event = match self.server.as_mut() {
                Some(s) => {
                    let rbuf = &mut s.conn.rbuf;
                    if rbuf.capacity() - rbuf.len() < 1024 {
                        rbuf.reserve(READ_CHUNK);
                    }
                    tokio::select! {
                        r = s.conn.stream.read_buf(rbuf) => Event::Server(r),
                        r = self.client.read_buf(&mut self.cbuf) => Event::Client(r),
                    }
                }
                None => Event::Client(self.client.read_buf(&mut self.cbuf).await),
            };
            match event {
                Event::Client(Ok(0)) => return Ok(()),
                Event::Client(Ok(_)) => {
                    if !self.on_client_data().await? {
                        return Ok(());
                    }
                }
                Event::Client(Err(e)) => return Err(e.into()),
                Event::Server(Ok(0)) => self.server_lost("server closed the connection").await?,
                Event::Server(Err(e)) => self.server_lost(&e.to_string()).await?,
                Event::Server(Ok(_)) => self.on_server_data().await?,
            }
        }
    }

    // ----- client → server -------------------------------------------------------------

    /// Handles every complete client message; returns `false` when the client terminated.
    async fn on_client_data(&mut self) -> Result<bool, SessionError> {
        if self.server.is_some() && self.shared.topology.generation() != self.attached_generation {
            self.leave_fenced_server().await?;
        }
        // Pick up reloaded components between batches; a statement in flight keeps its own.
        if self.queue.is_empty() {
            let current = self.shared.pipeline.load();
            if !Arc::ptr_eq(&self.pipeline, &current) {
                self.pipeline = Arc::clone(&current);
            }
        }
        let mut buf = std::mem::take(&mut self.cbuf);
        let mut pos = 0;
        let mut keep_going = true;
        loop {
            let header = match peek_header(&buf[pos..], self.max_message) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    let code = match e {
                        WireError::TooLarge { .. } => sqlstate::PROGRAM_LIMIT_EXCEEDED,
                        _ => sqlstate::PROTOCOL_VIOLATION,
                    };
                    self.flush_client().await?;
                    fatal(
                        &mut self.client,
                        code,
                        &format!("invalid message from client: {e}"),
                    )
                    .await;
                    return Err(SessionError::Protocol(e.to_string()));
                }
            };
            if buf.len() - pos < header.total {
                buf.reserve(header.total - (buf.len() - pos));
                break;
            }
            let msg = &buf[pos..pos + header.total];
            pos += header.total;
            match self.on_client_message(header.tag, msg).await {
                Ok(true) => {}
                Ok(false) => {
                    keep_going = false;
                    break;
                }
                Err(e) => {
                    self.flush_client().await?;
                    fatal(
                        &mut self.client,
                        sqlstate::PROTOCOL_VIOLATION,
                        &e.to_string(),
                    )
                    .await;
                    return Err(e);
                }
            }
            self.emit_synthetics();
        }
        buf.advance(pos);
        self.cbuf = buf;
        self.flush_server().await?;
        self.flush_client().await?;
        self.maybe_release().await;
        Ok(keep_going)
    }

    /// Handles one client message; `Ok(false)` on `Terminate`.
    async fn on_client_message(&mut self, tag: u8, msg: &[u8]) -> Result<bool, SessionError> {
        tracing::trace!(tag = %(tag as char), len = msg.len(), "client message");
        let decoded =
            frontend::parse(tag, &msg[5..]).map_err(|e| SessionError::Protocol(e.to_string()))?;
        if self.skip_until_sync {
            match decoded {
                Frontend::Sync => {
                    self.skip_until_sync = false;
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
                }
                Frontend::Terminate => return Ok(false),
                _ => {}
            }
            return Ok(true);
        }
        match decoded {
            Frontend::Query(sql) => {
                let sql = std::str::from_utf8(sql).unwrap_or("");
                if self.mode == PoolMode::Statement && opens_transaction(sql) {
                    self.refuse_in_statement_mode();
                    return Ok(true);
                }
                let mut rewritten = None;
                let mut post = None;
                if self.pipeline.has_statement_hooks() {
                    let pipeline = self.pipeline.clone();
                    let (decision, stmt) =
                        pipeline.pre_query_and_validate(&self.info, self.status != b'I', sql);
                    match decision {
                        PreQuery::Proceed(rw) => rewritten = rw,
                        PreQuery::Block(r) => {
                            self.refuse(r.code, r.message, true);
                            return Ok(true);
                        }
                        PreQuery::Respond(rows) => {
                            let mut out = Vec::new();
                            hooks::encode_result_set(&mut out, &rows);
                            self.queue.push_back(Expect::Synthetic(Synthetic::Raw(out)));
                            self.queue
                                .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
                            return Ok(true);
                        }
                    }
                    if !self.route(&stmt, true) {
                        return Ok(true);
                    }
                    if pipeline.has_post_query() {
                        post = Some(PostCtx::new(Some(stmt)));
                    }
                }
                let effective = rewritten.as_deref().unwrap_or(sql);
                let effects = query_effects(effective);
                if self.shared.journal.is_some() {
                    let entry = self.journal_entry(effective, None);
                    post.get_or_insert_with(|| PostCtx::new(None)).journal = Some(entry);
                }
                if self.attach(true).await {
                    self.cursors.note(effective);
                    let in_tx = self.status != b'I';
                    if let Some(tx) = self.tx.as_deref_mut() {
                        tx.note_statements(effective, in_tx);
                    }
                    match &rewritten {
                        Some(new_sql) => messages::query(&mut self.sout, new_sql),
                        None => self.sout.extend_from_slice(msg),
                    }
                    self.queue.push_back(Expect::Query { effects, post });
                    self.capture_xid();
                }
            }
            Frontend::Parse(parse) => {
                let mut rewritten = None;
                if self.pipeline.has_pre_query_or_validate() {
                    let pipeline = self.pipeline.clone();
                    let sql = std::str::from_utf8(parse.query).unwrap_or("");
                    match pipeline
                        .pre_query_and_validate(&self.info, self.status != b'I', sql)
                        .0
                    {
                        PreQuery::Proceed(rw) => rewritten = rw,
                        PreQuery::Block(r) => {
                            self.refuse(r.code, r.message, false);
                            return Ok(true);
                        }
                        PreQuery::Respond(_) => {
                            self.refuse(
                                sqlstate::FEATURE_NOT_SUPPORTED.into(),
                                "a component answered this statement itself, which needs the simple query protocol".into(),
                                false,
                            );
                            return Ok(true);
                        }
                    }
                }
                let parse = match &rewritten {
                    Some(q) => ParseRef {
                        name: parse.name,
                        query: q.as_bytes(),
                        param_types: parse.param_types,
                    },
                    None => parse,
                };
                let prepared = self.stmts.define(&parse);
                // Between transactions a Parse needs no server: it is prepared on whichever
                // connection first binds or describes it. Clients that prepare with a
                // blocking call (pgbench -M prepared) would otherwise wait for a server that
                // another of their own connections holds.
                if let Some(checkout) = self.server.as_mut() {
                    let server = &mut checkout.conn;
                    if server.prepared.contains(&prepared.hash) {
                        self.queue
                            .push_back(Expect::Synthetic(Synthetic::ParseComplete));
                    } else {
                        prepared.encode_parse(&mut self.sout);
                        server.prepared.insert(prepared.hash);
                        self.queue.push_back(Expect::Parse {
                            hidden: false,
                            hash: prepared.hash,
                        });
                    }
                } else {
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::ParseComplete));
                }
            }
            Frontend::Bind(bind) => {
                let prepared = self.stmts.get(bind.statement).cloned();
                if let Some(p) = &prepared
                    && !self.route_prepared(p)
                {
                    return Ok(true);
                }
                if self.attach(false).await {
                    let journal = self.shared.journal.is_some();
                    if (journal || self.pipeline.has_post_query())
                        && let Some(p) = &prepared
                    {
                        let params = journal.then(|| {
                            let (formats, values) = bind.params();
                            let values = values.into_iter().map(|v| v.map(<[u8]>::to_vec));
                            (formats, values.collect())
                        });
                        self.portal_stmts
                            .retain(|(name, _, _)| **name != *bind.portal);
                        self.portal_stmts
                            .push((bind.portal.into(), p.clone(), params));
                    }
                    if let Some(p) = &prepared {
                        self.cursors.note(p.sql());
                        let in_tx = self.status != b'I';
                        if let Some(tx) = self.tx.as_deref_mut() {
                            tx.note_kinds(p.replay_kinds(), in_tx);
                        }
                    }
                    match prepared {
                        Some(p) => {
                            self.ensure_prepared(&p);
                            bind.encode_renamed(&mut self.sout, &p.server_name);
                            self.stmts.bind_portal(bind.portal, &p);
                        }
                        // Unknown to us: let the server report it in its own words.
                        None => self.sout.extend_from_slice(msg),
                    }
                    self.queue.push_back(Expect::Bind);
                }
            }
            Frontend::Describe(target) => {
                let prepared = (target.kind == b'S')
                    .then(|| self.stmts.get(target.name).cloned())
                    .flatten();
                if let Some(p) = &prepared
                    && !self.route_prepared(p)
                {
                    return Ok(true);
                }
                if self.attach(false).await {
                    match prepared {
                        Some(p) => {
                            self.ensure_prepared(&p);
                            target.encode_renamed(&mut self.sout, b'D', &p.server_name);
                        }
                        None => self.sout.extend_from_slice(msg),
                    }
                    self.queue.push_back(Expect::Describe);
                }
            }
            Frontend::Execute { portal } => {
                let effect = self.stmts.portal_effect(portal);
                let post = self.execute_post_ctx(portal);
                if self.attach(false).await {
                    self.sout.extend_from_slice(msg);
                    self.queue.push_back(Expect::Execute { effect, post });
                }
            }
            Frontend::Close(target) => {
                if target.kind == b'S' {
                    // Server-side statements are shared and cached; only the client's name goes.
                    self.stmts.remove(target.name);
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::CloseComplete));
                } else if self.attach(false).await {
                    self.sout.extend_from_slice(msg);
                    self.queue.push_back(Expect::Close);
                }
            }
            Frontend::Sync => {
                if self.server.is_none() {
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
                } else {
                    self.sout.extend_from_slice(msg);
                    if !self.syncs_ignored_in_copy {
                        self.queue.push_back(Expect::Sync);
                        self.capture_xid();
                    }
                }
            }
            Frontend::CopyDone | Frontend::CopyFail => {
                if self.server.is_some() {
                    self.sout.extend_from_slice(msg);
                    if !std::mem::take(&mut self.syncs_ignored_in_copy) {
                        self.queue.push_back(Expect::CopyEnd);
                    }
                }
            }
            Frontend::Flush | Frontend::CopyData => {
                // Flush and COPY data only mean something to a server already in use.
                if self.server.is_some() {
                    self.sout.extend_from_slice(msg);
                }
            }
            Frontend::FunctionCall => {
                if self.attach(true).await {
                    self.sout.extend_from_slice(msg);
                    self.queue.push_back(Expect::FunctionCall);
                }
            }
            Frontend::Terminate => return Ok(false),
        }
        Ok(true)
    }

    /// The PostQuery/journal context of an `Execute` of `portal`.
    fn execute_post_ctx(&self, portal: &[u8]) -> Option<Box<PostCtx>> {
        let (_, p, params) = self
            .portal_stmts
            .iter()
            .find(|(name, _, _)| **name == *portal)?;
        let mut ctx = PostCtx::new(
            self.pipeline
                .has_post_query()
                .then(|| hooks::statement(p.sql())),
        );
        if self.shared.journal.is_some() {
            ctx.journal = Some(self.journal_entry(p.sql(), params.clone()));
        }
        Some(ctx)
    }

    fn journal_entry(&self, sql: &str, params: Option<BoundParams>) -> Box<JournalEntry> {
        let (param_formats, params) = params.unwrap_or_default();
        Box::new(JournalEntry {
            sql: sql.to_owned(),
            param_formats,
            params,
            started_at_us: crate::journal::unix_us(std::time::SystemTime::now()),
            transaction_id: if self.status != b'I' {
                self.transactions
            } else {
                0
            },
            rows: 0,
            crc: crc32fast::Hasher::new(),
        })
    }

    /// After the first request batch of a transaction that wrote, reads the transaction id
    /// with a hidden query in the same round trip, so that if the server is lost during the
    /// `COMMIT`, `txid_status` on the new primary tells whether it committed.
    fn capture_xid(&mut self) {
        if let Some(tx) = self.tx.as_deref_mut()
            && tx.wants_xid()
            && let Some(server) = self.server.as_mut()
        {
            tx.xid_pending = true;
            let prepare = server.conn.prepared.insert(replay::XID_HASH);
            replay::encode_xid_request(&mut self.sout, prepare);
            self.queue.push_back(Expect::Xid);
        }
    }

    /// Handles the answer to the hidden transaction-id query; the client sees none of it.
    fn on_xid_message(&mut self, tag: u8, body: &[u8]) -> bool {
        match tag {
            b'D' => {
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.xid = Some(first_column_i64(body));
                    tx.xid_generation = self.shared.topology.generation();
                }
            }
            b'E' => {
                if let Some(s) = self.server.as_mut() {
                    s.conn.prepared.remove(&replay::XID_HASH);
                }
            }
            b'Z' => {
                self.queue.pop_front();
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.xid_pending = false;
                    tx.injected_answered();
                }
            }
            _ => {}
        }
        false
    }

    fn refuse_in_statement_mode(&mut self) {
        self.refuse(
            sqlstate::FEATURE_NOT_SUPPORTED.into(),
            "transaction blocks are not allowed in statement pooling mode".into(),
            true,
        );
    }

    /// Answers the current message with an error: at once with `ReadyForQuery` for a simple
    /// query (`ends_batch`), else skipping the rest of the batch up to `Sync`.
    fn refuse(&mut self, code: String, message: String, ends_batch: bool) {
        self.queue
            .push_back(Expect::Synthetic(Synthetic::Error(code, message)));
        if ends_batch {
            self.queue
                .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
        } else {
            self.skip_until_sync = true;
        }
    }

    /// Runs Route for a statement that will start a checkout; `false` when it was refused
    /// (the client has been answered).
    fn route(&mut self, stmt: &Arc<Statement>, ends_batch: bool) -> bool {
        if self.server.is_some() || !self.pipeline.has_route() {
            return true;
        }
        let topology = self.shared.topology.clone();
        let node = match self.pipeline.route(&self.info, self.status != b'I', stmt) {
            Route::Default | Route::Primary => topology.primary(),
            Route::Replica => topology.any_replica().unwrap_or(topology.primary()),
            Route::Node(name) => match topology.by_name(&name) {
                Some(n) => n,
                None => {
                    self.refuse(
                        sqlstate::CANNOT_CONNECT.into(),
                        format!("routing chose node \"{name}\", which is not configured"),
                        ends_batch,
                    );
                    return false;
                }
            },
            Route::Tag(tag) => topology.by_tag(&tag).unwrap_or(topology.primary()),
            Route::Block(r) => {
                self.refuse(r.code, r.message, ends_batch);
                return false;
            }
        };
        self.route_to = node;
        true
    }

    fn route_prepared(&mut self, p: &Prepared) -> bool {
        if self.server.is_some() || !self.pipeline.has_route() {
            return true;
        }
        let stmt = hooks::statement(p.sql());
        self.route(&stmt, false)
    }

    /// The session's pool on `node`.
    fn pool_for(&mut self, node: usize) -> Arc<Pool> {
        if let Some(p) = &self.node_pools[node] {
            return p.clone();
        }
        let target = &self.shared.topology.nodes[node].target;
        let key = PoolKey {
            node: target.node.clone(),
            database: self.pool.key.database.clone(),
            user: self.server_user.clone(),
        };
        let pool = self
            .shared
            .pools
            .get_or_create(key, target, self.server_password.clone());
        self.node_pools[node] = Some(pool.clone());
        pool
    }

    /// Makes sure the attached server has `p`, injecting a hidden `Parse` when it lacks it.
    fn ensure_prepared(&mut self, p: &Prepared) {
        let server = &mut self.server.as_mut().expect("attached").conn;
        if server.prepared.insert(p.hash) {
            p.encode_parse(&mut self.sout);
            self.queue.push_back(Expect::Parse {
                hidden: true,
                hash: p.hash,
            });
        }
    }

    /// Borrows a server connection when none is attached. On failure the client is told, and
    /// the rest of its batch is skipped up to `Sync` (`ends_batch` for simple queries, which
    /// get their `ReadyForQuery` at once). Returns whether a server is attached.
    async fn attach(&mut self, ends_batch: bool) -> bool {
        if self.server.is_some() {
            return true;
        }
        let topology = self.shared.topology.clone();
        if topology.switching()
            && let Err(e) = topology.wait_for_switch().await
        {
            self.checkout_failed(sqlstate::CONNECTION_FAILURE, e.to_string(), ends_batch);
            return false;
        }
        let mut node = std::mem::replace(&mut self.route_to, topology.primary());
        if topology.nodes[node].role() == Role::Fenced {
            node = topology.primary();
        }
        let mut waited_for_failover = false;
        if node == topology.primary()
            && topology.nodes[node].is_down()
            && topology.can_wait_for_failover()
        {
            // Known down: wait (bounded) for a new primary instead of trying it.
            waited_for_failover = true;
            match replacement_primary(&topology, node).await {
                Ok(primary) => node = primary,
                Err(e) => {
                    self.checkout_failed(sqlstate::CONNECTION_FAILURE, e.to_string(), ends_batch);
                    return false;
                }
            }
        }
        loop {
            let admitted = topology.nodes[node].breaker.try_admit();
            if !admitted && node != topology.primary() {
                // Reads fall back to the primary while a replica's breaker is open.
                node = topology.primary();
                continue;
            }
            self.pool = self.pool_for(node);
            let result = if admitted {
                self.checkout().await
            } else {
                Err(CheckoutError::Connect(crate::pool::ServerError::Protocol {
                    node: topology.nodes[node].name().to_owned(),
                    what: "circuit breaker open after repeated failures".into(),
                }))
            };
            match result {
                Ok(checkout) => {
                    topology.nodes[node].mark_healthy();
                    self.cancel
                        .slot
                        .attach(&checkout.conn.target, checkout.conn.key);
                    self.server = Some(checkout);
                    self.attached_generation = topology.generation();
                    return true;
                }
                Err(e) => {
                    let connect_failed = matches!(e, CheckoutError::Connect(_));
                    if connect_failed && admitted {
                        topology.nodes[node].mark_unhealthy();
                    }
                    // The primary is gone: wait (bounded) for the failover instead of failing.
                    if connect_failed
                        && !waited_for_failover
                        && node == topology.primary()
                        && topology.can_wait_for_failover()
                    {
                        waited_for_failover = true;
                        if let Ok(primary) = replacement_primary(&topology, node).await {
                            node = primary;
                            continue;
                        }
                    }
                    let code = match &e {
                        CheckoutError::Exhausted { .. } => sqlstate::TOO_MANY_CONNECTIONS,
                        CheckoutError::Connect(_) => sqlstate::CANNOT_CONNECT,
                    };
                    tracing::warn!(pool = ?self.pool.key, "checkout failed: {e}");
                    self.checkout_failed(code, e.to_string(), ends_batch);
                    return false;
                }
            }
        }
    }

    /// The primary changed while this session kept its server (a held cursor, session mode,
    /// an open transaction): a server on the fenced old primary is given up and the session
    /// moves, so it neither reads stale data nor writes where the writes would be lost.
    async fn leave_fenced_server(&mut self) -> Result<(), SessionError> {
        let topology = self.shared.topology.clone();
        self.attached_generation = topology.generation();
        let fenced = topology
            .by_name(&self.pool.key.node)
            .is_some_and(|n| topology.nodes[n].role() == Role::Fenced);
        if fenced && self.tx.is_some() {
            self.server_lost("its primary was replaced").await?;
        }
        Ok(())
    }

    /// Tells the client its statement found no server.
    fn checkout_failed(&mut self, code: &str, message: String, ends_batch: bool) {
        self.queue
            .push_back(Expect::Synthetic(Synthetic::Error(code.into(), message)));
        if ends_batch {
            self.queue
                .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
        } else {
            self.skip_until_sync = true;
        }
    }

    /// Checks a connection out and brings it to this client's session state.
    async fn checkout(&mut self) -> Result<Checkout, CheckoutError> {
        let mut checkout = self.pool.checkout().await?;
        let conn = &mut checkout.conn;
        let limit = self.shared.config.pool.max_prepared_statements;
        let mut sql = String::new();
        let deallocate_all = conn.prepared.len() > limit;
        if deallocate_all {
            // Also drops SQL-level statements: this client's are prepared again below.
            sql.push_str("DEALLOCATE ALL;");
        }
        let stale = conn.state_hash != self.state.hash()
            || (deallocate_all && !self.state.prepared_names().is_empty());
        if stale {
            let server_prepares: &[String] = if deallocate_all {
                &[]
            } else {
                &conn.sql_prepared
            };
            sql.push_str(&self.state.restore_sql(conn.state_hash, server_prepares));
        }
        if self.restore_cursors {
            sql.push_str(&self.cursors.restore_sql());
        }
        if sql.is_empty() {
            return Ok(checkout);
        }
        match conn.run_internal(&sql).await {
            Ok((None, b'I')) => {
                if deallocate_all {
                    conn.prepared.clear();
                }
                conn.state_hash = self.state.hash();
                conn.sql_prepared = self.state.prepared_names();
                self.restore_cursors = false;
                Ok(checkout)
            }
            Ok((err, _)) => {
                // Could not bring the connection to this client's state; it must not be
                // reused by anyone with assumptions about it.
                let why = err
                    .map(|e| e.message)
                    .unwrap_or_else(|| "unexpected transaction state".into());
                tracing::warn!("restoring session state failed: {why}");
                self.pool.discard(checkout);
                Err(CheckoutError::Connect(crate::pool::ServerError::Protocol {
                    node: self.pool.key.node.clone(),
                    what: format!("restoring session state failed: {why}"),
                }))
            }
            Err(e) => {
                self.pool.discard(checkout);
                Err(e.into())
            }
        }
    }

    // ----- server → client -------------------------------------------------------------

    async fn on_server_data(&mut self) -> Result<(), SessionError> {
        if self.commit_ack_untrusted() {
            return self
                .server_lost("the primary is being replaced; its answer to a commit is not trusted")
                .await;
        }
        let mut buf = {
            let server = self.server.as_mut().expect("attached");
            std::mem::take(&mut server.conn.rbuf)
        };
        let mut pos = 0;
        // The run of forwarded bytes not yet copied: buf[run_start..pos].
        let mut run_start = 0;
        let mut protocol_error = None;
        loop {
            let header = match peek_header(&buf[pos..], MAX_SERVER_MESSAGE) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => {
                    protocol_error = Some(e);
                    break;
                }
            };
            if buf.len() - pos < header.total {
                buf.reserve(header.total - (buf.len() - pos));
                break;
            }
            let forward = self.on_server_message(header.tag, &buf[pos + 5..pos + header.total]);
            if !forward {
                self.cout.extend_from_slice(&buf[run_start..pos]);
                run_start = pos + header.total;
            }
            pos += header.total;
            if matches!(
                self.queue.front(),
                Some(Expect::Synthetic(_) | Expect::CopyEnd)
            ) || self.rollback_after_flush
            {
                self.cout.extend_from_slice(&buf[run_start..pos]);
                run_start = pos;
                self.emit_synthetics();
                if self.rollback_after_flush {
                    self.replace_ready_in_statement_mode();
                }
            }
        }
        if self.cout.is_empty() {
            self.client.write_all(&buf[run_start..pos]).await?;
        } else {
            self.cout.extend_from_slice(&buf[run_start..pos]);
            self.flush_client().await?;
        }
        buf.advance(pos);
        if let Some(server) = self.server.as_mut() {
            server.conn.rbuf = buf;
        }
        if let Some(e) = protocol_error {
            return self
                .server_lost(&format!("protocol error from server: {e}"))
                .await;
        }
        if std::mem::take(&mut self.rollback_after_flush) {
            self.rollback_statement_mode().await?;
        }
        self.maybe_release().await;
        Ok(())
    }

    /// Whether the answer now arriving could acknowledge a commit that a standby being
    /// promoted will not have: during a switchover, or from a fenced primary (a backend
    /// orphaned by a crash can still commit while the standby is being promoted). Such a
    /// commit is resolved on the new primary instead.
    fn commit_ack_untrusted(&self) -> bool {
        let Some(tx) = self.tx.as_deref() else {
            return false;
        };
        if !(tx.commits || tx.autocommit_write) {
            return false;
        }
        let topology = &self.shared.topology;
        topology.switching()
            || topology
                .by_name(&self.pool.key.node)
                .is_some_and(|n| topology.nodes[n].role() == Role::Fenced)
    }

    /// Updates the queue and session state for one server message; returns whether the
    /// client sees it.
    fn on_server_message(&mut self, tag: u8, body: &[u8]) -> bool {
        tracing::trace!(tag = %(tag as char), queue = ?self.queue.front(), "server message");
        if let Some(Expect::Xid) = self.queue.front() {
            return self.on_xid_message(tag, body);
        }
        if let Some(tx) = self.tx.as_deref_mut() {
            if tag == b'E' && is_server_going_away(body) {
                // The connection closes next; the session moves to another server instead
                // of passing this on.
                return false;
            }
            tx.answer(tag, body);
        }
        match tag {
            b'D' => {
                if self.shared.journal.is_some()
                    && let Some(
                        Expect::Query {
                            post: Some(ctx), ..
                        }
                        | Expect::Execute {
                            post: Some(ctx), ..
                        },
                    ) = self.queue.front_mut()
                    && let Some(j) = ctx.journal.as_mut()
                {
                    j.rows += 1;
                    j.crc.update(body);
                }
                true
            }
            b'N' => !(self.hide_no_tx_warning && is_no_transaction_warning(body)),
            b'A' | b'S' => true,
            b'Z' => {
                let status = body.first().copied().unwrap_or(b'I');
                let before = std::mem::replace(&mut self.status, status);
                if before == b'I' && status != b'I' {
                    self.transactions += 1;
                }
                if let Some(tx) = self.tx.as_deref_mut()
                    && tx.ready(before, status)
                {
                    let topology = &self.shared.topology;
                    tx.start_lsn = topology.nodes[topology.primary()].lsn();
                }
                self.cursors.on_ready(status);
                self.hide_no_tx_warning = false;
                if matches!(
                    self.queue.front(),
                    Some(Expect::Sync | Expect::Query { .. } | Expect::FunctionCall)
                ) && let Some(Expect::Query {
                    post: Some(ctx), ..
                }) = self.queue.pop_front()
                {
                    self.fire_post_query(*ctx);
                }
                self.in_copy = false;
                if let Some(hash) = self.state.on_ready(status)
                    && let Some(s) = self.server.as_mut()
                {
                    s.conn.state_hash = hash;
                }
                if self.mode == PoolMode::Statement && status != b'I' {
                    self.rollback_after_flush = true;
                    return false;
                }
                true
            }
            b'E' => {
                self.in_copy = false;
                self.syncs_ignored_in_copy = false;
                self.cursors.on_error();
                let failed_post = match self.queue.front_mut() {
                    Some(Expect::Query {
                        post: Some(ctx), ..
                    }) => {
                        if ctx.error.is_none() {
                            ctx.error = error_of(body);
                        }
                        None
                    }
                    Some(Expect::Execute { post, .. }) => post.take().map(|mut ctx| {
                        ctx.error = error_of(body);
                        ctx
                    }),
                    _ => None,
                };
                if let Some(ctx) = failed_post {
                    self.fire_post_query(*ctx);
                }
                match self.queue.front() {
                    Some(Expect::Query { .. } | Expect::FunctionCall) => {}
                    _ => {
                        // The server skips everything up to the next Sync.
                        while let Some(front) = self.queue.front() {
                            match front {
                                Expect::Sync | Expect::Query { .. } | Expect::FunctionCall => break,
                                Expect::Parse { hash, .. } => {
                                    let hash = *hash;
                                    if let Some(s) = self.server.as_mut() {
                                        s.conn.prepared.remove(&hash);
                                    }
                                }
                                _ => {}
                            }
                            self.queue.pop_front();
                        }
                    }
                }
                true
            }
            b'C' => {
                let tag_text = body.strip_suffix(&[0]).unwrap_or(body);
                self.cursors.on_tag(tag_text);
                match tag_text {
                    b"ROLLBACK" => {
                        self.state.saw_rollback();
                        self.cursors.on_rollback();
                    }
                    b"DISCARD ALL" | b"DEALLOCATE ALL" => {
                        if let Some(s) = self.server.as_mut() {
                            s.conn.prepared.clear();
                            s.conn.sql_prepared.clear();
                        }
                    }
                    _ => {}
                }
                self.in_copy = false;
                match self.queue.front_mut() {
                    Some(Expect::Query { effects, post }) => {
                        if let Some(effect) = effects.as_mut().and_then(|e| e.pop_front()).flatten()
                        {
                            record_effect(&mut self.state, &mut self.server, effect);
                        }
                        if let Some(ctx) = post {
                            ctx.tag = String::from_utf8_lossy(tag_text).into_owned();
                            if let Some(j) = ctx.journal.as_mut() {
                                j.note_tag(tag_text);
                            }
                        }
                    }
                    Some(Expect::Execute { effect, post }) => {
                        if let Some(effect) = effect.take() {
                            record_effect(&mut self.state, &mut self.server, effect);
                        }
                        let post = post.take();
                        self.queue.pop_front();
                        if let Some(mut ctx) = post {
                            ctx.tag = String::from_utf8_lossy(tag_text).into_owned();
                            if let Some(j) = ctx.journal.as_mut() {
                                j.note_tag(tag_text);
                            }
                            self.fire_post_query(*ctx);
                        }
                    }
                    _ => {}
                }
                true
            }
            b'1' => match self.queue.front() {
                Some(&Expect::Parse { hidden, .. }) => {
                    self.queue.pop_front();
                    !hidden
                }
                _ => true,
            },
            b'2' => self.pop_if(|e| matches!(e, Expect::Bind)),
            b'3' => self.pop_if(|e| matches!(e, Expect::Close)),
            b'T' | b'n' => self.pop_if(|e| matches!(e, Expect::Describe)),
            b'I' | b's' => self.pop_if(|e| matches!(e, Expect::Execute { .. })),
            b'G' => {
                self.in_copy = true;
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.copy_started();
                }
                if matches!(self.queue.front(), Some(Expect::Execute { .. })) {
                    self.forget_syncs_sent_during_copy_in();
                }
                true
            }
            b'H' => {
                self.in_copy = true;
                true
            }
            _ => true,
        }
    }

    /// A server in COPY IN started by `Execute` ignores `Sync` until `CopyDone`/`CopyFail`
    /// (drivers such as tokio-postgres send one right after `Execute`): those Syncs get no
    /// `ReadyForQuery`, so they leave the queue.
    fn forget_syncs_sent_during_copy_in(&mut self) {
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue[i] {
                Expect::Sync => {
                    self.queue.remove(i);
                }
                Expect::CopyEnd => {
                    self.queue.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.syncs_ignored_in_copy = true;
    }

    fn fire_post_query(&mut self, ctx: PostCtx) {
        let elapsed = ctx.started.elapsed();
        if let Some(stmt) = &ctx.stmt {
            let error = ctx.error.as_ref().map(|(c, m)| (c.as_str(), m.as_str()));
            let outcome = hooks::outcome(&ctx.tag, error, elapsed, &self.pool.key.node);
            self.pipeline
                .post_query(&self.info, self.status != b'I', stmt, &outcome);
        }
        if let (Some(j), Some(journal)) = (ctx.journal, &self.shared.journal) {
            let j = *j;
            journal.append(Record {
                seq: 0,
                session_id: self.info.session_id,
                transaction_id: j.transaction_id,
                user: self.info.user.clone(),
                database: self.info.database.clone(),
                node: self.pool.key.node.clone(),
                sql: j.sql,
                param_formats: j.param_formats,
                params: j.params,
                started_at_us: j.started_at_us,
                duration_us: elapsed.as_micros() as u64,
                rows: j.rows,
                checksum: j.crc.finalize(),
                error: ctx.error,
            });
        }
    }

    #[inline]
    fn pop_if(&mut self, is: impl Fn(&Expect) -> bool) -> bool {
        if self.queue.front().is_some_and(is) {
            self.queue.pop_front();
        }
        true
    }

    /// Writes every synthetic message that has reached the front of the queue.
    fn emit_synthetics(&mut self) {
        while let Some(Expect::Synthetic(_) | Expect::CopyEnd) = self.queue.front() {
            let Some(Expect::Synthetic(s)) = self.queue.pop_front() else {
                continue;
            };
            match s {
                Synthetic::ParseComplete => self.cout.extend_from_slice(&messages::PARSE_COMPLETE),
                Synthetic::CloseComplete => self.cout.extend_from_slice(&messages::CLOSE_COMPLETE),
                Synthetic::ReadyForQuery => messages::ready_for_query(&mut self.cout, self.status),
                Synthetic::Error(code, message) => {
                    messages::error_response(&mut self.cout, "ERROR", &code, &message)
                }
                Synthetic::Raw(bytes) => self.cout.extend_from_slice(&bytes),
            }
        }
    }

    fn replace_ready_in_statement_mode(&mut self) {
        messages::error_response(
            &mut self.cout,
            "ERROR",
            sqlstate::FEATURE_NOT_SUPPORTED,
            "transaction blocks are not allowed in statement pooling mode; the transaction was rolled back",
        );
        messages::ready_for_query(&mut self.cout, b'I');
    }

    async fn rollback_statement_mode(&mut self) -> Result<(), SessionError> {
        self.status = b'I';
        if let Some(mut s) = self.server.take() {
            match s.conn.run_internal("ROLLBACK").await {
                Ok((None, b'I')) => self.server = Some(s),
                _ => {
                    self.cancel.slot.detach();
                    self.pool.discard(s);
                }
            }
        }
        Ok(())
    }

    // ----- lending and returning -------------------------------------------------------

    /// Returns the server to the pool when the client is between transactions.
    async fn maybe_release(&mut self) {
        if self.mode == PoolMode::Session
            || self.server.is_none()
            || !self.queue.is_empty()
            || self.in_copy
            || self.status != b'I'
            || !self.sout.is_empty()
            || self.cursors.any()
        {
            return;
        }
        let checkout = self.server.take().expect("attached");
        self.cancel.slot.detach();
        self.pool.release(checkout);
    }

    /// The server connection died under the client. With transaction replay on, the session
    /// moves to the new primary (or another node): its state, statements, held cursors and
    /// open transaction are restored and the request in flight is sent again, so the client
    /// notices nothing; when that cannot be done safely the client gets 40001 (retry) or
    /// 08007 (commit outcome unknown). Without it, or when no server can be reached, the
    /// client gets a FATAL error. Everyone else carries on.
    async fn server_lost(&mut self, why: &str) -> Result<(), SessionError> {
        let topology = self.shared.topology.clone();
        let lost = topology.by_name(&self.pool.key.node);
        if let Some(s) = self.server.take() {
            self.cancel.slot.detach();
            self.pool.discard(s);
        }
        tracing::warn!(pool = ?self.pool.key, "server connection lost: {why}");
        if let Some(node) = lost {
            topology.nodes[node].mark_unhealthy();
            topology.nudge(node);
        }
        if self.tx.is_some()
            && let Some(node) = lost
        {
            let shared = self.shared.clone();
            let counters = &shared.failover.sessions;
            match self.recover(node).await {
                Ok(()) => {
                    counters.moved.fetch_add(1, Relaxed);
                    self.emit_synthetics();
                    self.flush_client().await?;
                    return Ok(());
                }
                Err((code, message)) if code != sqlstate::CONNECTION_FAILURE => {
                    tracing::warn!("transaction not replayed ({code}): {message}");
                    if code == sqlstate::SERIALIZATION_FAILURE {
                        counters.retry_errors.fetch_add(1, Relaxed);
                    } else {
                        counters.unknown_outcomes.fetch_add(1, Relaxed);
                    }
                    self.fail_in_flight(code, message);
                    self.emit_synthetics();
                    self.flush_client().await?;
                    return Ok(());
                }
                Err((_, message)) => {
                    tracing::warn!("session could not move to another server: {message}");
                }
            }
        }
        self.queue.clear();
        let _ = self.flush_client().await;
        fatal(
            &mut self.client,
            sqlstate::CONNECTION_FAILURE,
            &format!("server connection lost: {why}"),
        )
        .await;
        Err(SessionError::Refused(format!(
            "server connection lost: {why}"
        )))
    }

    /// Moves the session to a new server after `lost` failed; see [`Relay::server_lost`].
    async fn recover(&mut self, lost: usize) -> Result<(), (&'static str, String)> {
        let mut tx = self.tx.take().expect("transaction replay is on");
        let result = self.recover_with(&mut tx, lost).await;
        tx.answered = 0;
        self.tx = Some(tx);
        result
    }

    async fn recover_with(
        &mut self,
        tx: &mut TxLog,
        lost: usize,
    ) -> Result<(), (&'static str, String)> {
        // A hidden transaction-id query in flight is dropped: it is captured again below.
        self.queue.retain(|e| !matches!(e, Expect::Xid));
        tx.xid_pending = false;
        let in_flight = !self.queue.is_empty();
        // Held cursors are re-created on whichever server the session gets next.
        self.restore_cursors = self.cursors.any();
        if !in_flight && self.status == b'I' {
            // Idle: the next statement lands on a new server, with the session's state.
            return Ok(());
        }
        const RETRY: &str = sqlstate::SERIALIZATION_FAILURE;
        const UNKNOWN: &str = sqlstate::TRANSACTION_RESOLUTION_UNKNOWN;
        if tx.overflow {
            return Err((
                RETRY,
                "the server was lost and this transaction is too large (or pipelined) to replay; retry it".into(),
            ));
        }
        let commit_in_flight = in_flight && tx.commits;
        if in_flight && !commit_in_flight && !tx.resendable() {
            return Err(if tx.autocommit_write && tx.answered == 0 {
                (
                    UNKNOWN,
                    "the server was lost while running a statement that commits by itself; whether it committed is unknown".into(),
                )
            } else {
                (
                    RETRY,
                    "the server was lost while its answer was being sent; retry the transaction"
                        .into(),
                )
            });
        }
        if commit_in_flight && tx.wrote && !matches!(tx.xid, Some(Some(_))) {
            return Err((
                UNKNOWN,
                "the server was lost during COMMIT and the outcome cannot be resolved".into(),
            ));
        }
        let topology = self.shared.topology.clone();
        if lost == topology.primary() {
            let generation = topology.generation();
            topology.nudge(lost);
            if !topology.primary_still_serves(lost, generation).await {
                return Err((
                    sqlstate::CONNECTION_FAILURE,
                    "the primary was lost and no new primary took over in time".into(),
                ));
            }
        }
        let target = topology.primary();
        self.route_to = target;
        self.pool = self.pool_for(target);
        let mut checkout = self
            .checkout()
            .await
            .map_err(|e| (sqlstate::CONNECTION_FAILURE, e.to_string()))?;
        let conn = &mut checkout.conn;
        let io = |e: String| (sqlstate::CONNECTION_FAILURE, e);
        if !conn.prepared.is_empty() {
            conn.run_internal("DEALLOCATE ALL")
                .await
                .map_err(|e| io(e.to_string()))?;
            conn.prepared.clear();
        }
        // Did the COMMIT in flight make it to the new primary?
        let mut committed = false;
        if commit_in_flight
            && tx.wrote
            && let Some(Some(xid)) = tx.xid
        {
            // Ids at or past the new primary's horizon were never seen by it (and may be
            // handed out again there): such a transaction did not commit.
            let horizon = topology.xid_horizon();
            let rows = if tx.xid_generation != topology.generation()
                && horizon > 0
                && xid as u64 >= horizon
            {
                Ok(vec!["aborted".to_owned()])
            } else {
                let sql = format!("select txid_status({xid})");
                run_rows(conn, &sql).await.map_err(io)?
            };
            match rows.as_deref() {
                Ok([status]) if status == "committed" && tx.statements == 1 => committed = true,
                Ok([status]) if status == "committed" => {
                    self.pool.release(checkout);
                    return Err((
                        UNKNOWN,
                        "the server was lost during COMMIT: the transaction did commit (txid_status on the new primary), but the answers to the statements sent together with the COMMIT are lost".into(),
                    ));
                }
                Ok([status]) if status == "aborted" => {}
                Ok([status]) if status == "in progress" => {
                    self.pool.discard(checkout);
                    return Err((
                        UNKNOWN,
                        "the COMMIT's transaction is still in progress on the new primary".into(),
                    ));
                }
                // NULL: too old to tell; an error: the new primary never saw this id.
                Ok(_) => {
                    self.pool.discard(checkout);
                    return Err((UNKNOWN, "the COMMIT's outcome cannot be resolved".into()));
                }
                Err(_) => {}
            }
        }
        if !committed {
            let lsn = topology.nodes[target].lsn();
            if tx.start_lsn > 0 && lsn > 0 && lsn < tx.start_lsn {
                self.pool.release(checkout);
                return Err((
                    RETRY,
                    "the new primary had not received the data this transaction started from; retry it".into(),
                ));
            }
        }
        // Every statement the client prepared, before anything refers to it.
        let mut parses = Vec::new();
        let mut hashes = Vec::new();
        for p in self.stmts.all() {
            p.encode_parse(&mut parses);
            messages::sync(&mut parses);
            hashes.push(p.hash);
        }
        if !parses.is_empty() {
            conn.write(&parses).await.map_err(|e| io(e.to_string()))?;
            let mut errors = vec![false; hashes.len()];
            let mut i = 0;
            while i < hashes.len() {
                let (tag, _) = conn.read_message().await.map_err(|e| io(e.to_string()))?;
                match tag {
                    b'E' => errors[i] = true,
                    b'Z' => i += 1,
                    _ => {}
                }
            }
            for (hash, failed) in hashes.into_iter().zip(errors) {
                if !failed {
                    conn.prepared.insert(hash);
                }
            }
        }
        if !committed {
            for (n, batch) in tx.done.iter().enumerate() {
                let bytes = replay::strip_injected(&batch.bytes);
                let (crc, rows, _) = replay::rerun(conn, &bytes).await.map_err(io)?;
                if crc != batch.crc || rows != batch.rows {
                    let _ = conn.run_internal("ROLLBACK").await;
                    self.pool.release(checkout);
                    return Err((
                        RETRY,
                        format!(
                            "the server was lost and replaying this transaction on the new primary gave different results at request {} ({} rows instead of {}); retry it",
                            n + 1,
                            rows,
                            batch.rows
                        ),
                    ));
                }
            }
        }
        if !committed && tx.wrote && !tx.done.is_empty() {
            // The replayed transaction has a new id on the new primary.
            tx.xid = run_rows(conn, replay::XID_QUERY)
                .await
                .map_err(io)?
                .ok()
                .and_then(|rows| rows.first().map(|v| v.parse().ok()));
            tx.xid_generation = topology.generation();
        }
        if in_flight {
            let mut bytes = replay::strip_injected(&tx.unanswered());
            self.requeue_for_resend();
            if tx.wants_xid() {
                tx.xid_pending = true;
                let prepare = conn.prepared.insert(replay::XID_HASH);
                replay::encode_xid_request(&mut bytes, prepare);
                self.queue.push_back(Expect::Xid);
            }
            if committed {
                // Sent outside a transaction now: the server warns there is none.
                self.hide_no_tx_warning = true;
            }
            conn.write(&bytes).await.map_err(|e| io(e.to_string()))?;
            tx.resent(&bytes);
        }
        tracing::info!(
            session = self.info.session_id,
            node = topology.nodes[target].name(),
            replayed = tx.done.len(),
            commit_in_flight,
            committed,
            xid = ?tx.xid,
            "session moved to a new server"
        );
        let counters = &self.shared.failover.sessions;
        if !tx.done.is_empty() {
            counters.transactions_replayed.fetch_add(1, Relaxed);
        }
        if commit_in_flight && tx.wrote {
            counters.commits_resolved.fetch_add(1, Relaxed);
        }
        self.cancel
            .slot
            .attach(&checkout.conn.target, checkout.conn.key);
        self.server = Some(checkout);
        self.attached_generation = topology.generation();
        Ok(())
    }

    /// Adapts the queue to a re-sent batch: its proxy `Parse`s were removed (the statements
    /// are prepared already).
    fn requeue_for_resend(&mut self) {
        let old = std::mem::take(&mut self.queue);
        for e in old {
            match e {
                Expect::Parse { hidden: true, .. } => {}
                Expect::Parse { hidden: false, .. } => self
                    .queue
                    .push_back(Expect::Synthetic(Synthetic::ParseComplete)),
                other => self.queue.push_back(other),
            }
        }
    }

    /// Answers every request in flight with an error; the transaction (if one was open) is
    /// now failed, as the client will see in `ReadyForQuery`.
    fn fail_in_flight(&mut self, code: &str, message: String) {
        let old = std::mem::take(&mut self.queue);
        if self.status != b'I' {
            self.status = b'E';
            // The client's ROLLBACK will reach a server that has no transaction.
            self.hide_no_tx_warning = true;
        }
        let error = || Expect::Synthetic(Synthetic::Error(code.into(), message.clone()));
        let mut answered = false;
        let mut open_extended = false;
        for e in old {
            match e {
                Expect::Query { .. } | Expect::FunctionCall => {
                    self.queue.push_back(error());
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
                }
                Expect::Sync => {
                    if !answered {
                        self.queue.push_back(error());
                    }
                    self.queue
                        .push_back(Expect::Synthetic(Synthetic::ReadyForQuery));
                    answered = false;
                    open_extended = false;
                }
                Expect::Xid | Expect::CopyEnd => {}
                Expect::Synthetic(s) => self.queue.push_back(Expect::Synthetic(s)),
                _ => {
                    if !answered {
                        self.queue.push_back(error());
                        answered = true;
                    }
                    open_extended = true;
                }
            }
        }
        if open_extended {
            self.skip_until_sync = true;
        }
        self.in_copy = false;
        self.syncs_ignored_in_copy = false;
    }

    /// Cleans up after the client left: an idle server goes back (reset in session mode), an
    /// open transaction is rolled back first, and a server mid-query is closed.
    async fn finish(&mut self) {
        let Some(mut s) = self.server.take() else {
            return;
        };
        self.cancel.slot.detach();
        let clean = self.queue.is_empty() && !self.in_copy;
        let reset = match (clean, self.status, self.mode) {
            (false, _, _) => None,
            (true, b'I', PoolMode::Session) => Some("DISCARD ALL"),
            (true, b'I', _) => Some(""),
            (true, _, PoolMode::Session) => Some("ROLLBACK;DISCARD ALL"),
            (true, _, _) => Some("ROLLBACK"),
        };
        let ok = match reset {
            None => false,
            Some("") => true,
            Some(sql) => matches!(
                tokio::time::timeout(Duration::from_secs(5), s.conn.run_internal(sql)).await,
                Ok(Ok((None, b'I')))
            ),
        };
        if ok {
            if self.mode == PoolMode::Session {
                s.conn.prepared.clear();
                s.conn.sql_prepared.clear();
                s.conn.state_hash = PRISTINE;
            }
            self.pool.release(s);
        } else {
            self.pool.discard(s);
        }
    }

    async fn flush_server(&mut self) -> Result<(), SessionError> {
        if self.sout.is_empty() {
            return Ok(());
        }
        let Some(s) = self.server.as_mut() else {
            self.sout.clear();
            return Ok(());
        };
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.sent(&self.sout);
        }
        if let Err(e) = s.conn.stream.write_all(&self.sout).await {
            self.sout.clear();
            return self.server_lost(&e.to_string()).await;
        }
        self.sout.clear();
        Ok(())
    }

    async fn flush_client(&mut self) -> Result<(), SessionError> {
        if !self.cout.is_empty() {
            self.client.write_all(&self.cout).await?;
            self.cout.clear();
        }
        Ok(())
    }
}

impl PostCtx {
    fn new(stmt: Option<Arc<Statement>>) -> Box<PostCtx> {
        Box::new(PostCtx {
            stmt,
            started: Instant::now(),
            tag: String::new(),
            error: None,
            journal: None,
        })
    }
}

impl JournalEntry {
    /// Folds a command tag into the checksum, and the rows a write reports into the count.
    fn note_tag(&mut self, tag: &[u8]) {
        self.crc.update(tag);
        let writes = [&b"INSERT "[..], b"UPDATE ", b"DELETE ", b"MERGE ", b"COPY "];
        if writes.iter().any(|w| tag.starts_with(w))
            && let Some(n) = std::str::from_utf8(tag)
                .ok()
                .and_then(|t| t.rsplit(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
        {
            self.rows += n;
        }
    }
}

/// The first column of a `DataRow` body; `None` for NULL or a malformed row.
fn first_column(body: &[u8]) -> Option<&[u8]> {
    let len = i32::from_be_bytes(body.get(2..6)?.try_into().ok()?);
    body.get(6..6 + usize::try_from(len).ok()?)
}

/// The first column of a `DataRow` as an integer; `None` for NULL or anything else.
fn first_column_i64(body: &[u8]) -> Option<i64> {
    std::str::from_utf8(first_column(body)?).ok()?.parse().ok()
}

/// Whether an `ErrorResponse` is the FATAL a server sends before it closes the connection
/// because it shuts down, crashed or was told to end the session.
fn is_server_going_away(body: &[u8]) -> bool {
    messages::ErrorFields::parse(body).is_ok_and(|f| {
        f.severity == "FATAL" && matches!(f.code.as_str(), "57P01" | "57P02" | "57P03")
    })
}

/// Whether a `NoticeResponse` is "there is no transaction in progress" (25P01).
fn is_no_transaction_warning(body: &[u8]) -> bool {
    messages::ErrorFields::parse(body).is_ok_and(|f| f.code == "25P01")
}

/// The transaction log of a new session, when `[ha] transaction_replay` is on.
fn shared_tx_log(ha: &Option<crate::config::HaConfig>) -> Option<Box<TxLog>> {
    ha.as_ref().filter(|ha| ha.transaction_replay).map(|ha| {
        Box::new(TxLog::new(
            ha.replay_max_statements,
            ha.replay_max_bytes,
            ha.resolve_commits,
        ))
    })
}

/// Runs a query on an internal connection and returns the first column of each row
/// (`Err` with the server's message when it failed).
async fn run_rows(
    conn: &mut crate::pool::ServerConn,
    sql: &str,
) -> Result<Result<Vec<String>, String>, String> {
    let mut out = Vec::new();
    messages::query(&mut out, sql);
    let mut rows = Vec::new();
    let mut error = None;
    conn.exchange(&out, |tag, body| match tag {
        b'D' => rows.extend(first_column(body).map(|v| String::from_utf8_lossy(v).into_owned())),
        b'E' => error = error_of(body).map(|(_, m)| m),
        _ => {}
    })
    .await
    .map_err(|e| e.to_string())?;
    Ok(match error {
        Some(e) => Err(e),
        None => Ok(rows),
    })
}

/// Asks for a check of the primary `node` and waits (bounded by the switchover buffer) for
/// another node to take its place; the new primary.
async fn replacement_primary(
    topology: &crate::topology::Topology,
    node: usize,
) -> Result<usize, crate::topology::BufferError> {
    let generation = topology.generation();
    topology.nudge(node);
    topology.wait_for_new_primary(generation).await?;
    Ok(topology.primary())
}

/// Records a completed session-state statement; a `PREPARE`/`DEALLOCATE` also changes what
/// the attached server has.
fn record_effect(state: &mut SessionState, server: &mut Option<Checkout>, effect: Effect) {
    let sql_level = matches!(
        effect.kind,
        crate::sql::SessionEffect::Prepare(_)
            | crate::sql::SessionEffect::Deallocate(_)
            | crate::sql::SessionEffect::DeallocateAll
    );
    state.record(effect);
    if sql_level && let Some(s) = server.as_mut() {
        s.conn.sql_prepared = state.prepared_names();
    }
}

/// SQLSTATE and message of an `ErrorResponse` body.
fn error_of(body: &[u8]) -> Option<(String, String)> {
    messages::ErrorFields::parse(body)
        .ok()
        .map(|f| (f.code, f.message))
}

/// The session-state effects of a simple query's statements, when it has any.
fn query_effects(sql: &str) -> Option<VecDeque<Option<Effect>>> {
    if !might_change_session(sql) {
        return None;
    }
    let effects: VecDeque<Option<Effect>> = split_statements(sql)
        .into_iter()
        .map(|stmt| {
            session_effect(stmt).map(|kind| Effect {
                kind,
                sql: Arc::from(stmt.trim()),
            })
        })
        .collect();
    effects.iter().any(Option::is_some).then_some(effects)
}

/// Cheap pre-check: every statement with a session effect contains `set` or `discard`.
#[inline]
fn might_change_session(sql: &str) -> bool {
    let b = sql.as_bytes();
    b.windows(3).any(|w| w.eq_ignore_ascii_case(b"set"))
        || b.windows(7).any(|w| {
            w.eq_ignore_ascii_case(b"discard")
                || w.eq_ignore_ascii_case(b"prepare")
                || w.eq_ignore_ascii_case(b"dealloc")
        })
}
