//! The queue of responses a session expects, in the order they will reach the client.
//!
//! Every message sent to the server pushes what the server will answer to it; the proxy's
//! own answers (a `ParseComplete` for a statement the server already has, a refusal, a
//! component's result set) are pushed as [`Synthetic`] entries at the position the client
//! expects them and written when they reach the front. Responses to messages the proxy
//! injected are marked hidden so the client never sees them.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::wire::messages;

use crate::session::state::Effect;
use crate::session::statements::Prepared;
use crate::session::steps::PostCtx;

/// The session-state effect of each statement of a simple query, in order; `None` when no
/// statement has one.
pub type Effects = Option<VecDeque<Option<Effect>>>;

/// What the server will answer to a message already sent (or what the relay answers itself).
#[derive(Debug)]
pub enum Expect {
    /// `ParseComplete`; hidden from the client when the proxy injected the `Parse`.
    Parse {
        /// The proxy sent this `Parse` on its own.
        hidden: bool,
        /// The statement's hash, forgotten by the server if the `Parse` fails.
        hash: u64,
    },
    /// `BindComplete`.
    Bind,
    /// `ParameterDescription` then `RowDescription` or `NoData`.
    Describe {
        /// The statement described, when its column names are wanted (for result rows).
        columns_of: Option<Arc<Prepared>>,
        /// The client statement described (`None` for a portal).
        statement: Option<Arc<Prepared>>,
    },
    /// Rows then `CommandComplete`, `EmptyQueryResponse` or `PortalSuspended`.
    Execute {
        /// Session-state effect recorded when the statement completes.
        effect: Option<Effect>,
        /// Observers of the statement (PostQuery, journal).
        post: Option<Box<PostCtx>>,
    },
    /// `CloseComplete`; hidden from the client when the proxy closed a stale statement.
    Close {
        /// The proxy sent this `Close` on its own.
        hidden: bool,
    },
    /// `ReadyForQuery` after an extended-protocol batch.
    Sync,
    /// Everything up to `ReadyForQuery` for a simple query.
    Query {
        /// The session-state effect of each statement in order, when any has one.
        effects: Effects,
        /// Observers of the statement (PostQuery, journal).
        post: Option<Box<PostCtx>>,
        /// The message's LISTEN/UNLISTEN statements, answered by the proxy in place.
        channels: Option<Box<super::listen::ChannelSplice>>,
    },
    /// `FunctionCallResponse` then `ReadyForQuery`.
    FunctionCall,
    /// A message the proxy sends itself when this position is reached.
    Synthetic(Synthetic),
    /// Where the client ended a COPY (`CopyDone`/`CopyFail`); no response of its own.
    CopyEnd,
    /// The answer to the hidden `txid_current_if_assigned()` sent before a `COMMIT`.
    Xid,
    /// The `ErrorResponse` to a `Parse` the proxy sent to fail the server's batch on purpose
    /// (a refusal inside a pipeline): replaced by the proxy's own error.
    Refusal(SqlError),
}

/// A message the proxy writes itself.
#[derive(Debug)]
pub enum Synthetic {
    /// `ParseComplete` for a statement the server already has (or will get later).
    ParseComplete,
    /// `CloseComplete` for a statement close, which never reaches the server.
    CloseComplete,
    /// `ReadyForQuery` with the session's current status.
    ReadyForQuery,
    /// An `ErrorResponse` of severity ERROR.
    Error(SqlError),
    /// Pre-encoded messages (a component's result set).
    Raw(Vec<u8>),
}

/// An error the proxy reports to the client as an `ErrorResponse`, with a SQLSTATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlError {
    /// The SQLSTATE.
    pub code: String,
    /// What the client reads.
    pub message: String,
    /// The server routine PostgreSQL names for this error, where drivers read it (asyncpg
    /// recognises a stale statement by `RevalidateCachedQuery`).
    pub routine: Option<&'static str>,
}

