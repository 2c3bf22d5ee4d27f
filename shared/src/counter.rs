//! Counters added to on every request, without a shared cache line: each thread adds to a slot of its own
//! (cache-line aligned, uncontended relaxed adds) and a read sums the slots. One shared atomic would bounce
//! its cache line between the workers on every lookup.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// Slots; more threads than this share them (still exact: the adds are atomic).
pub const SLOTS: usize = 32;

static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's slot, given on its first call.
#[inline]
pub fn thread_slot() -> usize {
    MY_SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SLOT.fetch_add(1, Relaxed) % SLOTS);
        }
        s.get()
    })
}

#[repr(align(128))]
#[derive(Default)]
struct Slot(AtomicU64);

/// A monotonic count, added to per thread.
pub struct Counter {
    slots: Box<[Slot]>,
}

impl Default for Counter {
    fn default() -> Self {
        Counter { slots: (0..SLOTS).map(|_| Slot::default()).collect() }
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counter({})", self.get())
    }
}

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.slots[thread_slot()].0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.slots.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn adds_from_many_threads_sum_exactly() {
        let c = super::Counter::default();
        std::thread::scope(|s| {
            for _ in 0..40 {
                s.spawn(|| (0..1000).for_each(|_| c.add(1)));
            }
        });
        assert_eq!(c.get(), 40_000);
    }
}
