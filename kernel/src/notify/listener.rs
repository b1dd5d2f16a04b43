//! One listening connection: a task that holds a server connection on the current primary,
//! runs `LISTEN`/`UNLISTEN` as sessions ask, and hands each `NotificationResponse` to the
//! sessions subscribed to its channel. When the connection is lost or the primary changes,
//! it connects to the (new) primary and listens on every subscribed channel again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::{ListenAs, Reply, Subscriber, quote_ident};
use crate::pool::server::ServerConn;
use crate::topology::Topology;
use crate::wire::frame::write_message;

/// What a session asks of the listening connection.
pub enum Command {
    /// `LISTEN` on a channel.
    Listen(String, Reply),
    /// `UNLISTEN` the channels nobody listens to any more.
    Unlisten(Vec<String>, Reply),
}

type Subscriptions = Arc<Mutex<HashMap<String, Vec<Subscriber>>>>;

/// The handle of one listening connection's task.
pub struct Listener {
    commands: mpsc::UnboundedSender<Command>,
    subs: Subscriptions,
}

/// How long a session waits for its `LISTEN` to run.
const ANSWER: Duration = Duration::from_secs(10);

impl Listener {
    /// Starts the task; it connects on the first command.
    pub fn start(topology: Arc<Topology>, who: ListenAs) -> Arc<Listener> {
        let (commands, rx) = mpsc::unbounded_channel();
        let subs: Subscriptions = Arc::default();
        tokio::spawn(run(topology, who, rx, subs.clone()));
        Arc::new(Listener { commands, subs })
    }

    /// Adds a subscriber to a channel.
    pub fn subscribe(&self, channel: &str, sub: &Subscriber) {
        let mut subs = self.subs.lock().expect("subscriptions");
        let list = subs.entry(channel.to_owned()).or_default();
        if !list.iter().any(|s| s.id == sub.id) {
            list.push(sub.clone());
        }
    }

    /// Removes session `id` from `channel` (every channel for [`super::EVERY_CHANNEL`]);
    /// returns the channels nobody listens to any more.
    pub fn unsubscribe(&self, channel: &str, id: u64) -> Vec<String> {
        let mut subs = self.subs.lock().expect("subscriptions");
        let mut emptied = Vec::new();
        subs.retain(|name, list| {
            if channel == super::EVERY_CHANNEL || name == channel {
                list.retain(|s| s.id != id);
            }
            if list.is_empty() {
                emptied.push(name.clone());
                return false;
            }
            true
        });
        emptied
    }

    /// Sends a command without waiting.
    pub fn send(&self, command: Command) {
        let _ = self.commands.send(command);
    }

    /// Sends a command and waits (bounded) for the server's answer.
    pub async fn ask(&self, make: impl FnOnce(Reply) -> Command) -> Result<(), String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(make(reply));
        match tokio::time::timeout(ANSWER, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the listening connection stopped".into()),
            Err(_) => Err("the listening connection did not answer in time".into()),
        }
    }
}

async fn run(
    topology: Arc<Topology>,
    who: ListenAs,
    mut commands: mpsc::UnboundedReceiver<Command>,
    subs: Subscriptions,
) {
    let mut conn: Option<(ServerConn, usize)> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        if conn.is_none() {
            conn = connect(&topology, &who, &subs).await;
        }
        let Some((server, node)) = conn.as_mut() else {
            // No primary to listen on: commands fail until one is back.
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(c) => answer(c, Err("no connection to the primary to listen on".into())),
                },
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
            continue;
        };
        tokio::select! {
            command = commands.recv() => {
                let Some(command) = command else { return };
                let (sql, reply) = match command {
                    Command::Listen(channel, reply) => (format!("LISTEN {}", quote_ident(&channel)), reply),
                    Command::Unlisten(channels, reply) => (
                        channels.iter().map(|c| format!("UNLISTEN {};", quote_ident(c))).collect(),
                        reply,
                    ),
                };
                let result = exchange(server, &sql, &subs).await;
                if result.is_err() {
                    conn = None;
                }
                let _ = reply.send(result);
            }
            message = server.read_message() => match message {
                Ok((b'A', body)) => dispatch(&subs, &body),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(database = %who.database, "listening connection lost: {e}");
                    conn = None;
                }
            },
            _ = tick.tick() => {
                if topology.primary() != *node {
                    tracing::info!(database = %who.database, "primary changed: listening there");
                    conn = None;
                }
            }
        }
    }
}

fn answer(command: Command, result: Result<(), String>) {
    let (Command::Listen(_, reply) | Command::Unlisten(_, reply)) = command;
    let _ = reply.send(result);
}

/// Connects to the primary and listens on every subscribed channel.
async fn connect(
    topology: &Topology,
    who: &ListenAs,
    subs: &Subscriptions,
) -> Option<(ServerConn, usize)> {
    let node = topology.primary();
    let target = topology.nodes[node].target.clone();
    let mut server = match ServerConn::connect(
        target,
        &who.user,
        &who.database,
        who.password.as_deref(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(database = %who.database, "listening connection failed: {e}");
            return None;
        }
    };
    let channels: String = {
        let subs = subs.lock().expect("subscriptions");
        subs.keys()
            .map(|c| format!("LISTEN {};", quote_ident(c)))
            .collect()
    };
    if !channels.is_empty() && exchange(&mut server, &channels, subs).await.is_err() {
        return None;
    }
    Some((server, node))
}

/// Runs `sql`, handing notifications that arrive meanwhile to their subscribers.
async fn exchange(server: &mut ServerConn, sql: &str, subs: &Subscriptions) -> Result<(), String> {
    let mut out = Vec::new();
    crate::wire::messages::query(&mut out, sql);
    let mut error = None;
    server
        .exchange(&out, |tag, body| match tag {
            b'A' => dispatch(subs, body),
            b'E' if error.is_none() => {
                error = crate::wire::messages::ErrorFields::parse(body)
                    .ok()
                    .map(|f| f.message)
            }
            _ => {}
        })
        .await
        .map_err(|e| e.to_string())?;
    error.map_or(Ok(()), Err)
}

/// Hands a `NotificationResponse` body to the channel's subscribers. A subscriber whose
/// queue is full misses it (and the proxy says so once per burst in its log).
fn dispatch(subs: &Subscriptions, body: &[u8]) {
    let Some(rest) = body.get(4..) else {
        return;
    };
    let channel = rest.split(|b| *b == 0).next().unwrap_or_default();
    let Ok(channel) = std::str::from_utf8(channel) else {
        return;
    };
    let subs = subs.lock().expect("subscriptions");
    let Some(list) = subs.get(channel) else {
        return;
    };
    let mut message = Vec::with_capacity(body.len() + 5);
    write_message(&mut message, b'A', |b| b.extend_from_slice(body));
    for sub in list {
        if sub.tx.try_send(message.clone()).is_err() {
            tracing::warn!(
                session = sub.id,
                channel,
                "notification dropped: the client is not reading"
            );
        }
    }
}
