//! A latency histogram of atomic counters with fixed bounds, for `/metrics`: recording is two relaxed adds
//! (no lock), reading sums the buckets. Request paths give each thread its own (functions'
//! request_metrics.rs); store reads, which cost far more than an uncontended add, share one per root.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds in seconds: from a warm in-memory answer (tens of µs) to a store read that timed out.
pub const LATENCY_BOUNDS: [f64; 18] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
const BOUNDS_NS: [u64; 18] = {
    let mut ns = [0u64; 18];
    let mut i = 0;
    while i < 18 {
        ns[i] = (LATENCY_BOUNDS[i] * 1e9) as u64;
        i += 1;
    }
    ns
};

#[derive(Debug, Default)]
pub struct Histogram {
    /// Per bucket (not cumulative); the last is above every bound.
    buckets: [AtomicU64; 19],
    sum_ns: AtomicU64,
}

/// A histogram read at one moment; snapshots of several histograms add up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramSnapshot {
    pub buckets: [u64; 19],
    pub sum_ns: u64,
}

impl Histogram {
    #[inline]
    pub fn observe(&self, took: Duration) {
        let ns = took.as_nanos().min(u64::MAX as u128) as u64;
        let i = BOUNDS_NS.partition_point(|&b| b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        self.add_to(&mut s);
        s
    }

    pub fn add_to(&self, s: &mut HistogramSnapshot) {
        for (total, b) in s.buckets.iter_mut().zip(&self.buckets) {
            *total += b.load(Relaxed);
        }
        s.sum_ns += self.sum_ns.load(Relaxed);
    }
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_ns as f64 / 1e9
    }

    /// (upper bound, observations in that bucket and above the previous bound); the last bound is +Inf.
    /// Not cumulative: prometheus-client's encoder sums them.
    pub fn bounded(&self) -> Vec<(f64, u64)> {
        LATENCY_BOUNDS.iter().copied().chain([f64::INFINITY]).zip(self.buckets).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(25)); // on a bound: that bucket (le is inclusive)
        h.observe(Duration::from_micros(26));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count(), 3);
        let c = s.bounded();
        assert_eq!(c[0], (0.000_025, 1));
        assert_eq!(c[1], (0.000_05, 1));
        assert_eq!(c[17], (10.0, 0));
        assert_eq!(c[18], (f64::INFINITY, 1));
        assert!((s.sum_seconds() - 60.000_051).abs() < 1e-9);
    }
}
