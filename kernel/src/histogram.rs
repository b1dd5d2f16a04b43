//! A lock-free, fixed-size latency histogram: log-linear buckets over microseconds (eight
//! per power of two, so any quantile is within 12.5 %), from 0 to about an hour. Recording
//! is one relaxed atomic add; memory is about 1 KiB whatever the traffic.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered above the exact range: 2^35 µs is about 9.5 hours.
const POWERS: usize = 33;
/// Buckets in all.
const BUCKETS: usize = SUB + POWERS * SUB;

/// A latency histogram in microseconds.
pub struct Histogram {
    counts: Box<[AtomicU32; BUCKETS]>,
    total_us: AtomicU64,
    count: AtomicU64,
    max_us: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count())
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new(std::array::from_fn(|_| AtomicU32::new(0))),
            total_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
            max_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of a value in microseconds.
#[inline]
fn bucket(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros(); // >= SUB_BITS
    let sub = ((us >> (power - SUB_BITS)) as usize) & (SUB - 1);
    (SUB + (power - SUB_BITS) as usize * SUB + sub).min(BUCKETS - 1)
}

/// The largest value (µs) that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let power = (i - SUB) / SUB + SUB_BITS as usize;
    let sub = ((i - SUB) % SUB) as u64;
    let width = 1u64 << (power - SUB_BITS as usize);
    (1u64 << power) + (sub + 1) * width - 1
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn record(&self, d: Duration) {
        self.record_us(d.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    /// Records one value in microseconds.
    #[inline]
    pub fn record_us(&self, us: u64) {
        self.counts[bucket(us)].fetch_add(1, Relaxed);
        self.total_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
        if us > self.max_us.load(Relaxed) {
            self.max_us.fetch_max(us, Relaxed);
        }
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// Sum of the values, in microseconds.
    pub fn total_us(&self) -> u64 {
        self.total_us.load(Relaxed)
    }

    /// The largest value, in microseconds.
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Relaxed)
    }

    /// The `q` quantile (0..=1) in microseconds: the upper bound of the bucket holding it,
    /// never more than the largest value seen. 0 when empty.
    pub fn quantile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| u64::from(c.load(Relaxed)))
            .collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let target = ((total as f64 * q.clamp(0.0, 1.0)).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return upper_bound(i).min(self.max_us());
            }
        }
        self.max_us()
    }

    /// Cumulative counts at each of `bounds_us` (ascending): values ≤ each bound, counted by
    /// whole buckets (a bucket counts once its upper bound is within the bound).
    pub fn cumulative(&self, bounds_us: &[u64]) -> Vec<u64> {
        let mut out = Vec::with_capacity(bounds_us.len());
        let mut seen = 0u64;
        let mut i = 0;
        for &b in bounds_us {
            while i < BUCKETS && upper_bound(i) <= b {
                seen += u64::from(self.counts[i].load(Relaxed));
                i += 1;
            }
            out.push(seen);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        for i in 1..BUCKETS {
            assert_eq!(bucket(upper_bound(i - 1) + 1), i, "bucket {i}");
            assert_eq!(bucket(upper_bound(i)), i);
        }
    }

    #[test]
    fn quantiles_are_within_an_eighth() {
        let h = Histogram::default();
        for us in 1..=10_000u64 {
            h.record_us(us);
        }
        for (q, exact) in [(0.5, 5_000.0), (0.99, 9_900.0), (1.0, 10_000.0)] {
            let got = h.quantile_us(q) as f64;
            assert!(got >= exact && got <= exact * 1.125 + 1.0, "q{q}: {got}");
        }
        assert_eq!(h.count(), 10_000);
        assert_eq!(h.max_us(), 10_000);
        assert_eq!(h.total_us(), 10_000 * 10_001 / 2);
    }

    #[test]
    fn cumulative_counts_respect_bounds() {
        let h = Histogram::default();
        for us in [0, 3, 100, 5_000, 2_000_000] {
            h.record_us(us);
        }
        assert_eq!(
            h.cumulative(&[0, 10, 1_000, 1_000_000, u64::MAX]),
            vec![1, 2, 3, 4, 5]
        );
    }
}
