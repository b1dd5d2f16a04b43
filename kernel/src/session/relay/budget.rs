//! A client's memory budget: what one client makes the proxy hold — its buffers, the
//! statements and portals it defined, the responses it waits for, notifications it has not
//! read — is measured after each batch of its messages. A client over its own budget, or
//! one holding more than its share while the whole proxy is over its budget, gets 54000 and
//! is disconnected; everyone else keeps being served.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use super::Relay;
use crate::session::{SessionError, fatal};

/// What one expected response costs, with its observers, roughly.
const QUEUE_ENTRY: usize = 256;

/// Above this a client counts as one of those holding the proxy's memory.
const SHARE: usize = 1 << 20;

/// What all sessions hold together.
#[derive(Debug, Default)]
pub struct MemoryGauge {
    held: AtomicUsize,
}

impl MemoryGauge {
    /// Replaces one session's share `old` by `new`; returns the new total.
    pub fn update(&self, old: usize, new: usize) -> usize {
        if new >= old {
            self.held.fetch_add(new - old, Relaxed) + (new - old)
        } else {
            self.held.fetch_sub(old - new, Relaxed) - (old - new)
        }
    }

    /// The total held now.
    pub fn held(&self) -> usize {
        self.held.load(Relaxed)
    }
}

impl Relay {
    /// What this client makes the proxy hold, roughly, in bytes.
    pub(super) fn held_bytes(&self) -> usize {
        self.cbuf.capacity()
            + self.cout.capacity()
            + self.sout.capacity()
            + self.server.as_ref().map_or(0, |s| s.conn.rbuf.capacity())
            + self.stmts.bytes()
            + self.portals.bytes()
            + self.queue.len() * QUEUE_ENTRY
            + self.notifications_waiting()
    }

    /// Checks the budgets after a batch of the client's messages.
    pub(super) async fn within_budget(&mut self) -> Result<(), SessionError> {
        let held = self.held_bytes();
        let total = self.env.memory.update(self.reported_bytes, held);
        self.reported_bytes = held;
        let limits = &self.env.limits;
        let why = if held > limits.max_client_memory_bytes {
            format!(
                "out of memory: this client makes the proxy hold {held} bytes, over \
                 [limits] max_client_memory_bytes = {}",
                limits.max_client_memory_bytes
            )
        } else if total > limits.max_memory_bytes && held > SHARE {
            format!(
                "out of memory: the proxy holds {total} bytes for its clients, over [limits] \
                 max_memory_bytes = {}, and this client {held}",
                limits.max_memory_bytes
            )
        } else {
            return Ok(());
        };
        tracing::warn!(session = self.info.session_id, "{why}; client disconnected");
        self.flush_client().await.ok();
        fatal(&mut self.client, "54000", &why).await;
        self.linger().await;
        Err(SessionError::Protocol(why))
    }

    /// After the error, stops writing and discards what the client still sends for a
    /// moment: closing with unread input would reset the connection, and the client could
    /// lose the error that says why.
    async fn linger(&mut self) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = self.client.shutdown().await;
        self.cbuf = bytes::BytesMut::new();
        let mut scratch = vec![0u8; 64 << 10];
        let _ = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            while matches!(self.client.read(&mut scratch).await, Ok(n) if n > 0) {}
        })
        .await;
    }

    /// The session ended: its share of the proxy's memory is given back.
    pub(super) fn release_budget(&mut self) {
        self.env.memory.update(self.reported_bytes, 0);
        self.reported_bytes = 0;
    }
}
