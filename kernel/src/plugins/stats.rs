//! Call counters of a component: calls, failures, timeouts and a power-of-two histogram of
//! call times for percentiles.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Call counters of one component.
#[derive(Debug, Default)]
pub struct PluginStats {
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

impl PluginStats {
    pub(super) fn record(&self, ns: u64) {
        self.total_ns.fetch_add(ns, Relaxed);
        let bucket = (63 - ns.max(1).leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
    }

    /// An upper bound of the `q` quantile (0..1) of call times, in microseconds (within a
    /// factor of two: buckets are powers of two).
    pub fn quantile_us(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
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
