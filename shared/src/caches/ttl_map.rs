//! A small map whose entries are trusted for a TTL, for values read on every request (keyspace pointers).
//!
//! Readers load a snapshot (no lock, no shared write: two cores never bounce a cache line over it) and do one
//! hash lookup; writers, once per TTL per keyspace, copy the map. At most `max_entries` are kept, so requests
//! naming random keyspaces cannot grow it; when it is full, expired entries go first, then expendable ones
//! (answers that a keyspace does not exist: anyone can make up names, nobody can make up keyspaces), then
//! the oldest eighth; an expendable answer never pushes out one that is not. Hits are counted per thread
//! (counter.rs).
//!
//! Refresh-ahead: an entry past its TTL is re-read by exactly one reader while the others keep using it, for
//! up to a second TTL. Without this, every request arriving while the expired entry was being re-read started
//! a read of its own and waited for it: at a high request rate, tens of reads at once, each a round trip to
//! the store (docs/benchmark-notes.md has what it cost). Past twice the TTL (a refresh that failed
//! or hung, or a keyspace nobody asked for), readers load it themselves, as on a miss: a pointer is never used
//! more than 2 × TTL after it was read, and a TTL of 0 reads through.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::caches::counted::CacheStats;
use crate::counter::Counter;

pub struct TtlMap<V> {
    name: &'static str,
    ttl: Duration,
    max_entries: usize,
    map: arc_swap::ArcSwap<HashMap<String, Entry<V>>>,
    write: std::sync::Mutex<()>,
    hits: Counter,
    misses: Counter,
    /// Entries dropped because the map was full.
    evictions: AtomicU64,
    /// What goes first when the map is full, and is not kept if nothing else can go.
    expendable: fn(&V) -> bool,
}

#[derive(Clone)]
struct Entry<V> {
    /// When the read that produced the value started.
    read_at: Instant,
    value: V,
    /// Set while one reader re-reads this entry.
    refreshing: Arc<AtomicBool>,
}

/// What a reader does with a key.
pub enum Lookup<V> {
    /// Fresh, or stale while another reader refreshes it: use it.
    Use(V),
    /// Load the value and [`Load::insert`] it. `stale` is the expired value this reader is refreshing, if
    /// any: the caller may fall back to it when the refresh fails.
    Load(Load<V>),
}

/// The right (and duty) to load one key. Dropping it without inserting lets the next reader try.
pub struct Load<V> {
    key: String,
    started: Instant,
    pub stale: Option<V>,
    /// When `stale` stops being used by other readers (they then wait for this load): twice the TTL after
    /// it was read.
    pub stale_until: Option<Instant>,
    refreshing: Option<Arc<AtomicBool>>,
}

impl<V: Clone> TtlMap<V> {
    pub fn new(name: &'static str, ttl: Duration, max_entries: usize, expendable: fn(&V) -> bool) -> Self {
        TtlMap {
            name,
            ttl,
            max_entries,
            map: Default::default(),
            write: Default::default(),
            hits: Counter::default(),
            misses: Counter::default(),
            evictions: AtomicU64::new(0),
            expendable,
        }
    }

    #[inline]
    pub fn get(&self, k: &str) -> Lookup<V> {
        self.get_at(k, Instant::now())
    }

    fn get_at(&self, k: &str, now: Instant) -> Lookup<V> {
        let map = self.map.load();
        let load = |stale: Option<&Entry<V>>| {
            self.misses.add(1);
            crate::cost::miss();
            Lookup::Load(Load {
                key: k.to_string(),
                started: now,
                stale: stale.map(|e| e.value.clone()),
                stale_until: stale.map(|e| e.read_at + self.ttl.saturating_mul(2)),
                refreshing: stale.map(|e| e.refreshing.clone()),
            })
        };
        let Some(e) = map.get(k) else { return load(None) };
        let age = now.saturating_duration_since(e.read_at);
        if age >= self.ttl {
            if age >= self.ttl.saturating_mul(2) {
                return load(None);
            }
            if e.refreshing.compare_exchange(false, true, Relaxed, Relaxed).is_ok() {
                return load(Some(e));
            }
        }
        self.hits.add(1);
        crate::cost::hit();
        Lookup::Use(e.value.clone())
    }

