//! Byte-bounded caches with hit/miss counters (moka's own counters are not exposed).

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

pub struct CountedCache<K, V> {
    name: &'static str,
    inner: moka::sync::Cache<K, V>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Entries removed to stay within capacity (not replaced, invalidated or expired ones).
    evictions: std::sync::Arc<AtomicU64>,
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
    /// A cache holding at most `capacity` bytes as weighed by `weigh`, entries expiring after `ttl` if given.
    pub fn new(name: &'static str, capacity: u64, ttl: Option<Duration>, weigh: fn(&K, &V) -> u32) -> Self {
        Self::with_listener(name, capacity, ttl, weigh, |_, _, _| {})
    }

    /// Like [`new`](Self::new), calling `on_removal` for every entry evicted, invalidated or replaced.
    pub fn with_listener(
        name: &'static str,
        capacity: u64,
        ttl: Option<Duration>,
        weigh: fn(&K, &V) -> u32,
        on_removal: impl Fn(std::sync::Arc<K>, V, moka::notification::RemovalCause) + Send + Sync + 'static,
    ) -> Self {
        let evictions = std::sync::Arc::new(AtomicU64::new(0));
        let counted = evictions.clone();
        let listener = move |k, v, cause| {
            if cause == moka::notification::RemovalCause::Size {
                counted.fetch_add(1, Relaxed);
            }
            on_removal(k, v, cause)
        };
        let mut b = moka::sync::Cache::builder().max_capacity(capacity).weigher(weigh).eviction_listener(listener);
        if let Some(ttl) = ttl {
            b = b.time_to_live(ttl);
        }
        CountedCache { name, inner: b.build(), capacity, hits: AtomicU64::new(0), misses: AtomicU64::new(0), evictions }
    }

    /// Records `hits` hits served outside the cache for an entry, reading it once so the eviction policy
    /// sees it as used (callers sample: one call per many hits).
    pub fn touch(&self, k: &K, hits: u64) {
        if self.inner.get(k).is_some() {
            self.hits.fetch_add(hits, Relaxed);
        }
    }

    #[inline]
    pub fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let v = self.inner.get(k);
        if v.is_some() { &self.hits } else { &self.misses }.fetch_add(1, Relaxed);
        v
    }

    /// The value cached for `k`, inserting `v` if there is none: concurrent loaders of one key all end up
    /// with the same value.
    pub fn get_or_insert(&self, k: K, v: V) -> V {
        self.inner.entry(k).or_insert(v).into_value()
    }

    /// (hits, misses) so far, without moka's housekeeping (cheap enough per request).
    pub fn counts(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn insert(&self, k: K, v: V) {
        self.inner.insert(k, v);
    }

    /// As [`Self::get`], without counting a hit or a miss (housekeeping, not lookups).
    pub fn peek(&self, k: &K) -> Option<V> {
        self.inner.get(k)
    }

    pub fn invalidate(&self, k: &K) {
        self.inner.invalidate(k);
    }

    pub fn invalidate_all(&self) {
        self.inner.invalidate_all();
    }

    pub fn stats(&self) -> CacheStats {
        self.inner.run_pending_tasks();
        CacheStats {
            name: self.name,
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
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

/// Hot paths count their hits one in this many, as this many: no shared write per hit.
pub const HIT_SAMPLE: u32 = 64;

/// True on every [`HIT_SAMPLE`]th call with this thread-local counter. Each caller has its own counter:
/// callers taking turns on one counter would always leave the sample to the same one.
#[inline]
pub fn sampled(tick: &'static std::thread::LocalKey<std::cell::Cell<u32>>) -> bool {
    tick.with(|t| {
        t.set(t.get().wrapping_add(1));
        t.get().is_multiple_of(HIT_SAMPLE)
    })
}
