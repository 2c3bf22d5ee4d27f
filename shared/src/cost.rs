//! What one request cost — object GETs, bytes fetched, cache hits and misses, failovers, hedges, checksum
//! failures — counted exactly per request, whatever else runs at the same time: each figure is added to
//! the request's own tally (a task-local the caller opens with [`measure`]) as well as to the process
//! totals. Outside a measured request nothing is tallied (no cost on `cairn serve`'s hot path beyond a
//! thread-local check).

use std::cell::Cell;
use std::future::Future;

use serde::Serialize;

/// A request's cost, or the process's totals (the same fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub object_gets: u64,
    pub bytes_fetched: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub failovers: u64,
    pub hedges: u64,
    pub checksum_failures: u64,
}

impl std::ops::Sub for Counters {
    type Output = Counters;
    fn sub(self, o: Counters) -> Counters {
        Counters {
            object_gets: self.object_gets.saturating_sub(o.object_gets),
            bytes_fetched: self.bytes_fetched.saturating_sub(o.bytes_fetched),
            cache_hits: self.cache_hits.saturating_sub(o.cache_hits),
            cache_misses: self.cache_misses.saturating_sub(o.cache_misses),
            failovers: self.failovers.saturating_sub(o.failovers),
            hedges: self.hedges.saturating_sub(o.hedges),
            checksum_failures: self.checksum_failures.saturating_sub(o.checksum_failures),
        }
    }
}

tokio::task_local! {
    static TALLY: Cell<Counters>;
}

/// Runs `request` with a tally of its own; returns its output and what it cost.
pub async fn measure<F: Future>(request: F) -> (F::Output, Counters) {
    TALLY
        .scope(Cell::new(Counters::default()), async move {
            let out = request.await;
            (out, TALLY.with(Cell::get))
        })
        .await
}

#[inline]
fn add(f: impl FnOnce(&mut Counters)) {
    let _ = TALLY.try_with(|t| {
        let mut c = t.get();
        f(&mut c);
        t.set(c);
    });
}

/// One object read of `bytes` bytes.
#[inline]
pub fn get(bytes: u64) {
    add(|c| {
        c.object_gets += 1;
        c.bytes_fetched += bytes;
    });
}

#[inline]
pub fn hit() {
    add(|c| c.cache_hits += 1);
}

#[inline]
pub fn miss() {
    add(|c| c.cache_misses += 1);
}

#[inline]
pub fn failover() {
    add(|c| c.failovers += 1);
}

#[inline]
pub fn hedge() {
    add(|c| c.hedges += 1);
}

#[inline]
pub fn checksum_failure() {
    add(|c| c.checksum_failures += 1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_request_counts_only_its_own() {
        let ((), outside) = measure(async {}).await;
        assert_eq!(outside, Counters::default());
        hit(); // outside any request: nowhere to go, and no panic
        let (a, b) = tokio::join!(
            measure(async {
                hit();
                tokio::task::yield_now().await;
                get(10);
            }),
            measure(async {
                miss();
                tokio::task::yield_now().await;
                hit();
                hit();
            }),
        );
        assert_eq!((a.1.cache_hits, a.1.object_gets, a.1.bytes_fetched), (1, 1, 10));
        assert_eq!((b.1.cache_hits, b.1.cache_misses, b.1.object_gets), (2, 1, 0));
    }
}
