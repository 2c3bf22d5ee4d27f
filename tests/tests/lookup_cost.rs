//! What a lookup costs does not grow with what is stored: a cold lookup in a 64 MiB shard reads one index
//! piece and one block (≤ 2 GETs, ≤ 32 KiB), and a working set ten times the data cache is served block by
//! block instead of reading whole shards that are evicted before they pay back. Counted by a store wrapper.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_tests::fault::FaultyStore;
use cairn_tests::ingest;

/// Row `i` of a synthetic dataset shaped like the reference one: a UUID-like key, a 60-140 byte value.
fn row(i: u64) -> (String, Vec<u8>) {
    let h = xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes());
    let key = uuid::Uuid::from_u128(h).hyphenated().to_string();
    let value = format!("{i:>width$}", width = 60 + (i % 81) as usize).into_bytes();
    (key, value)
}

fn write_rows(path: &std::path::Path, n: u64) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..n {
        let (k, v) = row(i);
        out.write_all(k.as_bytes()).unwrap();
        out.write_all(b" ").unwrap();
        out.write_all(&v).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

fn counted(local: &Store) -> (Arc<FaultyStore>, Store) {
    let store = Arc::new(FaultyStore::slow(local.inner.clone(), Duration::ZERO, Duration::ZERO));
    (store.clone(), Store { url: local.url.clone(), inner: store })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_64_mib_shard_answers_a_cold_lookup_in_two_small_gets() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.data");
    let n = 480_000;
    write_rows(&input, n);
    let local = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let report = ingest(&input, "big", &local, Some(1)).await.unwrap();
    let m = Manifest::read(local.inner.as_ref(), "big", &report.version).await.unwrap();
    let shard = &m.shards[0];
    assert!(shard.bytes >= 64 << 20, "a {}-byte shard", shard.bytes);
    assert!(shard.piece_count() > 100, "{} index pieces", shard.piece_count());

    let (count, store) = counted(&local);
    let engine = Engine::new(store, EngineConfig::default());
    // The shard's top level: pointer, manifest and the shard's root (its list of pieces), read once.
    engine.keyspace("big").await.unwrap();
    let before = count.reads();
    assert_eq!(engine.get("big", &row(0).0).await.unwrap().map(|v| v.to_vec()), Some(row(0).1));
    assert_eq!(count.reads() - before, 3, "root, piece, block");
    let mut worst = (0, 0);
    for i in (0..n).step_by((n / 300) as usize) {
        let (key, value) = row(i);
        let absent = format!("{key}x");
        for (k, want) in [(key.as_str(), Some(value)), (absent.as_str(), None)] {
            let before = (count.reads(), count.read_bytes());
            assert_eq!(engine.get("big", k).await.unwrap().map(|v| v.to_vec()), want, "key {k}");
            let cost = (count.reads() - before.0, count.read_bytes() - before.1);
            assert!(cost.0 <= 2 && cost.1 <= 32 << 10, "key {k}: {} GETs, {} bytes", cost.0, cost.1);
            worst = worst.max(cost);
        }
    }
    println!("worst cold lookup in a {} MiB shard: {} GETs, {} bytes", shard.bytes >> 20, worst.0, worst.1);
}

/// Bytes the engine fetched over `keys`, after `warm` lookups of the same stream (which load the index
/// pieces: the metadata cache holds them all).
async fn fetched_per_lookup(local: &Store, config: EngineConfig, keys: &[u64], warm: usize) -> f64 {
    let (count, store) = counted(local);
    let engine = Engine::new(store, config);
    for &i in &keys[..warm] {
        engine.get("ws", &row(i).0).await.unwrap();
    }
    let before = count.read_bytes();
    for &i in &keys[warm..] {
        let (k, v) = row(i);
        assert_eq!(engine.get("ws", &k).await.unwrap().as_deref(), Some(v.as_slice()), "key {k}");
    }
    (count.read_bytes() - before) as f64 / (keys.len() - warm) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_working_set_ten_times_the_cache_is_served_block_by_block() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ws.data");
    let n = 200_000;
    write_rows(&input, n);
    let local = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    // Shards small enough that the cache could hold several (one may take an eighth of it).
    let report = ingest(&input, "ws", &local, Some(128)).await.unwrap();
    let m = Manifest::read(local.inner.as_ref(), "ws", &report.version).await.unwrap();
    let total: u64 = m.shards.iter().map(|s| s.bytes).sum();
    assert!(m.shards.iter().all(|s| s.bytes < total / 10 / 8));

    // Uniform random keys over every shard.
    let mut x = 0x2545f4914f6cdd1du64;
    let keys: Vec<u64> = (0..30_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        })
        .collect();
    let warm = 10_000;
    // What the lookups need: with no data cache every lookup reads exactly its block.
    let needed =
        fetched_per_lookup(&local, EngineConfig { data_cache_bytes: 0, ..Default::default() }, &keys, warm).await;
    let tenth = EngineConfig { data_cache_bytes: total / 10, ..Default::default() };
    let got = fetched_per_lookup(&local, tenth, &keys, warm).await;
    println!("working set 10x the cache: {got:.0} bytes per lookup; the block alone: {needed:.0}");
    assert!(got <= 1.5 * needed, "{got:.0} bytes per lookup, {:.2}x the block", got / needed);

    // A cache that holds the working set: shards are promoted and lookups stop reading.
    let fits = EngineConfig { data_cache_bytes: 4 * total, ..Default::default() };
    let warm_cost = fetched_per_lookup(&local, fits, &keys, warm).await;
    println!("working set fits: {warm_cost:.0} bytes per lookup");
    assert!(warm_cost < 0.05 * needed, "{warm_cost:.0} bytes per lookup with a cache that holds everything");
}

