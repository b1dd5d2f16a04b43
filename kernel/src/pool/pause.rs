//! `PAUSE` and `RESUME` (and the pause `KILL` leaves behind): new checkouts for a paused
//! database wait until it is resumed. A checkout of a database nobody paused costs one
//! relaxed load.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tokio::sync::watch;

/// What is paused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Paused {
    /// Every database.
    pub all: bool,
    /// These databases.
    pub databases: HashSet<String>,
}

impl Paused {
    /// Whether checkouts for `database` wait.
    pub fn blocks(&self, database: &str) -> bool {
        self.all || self.databases.contains(database)
    }
}

/// The pause switch.
#[derive(Debug)]
pub struct PauseGate {
    any: AtomicBool,
    state: watch::Sender<Paused>,
}

impl Default for PauseGate {
    fn default() -> Self {
        PauseGate {
            any: AtomicBool::new(false),
            state: watch::Sender::new(Paused::default()),
        }
    }
}

impl PauseGate {
    /// Pauses `database`, or everything when `None`.
    pub fn pause(&self, database: Option<&str>) {
        self.state.send_modify(|p| match database {
            None => p.all = true,
            Some(db) => {
                p.databases.insert(db.to_owned());
            }
        });
        self.any.store(true, Relaxed);
    }

    /// Resumes `database`, or everything when `None`.
    pub fn resume(&self, database: Option<&str>) {
        self.state.send_modify(|p| match database {
            None => *p = Paused::default(),
            Some(db) => {
                p.databases.remove(db);
            }
        });
        let still = {
            let p = self.state.borrow();
            p.all || !p.databases.is_empty()
        };
        self.any.store(still, Relaxed);
    }

    /// What is paused now.
    pub fn paused(&self) -> Paused {
        self.state.borrow().clone()
    }

    /// Waits while `database` is paused.
    #[inline]
    pub async fn wait(&self, database: &str) {
        if !self.any.load(Relaxed) {
            return;
        }
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|p| !p.blocks(database)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_paused_database_waits_until_resumed() {
        let gate = Arc::new(PauseGate::default());
        gate.pause(Some("app"));
        gate.wait("other").await;
        let g = gate.clone();
        let waiter = tokio::spawn(async move { g.wait("app").await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiter.is_finished());
        gate.resume(Some("app"));
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("resumed")
            .unwrap();
        gate.pause(None);
        assert!(gate.paused().blocks("anything"));
        gate.resume(None);
        gate.wait("anything").await;
    }
}
