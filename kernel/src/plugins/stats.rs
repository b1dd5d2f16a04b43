//! Call counters of a component: calls, failures, timeouts and a power-of-two histogram of
//! call times for percentiles, in all and per hook.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::HookName;

/// Call counters of one component (all hooks together; [`PluginStats::hook`] per hook).
#[derive(Debug, Default)]
pub struct PluginStats {
    all: CallStats,
    by_hook: [CallStats; 5],
}

impl std::ops::Deref for PluginStats {
    type Target = CallStats;
    fn deref(&self) -> &CallStats {
        &self.all
    }
}

impl PluginStats {
    /// The counters of one hook.
    pub fn hook(&self, hook: HookName) -> &CallStats {
        let i = HookName::ALL.iter().position(|h| *h == hook).unwrap_or(0);
        &self.by_hook[i]
    }

    /// Counts a call of `hook` (in all and for the hook).
    pub(super) fn call(&self, hook: HookName) {
        self.all.calls.fetch_add(1, Relaxed);
        self.hook(hook).calls.fetch_add(1, Relaxed);
    }

    /// Counts a failed call.
    pub(super) fn error(&self, hook: HookName) {
        self.all.errors.fetch_add(1, Relaxed);
        self.hook(hook).errors.fetch_add(1, Relaxed);
    }

    /// Counts a call that hit its deadline.
    pub(super) fn timeout(&self, hook: HookName) {
        self.all.timeouts.fetch_add(1, Relaxed);
        self.hook(hook).timeouts.fetch_add(1, Relaxed);
    }

    /// Records a call's time.
    pub(super) fn record(&self, hook: HookName, ns: u64) {
        self.all.record(ns);
        self.hook(hook).record(ns);
    }
}

/// Counters of calls.
#[derive(Debug, Default)]
pub struct CallStats {
    /// Calls made.
    pub calls: AtomicU64,
    /// Calls that failed (trap, timeout, instantiation).
    pub errors: AtomicU64,
    /// Calls that hit the deadline.
    pub timeouts: AtomicU64,
    /// Decisions of pure hooks answered from the kernel's cache instead of a call.
    pub cached: AtomicU64,
    /// Total call time in nanoseconds.
    pub total_ns: AtomicU64,
    /// Call times by power-of-two nanosecond bucket, for percentiles.
    buckets: [AtomicU64; 32],
}

impl CallStats {
    fn record(&self, ns: u64) {
        self.total_ns.fetch_add(ns, Relaxed);
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// Calls per bucket: bucket `i` holds times below `2^(i+1)` ns (the last, everything
    /// longer).
    pub fn buckets(&self) -> Vec<u64> {
        self.buckets.iter().map(|b| b.load(Relaxed)).collect()
    }

    /// An upper bound of the `q` quantile (0..1) of call times, in microseconds (within a
    /// factor of two: buckets are powers of two).
    pub fn quantile_us(&self, q: f64) -> f64 {
        let counts = self.buckets();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let target = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return (1u64 << (i + 1)) as f64 / 1000.0;
            }
        }
        f64::INFINITY
    }
}
