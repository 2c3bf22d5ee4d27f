//! A loaded version evicted from the metadata budget while it is still served (issue 29's review). Blocks
//! and hot shards are cached under the loaded version's process-unique id, so the served version must keep
//! its identity when the cache lets it go: reloaded as a second object, every block and hot shard of a
//! keyspace that had not changed would be fetched again at its next pointer refresh (this test fails so
//! when the resolver does not reuse the served object).

use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;

fn data_misses(e: &Engine) -> u64 {
    e.stats().caches.iter().find(|c| c.name == "data").map(|c| c.misses).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_version_evicted_from_the_metadata_cache_keeps_its_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("st").to_str().unwrap()).unwrap();
    // Six keyspaces of 512 shards: their loaded versions outweigh an eighth of the least metadata cache.
    let mut keyspaces = Vec::new();
    for i in 0..6 {
        let keys: Vec<String> = (0..3_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let input = dir.path().join(format!("in{i}"));
        std::fs::write(&input, keys.iter().map(|k| format!("{k} v{i}\n")).collect::<String>()).unwrap();
        cairn_tests::ingest(&input, &format!("ks{i}"), &store, Some(512)).await.unwrap();
        keyspaces.push((format!("ks{i}"), keys));
    }
    let config = EngineConfig {
        pointer_ttl: Duration::from_millis(1),
        metadata_cache_bytes: 1 << 20,
        data_cache_bytes: 256 << 20,
        ..Default::default()
    };
    let e = Engine::new(store, config);
    let pass = || async {
        for (ks, keys) in &keyspaces {
            for k in keys {
                assert!(e.get(ks, k).await.unwrap().is_some());
            }
        }
        e.sync_caches().await;
    };
    pass().await;
    pass().await; // every block now cached, under each version's one object
    let evictions = e.stats().caches.iter().find(|c| c.name == "manifest").map(|c| c.evictions).unwrap();
    assert!(evictions > 0, "no version was evicted: the test proves nothing");
    let before = data_misses(&e);
    tokio::time::sleep(Duration::from_millis(5)).await; // every pointer past its TTL: each is read again
    pass().await;
    assert_eq!(data_misses(&e) - before, 0, "blocks of unchanged versions fetched again after a reload");
}
