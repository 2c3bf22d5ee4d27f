//! Shard writer → object store → query engine, without the ingest pipeline.

use std::sync::Arc;

use bytes::Bytes;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::{Manifest, Source};
use cairn_shared::format::ring::{Placement, PlacementSpec};
use cairn_shared::format::shard_writer::{ShardFormat, ShardWriter};
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::layout, versions::pointer};
use object_store::{ObjectStoreExt, PutPayload};

fn dataset(n: usize) -> Vec<(String, Vec<u8>)> {
    let mut rows: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let v = match i % 7 {
                0 => Vec::new(),
                1 => b"  lead and trail  ".to_vec(),
                2 => "tab\there\r".as_bytes().to_vec(),
                3 => "non-ASCII: żółw 🐢".as_bytes().to_vec(),
                4 => vec![b'x'; 40_000],
                5 => vec![0xff, 0x00, 0xfe],
                _ => format!("value {i}").into_bytes(),
            };
            (uuid::Uuid::new_v4().to_string(), v)
        })
        .collect();
    rows.sort();
    rows
}

async fn publish(store: &Store, shards: u32, rows: &[(String, Vec<u8>)]) -> Manifest {
    publish_as(store, shards, rows, &ShardFormat::default()).await
}

async fn publish_as(store: &Store, shards: u32, rows: &[(String, Vec<u8>)], format: &ShardFormat) -> Manifest {
    let spec = PlacementSpec::jump(shards);
    let placement = Placement::new(&spec).unwrap();
    let version = layout::new_version();
    let mut entries = Vec::new();
    for s in 0..shards {
        let mut buf = Vec::new();
        let mut w = ShardWriter::new(&mut buf, format, vec![]).unwrap();
        for (k, v) in rows.iter().filter(|(k, _)| placement.shard_of(k.as_bytes()) == s) {
            w.append(k, v).unwrap();
        }
        let sum = w.finish().unwrap();
        assert_eq!(sum.bytes, buf.len() as u64);
        let path = layout::shard_path("t", s, &version);
        store.inner.put(&path, PutPayload::from(Bytes::from(buf))).await.unwrap();
        entries.push(sum.entry(s, path.to_string(), String::new()));
    }
    let m = Manifest {
        format: format.version(),
        keyspace: "t".into(),
        version: version.clone(),
        created_at: String::new(),
        placement: spec,
        replicas: vec![],
        primary: None,
        source: Source::new(String::new(), vec![]),
        rows: rows.len() as u64,
        bytes: entries.iter().map(|e| e.bytes).sum(),
        shards: entries,
        groups: vec![],
        delta: None,
        layers: vec![],
    };
    let top = m.write(store.inner.as_ref()).await.unwrap();
    let cur = pointer::read(store.inner.as_ref(), "t").await.unwrap();
    pointer::switch(store.inner.as_ref(), "t", &version, Some(top), cur.as_ref()).await.unwrap();
    m
}

#[tokio::test]
async fn every_key_round_trips_and_absent_keys_miss() {
    let store = Store::open("memory://roundtrip").unwrap();
    let rows = dataset(20_000);
    publish(&store, 3, &rows).await;
    let engine = Arc::new(Engine::new(store, EngineConfig::default()));
    for (k, v) in &rows {
        let got = engine.get("t", k).await.unwrap();
        assert_eq!(got.as_deref(), Some(v.as_slice()), "key {k}");
    }
    for _ in 0..1000 {
        assert_eq!(engine.get("t", &uuid::Uuid::new_v4().to_string()).await.unwrap(), None);
    }
    let before = engine.stats().object_gets;
    for (k, _) in rows.iter().take(100) {
        engine.get("t", k).await.unwrap();
    }
    assert_eq!(engine.stats().object_gets, before, "warm lookups must not touch the store");
    assert!(engine.get("t", "bad key").await.is_err());
    assert!(engine.get("nope", "k").await.is_err());
}