impl SqlError {
    /// An error with `code` and `message`.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        SqlError {
            code: code.into(),
            message: message.into(),
            routine: None,
        }
    }

    /// PostgreSQL's error for a kept statement whose result changed after a schema change.
    pub fn stale_plan() -> Self {
        SqlError {
            routine: Some("RevalidateCachedQuery"),
            ..SqlError::new("0A000", "cached plan must not change result type")
        }
    }

    /// PostgreSQL's error (26000) for a statement name the client never prepared. The proxy
    /// answers it itself: the server connection may hold other clients' statements.
    pub fn unknown_statement(name: &[u8]) -> Self {
        let message = if name.is_empty() {
            "unnamed prepared statement does not exist".to_owned()
        } else {
            format!(
                "prepared statement \"{}\" does not exist",
                String::from_utf8_lossy(name)
            )
        };
        SqlError::new("26000", message)
    }

    /// Appends it as an `ErrorResponse` of severity ERROR.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self.routine {
            None => messages::error_response(out, "ERROR", &self.code, &self.message),
            Some(routine) => crate::wire::frame::write_message(out, b'E', |b| {
                for (field, value) in [
                    (b'S', "ERROR"),
                    (b'V', "ERROR"),
                    (b'C', &self.code),
                    (b'M', &self.message),
                    (b'R', routine),
                ] {
                    b.push(field);
                    b.extend_from_slice(value.as_bytes());
                    b.push(0);
                }
                b.push(0);
            }),
        }
    }
}

/// The expected responses, oldest first. The queue grows on first use: an idle client holds
/// none.
#[derive(Debug, Default)]
pub struct Expected {
    queue: VecDeque<Expect>,
}

impl Expected {
    /// Appends an expected response.
    #[inline]
    pub fn push(&mut self, e: Expect) {
        self.queue.push_back(e);
    }

    /// Appends a message the proxy writes itself.
    #[inline]
    pub fn push_synthetic(&mut self, s: Synthetic) {
        self.queue.push_back(Expect::Synthetic(s));
    }

    /// The oldest entry.
    #[inline]
    pub fn front(&self) -> Option<&Expect> {
        self.queue.front()
    }

    /// The oldest entry, to fill in.
    #[inline]
    pub fn front_mut(&mut self) -> Option<&mut Expect> {
        self.queue.front_mut()
    }

    /// Removes the oldest entry.
    #[inline]
    pub fn pop(&mut self) -> Option<Expect> {
        self.queue.pop_front()
    }

    /// Removes the oldest entry when `is` holds for it.
    #[inline]
    pub fn pop_if(&mut self, is: impl Fn(&Expect) -> bool) {
        if self.queue.front().is_some_and(is) {
            self.queue.pop_front();
        }
    }

    /// How many responses are outstanding.
    #[inline]
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing is outstanding.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// Keeps only the entries for which `keep` holds.
    pub fn retain(&mut self, keep: impl FnMut(&Expect) -> bool) {
        self.queue.retain(keep);
    }

    /// Takes every entry out, leaving the queue empty.
    pub fn take(&mut self) -> VecDeque<Expect> {
        std::mem::take(&mut self.queue)
    }

    /// Whether a message the proxy writes itself (or a COPY end) is next.
    #[inline]
    pub fn synthetic_next(&self) -> bool {
        matches!(
            self.queue.front(),
            Some(Expect::Synthetic(_) | Expect::CopyEnd)
        )
    }

    /// Writes every synthetic message that has reached the front; `status` is the
    /// transaction status a `ReadyForQuery` reports.
    pub fn emit_synthetics(&mut self, out: &mut Vec<u8>, status: u8) {
        while self.synthetic_next() {
            let Some(Expect::Synthetic(s)) = self.queue.pop_front() else {
                continue;
            };
            match s {
                Synthetic::ParseComplete => out.extend_from_slice(&messages::PARSE_COMPLETE),
                Synthetic::CloseComplete => out.extend_from_slice(&messages::CLOSE_COMPLETE),
                Synthetic::ReadyForQuery => messages::ready_for_query(out, status),
                Synthetic::Error(e) => e.encode(out),
                Synthetic::Raw(bytes) => out.extend_from_slice(&bytes),
            }
        }
    }

