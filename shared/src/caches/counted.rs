//! Byte-bounded caches with exact hit, miss and eviction counts (moka's own are not exposed).
//!
//! Least recently used entries go first, and every insert is admitted: what the engine reads it decides to
//! keep (the promotion rule decides for whole shards), so the cache does not second-guess it with
//! frequency-based admission, which refused a freshly read hot shard in favour of the blocks it replaced.
//! Concurrent misses of one key share one load ([`CountedCache::get_or_load`], moka's `try_get_with`),
//! which re-checks the cache before loading.

use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use serde::Serialize;

use crate::counter::Counter;
use crate::error::{Error, Result};

pub struct CountedCache<K, V> {
    name: &'static str,
    inner: moka::future::Cache<K, V>,
    capacity: u64,
    hits: Counter,
    misses: Counter,
    /// Entries removed to stay within capacity (not replaced or invalidated ones).
    evictions: Arc<AtomicU64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CacheStats {
    pub name: &'static str,
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub bytes: u64,
    pub capacity_bytes: u64,
    pub evictions: u64,
}

impl<K, V> CountedCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache holding at most `capacity` bytes as weighed by `weigh`.
    pub fn new(name: &'static str, capacity: u64, weigh: fn(&K, &V) -> u32) -> Self {
        Self::with_listener(name, capacity, weigh, |_, _, _| {})
    }

    /// Like [`new`](Self::new), calling `on_removal` for every entry evicted, invalidated or replaced.
    pub fn with_listener(
        name: &'static str,
        capacity: u64,
        weigh: fn(&K, &V) -> u32,
        on_removal: impl Fn(Arc<K>, V, RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let listener = move |k, v, cause| {
            if cause == RemovalCause::Size {
                counted.fetch_add(1, Relaxed);
            }
            on_removal(k, v, cause)
        };
        let inner = moka::future::Cache::builder()
            .max_capacity(capacity)
            .weigher(weigh)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(listener)
            .build();
        CountedCache { name, inner, capacity, hits: Counter::default(), misses: Counter::default(), evictions }
    }

    fn count(&self, hit: bool) {
        if hit {
            self.hits.add(1);
            crate::cost::hit();
        } else {
            self.misses.add(1);
            crate::cost::miss();
        }
    }

    /// The cached value, counted as a hit or a miss.
    #[inline]
    pub async fn get(&self, k: &K) -> Option<V> {
        let v = self.inner.get(k).await;
        self.count(v.is_some());
        v
    }

    /// The cached value, or the one `load` reads (inserted): concurrent misses of `k` share one load, and
    /// its error. Counted as one hit or one miss.
    pub async fn get_or_load(&self, k: K, load: impl Future<Output = Result<V>>) -> Result<V> {
        if let Some(v) = self.get(&k).await {
            return Ok(v);
        }
        self.inner.try_get_with(k, load).await.map_err(Error::Shared)
    }

    /// A read of `k` as a use (for the eviction order), counted as `hits` hits: what a hot shard served
    /// outside the cache.
    pub async fn touch(&self, k: &K, hits: u64) {
        if self.inner.get(k).await.is_some() {
            self.hits.add(hits);
        }
    }

    /// Counts `n` hits served for this cache outside it (a hot shard's lookups, read from its slot).
    #[inline]
    pub fn add_hits(&self, n: u64) {
        self.hits.add(n);
        crate::cost::hit();
    }

    pub async fn insert(&self, k: K, v: V) {
        self.inner.insert(k, v).await;
    }

    /// Inserts `v` again (its weight measured anew) unless `k` holds another value that `same` tells apart
    /// from it: a caller holding an older copy must not displace the one the cache keeps.
    pub async fn reweigh(&self, k: K, v: V, same: fn(&V, &V) -> bool) {
        use moka::ops::compute::Op;
        self.inner
            .entry(k)
            .and_compute_with(|held| {
                let op = match held {
                    Some(e) if !same(e.value(), &v) => Op::Nop,
                    _ => Op::Put(v),
                };
                std::future::ready(op)
            })
            .await;
    }

    /// The value cached for `k`, inserting `v` if there is none: concurrent loaders of one key all end up
    /// with the same value.
    pub async fn get_or_insert(&self, k: K, v: V) -> V {
        self.inner.entry(k).or_insert(v).await.into_value()
    }

    /// (hits, misses) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes held, as of moka's last housekeeping.
    pub fn used(&self) -> u64 {
        self.inner.weighted_size()
    }

    /// Entries removed to stay within capacity so far, as of moka's last housekeeping.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    /// Removes every entry whose key `doomed` picks (invalidated, so not counted as evictions), yielding to
    /// the runtime every few hundred entries: a walk of the whole cache, for a task in the background.
    pub async fn remove_where(&self, doomed: impl Fn(&K) -> bool) {
        for (seen, (k, _)) in self.inner.iter().enumerate() {
            if doomed(&k) {
                self.inner.invalidate(&*k).await;
            }
            if seen % 256 == 255 {
                tokio::task::yield_now().await;
            }
        }
    }

    /// Removes `k` (invalidated, not counted as an eviction).
    pub async fn invalidate(&self, k: &K) {
        self.inner.invalidate(k).await;
    }

    /// Applies what moka has pending (evictions, removal notices): before a figure must be exact.
    pub async fn sync(&self) {
        self.inner.run_pending_tasks().await;
    }

    /// The figures as of moka's last housekeeping ([`Self::sync`] first for exact ones).
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            name: self.name,
            hits: self.hits.get(),
            misses: self.misses.get(),
            entries: self.inner.entry_count(),
            bytes: self.inner.weighted_size(),
            capacity_bytes: self.capacity,
            evictions: self.evictions.load(Relaxed),
        }
    }
}

