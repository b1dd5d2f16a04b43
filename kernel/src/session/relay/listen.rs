//! LISTEN/UNLISTEN of a pooled session: answered by the proxy, which listens for the
//! client on its own connection ([`crate::notify`]), and the delivery of notifications to
//! the client between transactions, as PostgreSQL delivers them.

use super::Relay;
use super::expect::{SqlError, Synthetic};
use crate::config::PoolMode;
use crate::notify::{self, ListenAs, Subscriber};
use crate::plugins::bindings::ResultSet;
use crate::session::served::Served;
use crate::session::steps::Protocol;
use crate::wire::messages::ParseRef;
use crate::wire::results;

/// A session's subscription: its inbox and what waits for the client to be idle.
pub struct Listening {
    sub: Subscriber,
    /// Notifications for this session.
    pub inbox: notify::Inbox,
    /// Notifications received while the client was busy.
    pub waiting: Vec<u8>,
}

impl Relay {
    /// A simple query made only of LISTEN/UNLISTEN in a pooled mode: answered here.
    /// Returns whether it was.
    pub(super) async fn listen_simple(&mut self, sql: &str) -> bool {
        let Some(commands) = self.channel_commands(sql) else {
            return false;
        };
        let mut out = Vec::new();
        let result = match commands {
            Ok(commands) => self.run_channel_commands(commands).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(tags) => {
                for tag in tags {
                    results::command_complete(&mut out, tag);
                }
                self.queue.push_synthetic(Synthetic::Raw(out));
            }
            Err(e) => self.queue.push_synthetic(Synthetic::Error(e)),
        }
        self.queue.push_synthetic(Synthetic::ReadyForQuery);
        true
    }

    /// A `Parse` of one LISTEN/UNLISTEN in a pooled mode: the proxy subscribes and serves
    /// the statement's portals itself. Returns whether it did.
    pub(super) async fn listen_parse(&mut self, parse: &ParseRef<'_>) -> bool {
        let sql = String::from_utf8_lossy(parse.query);
        let Some(commands) = self.channel_commands(&sql) else {
            return false;
        };
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

    /// The LISTEN/UNLISTEN commands of `sql` (`true` for LISTEN, the channel), when it is
    /// made only of them; a message that mixes them with other statements is refused.
    fn channel_commands(&self, sql: &str) -> Option<Result<Vec<(bool, String)>, SqlError>> {
        if self.mode == PoolMode::Session
            || !sql
                .as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"listen"))
        {
            return None;
        }
        let (_, analysis) = crate::plugins::facts::analyzer().analyze(sql);
        let commands: Vec<(bool, String)> = analysis
            .statements
            .iter()
            .filter_map(|s| Some((s.kind == "listen", s.channel.clone()?)))
            .collect();
        if commands.is_empty() {
            return None;
        }
        if commands.len() != analysis.statements.len() {
            return Some(Err(SqlError::new(
                "0A000",
                "in transaction pooling mode LISTEN and UNLISTEN must be sent on their own, \
                 not with other statements in one message",
            )));
        }
        Some(Ok(commands))
    }

    async fn run_channel_commands(
        &mut self,
        commands: Vec<(bool, String)>,
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
