//! What happens when a session's server connection is lost: the transaction log kept while
//! it runs ([`txlog`]), the transaction id captured before a `COMMIT` ([`xid`]), and moving
//! the session to a new server with its state, statements, held cursors and open
//! transaction ([`phases`]), so the client notices nothing; or, when that cannot be done
//! safely, the error the client gets.

pub mod phases;
pub mod txlog;
pub mod xid;

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::session::relay::Relay;
use crate::session::relay::expect::SqlError;
use crate::session::{SessionError, fatal};
use crate::wire::messages::{TxStatus, sqlstate};

/// Counters of sessions that lost their server.
#[derive(Debug, Default, Serialize)]
pub struct SessionCounters {
    /// Sessions that moved to another server without the client noticing.
    pub moved: AtomicU64,
    /// Open transactions replayed (and verified) on the new server.
    pub transactions_replayed: AtomicU64,
    /// COMMITs interrupted by the loss whose outcome was read with `txid_status`.
    pub commits_resolved: AtomicU64,
    /// Clients answered 40001 (retry): a replay was unsafe or diverged.
    pub retry_errors: AtomicU64,
    /// Clients answered 08007: a commit's outcome could not be known.
    pub unknown_outcomes: AtomicU64,
}

/// Why a session could not be moved to a new server.
#[derive(Debug)]
pub enum NotMoved {
    /// No server could take the session: the client gets a FATAL error and is disconnected.
    NoServer(String),
    /// The session lives on, but the requests in flight are answered with this error
    /// (40001: retry the transaction; 08007: the commit's outcome is unknown).
    Answered(SqlError),
}

impl NotMoved {
    fn retry(message: impl Into<String>) -> Self {
        NotMoved::Answered(SqlError::new(sqlstate::SERIALIZATION_FAILURE, message))
    }

    fn unknown(message: impl Into<String>) -> Self {
        NotMoved::Answered(SqlError::new(
            sqlstate::TRANSACTION_RESOLUTION_UNKNOWN,
            message,
        ))
    }
}

impl Relay {
    /// The server connection died under the client. With transaction replay on, the session
    /// moves to the new primary (or another node); see [`phases`]. Without it, or when no
    /// server can be reached, the client gets a FATAL error. Everyone else carries on.
    pub(in crate::session) async fn server_lost(&mut self, why: &str) -> Result<(), SessionError> {
        let topology = self.env.topology.clone();
        let lost = topology.by_name(&self.pool.key.node);
        // The batch the client has not ended yet continues on the new server.
        let batch_open = self.batch_open;
        self.give_back(false);
        tracing::warn!(pool = ?self.pool.key, "server connection lost: {why}");
        if let Some(node) = lost {
            topology.nodes[node].mark_unhealthy();
            topology.nudge(node);
        }
        if self.tx.is_some()
            && let Some(node) = lost
        {
            let counters = self.env.counters.clone();
            match self.recover(node).await {
                Ok(()) => {
                    self.batch_open = batch_open && self.server.is_some();
                    counters.moved.fetch_add(1, Relaxed);
                    self.emit_synthetics();
                    self.flush_client().await?;
                    return Ok(());
                }
                Err(NotMoved::Answered(error)) => {
                    tracing::warn!(
                        "transaction not replayed ({}): {}",
                        error.code,
                        error.message
                    );
                    if error.code == sqlstate::SERIALIZATION_FAILURE {
                        counters.retry_errors.fetch_add(1, Relaxed);
                    } else {
                        counters.unknown_outcomes.fetch_add(1, Relaxed);
                    }
                    self.fail_in_flight(&error);
                    self.emit_synthetics();
                    self.flush_client().await?;
                    return Ok(());
                }
                Err(NotMoved::NoServer(message)) => {
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

    /// Whether the answer now arriving could acknowledge a commit that a standby being
    /// promoted will not have: during a switchover, or from a fenced primary (a backend
    /// orphaned by a crash can still commit while the standby is being promoted). Such a
    /// commit is resolved on the new primary instead.
    pub(in crate::session) fn commit_ack_untrusted(&self) -> bool {
        let Some(tx) = self.tx.as_deref() else {
            return false;
        };
        if !(tx.commits || tx.autocommit_write) {
            return false;
        }
        let topology = &self.env.topology;
        topology.switching() || topology.is_fenced(&self.pool.key.node)
    }

    /// Moves the session to a new server after `lost` failed.
    async fn recover(&mut self, lost: usize) -> Result<(), NotMoved> {
        let mut tx = self.tx.take().expect("transaction replay is on");
        let result = self.recover_with(&mut tx, lost).await;
        tx.answered = 0;
        self.tx = Some(tx);
        result
    }

    /// Answers every request in flight with an error; the transaction (if one was open) is
    /// now failed, as the client will see in `ReadyForQuery`.
    fn fail_in_flight(&mut self, error: &SqlError) {
        if self.status.in_transaction() {
            self.status = TxStatus::Failed;
            // The client's ROLLBACK will reach a server that has no transaction.
            self.hide_no_tx_warning = true;
        }
        if self.queue.fail_in_flight(error) {
            self.skip_until_sync = true;
        }
        self.in_copy = false;
        self.syncs_ignored_in_copy = false;
    }
}
