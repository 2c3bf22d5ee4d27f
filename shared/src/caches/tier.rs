//! A cache tier: a store of immutable object ranges that sits between an engine's memory caches and the
//! object store (the local disk, a Redis-protocol server engines share). The fetcher tries each tier in
//! order before the store and verifies what a tier answers with the checksum it already has, so a tier is
//! trusted no more than the store: a tier may lose, delay or damage entries and a lookup is only slower.

use bytes::Bytes;

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