/// More shards than ingest used to pick by itself (4,096) publish, serve every key, and pass health, repair and
/// gc: nothing in the format or the tools is bounded by the automatic cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_shards_than_the_automatic_cap_publish_serve_and_pass_health_repair_gc() {
    use cairn_ingest::{IngestOptions, NoProgress};
    use cairn_shared::versions::gc::{self, GcOptions};
    use cairn_shared::versions::health::{self, Status};
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;
    // In memory: 3 versions of 4,100 shards under 2 roots are 25k objects, slow to fsync one by one.
    let roots: Vec<Store> = (0..2).map(|i| Store::open(&format!("memory://many-shards-{i}")).unwrap()).collect();
    let shards = 4_100;
    let publish = |shards: u32| {
        let mut opts = IngestOptions::new(cairn_tests::example_data(), "many", roots[0].clone());
        opts.replicas = roots[1..].to_vec();
        opts.shards = Some(shards);
        cairn_ingest::ingest(opts, Arc::new(NoProgress))
    };
    let first = publish(shards).await.unwrap();
    let m = Manifest::read(roots[0].inner.as_ref(), "many", &first.version).await.unwrap();
    assert_eq!(m.shards.len(), shards as usize);
    let top = Manifest::read_top(roots[0].inner.as_ref(), "many", &first.version).await.unwrap();
    assert!(top.groups.len() > 1, "the manifest lists {} groups", top.groups.len());
    let engine = Engine::new(roots[0].clone(), EngineConfig::default());
    for (k, v) in cairn_tests::read_dataset(&cairn_tests::example_data()) {
        assert_eq!(engine.get("many", &k).await.unwrap().as_deref(), Some(v.as_slice()), "key {k}");
    }
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);
    let lost = m.shards.iter().find(|s| s.rows > 0).unwrap();
    roots[1].inner.delete(&lost.path.as_str().into()).await.unwrap();
    assert_eq!(health::check(&roots, &m, false).await.status, Status::Yellow);
    assert_eq!(cairn_shared::versions::repair::repair(&roots, &m).await.unwrap().copied, 1);
    assert_eq!(health::check(&roots, &m, true).await.status, Status::Green);

    // Two more versions; gc then deletes the first one (neither current nor the one replaced) under both
    // roots, and the current one stays whole.
    publish(shards + 1).await.unwrap();
    let third = publish(shards + 2).await.unwrap();
    let opts = GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false };
    let report = gc::collect(&roots, "many", &opts).await.unwrap();
    assert_eq!(report.deleted_versions, vec![first.version.clone()], "{report:?}");
    assert!(report.objects_deleted > 2 * shards as usize, "{report:?}");
    for root in &roots {
        assert!(Manifest::read(root.inner.as_ref(), "many", &first.version).await.is_err());
        let groups = cairn_shared::format::layout::groups_dir("many", &first.version);
        let left: Vec<_> = root.inner.list(Some(&groups)).try_collect().await.unwrap();
        assert!(left.is_empty(), "{} group objects of the collected version left", left.len());
    }
    let current = Manifest::read(roots[0].inner.as_ref(), "many", &third.version).await.unwrap();
    assert_eq!(health::check(&roots, &current, true).await.status, Status::Green);
    engine.refresh();
    for (k, v) in cairn_tests::read_dataset(&cairn_tests::example_data()).iter().step_by(10) {
        assert_eq!(engine.get("many", k).await.unwrap().as_deref(), Some(v.as_slice()), "key {k}");
    }
}
