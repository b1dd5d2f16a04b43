//! The switchover gate and what a session's checkout does around a failover: wait while a
//! switchover is under way, skip a fenced node, wait (bounded) for a new primary instead of
//! failing when the primary is down.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{BufferError, Decrement, Role, Switch, Topology, now_ms};

/// Where a session's checkout goes, and whether it already waited for a failover.
#[derive(Debug)]
pub struct Admission {
    /// The node to try.
    pub node: usize,
    waited_for_failover: bool,
}

impl Topology {
    /// Whether a switchover is under way.
    #[inline]
    pub fn switching(&self) -> bool {
        self.switching.load(Relaxed)
    }

    /// Closes the gate: new queries wait until [`Topology::end_switch`].
    pub fn begin_switch(&self) {
        self.switching.store(true, Relaxed);
        self.switch.send_modify(|s| s.in_progress = true);
    }

    /// Opens the gate again.
    pub fn end_switch(&self) {
        self.switching.store(false, Relaxed);
        self.switch.send_modify(|s| s.in_progress = false);
    }

    /// Waits (bounded in count and time) until no switchover is under way.
    pub async fn wait_for_switch(&self) -> Result<(), BufferError> {
        if !self.switching() {
            return Ok(());
        }
        self.buffered(|s| !s.in_progress).await
    }

    /// Waits until the primary changes from generation `seen` (bounded in count and time,
    /// like [`Topology::wait_for_switch`]).
    pub async fn wait_for_new_primary(&self, seen: u64) -> Result<(), BufferError> {
        self.buffered(|s| s.generation != seen && !s.in_progress)
            .await
    }

    /// The switchover buffer: waits until `done` holds for the switch state, as one of at
    /// most `buffer_max_waiters`, for at most `buffer_timeout`.
    async fn buffered(&self, done: impl FnMut(&Switch) -> bool) -> Result<(), BufferError> {
        let waiting = self.waiters.fetch_add(1, Relaxed);
        let _guard = Decrement(&self.waiters);
        if waiting >= self.buffer_max_waiters {
            return Err(BufferError::Full(waiting));
        }
        let mut rx = self.switch.subscribe();
        tokio::time::timeout(self.buffer_timeout, rx.wait_for(done))
            .await
            .map(|_| ())
            .map_err(|_| BufferError::TimedOut(self.buffer_timeout.as_millis() as u64))
    }

    /// After a session lost its connection to the primary `node`: waits (at most the buffer
    /// timeout) for the next health check. `true` when that check passed (only the one
    /// connection was lost) or a new primary took over; `false` when neither happened.
    pub async fn primary_still_serves(&self, node: usize, seen: u64) -> bool {
        let asked = now_ms();
        let deadline = tokio::time::Instant::now() + self.buffer_timeout;
        while tokio::time::Instant::now() < deadline {
            if self.generation() != seen && !self.switching() {
                return true;
            }
            let report = self.nodes[node].report();
            if !self.switching()
                && report.ok
                && report.checked_at_ms > asked
                && self.primary() == node
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Whether a failed primary is worth waiting for: tracking is on and a failover can
    /// replace it.
    pub fn can_wait_for_failover(&self) -> bool {
        self.buffer_max_waiters > 0
    }

    /// Admits a checkout that wants `wanted`: waits out a switchover, moves off a fenced
    /// node, and waits (bounded) for a new primary when the primary is known to be down.
    pub async fn admit_checkout(&self, wanted: usize) -> Result<Admission, BufferError> {
        if self.switching() {
            self.wait_for_switch().await?;
        }
        let mut node = wanted;
        if self.nodes[node].role() == Role::Fenced {
            node = self.primary();
        }
        let mut waited_for_failover = false;
        if node == self.primary() && self.nodes[node].is_down() && self.can_wait_for_failover() {
            waited_for_failover = true;
            node = self.replacement_primary(node).await?;
        }
        Ok(Admission {
            node,
            waited_for_failover,
        })
    }

    /// After connecting to `node` failed: when it is the primary and no failover was waited
    /// for yet, waits (bounded) for a new primary and returns it.
    pub async fn after_failed_connect(
        &self,
        admission: &mut Admission,
        node: usize,
    ) -> Option<usize> {
        if admission.waited_for_failover || node != self.primary() || !self.can_wait_for_failover()
        {
            return None;
        }
        admission.waited_for_failover = true;
        self.replacement_primary(node).await.ok()
    }

    /// Asks for a check of the primary `node` and waits (bounded by the switchover buffer)
    /// for another node to take its place; the new primary.
    pub async fn replacement_primary(&self, node: usize) -> Result<usize, BufferError> {
        let generation = self.generation();
        self.nudge(node);
        self.wait_for_new_primary(generation).await?;
        Ok(self.primary())
    }

    /// Whether the node called `name` was fenced (a primary that was replaced).
    pub fn is_fenced(&self, name: &str) -> bool {
        self.by_name(name)
            .is_some_and(|n| self.nodes[n].role() == Role::Fenced)
    }
}
