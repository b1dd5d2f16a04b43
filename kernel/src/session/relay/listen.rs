//! LISTEN/UNLISTEN of a pooled session: answered by the proxy, which listens for the
//! client on its own connection ([`crate::notify`]), and the delivery of notifications to
//! the client between transactions, as PostgreSQL delivers them.
//!
//! A simple query that mixes them with other statements (asyncpg's reset on release:
//! `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;`) goes to the server
//! without them, and their `CommandComplete`s are spliced into the server's answer where
//! PostgreSQL would put them ([`ChannelSplice`]). As in PostgreSQL, a LISTEN or UNLISTEN takes
//! effect when its transaction commits: at the end of the message outside a transaction
//! block, at `COMMIT` inside one, never when the message fails or the transaction rolls back.

use std::collections::VecDeque;

use super::Relay;
use super::expect::{SqlError, Synthetic};
use crate::config::PoolMode;
use crate::notify::{self, ListenAs, Subscriber};
use crate::plugins::bindings::ResultSet;
use crate::session::served::Served;
use crate::session::steps::Protocol;
use crate::wire::messages::{ParseRef, TxStatus};
use crate::wire::results;

/// A LISTEN (`true`) or UNLISTEN (`false`) of a channel (`*` for every channel).
pub type ChannelCommand = (bool, String);

/// What the LISTEN/UNLISTEN step made of a simple query.
pub(super) enum ListenStep {
    /// No LISTEN or UNLISTEN in it (or session mode): the server answers it.
    Pass,
    /// Made only of LISTEN/UNLISTEN, or refused: the proxy answered it.
    Answered,
    /// Mixed: the server runs `server_sql`, the proxy answers the rest in place.
    Mixed {
        /// The message's other statements, in order.
        server_sql: String,
        /// Where the proxy's answers go.
        splice: Box<ChannelSplice>,
    },
}

/// The LISTEN/UNLISTEN statements of a mixed simple query, answered by the proxy between
/// the server's answers to the other statements.
#[derive(Debug, Default)]
pub struct ChannelSplice {
    /// Each statement's tag, after how many of the server's statements it comes.
    tags: VecDeque<(usize, &'static str)>,
    /// The server's statements completed so far.
    completed: usize,
    /// What the message asks, applied when it succeeds.
    commands: Vec<ChannelCommand>,
    /// A statement of the message failed: nothing after it ran, nothing of it applies.
    failed: bool,
}

impl ChannelSplice {
    /// Appends the tags due before the server answers anything.
    pub fn leading(&mut self, out: &mut Vec<u8>) {
        while self.tags.front().is_some_and(|&(at, _)| at == 0) {
            let (_, tag) = self.tags.pop_front().expect("checked");
            results::command_complete(out, tag);
        }
    }

    /// The server completed one of its statements: appends the tags that follow it.
    pub fn completed_one(&mut self, out: &mut Vec<u8>) {
        self.completed += 1;
        while self
            .tags
            .front()
            .is_some_and(|&(at, _)| at <= self.completed)
        {
            let (_, tag) = self.tags.pop_front().expect("checked");
            results::command_complete(out, tag);
        }
    }

    /// A `ROLLBACK` in the message: the commands before it never apply.
    pub fn rolled_back(&mut self) {
        let answered = self.commands.len() - self.tags.len();
        self.commands.drain(..answered);
    }

    /// A statement failed: PostgreSQL runs nothing after it.
    pub fn failed(&mut self) {
        self.failed = true;
        self.tags.clear();
    }

    /// The message ended: what it asks, unless it failed.
    pub fn into_commands(self) -> Vec<ChannelCommand> {
        if self.failed {
            Vec::new()
        } else {
            self.commands
        }
    }
}

/// Channel commands waiting for their transaction to end, and those due now.
#[derive(Debug, Default)]
pub struct ChannelChanges {
    /// Asked inside the open transaction block.
    pending: Vec<ChannelCommand>,
    /// Committed: the proxy applies them before the client hears of the commit.
    due: Vec<ChannelCommand>,
}

impl ChannelChanges {
    /// A message's commands ended with the server in `status`.
    pub fn message_ended(&mut self, commands: Vec<ChannelCommand>, status: TxStatus) {
        match status {
            TxStatus::Idle => self.due.extend(commands),
            TxStatus::InTransaction => self.pending.extend(commands),
            TxStatus::Failed => {}
        }
    }

    /// The transaction block rolled back: what it asked never applies.
    pub fn rolled_back(&mut self) {
        self.pending.clear();
    }

    /// The server is outside a transaction block again: what a committed block asked is due.
    pub fn transaction_ended(&mut self) {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            self.due.extend(pending);
        }
    }

