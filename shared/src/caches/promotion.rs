//! When to read a shard whole (promote it to hot): only when it is likely to be reused while it stays
//! resident, so a working set larger than the data cache is served block by block instead of reading whole
//! shards that are evicted before they pay back (docs/FORMAT.md, "Point lookup").
//!
//! Time is measured in cache turnover: bytes inserted into the data cache. An entry stays resident for
//! about one cache capacity of turnover, so a shard that saw `n` block fetches over `elapsed` bytes of
//! turnover would see about `n × capacity / elapsed` while resident: promoting it pays when those fetches'
//! bytes reach the shard's size. Under a uniform working set `W` that gives "promote when `W` ≤ capacity",
//! and under a skewed one it promotes the shards that are hot.
//!
//! While the cache is still filling ([`Room`]) and has room for the shard, promoting it evicts nothing, and
//! an entry stays resident far longer than one capacity of turnover: the shard is promoted once it has seen
//! [`MIN_FETCHES`] fetches, however slowly they came. Without this, a keyspace that fits the cache under
//! skewed lookups took tens of thousands of lookups to become all hot: each promotion's own bytes advance
//! the clock, so the rarely looked-up shards' fetches always seemed too slow (docs/benchmark-notes.md,
//! latency behind S3's timing).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};

/// Block fetches before a shard may be promoted, however fast they came.
pub const MIN_FETCHES: u32 = 4;

/// A failed promotion is not tried again before this many cache capacities of turnover, doubled for each
/// failure in a row (up to [`MAX_BACKOFF_DOUBLINGS`] times).
const BACKOFF_CAPACITIES: u64 = 1;
const MAX_BACKOFF_DOUBLINGS: u32 = 4;

/// A decoded shard weighs more than its bytes (it holds a hash table too): the room a promotion asks for,
/// and reserves while it runs, is this many times its bytes.
pub const RESERVE: u64 = 2;

/// What free room in the data cache [`Promotion::note_fetch`] may count on: some only while the cache is
/// filling. Once it evicts, its free room is the gap an eviction just left, and filling that with a shard
/// whose fetches came slowly would evict the next entry in turn (a shard that weighs more than [`RESERVE`]
/// times its bytes would keep the cycle going): until a capacity of turnover passes with no eviction, the
/// rate alone decides.
#[derive(Debug, Default)]
pub struct Room {
    evictions: AtomicU64,
    /// Turnover + 1 when an eviction was last seen (0: never).
    evicted_at: AtomicU64,
}

impl Room {
    /// Bytes of shard (as read) that promoting may take as free, in a cache of `capacity` bytes holding
    /// `used`, `reserved` of it promised to promotions in flight, that has evicted `evictions` entries so
    /// far, at turnover `now`.
    pub fn free(&self, capacity: u64, used: u64, reserved: u64, evictions: u64, now: u64) -> u64 {
        if self.evictions.swap(evictions, Relaxed) != evictions {
            self.evicted_at.store(now.saturating_add(1), Relaxed);
        }
        let at = self.evicted_at.load(Relaxed);
        if at != 0 && now.saturating_sub(at - 1) <= capacity {
            return 0;
        }
        capacity.saturating_sub(used).saturating_sub(reserved) / RESERVE
    }

    /// The cache was emptied of what no reader wants (a replaced version's entries): its free room is no
    /// longer the gap an eviction left. `evictions` is its count so far.
    pub fn forget_evictions(&self, evictions: u64) {
        self.evictions.store(evictions, Relaxed);
        self.evicted_at.store(0, Relaxed);
    }
}

/// A shard's recent block fetches, counted over a window of turnover.
#[derive(Debug, Default)]
pub struct Promotion {
    fetches: AtomicU32,
    since: AtomicU64,
    fetched_bytes: AtomicU64,
    /// Set while one is running for this shard.
    pub(crate) promoting: AtomicBool,
    /// After failures, no promotion before this turnover.
    retry_at: AtomicU64,
    failures: AtomicU32,
}

impl Promotion {
    /// Counts one block fetch of `block_bytes` at turnover `now`; true when reading the whole shard
    /// (`shard_bytes`) now would pay for itself in a cache of `capacity` bytes, `free` of them unused (and no
    /// failure is being backed off from).
    pub fn note_fetch(&self, now: u64, block_bytes: u64, shard_bytes: u64, (capacity, free): (u64, u64)) -> bool {
        if now < self.retry_at.load(Relaxed) {
            return false;
        }
        let since = self.since.load(Relaxed);
        let elapsed = now.saturating_sub(since);
        // A window older than one turnover holds fetches whose blocks are gone: start a new one.
        if self.fetches.load(Relaxed) == 0 || elapsed > capacity {
            self.since.store(now, Relaxed);
            self.fetches.store(1, Relaxed);
            self.fetched_bytes.store(block_bytes, Relaxed);
            return false;
        }
        let n = self.fetches.fetch_add(1, Relaxed) + 1;
        // The fetch that opened the window started its clock: the rate is over the fetches after it.
        let bytes = self.fetched_bytes.fetch_add(block_bytes, Relaxed);
        n >= MIN_FETCHES
            && (shard_bytes <= free
                || (bytes as u128) * (capacity as u128) >= (shard_bytes as u128) * (elapsed.max(1) as u128))
    }