/// The read path's request budget: a cold lookup is an index piece and one block (2 GETs, ≤ 32 KiB); with
/// the piece cached, one GET, and none for most absent keys; once a shard has been promoted (decoded whole),
/// hits and misses cost no I/O.
#[tokio::test]
async fn cold_lookups_cost_two_gets_then_one_then_none() {
    let store = Store::open("memory://cold").unwrap();
    // Shaped like the reference data (UUID keys, 20-120 byte values), one shard of the size ingest picks.
    let mut rows: Vec<(String, Vec<u8>)> =
        (0..5_000).map(|i| (uuid::Uuid::new_v4().to_string(), vec![b'a' + (i % 26) as u8; 20 + i % 101])).collect();
    rows.sort();
    let m = publish(&store, 1, &rows).await;
    let pieces = m.shards[0].piece_count();
    assert!(pieces >= 2, "the shard's index is in pieces ({pieces})");
    let engine = Engine::new(store.clone(), EngineConfig::default());
    let ks = engine.keyspace("t").await.unwrap();
    let cost = |before: cairn_shared::query::Counters| engine.counters() - before;
    let before = engine.counters();
    assert!(engine.lookup(&ks, &rows[1500].0).await.unwrap().is_some());
    let first = cost(before);
    assert_eq!(first.object_gets, 2, "index piece + block");
    assert!(first.bytes_fetched <= 32 << 10, "cold lookup read {} bytes", first.bytes_fetched);
    let before = engine.counters();
    assert!(engine.lookup(&ks, &rows[1700].0).await.unwrap().is_some());
    assert_eq!(cost(before).object_gets, 1, "piece cached: the block only");
    // Keep fetching distinct blocks until the shard is promoted: one GET reads every block.
    for (k, v) in rows.iter().step_by(128) {
        assert_eq!(engine.lookup(&ks, k).await.unwrap().as_deref(), Some(v.as_slice()));
    }
    let before = engine.counters();
    for (k, v) in &rows {
        assert_eq!(engine.lookup(&ks, k).await.unwrap().as_deref(), Some(v.as_slice()));
    }
    for _ in 0..1000 {
        assert_eq!(engine.lookup(&ks, &uuid::Uuid::new_v4().to_string()).await.unwrap(), None);
    }
    assert_eq!(cost(before).object_gets, 0, "a promoted shard answers hits and misses from memory");

    // Absent keys inside blocks' key ranges, with no data cache (every block read goes to the store): the
    // blocks' bloom filters, fetched with the footer, answer all but their false positives.
    let uncached = Engine::new(store, EngineConfig { data_cache_bytes: 0, ..Default::default() });
    assert!(uncached.get("t", &rows[0].0).await.unwrap().is_some());
    let before = uncached.counters();
    for (k, _) in rows.iter().step_by(6) {
        assert_eq!(uncached.get("t", &format!("{k}x")).await.unwrap(), None);
    }
    let misses = (uncached.counters() - before).object_gets as usize;
    assert!(misses <= 20 + pieces, "1,000 absent keys, {pieces} index pieces: {misses} GETs");
}

