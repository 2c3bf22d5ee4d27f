//! A sample of the keys a loaded version was recently asked for: what a switch to the next version warms
//! (engine's `warm_switch`), most often sampled first, so a warming cut short by its budget has warmed the
//! hottest. Keys are sampled, one lookup in [`EVERY`] per thread, into a ring of [`SLOTS`]: the hot keys of
//! the last moments, at the cost of a thread-local count on most lookups.

use std::cell::Cell;
use std::sync::Mutex;

/// Samples held.
const SLOTS: usize = 4096;
/// One lookup in this many is sampled.
const EVERY: u32 = 8;

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

#[derive(Debug, Default)]
pub(crate) struct RecentKeys {
    ring: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// Each slot's buffer is reused: once the ring is full, sampling allocates nothing.
    keys: Vec<String>,
    next: usize,
}

impl RecentKeys {
    /// Records `key`, sometimes; never waits (a lookup that finds the ring busy skips it).
    #[inline]
    pub(crate) fn offer(&self, key: &str) {
        let sampled = TICK.with(|t| {
            t.set(t.get().wrapping_add(1));
            t.get().is_multiple_of(EVERY)
        });
        if sampled {
            self.record(key);
        }
    }

    #[cold]
    fn record(&self, key: &str) {
        let Ok(mut ring) = self.ring.try_lock() else { return };
        if ring.keys.len() < SLOTS {
            ring.keys.push(key.into());
        } else {
            let at = ring.next;
            let slot = &mut ring.keys[at];
            slot.clear();
            slot.push_str(key);
            ring.next = (at + 1) % SLOTS;
        }
    }

    /// The distinct keys held, the most often sampled first.
    pub(crate) fn keys(&self) -> Vec<Box<str>> {
        let mut keys: Vec<Box<str>> =
            self.ring.lock().map(|r| r.keys.iter().map(|k| k.as_str().into()).collect()).unwrap_or_default();
        keys.sort_unstable();
        let mut counted: Vec<(usize, Box<str>)> = Vec::new();
        for k in keys {
            match counted.last_mut() {
                Some((n, last)) if *last == k => *n += 1,
                _ => counted.push((1, k)),
            }
        }
        counted.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        counted.into_iter().map(|(_, k)| k).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_keeps_the_latest_distinct_keys_within_its_slots() {
        let r = RecentKeys::default();
        for i in 0..(SLOTS * EVERY as usize * 4) {
            r.offer(&format!("k{}", i % 100));
        }
        let keys = r.keys();
        assert!(!keys.is_empty() && keys.len() <= 100, "{}", keys.len());
        for i in 0..(SLOTS * EVERY as usize * 2) {
            r.offer(&format!("new{i}"));
        }
        let keys = r.keys();
        assert_eq!(keys.len(), SLOTS, "the ring holds its slots, distinct");
        assert!(keys.iter().all(|k| k.starts_with("new")), "old keys were replaced");
    }

    #[test]
    fn the_most_asked_come_first() {
        let r = RecentKeys::default();
        for i in 0..(EVERY as usize * 300) {
            // "hot" one lookup in 3, the rest spread over 100 keys.
            let key = if i % 3 == 0 { "hot".to_string() } else { format!("k{}", i % 100) };
            r.offer(&key);
        }
        assert_eq!(&*r.keys()[0], "hot");
    }
}