    /// `f` of the value under `k`, borrowed (no clone), if it is fresh and `f` answers; counted as a hit only
    /// then. Anything else (absent, expired, `f` declines) is left to [`Self::get`], which counts it.
    #[inline]
    pub fn with_fresh<R>(&self, k: &str, f: impl FnOnce(&V) -> Option<R>) -> Option<R> {
        let map = self.map.load();
        let e = map.get(k)?;
        if e.read_at.elapsed() >= self.ttl {
            return None;
        }
        let r = f(&e.value)?;
        self.hits.add(1);
        crate::cost::hit();
        Some(r)
    }

    /// The value if it is fresh (read less than a TTL ago): what a loader checks before loading, so a load
    /// that finished while it waited is not repeated.
    pub fn fresh(&self, k: &str) -> Option<V> {
        let map = self.map.load();
        let e = map.get(k)?;
        (e.read_at.elapsed() < self.ttl).then(|| e.value.clone())
    }

    /// Stores what `load` read, unless an entry from a later read is already there.
    pub fn insert(&self, load: Load<V>, v: V) {
        let _w = self.write.lock().expect("ttl map writer");
        let current = self.map.load();
        if current.get(&load.key).is_some_and(|e| e.read_at > load.started) {
            return;
        }
        let mut map = (**current).clone();
        if map.len() >= self.max_entries && !map.contains_key(&load.key) {
            let before = map.len();
            map.retain(|_, e| e.read_at.elapsed() < self.ttl);
            if map.len() >= self.max_entries {
                map.retain(|_, e| !(self.expendable)(&e.value));
            }
            if map.len() >= self.max_entries {
                if (self.expendable)(&v) {
                    self.evictions.fetch_add((before - map.len()) as u64, Relaxed);
                    if map.len() < before {
                        self.map.store(Arc::new(map));
                    }
                    return;
                }
                let mut ages: Vec<_> = map.iter().map(|(k, e)| (e.read_at, k.clone())).collect();
                ages.sort_unstable();
                for (_, k) in ages.iter().take((self.max_entries / 8).max(1)) {
                    map.remove(k);
                }
            }
            self.evictions.fetch_add((before - map.len()) as u64, Relaxed);
        }
        let entry = Entry { read_at: load.started, value: v, refreshing: Default::default() };
        map.insert(load.key.clone(), entry);
        self.map.store(Arc::new(map));
    }

    pub fn invalidate_all(&self) {
        let _w = self.write.lock().expect("ttl map writer");
        self.map.store(Default::default());
    }

    pub fn counts(&self) -> (u64, u64) {
        (self.hits.get(), self.misses.get())
    }

    pub fn stats(&self) -> CacheStats {
        let map = self.map.load();
        CacheStats {
            name: self.name,
            hits: self.hits.get(),
            misses: self.misses.get(),
            entries: map.len() as u64,
            bytes: map.keys().map(|k| k.len() as u64 + 64).sum(),
            capacity_bytes: self.max_entries as u64 * 128,
            evictions: self.evictions.load(Relaxed),
        }
    }
}

