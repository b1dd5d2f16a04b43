//! The pool's core: a fair, bounded set of slots with an idle stack, independent of what a
//! slot holds so it can be benchmarked and tested without servers.
//!
//! A permit from the semaphore is the right to hold one item; idle items hold no permit. An
//! item is only created when the idle stack is empty, so `idle + in use` never exceeds the
//! limit.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Lock-free pool counters.
#[derive(Debug, Default)]
pub struct PoolMetrics {
    acquires: AtomicU64,
    waits: AtomicU64,
    timeouts: AtomicU64,
    created: AtomicU64,
    closed: AtomicU64,
    health_check_failures: AtomicU64,
    waiting: AtomicUsize,
    /// How long checkouts that had to wait waited (those that did not are
    /// `acquires - waited.count()`, all at zero).
    pub waited: Histogram,
}

/// A point-in-time copy of [`PoolMetrics`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Successful checkouts.
    pub acquires: u64,
    /// Checkouts that had to wait for a slot.
    pub waits: u64,
    /// Checkouts that gave up after the timeout.
    pub timeouts: u64,
    /// Connections opened.
    pub created: u64,
    /// Connections closed.
    pub closed: u64,
    /// Idle connections found dead at checkout.
    pub health_check_failures: u64,
}

impl PoolMetrics {
    /// Copies every counter (relaxed loads; never blocks checkouts).
    #[inline]
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            acquires: self.acquires.load(Relaxed),
            waits: self.waits.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            created: self.created.load(Relaxed),
            closed: self.closed.load(Relaxed),
            health_check_failures: self.health_check_failures.load(Relaxed),
        }
    }

    /// Checkouts waiting for a slot right now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Relaxed)
    }

    /// Counts a newly opened item.
    pub fn record_created(&self) {
        self.created.fetch_add(1, Relaxed);
    }

    /// Counts a closed item.
    pub fn record_closed(&self) {
        self.closed.fetch_add(1, Relaxed);
    }

    /// Counts an idle item that failed its health check.
    pub fn record_health_check_failure(&self) {
        self.health_check_failures.fetch_add(1, Relaxed);
    }
}

/// What a checkout got: an idle item, or the right to create one.
pub enum Acquired<T> {
    /// A reusable idle item.
    Idle(T, OwnedSemaphorePermit),
    /// No idle item: the caller may create one under this permit.
    Vacant(OwnedSemaphorePermit),
}

/// One checkout in the `waiting` gauge while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn start(gauge: &'a AtomicUsize) -> Self {
        gauge.fetch_add(1, Relaxed);
        Waiting(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// The checkout timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no slot became free within {0:?}")]
pub struct Timeout(pub Duration);

/// A bounded set of reusable items.
pub struct Slots<T> {
    idle: Mutex<Vec<T>>,
    permits: Arc<Semaphore>,
    limit: usize,
    /// Counters.
    pub metrics: PoolMetrics,
}

impl<T> Slots<T> {
    /// Creates a set holding at most `limit` items.
    pub fn new(limit: usize) -> Self {
        Slots {
            idle: Mutex::new(Vec::with_capacity(limit)),
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            metrics: PoolMetrics::default(),
        }
    }

    /// The configured maximum.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Items currently checked out.
    pub fn in_use(&self) -> usize {
        self.limit - self.permits.available_permits()
    }

    /// Idle items.
    pub fn idle_count(&self) -> usize {
        self.idle.lock().expect("pool lock").len()
    }

    /// Idle items for which `which` says yes.
    pub fn count_idle(&self, which: impl Fn(&T) -> bool) -> usize {
        self.idle
            .lock()
            .expect("pool lock")
            .iter()
            .filter(|t| which(t))
            .count()
    }

    /// Takes a slot, waiting in FIFO order up to `timeout`. Prefers the most recently used
    /// idle item, which keeps the warmest connections busy and lets the rest expire.
    #[inline]
    pub async fn acquire(&self, timeout: Duration) -> Result<Acquired<T>, Timeout> {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                self.metrics.waits.fetch_add(1, Relaxed);
                let started = Instant::now();
                let got = {
                    // Counted down however the wait ends, a client that leaves included.
                    let _waiting = Waiting::start(&self.metrics.waiting);
                    tokio::time::timeout(timeout, self.permits.clone().acquire_owned()).await
                };
                match got {
                    Ok(Ok(p)) => {
                        self.metrics.waited.record(started.elapsed());
                        p
                    }
                    _ => {
                        self.metrics.timeouts.fetch_add(1, Relaxed);
                        return Err(Timeout(timeout));
                    }
                }
            }
        };
        Ok(self.take(permit))
    }

    /// Takes a slot if one is free right now.
    #[inline]
    pub fn try_acquire(&self) -> Option<Acquired<T>> {
        let permit = self.permits.clone().try_acquire_owned().ok()?;
        Some(self.take(permit))
    }

    #[inline]
    fn take(&self, permit: OwnedSemaphorePermit) -> Acquired<T> {
        self.metrics.acquires.fetch_add(1, Relaxed);
        match self.idle.lock().expect("pool lock").pop() {
            Some(item) => Acquired::Idle(item, permit),
            None => Acquired::Vacant(permit),
        }
    }

    /// Returns an item for reuse and frees its slot.
    #[inline]
    pub fn release(&self, item: T, permit: OwnedSemaphorePermit) {
        self.idle.lock().expect("pool lock").push(item);
        drop(permit);
    }

    /// Removes idle items for which `expired` says yes, oldest first; returns them so the
    /// caller can close them outside the lock.
    pub fn take_expired(&self, mut expired: impl FnMut(&T) -> bool) -> Vec<T> {
        let mut idle = self.idle.lock().expect("pool lock");
        let mut out = Vec::new();
        let mut i = 0;
        while i < idle.len() {
            if expired(&idle[i]) {
                out.push(idle.remove(i));
            } else {
                i += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_hands_out_more_than_the_limit() {
        let s = Slots::<u32>::new(2);
        let a = s.acquire(Duration::from_millis(10)).await.unwrap();
        let _b = s.acquire(Duration::from_millis(10)).await.unwrap();
        assert_eq!(s.in_use(), 2);
        assert!(s.acquire(Duration::from_millis(20)).await.is_err());
        assert_eq!(s.metrics.snapshot().timeouts, 1);
        let Acquired::Vacant(p) = a else {
            panic!("no idle items yet")
        };
        s.release(7, p);
        match s.acquire(Duration::from_millis(10)).await.unwrap() {
            Acquired::Idle(7, _) => {}
            _ => panic!("expected the released item"),
        }
    }

    #[tokio::test]
    async fn a_waiter_gets_the_released_slot() {
        let s = Arc::new(Slots::<u32>::new(1));
        let Acquired::Vacant(p) = s.acquire(Duration::from_millis(10)).await.unwrap() else {
            panic!()
        };
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.acquire(Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.release(1, p);
        assert!(waiter.await.unwrap());
        assert_eq!(s.metrics.snapshot().waits, 1);
    }

    #[test]
    fn expired_items_are_removed() {
        let s = Slots::<u32>::new(3);
        let permits: Vec<_> = (0..3)
            .map(|_| match s.try_acquire() {
                Some(Acquired::Vacant(p)) => p,
                _ => panic!("expected a vacant slot"),
            })
            .collect();
        for (i, p) in permits.into_iter().enumerate() {
            s.release(i as u32, p);
        }
        let gone = s.take_expired(|&i| i != 1);
        assert_eq!(gone, vec![0, 2]);
        assert_eq!(s.idle_count(), 1);
    }
}