/// Saturating weight for moka (u32).
pub fn weight(bytes: usize) -> u32 {
    bytes.min(u32::MAX as usize) as u32
}

/// Hot shards are touched (their recency refreshed in the data cache) one lookup in this many.
pub const TOUCH_EVERY: u32 = 64;

/// True on every [`TOUCH_EVERY`]th call with this thread-local counter. Each caller has its own counter:
/// callers taking turns on one counter would always leave the sample to the same one.
#[inline]
pub fn sampled(tick: &'static std::thread::LocalKey<std::cell::Cell<u32>>) -> bool {
    tick.with(|t| {
        t.set(t.get().wrapping_add(1));
        t.get().is_multiple_of(TOUCH_EVERY)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A full cache keeps what was just inserted (the least recently used goes), and counts that as an
    /// eviction.
    #[tokio::test]
    async fn a_full_cache_keeps_the_newest_entry() {
        let c: CountedCache<u32, u32> = CountedCache::new("t", 10, |_, _| 1);
        for k in 0..10 {
            c.insert(k, k).await;
        }
        for k in 0..10 {
            c.get(&k).await; // every entry used, often: a frequency-based policy would refuse newcomers
            c.get(&k).await;
        }
        c.insert(100, 100).await;
        c.sync().await;
        assert_eq!(c.get(&100).await, Some(100), "the newest entry was refused");
        assert_eq!(c.stats().evictions, 1);
        assert_eq!(c.get(&0).await, None, "the least recently used went");
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load_and_its_error() {
        let c: Arc<CountedCache<u32, u32>> = Arc::new(CountedCache::new("t", 10, |_, _| 1));
        let loads = Arc::new(AtomicU64::new(0));
        let run = |c: Arc<CountedCache<u32, u32>>, loads: Arc<AtomicU64>| async move {
            c.get_or_load(1, async {
                loads.fetch_add(1, Relaxed);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                Err(Error::Config("no".into()))
            })
            .await
        };
        let (a, b) = tokio::join!(run(c.clone(), loads.clone()), run(c.clone(), loads.clone()));
        assert!(a.is_err() && b.is_err());
        assert_eq!(loads.load(Relaxed), 1, "one load for two concurrent misses");
        assert_eq!(c.get_or_load(1, async { Ok(7) }).await.unwrap(), 7, "an error is not cached");
    }
}
