//! Concurrent loads of one key share one load (Go's `singleflight`).
//!
//! Cold reads come in crowds: a cold MGET of 1,000 keys over 8 shards asks for each shard's footer ~125 times at
//! once, and the first requests after a start all miss the keyspace pointer together. Without this, every
//! miss read the object itself (tests/tests/cold_concurrency.rs holds it to what the same lookups cost one at
//! a time; docs/benchmark-notes.md, "Figures behind the code").
//!
//! The first caller's load runs; the callers that arrive while it runs wait for it and get its value or its
//! error (shared: a failing store is not asked again by each waiter in turn). If that caller gives up (its
//! request is dropped), a waiter runs its own load instead. The entry is gone once the load finished, so
//! the next miss after a failure tries again; callers put the value in their cache inside the load, so
//! later callers find it there.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use crate::error::{Error, Result};

type Outcome<V> = std::result::Result<V, Arc<Error>>;

pub struct SingleFlight<K, V> {
    calls: Mutex<HashMap<K, Arc<OnceCell<Outcome<V>>>>>,
}

impl<K: Hash + Eq + Clone, V: Clone> Default for SingleFlight<K, V> {
    fn default() -> Self {
        SingleFlight { calls: Mutex::default() }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> SingleFlight<K, V> {
    /// Runs `load` unless a load of `key` is already running, in which case its outcome is returned.
    /// `load` is only polled if this caller runs the load.
    pub async fn run(&self, key: K, load: impl Future<Output = Result<V>>) -> Result<V> {
        let cell = self.calls.lock().expect("single flight").entry(key.clone()).or_default().clone();
        let call = Leave { calls: &self.calls, key, cell };
        let outcome = call.cell.get_or_init(|| async { load.await.map_err(Arc::new) }).await;
        outcome.clone().map_err(Error::Shared)
    }

    /// Loads running now.
    pub fn in_flight(&self) -> usize {
        self.calls.lock().expect("single flight").len()
    }
}

/// Removes the call's entry when a caller is done with it (also when its request was dropped mid-load): once
/// the load finished, or when nobody else waits on it, so abandoned loads leave nothing behind.
struct Leave<'a, K: Hash + Eq, V> {
    calls: &'a Mutex<HashMap<K, Arc<OnceCell<Outcome<V>>>>>,
    key: K,
    cell: Arc<OnceCell<Outcome<V>>>,
}

impl<K: Hash + Eq, V> Drop for Leave<'_, K, V> {
    fn drop(&mut self) {
        // Joiners clone the cell under this lock, so the count cannot grow while it is held.
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let ours = calls.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Two holders: the map and this caller.
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) == 2) {
            calls.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use std::time::Duration;

    use super::*;

    async fn slow(loads: &AtomicUsize, v: Result<u32>) -> Result<u32> {
        loads.fetch_add(1, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        v
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load_and_its_error() {
        let sf = SingleFlight::<&str, u32>::default();
        let loads = AtomicUsize::new(0);
        let got = futures::future::join_all((0..10).map(|_| sf.run("k", slow(&loads, Ok(7))))).await;
        assert!(got.iter().all(|r| matches!(r, Ok(7))));
        assert_eq!(loads.load(SeqCst), 1);
        assert_eq!(sf.in_flight(), 0, "a finished load leaves nothing behind");

        let failed =
            futures::future::join_all((0..10).map(|_| sf.run("k", slow(&loads, Err(Error::Config("down".into()))))))
                .await;
        assert_eq!(loads.load(SeqCst), 2, "waiters share the error instead of retrying one by one");
        for r in failed {
            let e = r.unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
            assert_eq!(e.to_string(), "invalid configuration: down");
        }
        assert!(matches!(sf.run("k", slow(&loads, Ok(8))).await, Ok(8)), "the next miss tries again");
    }

    #[tokio::test]
    async fn a_waiter_takes_over_when_the_loading_caller_gives_up() {
        let sf = SingleFlight::<&str, u32>::default();
        let loads = AtomicUsize::new(0);
        let alone = tokio::time::timeout(Duration::from_millis(5), sf.run("k", slow(&loads, Ok(1)))).await;
        assert!(alone.is_err(), "the caller gave up mid-load");
        assert_eq!(sf.in_flight(), 0, "an abandoned load nobody waits on leaves nothing behind");

        let leader = tokio::time::timeout(Duration::from_millis(5), sf.run("k", slow(&loads, Ok(2))));
        let (abandoned, waited) = tokio::join!(leader, sf.run("k", slow(&loads, Ok(3))));
        assert!(abandoned.is_err());
        assert!(matches!(waited, Ok(3)), "the waiter ran its own load: {waited:?}");
        assert_eq!(loads.load(SeqCst), 3);
        assert_eq!(sf.in_flight(), 0);
    }
}
