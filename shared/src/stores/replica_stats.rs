//! What a replicated store knows of its roots and reads: per-root latency and errors (how it orders and
//! hedges reads), its own read counts, and the process-wide totals `/metrics` reports.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Per-root health as this process sees it.
#[derive(Debug, Default)]
pub(crate) struct RootStats {
    /// Exponentially weighted latency of attempts, µs (cancelled slow attempts count with their elapsed time).
    pub(crate) ewma_us: AtomicU64,
    pub(crate) errors: AtomicU64,
    /// Errors since the last success: > 0 demotes the root.
    pub(crate) recent_errors: AtomicU64,
}

impl RootStats {
    /// A cancelled attempt only tells that the root took at least `took`: it may raise the estimate, never
    /// lower it (else losing a hedge race would make a slow root look fast).
    pub(crate) fn observe_at_least(&self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        if us > self.ewma_us.load(Relaxed) {
            self.observe(took, true);
        }
    }

    /// An attempt's outcome without its time (a bulk read's).
    pub(crate) fn observe_error(&self, ok: bool) {
        if ok {
            self.recent_errors.store(0, Relaxed);
        } else {
            self.errors.fetch_add(1, Relaxed);
            self.recent_errors.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn observe(&self, took: Duration, ok: bool) {
        let us = took.as_micros().min(u64::MAX as u128) as u64;
        let old = self.ewma_us.load(Relaxed);
        self.ewma_us.store(if old == 0 { us } else { (old * 7 + us) / 8 }, Relaxed);
        if ok {
            self.recent_errors.store(0, Relaxed);
        } else {
            self.errors.fetch_add(1, Relaxed);
            self.recent_errors.fetch_add(1, Relaxed);
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct FailoverStats {
    pub reads: u64,
    pub failovers: u64,
    pub hedges: u64,
    pub hedge_wins: u64,
    pub failed_reads: u64,
    /// Copies whose bytes failed verification (never served; the next copy was read).
    pub corrupt_copies: u64,
    pub root_errors: Vec<u64>,
    pub root_latency_us: Vec<u64>,
}

/// Process-wide replica read counts, shared by replicated stores.
#[derive(Debug, Default)]
pub struct ReplicaTotals {
    pub reads: AtomicU64,
    pub failovers: AtomicU64,
    pub hedges: AtomicU64,
    pub hedge_wins: AtomicU64,
    pub failed_reads: AtomicU64,
    /// Copies whose bytes failed verification.
    pub corrupt: AtomicU64,
}