/// Hot shards live in the engine's huge-page arena. Under eviction churn (16 shards, a cache that holds
/// about 8) every value stays right across reused ranges, and evicted shards give their memory back: the
/// arena never holds more than the data cache accounts for.
#[tokio::test]
async fn hot_shards_churn_through_the_arena() {
    let store = Store::open("memory://arena").unwrap();
    let mut rows: Vec<(String, Vec<u8>)> =
        (0..16_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("{i:0>100}").into_bytes())).collect();
    rows.sort();
    let m = publish(&store, 16, &rows).await;
    let shard_bytes = m.shards.iter().map(|s| s.bytes).max().unwrap();
    let config = EngineConfig { data_cache_bytes: 9 * shard_bytes, ..Default::default() };
    let engine = Engine::new(store, config);
    let ks = engine.keyspace("t").await.unwrap();
    let mut by_shard = rows.clone();
    by_shard.sort_by_key(|(k, _)| ks.top().placement.shard_of(k.as_bytes()));
    for pass in 0..3 {
        for (k, v) in &by_shard {
            assert_eq!(engine.get("t", k).await.unwrap().as_deref(), Some(v.as_slice()), "pass {pass}, key {k}");
        }
        // An evicted shard's memory returns to the arena once nothing holds it: moka drops its copy of an
        // evicted value when the epoch-based reclamation of its map gets to it, which other threads (tests
        // running beside this one) can delay; and its housekeeping stops after 100 ms with a listener set.
        // So the arena is eventually within what the cache accounts for, never at a given moment: waited
        // for, with a bound far past any delay (this is a leak check, not a timing claim).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let stats = engine.stats();
            let data = stats.caches.iter().find(|c| c.name == "data").unwrap();
            let arena = stats.hot_arena;
            assert!(arena.used_bytes > 0, "pass {pass}: hot shards are in the arena: {arena:?}");
            if arena.used_bytes <= data.bytes + data.entries * 4096 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pass {pass}: arena holds {} bytes, the cache accounts for {} in {} entries",
                arena.used_bytes,
                data.bytes,
                data.entries
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// A manifest of more than 256 shards lists groups of entries; a reader loads the top level (small
/// whatever the shard count), then each group on first use, verified: a corrupt group fails the lookups
/// that need it, never answers them, and leaves the other groups' lookups alone.
#[tokio::test]
async fn many_shards_are_listed_in_groups_loaded_on_first_use() {
    use cairn_shared::format::manifest::{GROUP_ABOVE, GROUP_SHARDS};
    let store = Store::open("memory://groups").unwrap();
    let rows = dataset(6_000);
    let shards = GROUP_ABOVE as u32 + 2 * GROUP_SHARDS as u32 + 100;
    let m = publish(&store, shards, &rows).await;
    let top = Manifest::read_top(store.inner.as_ref(), "t", &m.version).await.unwrap();
    let groups = (shards as usize).div_ceil(GROUP_SHARDS);
    assert!(top.shards.is_empty() && top.groups.len() == groups, "{} groups", top.groups.len());
    let top_bytes = store.inner.get(&m.path()).await.unwrap().bytes().await.unwrap().len();
    assert!(top_bytes < 200 * groups, "the top level is {top_bytes} bytes");
    let full = Manifest::read(store.inner.as_ref(), "t", &m.version).await.unwrap();
    assert_eq!(full.shards, m.shards, "the admin tools' read has every entry");

    let engine = Engine::new(store.clone(), EngineConfig::default());
    let ks = engine.keyspace("t").await.unwrap();
    let group_of = |k: &str| ks.top().placement.shard_of(k.as_bytes()) as usize / GROUP_SHARDS;
    let (k0, v0) = rows.iter().find(|(k, _)| group_of(k) == 0).unwrap();
    let before = engine.counters();
    assert_eq!(engine.get("t", k0).await.unwrap().as_deref(), Some(v0.as_slice()));
    assert_eq!((engine.counters() - before).object_gets, 3, "group, piece, block");
    for (k, v) in &rows {
        assert_eq!(engine.get("t", k).await.unwrap().as_deref(), Some(v.as_slice()), "key {k}");
    }

    // Group 1 corrupted: a fresh reader fails its lookups as corrupt, answers the others.
    let path = m.group_path(1);
    let mut bad = store.inner.get(&path).await.unwrap().bytes().await.unwrap().to_vec();
    let at = bad.len() / 2;
    bad[at] ^= 0x01;
    store.inner.put(&path, PutPayload::from(Bytes::from(bad))).await.unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (k, v) in rows.iter().step_by(7) {
        match engine.get("t", k).await {
            Ok(got) => {
                assert_ne!(group_of(k), 1, "{k} answered from a corrupt group");
                assert_eq!(got.as_deref(), Some(v.as_slice()));
            }
            Err(e) => {
                assert_eq!(group_of(k), 1, "{k}: {e}");
                assert_eq!(e.kind(), cairn_shared::ErrorKind::Corrupt, "{e}");
            }
        }
    }
    assert!(Manifest::read(store.inner.as_ref(), "t", &m.version).await.is_err());
}

/// Format 2 keyspaces (one index read from the shard's tail, no pieces) published by earlier builds still
/// answer every key, and promote like format 3 ones.
#[tokio::test]
async fn format_2_keyspaces_still_answer() {
    let store = Store::open("memory://format2").unwrap();
    let rows = dataset(5_000);
    let m = publish_as(&store, 2, &rows, &ShardFormat { partitioned: false, ..Default::default() }).await;
    assert_eq!(m.format, 2);
    assert!(m.shards.iter().all(|s| s.pieces.is_empty()));
    let engine = Engine::new(store, EngineConfig::default());
    for pass in 0..3 {
        for (k, v) in &rows {
            assert_eq!(engine.get("t", k).await.unwrap().as_deref(), Some(v.as_slice()), "pass {pass}, key {k}");
        }
    }
    let before = engine.counters();
    for (k, _) in rows.iter().step_by(50) {
        engine.get("t", k).await.unwrap();
    }
    assert_eq!((engine.counters() - before).object_gets, 0, "promoted");
}

#[tokio::test]
async fn a_new_version_is_seen_after_refresh_only() {
    let store = Store::open("memory://versions").unwrap();
    let a = dataset(300);
    publish(&store, 2, &a).await;
    let engine = Engine::new(store.clone(), EngineConfig::default());
    assert!(engine.get("t", &a[0].0).await.unwrap().is_some());
    let b = dataset(300);
    publish(&store, 2, &b).await;
    assert!(engine.get("t", &a[0].0).await.unwrap().is_some(), "old version until the TTL");
    engine.refresh();
    assert!(engine.get("t", &a[0].0).await.unwrap().is_none());
    assert!(engine.get("t", &b[0].0).await.unwrap().is_some());
}

/// Lookup futures are held per request (the router boxes each handler's future; MGET holds up to 1,000): the
/// slow paths (store reads, promotion) are boxed inside, so the warm path's futures stay small.
#[test]
fn lookup_futures_stay_small() {
    let engine = Engine::new(Store::open("memory://futures").unwrap(), EngineConfig::default());
    let get = engine.get("ks", "key");
    let keyspace = engine.keyspace("ks");
    assert!(size_of_val(&get) <= 512, "Engine::get future: {} bytes", size_of_val(&get));
    assert!(size_of_val(&keyspace) <= 256, "Engine::keyspace future: {} bytes", size_of_val(&keyspace));
}
