//! A publish reaching a running reader (issue 29, serving defect 7). The switch used to walk every cached
//! entry of the version it replaced, synchronously, before installing the new one (a worker stalled for as
//! long as that took), and lookups still running on the replaced version then refetched what it had just
//! dropped. Now the switch does no per-entry work: the replaced version's entries are removed in the
//! background once no lookup holds that version, so a lookup in flight on it is still answered from the
//! cache, and the memory is then free for the new version (tests/promotion.rs).

use std::sync::Arc;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;

/// 20,000 keys in keyspace "ks" on 16 shards, each key's value the name of the version that wrote it.
struct Keyspace {
    dir: tempfile::TempDir,
    store: Store,
    keys: Vec<String>,
}

impl Keyspace {
    /// The keyspace, its first version ("one") published.
    async fn new() -> Keyspace {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("st").to_str().unwrap()).unwrap();
        let keys: Vec<String> = (0..20_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let d = Keyspace { dir, store, keys };
        d.publish("one").await;
        d
    }

    /// An engine whose pointer stays fresh until refreshed, switching versions unwarmed.
    fn cold_switching_engine(&self) -> Arc<Engine> {
        let config =
            EngineConfig { pointer_ttl: Duration::from_secs(3600), warm_switch_bytes: 0, ..Default::default() };
        Arc::new(Engine::new(self.store.clone(), config))
    }

    /// A version whose every value is `name`.
    async fn publish(&self, name: &str) {
        let p = self.dir.path().join(name);
        std::fs::write(&p, self.keys.iter().map(|k| format!("{k} {name}\n")).collect::<String>()).unwrap();
        cairn_tests::ingest(&p, "ks", &self.store, Some(16)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookups_in_flight_on_a_replaced_version_keep_their_cache() {
    let d = Keyspace::new().await;
    let (store, keys) = (&d.store, &d.keys);
    let config = EngineConfig { pointer_ttl: Duration::from_secs(3600), ..Default::default() };
    let engine = Arc::new(Engine::new(store.clone(), config));
    let old = engine.keyspace("ks").await.unwrap();
    for k in keys {
        assert_eq!(engine.lookup(&old, k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    d.publish("two").await;
    engine.refresh();
    assert_eq!(engine.get("ks", &keys[0]).await.unwrap().as_deref(), Some(&b"two"[..]), "the new version");
    // A request that resolved the old version before the switch finishes on it, from the cache.
    let before = engine.counters().object_gets;
    for k in keys.iter().step_by(7) {
        assert_eq!(engine.lookup(&old, k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    let refetched = engine.counters().object_gets - before;
    assert_eq!(refetched, 0, "lookups on the replaced version refetched {refetched} objects the switch dropped");
    // Once no lookup holds it, its entries leave the caches.
    engine.sync_caches().await;
    assert!(engine.telemetry().hot_shards > 0, "the replaced version had no hot shard: the test proves nothing");
    drop(old);
    engine.retired_removed().await;
    assert_eq!(engine.telemetry().hot_shards, 0, "the replaced version's hot shards are still held");
}

/// A rollback while the replaced version's removal waits for a lookup still holding it: the version served
/// again keeps what the caches hold of it. The removal used to take every entry of the layers it was
/// started for, served again or not, leaving a rolled-back version cold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_keeps_the_cache_of_the_version_it_serves_again() {
    let d = Keyspace::new().await;
    let (store, keys) = (&d.store, &d.keys);
    let engine = d.cold_switching_engine();
    let held = engine.keyspace("ks").await.unwrap();
    for k in keys {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    d.publish("two").await;
    engine.refresh();
    assert_eq!(engine.get("ks", &keys[0]).await.unwrap().as_deref(), Some(&b"two"[..]), "the new version");
    // Rolled back while a lookup still holds the first version: its removal is waiting.
    cairn_shared::versions::rollback::rollback(store, "ks", None, &|u: &str| Store::open(u)).await.unwrap();
    engine.refresh();
    assert_eq!(engine.get("ks", &keys[0]).await.unwrap().as_deref(), Some(&b"one"[..]), "the rollback");
    drop(held);
    engine.retired_removed().await;
    let before = engine.counters().object_gets;
    for k in keys {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    let refetched = engine.counters().object_gets - before;
    assert_eq!(refetched, 0, "the version served again refetched {refetched} objects");
}

/// A version replaced, served again and replaced again while lookups still hold both of its loads: the
/// removal started by the first replacement must not take the entries the second one's lookups still use.
/// It used to, as soon as the first load was let go: it saw the layer retired, not by which retirement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_waits_for_the_lookups_of_the_latest_retirement() {
    let d = Keyspace::new().await;
    let (store, keys) = (&d.store, &d.keys);
    let engine = d.cold_switching_engine();
    let first = engine.keyspace("ks").await.unwrap();
    let one = first.manifest().version.clone();
    d.publish("two").await;
    engine.refresh();
    let two = engine.keyspace("ks").await.unwrap().manifest().version.clone();
    // Served again (a rollback), then replaced again, a lookup holding each load of the first version.
    cairn_shared::versions::rollback::rollback(store, "ks", Some(&one), &|u: &str| Store::open(u)).await.unwrap();
    engine.refresh();
    let again = engine.keyspace("ks").await.unwrap();
    assert_eq!(again.manifest().version, one, "the rollback is not served");
    for k in keys {
        assert_eq!(engine.lookup(&again, k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    cairn_shared::versions::rollback::rollback(store, "ks", Some(&two), &|u: &str| Store::open(u)).await.unwrap();
    engine.refresh();
    assert_eq!(engine.keyspace("ks").await.unwrap().manifest().version, two, "the second switch is not served");
    // The first replacement's removal may go now; the second's waits for `again`.
    drop(first);
    for _ in 0..6000 {
        if engine.retired_removals_running() <= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(engine.retired_removals_running(), 1, "the second replacement's removal is not waiting");
    let before = engine.counters().object_gets;
    for k in keys {
        assert_eq!(engine.lookup(&again, k).await.unwrap().as_deref(), Some(&b"one"[..]));
    }
    let refetched = engine.counters().object_gets - before;
    assert_eq!(refetched, 0, "lookups still holding the version refetched {refetched} objects");
}