    /// Starts counting again (after a promotion, or one that failed).
    pub fn reset(&self) {
        self.fetches.store(0, Relaxed);
        self.fetched_bytes.store(0, Relaxed);
    }

    /// A promotion ended: counting starts again, and after a failure none is tried before a backoff of
    /// turnover (from `now`) has passed, longer after each failure in a row.
    pub fn ended(&self, ok: bool, now: u64, capacity: u64) {
        self.reset();
        if ok {
            self.failures.store(0, Relaxed);
            return;
        }
        let failures = self.failures.fetch_add(1, Relaxed).min(MAX_BACKOFF_DOUBLINGS);
        let backoff = capacity.saturating_mul(BACKOFF_CAPACITIES << failures).max(1);
        self.retry_at.store(now.saturating_add(backoff), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays lookups over `shards` shards of `blocks` blocks each through the rule. A lookup on a shard
    /// that is not hot fetches its block (every block misses: the worst case); the clock moves by the bytes
    /// fetched; hot shards live in an LRU of `capacity_shards` shards' bytes, each weighing its bytes times
    /// `tenths` / 10 once decoded, free room counted as promote.rs counts it. Returns the promotions and the
    /// bytes fetched per lookup, in blocks.
    fn replay(shards: u64, blocks: u64, capacity_shards: u64, lookups: u64, skew: bool) -> (u64, f64) {
        replay_with(Promotion::note_fetch, shards, blocks, capacity_shards, lookups, skew, 10)
    }

    type Rule = fn(&Promotion, u64, u64, u64, (u64, u64)) -> bool;

    /// The rule before this one: a shard was read whole once `max(4, blocks / 8)` of its blocks had been
    /// fetched, however long that took.
    fn count_only(p: &Promotion, _now: u64, block: u64, shard: u64, _cache: (u64, u64)) -> bool {
        p.fetches.fetch_add(1, Relaxed) + 1 >= (shard / block / 8).max(4) as u32
    }

    fn replay_with(
        rule: Rule,
        shards: u64,
        blocks: u64,
        capacity_shards: u64,
        lookups: u64,
        skew: bool,
        tenths: u64,
    ) -> (u64, f64) {
        let (block, shard) = (10_000u64, 10_000 * blocks);
        let (capacity, weight) = (capacity_shards * shard, shard * tenths / 10);
        let state: Vec<Promotion> = (0..shards).map(|_| Promotion::default()).collect();
        let room = Room::default();
        // Per shard, when it was last used while hot (None: not hot).
        let mut hot: Vec<Option<u64>> = vec![None; shards as usize];
        let (mut used, mut evictions) = (0u64, 0u64);
        let (mut clock, mut promoted, mut x) = (0u64, 0u64, 0x9e3779b97f4a7c15u64);
        for t in 0..lookups {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Skewed: half the lookups go to 1% of the shards.
            let s = if skew && x & 1 == 0 { (x >> 1) % (shards / 100).max(1) } else { (x >> 1) % shards } as usize;
            if let Some(last) = &mut hot[s] {
                *last = t;
                continue;
            }
            clock += block;
            let free = room.free(capacity, used, 0, evictions, clock);
            if rule(&state[s], clock, block, shard, (capacity, free)) {
                state[s].reset();
                clock += weight;
                while used + weight > capacity {
                    let lru = (0..hot.len()).filter(|&i| hot[i].is_some()).min_by_key(|&i| hot[i]).unwrap();
                    hot[lru] = None;
                    used -= weight;
                    evictions += 1;
                }
                hot[s] = Some(t);
                used += weight;
                promoted += 1;
            }
        }
        (promoted, clock as f64 / block as f64 / lookups as f64)
    }

    /// After a failed promotion the rule stays quiet for a turnover of the cache (longer after each failure
    /// in a row), instead of firing again four fetches later.
    #[test]
    fn a_failed_promotion_backs_off() {
        let (block, shard, capacity) = (10_000u64, 100_000u64, 1_000_000u64);
        let p = Promotion::default();
        let now = std::cell::Cell::new(0u64);
        let fire = |p: &Promotion| {
            now.set(now.get() + block);
            p.note_fetch(now.get(), block, shard, (capacity, 0))
        };
        while !fire(&p) {}
        p.ended(false, now.get(), capacity);
        let quiet = (0..200).take_while(|_| !fire(&p)).count();
        assert!(quiet >= (capacity / block) as usize - 1, "fired again {quiet} fetches after a failure");
        p.ended(false, now.get(), capacity);
        let quieter = (0..400).take_while(|_| !fire(&p)).count();
        assert!(quieter > quiet, "a second failure backs off longer: {quieter} vs {quiet}");
        p.ended(true, now.get(), capacity);
        assert!((0..10).any(|_| fire(&p)), "a success ends the backoff");
    }

    #[test]
    fn promotion_pays_for_itself() {
        // 1,000 shards of 40 blocks and a cache of 100 shards: uniform lookups cost about one block each.
        let (n, per_lookup) = replay(1000, 40, 100, 400_000, false);
        println!("uniform, 10x the cache: {n} promotions, {per_lookup:.3} blocks per lookup");
        assert!(per_lookup <= 1.1, "{per_lookup:.3} blocks per lookup ({n} promotions)");
        let (n, old) = replay_with(count_only, 1000, 40, 100, 400_000, false, 10);
        println!("  the count-only rule: {n} promotions, {old:.3} blocks per lookup");
        assert!(old > 3.0, "the replay tells the rules apart");
        // A cache that holds them all: each shard is promoted about once, and lookups then cost nothing.
        let (n, per_lookup) = replay(1000, 40, 1000, 400_000, false);
        println!("uniform, fits: {n} promotions, {per_lookup:.3} blocks per lookup");
        assert!((900..1500).contains(&n), "{n} promotions");
        assert!(per_lookup < 0.3, "{per_lookup:.3} blocks per lookup");
        // 10× the cache, but half the lookups on 1% of the shards: those are promoted and stay so.
        let (n, per_lookup) = replay(1000, 40, 100, 400_000, true);
        println!("skewed, 10x the cache: {n} promotions, {per_lookup:.3} blocks per lookup");
        assert!(per_lookup < 0.65, "{per_lookup:.3} blocks per lookup ({n} promotions)");
    }

    /// The rule as it was before free room counted: the fetch rate over turnover alone.
    fn rate_only(p: &Promotion, now: u64, block: u64, shard: u64, (capacity, _free): (u64, u64)) -> bool {
        p.note_fetch(now, block, shard, (capacity, 0))
    }

    /// A cache that holds every shard, under skewed lookups: a shard is promoted once it has seen a few
    /// fetches, however slowly they came (promoting it evicts nothing). On the rate alone, the shards of the
    /// skew's tail waited many times longer: the promotions of the others advance the clock.
    #[test]
    fn shards_that_fit_are_promoted_under_skew() {
        let lookups = 200_000;
        // Lookups served block by block (each fetched a block): what the blocks fetched were, less the
        // promotions' whole-shard reads.
        let misses = |(n, per_lookup): (u64, f64)| (per_lookup * lookups as f64).round() as u64 - n * 40;
        let (n, per_lookup) = replay(1000, 40, 1000, lookups, true);
        let rate = replay_with(rate_only, 1000, 40, 1000, lookups, true, 10);
        let (ours, theirs) = (misses((n, per_lookup)), misses(rate));
        println!("skewed, fits: {n} promotions, {ours} lookups from blocks; on the rate alone: {}, {theirs}", rate.0);
        assert!(n <= 1000, "{n} promotions of 1,000 shards that all fit");
        // About MIN_FETCHES per shard (a window older than a capacity of turnover starts over).
        assert!(ours < 1000 * (MIN_FETCHES as u64 + 1), "{ours} lookups from blocks for 1,000 shards");
        assert!(ours * 4 < theirs, "{ours} lookups from blocks, against {theirs} on the rate alone");
    }

    /// A full cache, whose free room is only the gap an eviction leaves: that room does not promote, or a
    /// shard weighing more than twice its bytes once decoded would leave a gap that promotes the next shard
    /// in turn, for as long as lookups go on (a working set larger than the cache would be read whole again
    /// and again).
    #[test]
    fn an_evicting_cache_promotes_on_the_rate_alone() {
        // 45 shards of 2.2x their bytes fill 99 of the 101 shards' bytes: each eviction leaves a gap of twice
        // a shard's bytes, free room enough for one more.
        for lookups in [200_000, 800_000] {
            let (n, per_lookup) = replay_with(Promotion::note_fetch, 1000, 40, 101, lookups, false, 22);
            let (n_rate, per_lookup_rate) = replay_with(rate_only, 1000, 40, 101, lookups, false, 22);
            println!(
                "uniform, 10x the cache, 2.2x heavier: {n} promotions, {per_lookup:.3}; rate alone {n_rate}, {per_lookup_rate:.3}"
            );
            // The cache's first filling may promote up to a capacity of shards on free room; no more.
            assert!(n <= n_rate + 100, "{n} promotions in {lookups} lookups, against {n_rate} on the rate alone");
        }
    }
}
