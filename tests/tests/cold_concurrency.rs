//! A cold engine under concurrent lookups reads each object once: eight MGETs of 125 keys at once, on a
//! store 2 ms away, cost exactly the GETs that the same 1,000 lookups cost one at a time (pointer, manifest,
//! each footer and each block once), not one footer and one block read per key.

use std::sync::Arc;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_tests::fault::FaultyStore;
use cairn_tests::{example_data, ingest, read_dataset};

#[tokio::test]
async fn concurrent_cold_lookups_read_each_object_once() {
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(dir.path().to_str().unwrap()).unwrap();
    let report = ingest(&example_data(), "default", &local, Some(2)).await.unwrap();
    let m = Manifest::read(local.inner.as_ref(), "default", &report.version).await.unwrap();
    // A data cache that holds every block but never promotes a shard (promotion needs the shard to fit an
    // eighth of it), so which objects a lookup reads does not depend on the order lookups run in.
    let smallest = m.shards.iter().map(|s| s.bytes - s.meta_bytes).min().unwrap();
    let config = EngineConfig { data_cache_bytes: 6 * smallest, ..Default::default() };
    assert!(m.shards.iter().all(|s| s.bytes - s.meta_bytes > config.data_cache_bytes / 8));

    let rows: Vec<(String, Vec<u8>)> = read_dataset(&example_data()).into_iter().step_by(10).collect();
    assert_eq!(rows.len(), 1000);
    let cold = || {
        let store = Arc::new(FaultyStore::slow(local.inner.clone(), Duration::from_millis(2), Duration::ZERO));
        let engine = Engine::new(Store { url: local.url.clone(), inner: store.clone() }, config.clone());
        (store, engine)
    };

    let (one_by_one, engine) = cold();
    for (k, v) in &rows {
        assert_eq!(engine.get("default", k).await.unwrap().as_deref(), Some(v.as_slice()));
    }
    let sequential = engine.counters().object_gets;
    assert_eq!(one_by_one.reads(), sequential, "the engine counts every GET it makes");

    let (at_once, engine) = cold();
    let keys: Vec<String> = rows.iter().map(|(k, _)| k.clone()).collect();
    let answers = futures::future::join_all(keys.chunks(125).map(|c| engine.mget("default", c))).await;
    let values: Vec<_> = answers.into_iter().flat_map(|a| a.unwrap()).collect();
    for ((k, v), got) in rows.iter().zip(&values) {
        assert_eq!(got.as_deref(), Some(v.as_slice()), "key {k}");
    }
    assert_eq!(
        at_once.reads(),
        sequential,
        "8 concurrent MGETs: {} GETs, one at a time: {sequential}",
        at_once.reads()
    );
}