    /// When the server's error answers a refusal the proxy made it fail on purpose, puts the
    /// proxy's error in its place; `true` when it did.
    pub fn refusal_answered(&mut self) -> bool {
        if !matches!(self.queue.front(), Some(Expect::Refusal(_))) {
            return false;
        }
        if let Some(Expect::Refusal(e)) = self.queue.pop_front() {
            self.queue
                .push_front(Expect::Synthetic(Synthetic::Error(e)));
        }
        true
    }

    /// After an `ErrorResponse` in the extended protocol the server skips everything up to
    /// the next `Sync`: those entries go, and `forget` is told the hash of every `Parse`
    /// that failed or never happened. Returns `false` when the client has not sent that
    /// `Sync` yet: what it sends before it is skipped by the server too.
    pub fn skip_to_sync(&mut self, mut forget: impl FnMut(u64)) -> bool {
        while let Some(front) = self.queue.front() {
            match front {
                Expect::Sync | Expect::Query { .. } | Expect::FunctionCall => return true,
                Expect::Parse { hash, .. } => forget(*hash),
                _ => {}
            }
            self.queue.pop_front();
        }
        false
    }

    /// A server in COPY IN started by `Execute` ignores `Sync` until `CopyDone`/`CopyFail`
    /// (drivers such as tokio-postgres send one right after `Execute`): those Syncs get no
    /// `ReadyForQuery`, so they leave the queue. Returns `true` when the copy's end has not
    /// been sent yet, so later Syncs must not be expected either.
    pub fn forget_syncs_during_copy_in(&mut self) -> bool {
        let mut i = 1;
        while i < self.queue.len() {
            match self.queue[i] {
                Expect::Sync => {
                    self.queue.remove(i);
                }
                Expect::CopyEnd => {
                    self.queue.remove(i);
                    return false;
                }
                _ => i += 1,
            }
        }
        true
    }

    /// Adapts the queue to a batch sent again on a new server: the proxy's own `Parse`s
    /// were left out (the statements are prepared already), so the client's get a
    /// synthetic `ParseComplete` and the hidden ones expect nothing.
    pub fn requeue_for_resend(&mut self) {
        for e in self.take() {
            match e {
                Expect::Parse { hidden: true, .. } | Expect::Close { hidden: true } => {}
                Expect::Parse { hidden: false, .. } => {
                    self.push_synthetic(Synthetic::ParseComplete)
                }
                other => self.push(other),
            }
        }
    }

    /// Answers every request in flight with `error` instead of the server; returns whether
    /// an extended-protocol batch is left open (its rest must be skipped up to `Sync`).
    pub fn fail_in_flight(&mut self, error: &SqlError) -> bool {
        let mut answered = false;
        let mut open_extended = false;
        for e in self.take() {
            match e {
                Expect::Query { .. } | Expect::FunctionCall => {
                    self.push_synthetic(Synthetic::Error(error.clone()));
                    self.push_synthetic(Synthetic::ReadyForQuery);
                }
                Expect::Sync => {
                    if !answered {
                        self.push_synthetic(Synthetic::Error(error.clone()));
                    }
                    self.push_synthetic(Synthetic::ReadyForQuery);
                    answered = false;
                    open_extended = false;
                }
                Expect::Xid | Expect::CopyEnd => {}
                Expect::Synthetic(s) => self.push_synthetic(s),
                Expect::Refusal(e) => {
                    if !answered {
                        self.push_synthetic(Synthetic::Error(e));
                        answered = true;
                    }
                    open_extended = true;
                }
                _ => {
                    if !answered {
                        self.push_synthetic(Synthetic::Error(error.clone()));
                        answered = true;
                    }
                    open_extended = true;
                }
            }
        }
        open_extended
    }
}

#[cfg(test)]
mod tests;
