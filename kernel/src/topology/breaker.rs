//! A circuit breaker per node: closed until `failures` consecutive failures (connects or
//! health checks), then open — the node receives nothing — for `reset`, then half-open: up
//! to `half_open` requests are let through as probes, and that many successes close it again;
//! a failed probe opens it for another `reset`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// The node receives nothing.
    Open,
    /// A few probes are let through.
    HalfOpen,
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// Thresholds.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long it stays open.
    pub reset: Duration,
    /// Probes in half-open state.
    pub half_open: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            reset: Duration::from_secs(30),
            half_open: 3,
        }
    }
}

/// One node's breaker. The closed, failure-free path is a single atomic load.
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    state: AtomicU8,
    failures: AtomicU32,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    opened_at: Option<Instant>,
    probes_admitted: u32,
    probes_ok: u32,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Breaker {
        Breaker {
            config,
            state: AtomicU8::new(CLOSED),
            failures: AtomicU32::new(0),
            inner: Mutex::new(Inner {
                opened_at: None,
                probes_admitted: 0,
                probes_ok: 0,
            }),
        }
    }

    /// The current state (an open breaker past its reset time reports half-open).
    pub fn state(&self) -> BreakerState {
        match self.state.load(Relaxed) {
            CLOSED => BreakerState::Closed,
            OPEN => {
                let mut inner = self.inner.lock().expect("breaker lock");
                self.maybe_half_open(&mut inner);
                if self.state.load(Relaxed) == OPEN {
                    BreakerState::Open
                } else {
                    BreakerState::HalfOpen
                }
            }
            _ => BreakerState::HalfOpen,
        }
    }

    /// Whether a request may go to the node now, without taking a probe slot (for routing
    /// choices).
    pub fn admits(&self) -> bool {
        self.admission(false)
    }

    /// Takes permission for one request: always in closed state, a probe slot in half-open
    /// state, never in open state.
    pub fn try_admit(&self) -> bool {
        self.admission(true)
    }

    fn admission(&self, take_probe: bool) -> bool {
        if self.state.load(Relaxed) == CLOSED {
            return true;
        }
        let mut inner = self.inner.lock().expect("breaker lock");
        self.maybe_half_open(&mut inner);
        match self.state.load(Relaxed) {
            CLOSED => true,
            OPEN => false,
            _ if inner.probes_admitted < self.config.half_open => {
                if take_probe {
                    inner.probes_admitted += 1;
                }
                true
            }
            _ => false,
        }
    }

    /// A request or health check succeeded.
    pub fn success(&self) {
        if self.state.load(Relaxed) == CLOSED && self.failures.load(Relaxed) == 0 {
            return;
        }
        let mut inner = self.inner.lock().expect("breaker lock");
        match self.state.load(Relaxed) {
            CLOSED => self.failures.store(0, Relaxed),
            OPEN => {}
            _ => {
                inner.probes_ok += 1;
                if inner.probes_ok >= self.config.half_open {
                    self.failures.store(0, Relaxed);
                    inner.opened_at = None;
                    self.state.store(CLOSED, Relaxed);
                    tracing::info!("circuit breaker closed");
                }
            }
        }
    }

    /// A request or health check failed.
    pub fn failure(&self) {
        let mut inner = self.inner.lock().expect("breaker lock");
        match self.state.load(Relaxed) {
            CLOSED => {
                let failures = self.failures.fetch_add(1, Relaxed) + 1;
                if failures >= self.config.failures {
                    self.open(&mut inner);
                }
            }
            OPEN => {}
            _ => self.open(&mut inner),
        }
    }

    fn open(&self, inner: &mut Inner) {
        inner.opened_at = Some(Instant::now());
        inner.probes_admitted = 0;
        inner.probes_ok = 0;
        self.state.store(OPEN, Relaxed);
    }

    fn maybe_half_open(&self, inner: &mut Inner) {
        if self.state.load(Relaxed) == OPEN
            && inner
                .opened_at
                .is_some_and(|t| t.elapsed() >= self.config.reset)
        {
            inner.probes_admitted = 0;
            inner.probes_ok = 0;
            self.state.store(HALF_OPEN, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            reset: Duration::from_millis(30),
            half_open: 2,
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = quick();
        b.failure();
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert_eq!(b.state(), BreakerState::Closed);
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.admits());
        assert!(!b.try_admit());
    }

    #[test]
    fn half_open_admits_probes_and_closes_after_enough_successes() {
        let b = quick();
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.try_admit());
        assert!(b.try_admit());
        assert!(!b.try_admit(), "only two probes at a time");
        b.success();
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.success();
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_admit());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = quick();
        for _ in 0..3 {
            b.failure();
        }
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.try_admit());
        b.failure();
        assert_eq!(b.state(), BreakerState::Open);
    }
}