impl<V> Drop for Load<V> {
    fn drop(&mut self) {
        if let Some(r) = &self.refreshing {
            r.store(false, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(5);

    fn loaded(m: &TtlMap<u32>, k: &str, v: u32, at: Instant) {
        let Lookup::Load(l) = m.get_at(k, at) else { panic!("expected a load") };
        m.insert(l, v);
    }

    fn used(l: Lookup<u32>) -> Option<u32> {
        match l {
            Lookup::Use(v) => Some(v),
            Lookup::Load(_) => None,
        }
    }

    #[test]
    fn one_reader_refreshes_a_stale_entry_while_the_others_use_it() {
        let m = TtlMap::new("t", TTL, 16, |_| false);
        let t0 = Instant::now();
        loaded(&m, "ks", 1, t0);
        assert_eq!(used(m.get_at("ks", t0 + TTL / 2)), Some(1), "fresh");
        let stale = t0 + TTL + Duration::from_millis(1);
        let Lookup::Load(refresh) = m.get_at("ks", stale) else { panic!("the first stale reader refreshes") };
        assert_eq!(refresh.stale, Some(1));
        for _ in 0..10 {
            assert_eq!(used(m.get_at("ks", stale)), Some(1), "the others use the stale value meanwhile");
        }
        m.insert(refresh, 2);
        assert_eq!(used(m.get_at("ks", stale)), Some(2));
    }

    #[test]
    fn a_refresh_dropped_without_a_value_lets_the_next_reader_try() {
        let m = TtlMap::new("t", TTL, 16, |_| false);
        let t0 = Instant::now();
        loaded(&m, "ks", 1, t0);
        let stale = t0 + TTL;
        let Lookup::Load(failed) = m.get_at("ks", stale) else { panic!("refresh expected") };
        drop(failed);
        assert!(matches!(m.get_at("ks", stale), Lookup::Load(l) if l.stale == Some(1)));
    }

    #[test]
    fn past_twice_the_ttl_every_reader_loads_and_a_zero_ttl_reads_through() {
        let m = TtlMap::new("t", TTL, 16, |_| false);
        let t0 = Instant::now();
        loaded(&m, "ks", 1, t0);
        let _hung = m.get_at("ks", t0 + TTL);
        for _ in 0..2 {
            assert!(matches!(m.get_at("ks", t0 + TTL * 2), Lookup::Load(l) if l.stale.is_none()));
        }
        let m = TtlMap::new("t", Duration::ZERO, 16, |_| false);
        loaded(&m, "ks", 1, t0);
        assert!(matches!(m.get_at("ks", t0), Lookup::Load(l) if l.stale.is_none()));
    }

    /// Found by review: one client naming 4,096 keyspaces that do not exist filled the map with "absent"
    /// answers, and the next insert cleared it whole, real keyspaces included.
    #[test]
    fn answers_that_nothing_exists_never_push_out_what_does() {
        let m: TtlMap<Option<u32>> = TtlMap::new("t", TTL, 8, Option::is_none);
        let t0 = Instant::now();
        let load = |k: &str, v: Option<u32>| {
            let Lookup::Load(l) = m.get_at(k, t0) else { panic!("expected a load") };
            m.insert(l, v);
        };
        load("real", Some(1));
        for i in 0..100 {
            load(&format!("nx{i}"), None);
        }
        assert!(matches!(m.get_at("real", t0), Lookup::Use(Some(1))), "a flood of absent names evicted a keyspace");
        assert!(m.stats().entries <= 8, "bounded: {}", m.stats().entries);
    }

    #[test]
    fn a_full_map_of_live_entries_lets_go_of_the_oldest_not_all() {
        let m: TtlMap<Option<u32>> = TtlMap::new("t", TTL, 8, Option::is_none);
        let t0 = Instant::now();
        for i in 0..20u32 {
            let Lookup::Load(l) = m.get_at(&format!("ks{i}"), t0 + Duration::from_millis(i as u64)) else { panic!() };
            m.insert(l, Some(i));
        }
        let now = t0 + Duration::from_millis(30);
        assert!(m.stats().entries <= 8);
        for i in 13..20u32 {
            assert!(matches!(m.get_at(&format!("ks{i}"), now), Lookup::Use(Some(v)) if v == i), "ks{i} was dropped");
        }
    }

    #[test]
    fn a_slow_read_does_not_replace_a_later_one() {
        let m = TtlMap::new("t", TTL, 16, |_| false);
        let t0 = Instant::now();
        let Lookup::Load(slow) = m.get_at("ks", t0) else { panic!() };
        loaded(&m, "ks", 2, t0 + Duration::from_millis(10));
        m.insert(slow, 1);
        assert_eq!(used(m.get_at("ks", t0 + Duration::from_millis(20))), Some(2));
    }
}
