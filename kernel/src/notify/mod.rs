//! LISTEN/NOTIFY for pooled sessions. A client in transaction or statement mode has no
//! server connection of its own to listen on, so the proxy listens for it: one connection
//! per (database, user) on the current primary ([`listener`]) runs every channel's `LISTEN`
//! and fans each notification out to the sessions subscribed to that channel. `NOTIFY` and
//! `pg_notify` need nothing: they run on any server connection of the database.

mod listener;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::topology::Topology;
use listener::{Command, Listener};

/// How many notifications wait for a busy client before newer ones are dropped.
pub const QUEUE: usize = 4096;

/// A session's end of its notifications: `NotificationResponse` messages, ready to write.
pub type Inbox = mpsc::Receiver<Vec<u8>>;

/// Every listening connection of the proxy.
pub struct Notifications {
    topology: Arc<Topology>,
    listeners: Mutex<HashMap<(String, String), Arc<Listener>>>,
}

/// Who a subscription belongs to and where its notifications go.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The session's id.
    pub id: u64,
    /// The session's inbox.
    pub tx: mpsc::Sender<Vec<u8>>,
}

/// Which listening connection: the database and the role it logs in as, with its password.
#[derive(Debug, Clone)]
pub struct ListenAs {
    /// Database.
    pub database: String,
    /// Role.
    pub user: String,
    /// Its password, when the backend asks for one.
    pub password: Option<String>,
}

impl Notifications {
    /// No listeners yet; each starts with its first subscriber.
    pub fn new(topology: Arc<Topology>) -> Self {
        Notifications {
            topology,
            listeners: Mutex::new(HashMap::new()),
        }
    }

    /// Subscribes to `channel` (as the server names it); returns once the server listens.
    pub async fn listen(
        &self,
        who: &ListenAs,
        channel: &str,
        sub: &Subscriber,
    ) -> Result<(), String> {
        let listener = self.listener(who);
        listener.subscribe(channel, sub);
        listener
            .ask(|reply| Command::Listen(channel.to_owned(), reply))
            .await
    }

    /// Unsubscribes from `channel`, or from every channel for [`EVERY_CHANNEL`].
    pub async fn unlisten(&self, who: &ListenAs, channel: &str, id: u64) -> Result<(), String> {
        let Some(listener) = self.existing(who) else {
            return Ok(());
        };
        let emptied = listener.unsubscribe(channel, id);
        if emptied.is_empty() {
            return Ok(());
        }
        listener
            .ask(|reply| Command::Unlisten(emptied, reply))
            .await
    }

    /// Forgets a session that ended.
    pub fn forget(&self, who: &ListenAs, id: u64) {
        if let Some(listener) = self.existing(who) {
            let emptied = listener.unsubscribe(EVERY_CHANNEL, id);
            if !emptied.is_empty() {
                let (reply, _) = oneshot::channel();
                listener.send(Command::Unlisten(emptied, reply));
            }
        }
    }

    fn existing(&self, who: &ListenAs) -> Option<Arc<Listener>> {
        let key = (who.database.clone(), who.user.clone());
        self.listeners.lock().expect("listeners").get(&key).cloned()
    }

    fn listener(&self, who: &ListenAs) -> Arc<Listener> {
        let key = (who.database.clone(), who.user.clone());
        let mut all = self.listeners.lock().expect("listeners");
        all.entry(key)
            .or_insert_with(|| Listener::start(self.topology.clone(), who.clone()))
            .clone()
    }
}

/// The channel `UNLISTEN *` names: every channel. No channel is named by the empty string (a
/// quoted `"*"` is a channel of its own).
pub const EVERY_CHANNEL: &str = "";

/// `"name"`: a channel exactly as the server names it.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The reply a command waits for.
type Reply = oneshot::Sender<Result<(), String>>;
