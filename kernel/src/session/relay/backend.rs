//! One function per server message: how it moves the queue and the session's state, and
//! whether the client sees it.

use super::Relay;
use super::expect::Expect;
use crate::config::PoolMode;
use crate::pool::Checkout;
use crate::session::state::{Effect, SessionState};
use crate::session::steps::PostCtx;
use crate::session::steps::observe::Sinks;
use crate::sql::SessionEffect;
use crate::wire::messages::{self, TxStatus, sqlstate};

impl Relay {
    /// Updates the queue and session state for one server message; returns whether the
    /// client sees it.
    pub(super) fn on_server_message(&mut self, tag: u8, body: &[u8]) -> bool {
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
                if let Some(
                    Expect::Query {
                        post: Some(ctx), ..
                    }
                    | Expect::Execute {
                        post: Some(ctx), ..
                    },
                ) = self.queue.front_mut()
                {
                    ctx.note_row(body);
                }
                true
            }
            b'N' => !(self.hide_no_tx_warning && is_no_transaction_warning(body)),
            b'A' | b'S' => true,
            b'Z' => self.on_ready_for_query(body),
            b'E' => self.on_error_response(body),
            b'C' => self.on_command_complete(body),
            b'1' => match self.queue.front() {
                Some(&Expect::Parse { hidden, .. }) => {
                    self.queue.pop();
                    !hidden
                }
                _ => true,
            },
            b'2' => self.pop_if(|e| matches!(e, Expect::Bind)),
            b'3' => match self.queue.front() {
                Some(&Expect::Close { hidden }) => {
                    self.queue.pop();
                    !hidden
                }
                _ => true,
            },
            b'T' => {
                if matches!(self.queue.front(), Some(Expect::Describe { .. })) {
                    self.on_description(tag, body);
                    self.on_statement_description(tag, body);
                }
                match self.queue.front_mut() {
                    Some(Expect::Query {
                        post: Some(ctx), ..
                    }) => ctx.note_columns(body),
                    Some(Expect::Describe {
                        columns_of: Some(p),
                        ..
                    }) => p.describe_columns(body),
                    _ => {}
                }
                self.pop_if(|e| matches!(e, Expect::Describe { .. }))
            }
            b'n' => {
                if matches!(self.queue.front(), Some(Expect::Describe { .. })) {
                    self.on_description(tag, body);
                    self.on_statement_description(tag, body);
                }
                self.pop_if(|e| matches!(e, Expect::Describe { .. }))
            }
            b't' => {
                if matches!(self.queue.front(), Some(Expect::Describe { .. })) {
                    self.on_description(tag, body);
                    self.on_statement_description(tag, body);
                }
                true
            }
            b'I' | b's' => self.pop_if(|e| matches!(e, Expect::Execute { .. })),
            b'G' => {
                self.in_copy = true;
                if let Some(tx) = self.tx.as_deref_mut() {
                    tx.copy_started();
                }
                if matches!(self.queue.front(), Some(Expect::Execute { .. })) {
                    self.syncs_ignored_in_copy = self.queue.forget_syncs_during_copy_in();
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

    /// A description of a client statement: remembered for [`Relay::prepared_as_described`].
    fn on_statement_description(&mut self, tag: u8, body: &[u8]) {
        if let Some(Expect::Describe {
            statement: Some(p), ..
        }) = self.queue.front()
        {
            let p = p.clone();
            self.note_statement_description(&p, tag, body);
        }
    }

    #[inline]
    fn pop_if(&mut self, is: impl Fn(&Expect) -> bool) -> bool {
        self.queue.pop_if(is);
        true
    }

    /// `ReadyForQuery`: the transaction status moves, a simple query completes, and in
    /// statement mode a transaction left open is rolled back.
    fn on_ready_for_query(&mut self, body: &[u8]) -> bool {
        let status = TxStatus::from_byte(body.first().copied().unwrap_or(b'I'));
        let before = std::mem::replace(&mut self.status, status);
        if !before.in_transaction() && status.in_transaction() {
            self.transactions += 1;
        }
        if status == TxStatus::Idle {
            self.presence
                .db
                .xacts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(tx) = self.tx.as_deref_mut()
            && tx.ready(before.byte(), status.byte())
        {
            let topology = &self.env.topology;
            tx.start_lsn = topology.nodes[topology.primary()].lsn();
        }
        self.cursors.on_ready(status.byte());
        self.cache_on_ready(status.byte());
        self.hide_no_tx_warning = false;
        if status == TxStatus::Idle && std::mem::take(&mut self.schema_changed) {
            // Committed (or rolled back): statements prepared while it was uncommitted
            // were analysed against the old schema.
            self.env.pools.statement_epoch.advance();
        }
        if matches!(
            self.queue.front(),
            Some(Expect::Sync | Expect::Query { .. } | Expect::FunctionCall)
        ) && let Some(Expect::Query { post, channels, .. }) = self.queue.pop()
        {
            if let Some(splice) = channels {
                self.channel_changes
                    .message_ended(splice.into_commands(), status);
            }
            if let Some(ctx) = post {
                self.finish_statement(*ctx);
            }
        }
        if status == TxStatus::Idle {
            self.channel_changes.transaction_ended();
        }
        self.in_copy = false;
        if let Some(hash) = self.state.on_ready(status.byte())
            && let Some(s) = self.server.as_mut()
        {
            s.conn.state_hash = hash;
        }
        if self.mode == PoolMode::Statement && status.in_transaction() {
            self.rollback_after_flush = true;
            return false;
        }
        true
    }

    /// `ErrorResponse`: the statement in flight failed; in the extended protocol the server
    /// now skips everything up to the next `Sync`.
    fn on_error_response(&mut self, body: &[u8]) -> bool {
        self.in_copy = false;
        self.syncs_ignored_in_copy = false;
        self.cursors.on_error();
        if self.queue.refusal_answered() {
            // The server failed the batch the proxy refused: the client sees the refusal.
            return false;
        }
        if stale_statement_error(body) {
            self.env.pools.statement_epoch.advance();
        }
        // The statement's outcome is known now: observers hear of it before the client does
        // (a driver may send its next query as soon as it reads the error).
        if let Some(Expect::Query {
            channels: Some(splice),
            ..
        }) = self.queue.front_mut()
        {
            splice.failed();
        }
        let failed_post = match self.queue.front_mut() {
            Some(Expect::Query { post, .. } | Expect::Execute { post, .. }) => {
                post.take().map(|mut ctx| {
                    ctx.error = error_of(body);
                    ctx
                })
            }
            _ => None,
        };
        if let Some(ctx) = failed_post {
            self.finish_statement(*ctx);
        }
        if !matches!(
            self.queue.front(),
            Some(Expect::Query { .. } | Expect::FunctionCall)
        ) {
            let server = &mut self.server;
            let reached_sync = self.queue.skip_to_sync(|hash| {
                // The server may hold it or not (a stale copy was closed before it, or
                // not): the next use closes it first, which is right either way.
                if let Some(s) = server.as_mut() {
                    s.conn.prepared.uncertain(hash);
                }
            });
            if !reached_sync && self.batch_open {
                // The error came before the rest of the client's batch (a driver that
                // flushes part of a pipeline): the server ignores that rest up to `Sync`,
                // so the proxy must neither send it nor expect answers to it.
                self.skip_until_sync = true;
            }
        }
        true
    }

    /// `CommandComplete`: a statement finished; its session-state effect is recorded and
    /// its observers see the tag.
    fn on_command_complete(&mut self, body: &[u8]) -> bool {
        let tag_text = body.strip_suffix(&[0]).unwrap_or(body);
        self.cursors.on_tag(tag_text);
        if changes_schema(tag_text) {
            // Statements kept on servers were analysed before it: this session's next
            // `Parse` on this connection must not reuse them, nor anyone's once it commits.
            self.env.pools.statement_epoch.advance();
            self.schema_changed = true;
        }
        match tag_text {
            b"ROLLBACK" => {
                self.channel_changes.rolled_back();
                if let Some(Expect::Query {
                    channels: Some(splice),
                    ..
                }) = self.queue.front_mut()
                {
                    splice.rolled_back();
                }
                self.cache_on_rollback();
                self.state.saw_rollback();
                self.cursors.on_rollback();
            }
            b"DISCARD ALL" | b"DEALLOCATE ALL" => {
                if let Some(s) = self.server.as_mut() {
                    s.conn.forget_prepared();
                }
            }
            _ => {}
        }
        self.in_copy = false;
        match self.queue.front_mut() {
            Some(Expect::Query {
                effects,
                post,
                channels,
            }) => {
                if let Some(effect) = effects.as_mut().and_then(|e| e.pop_front()).flatten() {
                    record_effect(&mut self.state, &mut self.server, effect);
                }
                if let Some(ctx) = post {
                    ctx.note_tag(tag_text);
                }
                if let Some(splice) = channels {
                    splice.completed_one(&mut self.spliced);
                }
            }
            Some(Expect::Execute { effect, post }) => {
                if let Some(effect) = effect.take() {
                    record_effect(&mut self.state, &mut self.server, effect);
                }
                let post = post.take();
                self.queue.pop();
                if let Some(mut ctx) = post {
                    ctx.note_tag(tag_text);
                    self.finish_statement(*ctx);
                }
            }
            _ => {}
        }
        true
    }

    /// Hands a completed statement to its observers.
    pub(in crate::session) fn finish_statement(&mut self, ctx: PostCtx) {
        let topology = &self.env.topology;
        let from_primary = ctx.capture.is_some()
            && topology.nodes[topology.primary()].name() == self.pool.key.node;
        ctx.finish(Sinks {
            pipeline: &self.pipeline,
            journal: self.env.journal.as_deref(),
            info: &self.info,
            in_transaction: self.status.in_transaction(),
            node: &self.pool.key.node,
            from_primary,
            analytics: self.env.analytics.as_deref(),
            db: &self.presence.db,
        });
    }

    /// In statement mode a transaction the server reports open is refused in place of its
    /// `ReadyForQuery` (and rolled back right after).
    pub(super) fn replace_ready_in_statement_mode(&mut self) {
        messages::error_response(
            &mut self.cout,
            "ERROR",
            sqlstate::FEATURE_NOT_SUPPORTED,
            "transaction blocks are not allowed in statement pooling mode; the transaction was rolled back",
        );
        messages::ready_for_query(&mut self.cout, b'I');
    }
}

/// Whether an `ErrorResponse` is the FATAL a server sends before it closes the connection
/// because it shuts down, crashed or was told to end the session.
fn is_server_going_away(body: &[u8]) -> bool {
    messages::ErrorFields::parse(body).is_ok_and(|f| {
        f.severity == "FATAL" && matches!(f.code.as_str(), "57P01" | "57P02" | "57P03")
    })
}

/// Whether a `CommandComplete` tag is one of a statement that may change how PostgreSQL
/// analyses other statements' text: DDL, privileges, and opaque code (`DO`, `CALL`), which
/// may run DDL the proxy cannot see. `DISCARD` drops temporary tables that shadowed others.
fn changes_schema(tag: &[u8]) -> bool {
    let word = tag.split(|&b| b == b' ').next().unwrap_or(tag);
    matches!(
        word,
        b"CREATE"
            | b"ALTER"
            | b"DROP"
            | b"GRANT"
            | b"REVOKE"
            | b"DO"
            | b"CALL"
            | b"IMPORT"
            | b"DISCARD"
    )
}

/// Whether an error says a statement the server kept no longer matches the schema (a schema
/// change the proxy did not see: made directly on the server, or through another proxy), or
/// that the server's statements are not what the proxy believed: `cached plan must not change
/// result type` (0A000), `cache lookup failed` (XX000), a parameter of the old type (42804),
/// a statement missing (26000) or already there (42P05).
fn stale_statement_error(body: &[u8]) -> bool {
    messages::ErrorFields::parse(body).is_ok_and(|f| {
        matches!(
            f.code.as_str(),
            "0A000" | "XX000" | "42804" | "26000" | "42P05"
        )
    })
}

/// Whether a `NoticeResponse` is "there is no transaction in progress" (25P01).
fn is_no_transaction_warning(body: &[u8]) -> bool {
    messages::ErrorFields::parse(body).is_ok_and(|f| f.code == "25P01")
}

/// SQLSTATE and message of an `ErrorResponse` body.
pub(in crate::session) fn error_of(body: &[u8]) -> Option<(String, String)> {
    messages::ErrorFields::parse(body)
        .ok()
        .map(|f| (f.code, f.message))
}

/// Records a completed session-state statement; a `PREPARE`/`DEALLOCATE` also changes what
/// the attached server has.
fn record_effect(state: &mut SessionState, server: &mut Option<Checkout>, effect: Effect) {
    let sql_level = matches!(
        effect.kind,
        SessionEffect::Prepare(_) | SessionEffect::Deallocate(_) | SessionEffect::DeallocateAll
    );
    state.record(effect);
    if sql_level && let Some(s) = server.as_mut() {
        s.conn.sql_prepared = state.prepared_names();
    }
}
