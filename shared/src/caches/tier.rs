//! A cache tier: a store of immutable object ranges that sits between an engine's memory caches and the
//! object store (the local disk, a Redis-protocol server engines share). The fetcher tries each tier in
//! order before the store and verifies what a tier answers with the checksum it already has, so a tier is
//! trusted no more than the store: a tier may lose, delay or damage entries and a lookup is only slower.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::counter::Counter;

/// What a tier has done, for `/metrics` and `info`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TierStats {
    pub hits: u64,
    pub misses: u64,
    /// Reads that failed or timed out (then answered by the next tier or the store), and writes that failed.
    pub errors: u64,
    /// Entries whose bytes did not verify: refetched and replaced.
    pub poisoned: u64,
    pub stored: u64,
    /// Writes started and not yet done.
    pub writing: u64,
    /// Whether the tier is usable now (a shared tier's connection is made in the background).
    pub connected: bool,
    /// Entries and bytes held, and the budget (a tier that does not know: 0).
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
}

#[async_trait::async_trait]
pub trait CacheTier: Send + Sync + std::fmt::Debug {
    /// Its name in the cache figures (`disk`, `shared`).
    fn name(&self) -> &'static str;

    /// The entry under `key`, if the tier has it and answers in time; the caller verifies it.
    async fn get(&self, key: &str) -> Option<Bytes>;

    /// Stores `bytes` under `key` in the background: a lookup never waits for a tier's write.
    fn put(&self, key: &str, bytes: Bytes);

    /// The entry under `key` did not verify: counted, and dropped where the tier can (the caller then
    /// [`put`](Self::put)s the right bytes).
    fn poisoned(&self, key: &str);

    fn stats(&self) -> TierStats;

    /// Applies pending housekeeping (evictions), so figures are exact.
    fn sync(&self) {}

    /// Background writes not yet done (tests wait for them).
    fn writes_in_flight(&self) -> u64 {
        self.stats().writing
    }
}

/// The key of the bytes `range` names in object `path`: objects are immutable, so path and range name their
/// bytes for good.
pub fn key(path: &str, range: &str) -> String {
    format!("{path}@{range}")
}

/// How long a tier is skipped after a read failed or answered late: an outage costs each lookup nothing, not
/// a timeout per read.
const REST: Duration = Duration::from_secs(1);

/// What a tier counts, and whether it rests after a failure: the same for every tier.
#[derive(Debug)]
pub(crate) struct TierHealth {
    pub(crate) hits: Counter,
    pub(crate) misses: Counter,
    pub(crate) errors: Counter,
    pub(crate) poisoned: Counter,
    pub(crate) stored: Counter,
    /// The tier is skipped until then (ms since `epoch`).
    down_until: AtomicU64,
    epoch: Instant,
}

impl Default for TierHealth {
    fn default() -> Self {
        TierHealth {
            hits: Counter::default(),
            misses: Counter::default(),
            errors: Counter::default(),
            poisoned: Counter::default(),
            stored: Counter::default(),
            down_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl TierHealth {
    /// Whether the tier is skipped now, after a recent failure.
    pub(crate) fn resting(&self) -> bool {
        (self.epoch.elapsed().as_millis() as u64) < self.down_until.load(Relaxed)
    }

    /// A failed or late answer: counted, and the tier skipped for [`REST`].
    pub(crate) fn failed(&self) {
        self.errors.add(1);
        self.down_until.store((self.epoch.elapsed() + REST).as_millis() as u64, Relaxed);
    }

    /// The counts, with what only the tier knows.
    pub(crate) fn stats(&self, writing: u64, connected: bool) -> TierStats {
        TierStats {
            hits: self.hits.get(),
            misses: self.misses.get(),
            errors: self.errors.get(),
            poisoned: self.poisoned.get(),
            stored: self.stored.get(),
            writing,
            connected,
            ..TierStats::default()
        }
    }
}