    /// Whether anything is due.
    #[inline]
    pub fn any_due(&self) -> bool {
        !self.due.is_empty()
    }
}

/// One statement of a simple query that holds a LISTEN or UNLISTEN.
enum Piece<'a> {
    Channel(ChannelCommand),
    Server(&'a str),
}

/// A session's subscription: its inbox and what waits for the client to be idle.
pub struct Listening {
    sub: Subscriber,
    /// Notifications for this session.
    pub inbox: notify::Inbox,
    /// Notifications received while the client was busy.
    pub waiting: Vec<u8>,
}

impl Relay {
    /// A simple query with LISTEN/UNLISTEN in a pooled mode: answered here when made only of
    /// them, split when mixed with other statements.
    pub(super) async fn listen_simple(&mut self, sql: &str) -> ListenStep {
        let pieces = match self.pieces(sql) {
            None => return ListenStep::Pass,
            Some(Ok(pieces)) => pieces,
            Some(Err(e)) => {
                self.queue.push_synthetic(Synthetic::Error(e));
                self.queue.push_synthetic(Synthetic::ReadyForQuery);
                return ListenStep::Answered;
            }
        };
        let leading_channel = matches!(pieces.first(), Some(Piece::Channel(_)));
        if self.status == TxStatus::Failed && leading_channel {
            self.queue.push_synthetic(Synthetic::Error(aborted()));
            self.queue.push_synthetic(Synthetic::ReadyForQuery);
            return ListenStep::Answered;
        }
        if pieces.iter().all(|p| matches!(p, Piece::Channel(_))) {
            let commands = pieces
                .into_iter()
                .filter_map(|p| match p {
                    Piece::Channel(c) => Some(c),
                    Piece::Server(_) => None,
                })
                .collect();
            self.answer_channel_message(commands).await;
            return ListenStep::Answered;
        }
        let mut server_sql = String::with_capacity(sql.len());
        let mut splice = ChannelSplice::default();
        let mut server_statements = 0;
        for piece in pieces {
            match piece {
                Piece::Server(text) => {
                    if server_statements > 0 {
                        server_sql.push(';');
                    }
                    server_sql.push_str(text);
                    server_statements += 1;
                }
                Piece::Channel(command) => {
                    splice.tags.push_back((server_statements, tag_of(&command)));
                    splice.commands.push(command);
                }
            }
        }
        ListenStep::Mixed {
            server_sql,
            splice: Box::new(splice),
        }
    }

    /// Answers a simple query made only of LISTEN/UNLISTEN: at once outside a transaction
    /// block, at its `COMMIT` inside one.
    async fn answer_channel_message(&mut self, commands: Vec<ChannelCommand>) {
        let result = if self.status.in_transaction() {
            let tags = commands.iter().map(tag_of).collect();
            self.channel_changes
                .message_ended(commands, TxStatus::InTransaction);
            Ok(tags)
        } else {
            self.run_channel_commands(commands).await
        };
        match result {
            Ok(tags) => {
                let mut out = Vec::new();
                for tag in tags {
                    results::command_complete(&mut out, tag);
                }
                self.queue.push_synthetic(Synthetic::Raw(out));
            }
            Err(e) => self.queue.push_synthetic(Synthetic::Error(e)),
        }
        self.queue.push_synthetic(Synthetic::ReadyForQuery);
    }

    /// Applies the channel commands whose transaction committed.
    pub(super) async fn apply_due_channels(&mut self) {
        if !self.channel_changes.any_due() {
            return;
        }
        let due = std::mem::take(&mut self.channel_changes.due);
        if let Err(e) = self.run_channel_commands(due).await {
            tracing::warn!("a committed LISTEN/UNLISTEN failed: {}", e.message);
        }
    }

    /// A `Parse` of one LISTEN/UNLISTEN in a pooled mode: the proxy subscribes and serves
    /// the statement's portals itself. Returns whether it did.
    pub(super) async fn listen_parse(&mut self, parse: &ParseRef<'_>) -> bool {
        let sql = String::from_utf8_lossy(parse.query);
        let Some(pieces) = self.pieces(&sql) else {
            return false;
        };
        let commands = pieces.and_then(|pieces| {
            pieces
                .into_iter()
                .map(|p| match p {
                    Piece::Channel(c) => Ok(c),
                    // PostgreSQL refuses several statements in one `Parse` anyway.
                    Piece::Server(_) => Err(SqlError::new(
                        "42601",
                        "cannot insert multiple commands into a prepared statement",
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        });
        let result = match commands {
            Ok(commands) => self.run_channel_commands(commands).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(tags) => {
                let result = ResultSet {
                    columns: Vec::new(),
                    rows: Vec::new(),
                    command_tag: tags.last().copied().unwrap_or("LISTEN").to_owned(),
                };
                self.stmts
                    .serve(parse.name, Served::new(parse.param_types, result));
                self.queue.push_synthetic(Synthetic::ParseComplete);
            }
            Err(e) => self.refuse(e, Protocol::Extended),
        }
        true
    }

    /// The statements of `sql` when any is a LISTEN or UNLISTEN in a pooled mode: the
    /// channel commands (by PostgreSQL's grammar) and the text of the others. Text the
    /// proxy cannot split as PostgreSQL does is refused rather than guessed at.
    fn pieces<'a>(&self, sql: &'a str) -> Option<Result<Vec<Piece<'a>>, SqlError>> {
        if self.mode == PoolMode::Session
            || !sql
                .as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"listen"))
        {
            return None;
        }
        let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
        if !analysis.statements.iter().any(|s| s.channel.is_some()) {
            return None;
        }
        let texts = crate::sql::split_statements(sql);
        if texts.len() != analysis.statements.len() {
            return Some(Err(SqlError::new(
                "0A000",
                "in pooled modes this message cannot be split into its statements around \
                 LISTEN/UNLISTEN; send LISTEN and UNLISTEN in a message of their own",
            )));
        }
        let pieces = texts
            .into_iter()
            .zip(&analysis.statements)
            .map(|(text, s)| match &s.channel {
                Some(channel) => Piece::Channel((s.kind == "listen", channel.clone())),
                None => Piece::Server(text),
            })
            .collect();
        Some(Ok(pieces))
    }

    async fn run_channel_commands(
        &mut self,
        commands: Vec<ChannelCommand>,
    ) -> Result<Vec<&'static str>, SqlError> {
        let who = self.listen_as();
        let sub = self.subscriber();
        let hub = self.env.notifications.clone();
        let mut tags = Vec::new();
        for (listen, channel) in commands {
            let result = if listen {
                hub.listen(&who, &channel, &sub).await
            } else {
                hub.unlisten(&who, &channel, sub.id).await
            };
            result.map_err(|e| SqlError::new("58000", format!("LISTEN failed: {e}")))?;
            tags.push(if listen { "LISTEN" } else { "UNLISTEN" });
        }
        Ok(tags)
    }

    fn listen_as(&self) -> ListenAs {
        ListenAs {
            database: self.pool.key.database.clone(),
            user: self.server_user.clone(),
            password: self.server_password.clone(),
        }
    }

    fn subscriber(&mut self) -> Subscriber {
        if let Some(l) = &self.listening {
            return l.sub.clone();
        }
        let (tx, inbox) = tokio::sync::mpsc::channel(notify::QUEUE);
        let sub = Subscriber {
            id: self.info.session_id,
            tx,
        };
        self.listening = Some(Box::new(Listening {
            sub: sub.clone(),
            inbox,
            waiting: Vec::new(),
        }));
        sub
    }

    /// Writes the notifications received so far once the client is between transactions
    /// with nothing in flight.
    pub(super) async fn deliver_notifications(&mut self) -> std::io::Result<()> {
        let Some(l) = self.listening.as_mut() else {
            return Ok(());
        };
        if l.waiting.is_empty() || !self.queue.is_empty() || self.status.in_transaction() {
            return Ok(());
        }
        use tokio::io::AsyncWriteExt;
        let waiting = std::mem::take(&mut l.waiting);
        self.client.write_all(&waiting).await
    }

    /// Notifications received and not yet written, in bytes.
    pub(super) fn notifications_waiting(&self) -> usize {
        self.listening.as_ref().map_or(0, |l| l.waiting.capacity())
    }

    /// The session ended: its channels are given up.
    pub(super) fn stop_listening(&mut self) {
        if self.listening.take().is_some() {
            let who = self.listen_as();
            self.env.notifications.forget(&who, self.info.session_id);
        }
    }
}

/// The command tag PostgreSQL answers a channel command with.
fn tag_of(command: &ChannelCommand) -> &'static str {
    if command.0 { "LISTEN" } else { "UNLISTEN" }
}

/// PostgreSQL's error for a statement in a failed transaction block.
fn aborted() -> SqlError {
    SqlError::new(
        "25P02",
        "current transaction is aborted, commands ignored until end of transaction block",
    )
}

/// The next notification for a session that listens; pending forever for one that does not.
pub(super) async fn next_notification(listening: &mut Option<Box<Listening>>) -> Vec<u8> {
    match listening {
        Some(l) => match l.inbox.recv().await {
            Some(message) => message,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}
