//! What a lookup costs as the keyspace grows (issue 18), one JSON line per figure, counted by the engine:
//! - cold: the first lookup in a never-seen shard, and the next one in another piece of the same shard
//!   (the shard's top level cached);
//! - a uniform random working set 10× the data cache: bytes and GETs per lookup, against the same lookups
//!   with no data cache (what they need: exactly their blocks);
//! - warm: 2,000 keys' working set in a 2 GiB data cache (after a warm-up): GETs per lookup and lookups/s;
//! - the top level a reader loads (pointer and manifest): its bytes and the time to load it.
//!
//! usage: cairn-scale STORE_DIR KEYSPACE DATA_FILE [LOOKUPS]
//!        cairn-scale --synthetic-top-level SHARDS PIECES_PER_SHARD   (a manifest shaped like a keyspace of
//!        SHARDS shards with PIECES_PER_SHARD pieces each: the time to load it)

use std::time::Instant;

use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::manifest::Manifest;
use cairn_shared::store::Store;
use object_store::ObjectStoreExt;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if args[1] == "--synthetic-top-level" {
        let (shards, pieces) = (args[2].parse().unwrap(), args[3].parse().unwrap());
        rt.block_on(synthetic_top_level(shards, pieces));
        return;
    }
    let (store_dir, ks, data) = (&args[1], &args[2], &args[3]);
    let lookups: usize = args.get(4).map_or(100_000, |n| n.parse().unwrap());
    let keys = sample_keys(data, 400_000);
    let store = Store::open(store_dir).unwrap();
    rt.block_on(async {
        let ptr = cairn_shared::pointer::read(store.inner.as_ref(), ks).await.unwrap().unwrap();
        let m = Manifest::read(store.inner.as_ref(), ks, &ptr.pointer.version).await.unwrap();
        let total: u64 = m.shards.iter().map(|s| s.bytes).sum();
        let pieces: usize = m.shards.iter().map(|s| s.piece_count()).sum();
        // What a reader loads at start: the manifest object (a grouped one's top level).
        let top_level_bytes = store.inner.head(&m.path()).await.unwrap().size;
        let t = Instant::now();
        let engine = Engine::new(store.clone(), EngineConfig::default());
        engine.keyspace(ks).await.unwrap();
        let top_level_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "{}",
            json!({"bench": "shape", "rows": m.rows, "shards": m.shards.len(), "shard_bytes": total / m.shards.len() as u64,
                   "pieces": pieces, "data_bytes": total, "top_level_bytes": top_level_bytes, "top_level_load_ms": top_level_ms})
        );

        // Cold, 20 trials: a fresh engine each, the top level loaded first.
        for trial in 0..20 {
            let engine = Engine::new(store.clone(), EngineConfig::default());
            let k = engine.keyspace(ks).await.unwrap();
            let key = &keys[trial * 7919 % keys.len()];
            let before = engine.counters();
            engine.get(ks, key).await.unwrap().expect("a listed key");
            let first = engine.counters() - before;
            let shard = k.placement.shard_of(key.as_bytes());
            let other = keys.iter().skip(trial * 104_729 % keys.len()).find(|o| {
                *o != key && k.placement.shard_of(o.as_bytes()) == shard && !same_piece(&m, shard, key, o)
            });
            let before = engine.counters();
            if let Some(o) = other {
                engine.get(ks, o).await.unwrap().expect("a listed key");
            }
            let next = engine.counters() - before;
            println!(
                "{}",
                json!({"bench": "scale_cold", "trial": trial, "first_gets": first.object_gets, "first_bytes": first.bytes_fetched,
                       "next_gets": next.object_gets, "next_bytes": next.bytes_fetched})
            );
        }

        let uniform: Vec<&String> = choose(keys.len(), 2 * lookups, false).into_iter().map(|i| &keys[i]).collect();
        // Warm: a working set that fits (2,000 keys, at most 2,000 shards' worth), the same at every size.
        let hot: Vec<&String> = choose(keys.len().min(2_000), 2 * lookups, false).into_iter().map(|i| &keys[i]).collect();
        let (needed_gets, needed_bytes, _) =
            run(&store, ks, EngineConfig { page_cache_bytes: 0, ..Default::default() }, &uniform).await;
        // The blocks the sampled keys touch (each key one block, at most every block once), a tenth of it cached.
        let working_set = (keys.len() as f64 * needed_bytes).min(total as f64) as u64;
        let (gets, bytes, _) =
            run(&store, ks, EngineConfig { page_cache_bytes: working_set / 10, ..Default::default() }, &uniform).await;
        let (warm_gets, warm_bytes, warm_rate) =
            run(&store, ks, EngineConfig { page_cache_bytes: 2 << 30, ..Default::default() }, &hot).await;
        println!(
            "{}",
            json!({"bench": "scale_working_set", "working_set_bytes": working_set, "block_only_gets": needed_gets,
                   "block_only_bytes": needed_bytes, "tenfold_gets": gets, "tenfold_bytes": bytes,
                   "tenfold_ratio": bytes / needed_bytes, "warm_gets": warm_gets, "warm_bytes": warm_bytes,
                   "warm_lookups_per_s": warm_rate})
        );
    });
}

/// Runs the first half of `stream` as a warm-up, then the second: its GETs, bytes per lookup and lookups/s.
async fn run(store: &Store, ks: &str, config: EngineConfig, stream: &[&String]) -> (f64, f64, f64) {
    let (warmup, measured) = stream.split_at(stream.len() / 2);
    let engine = Engine::new(store.clone(), config);
    for k in warmup {
        engine.get(ks, k).await.unwrap();
    }
    let before = engine.counters();
    let t = Instant::now();
    for k in measured {
        engine.get(ks, k).await.unwrap();
    }
    let secs = t.elapsed().as_secs_f64();
    let c = engine.counters() - before;
    let n = measured.len() as f64;
    (c.object_gets as f64 / n, c.bytes_fetched as f64 / n, n / secs)
}

/// Whether two keys of one shard fall in the same index piece (format 3 with pieces in the manifest).
fn same_piece(m: &Manifest, shard: u32, a: &str, b: &str) -> bool {
    let p = &m.shards[shard as usize].pieces;
    let at = |k: &str| cairn_shared::piece::locate(p, k.as_bytes());
    !p.is_empty() && at(a) == at(b)
}

/// A manifest with `shards` entries, each naming a root of `pieces` pieces (what a reader of such a keyspace
/// loads before its first lookup), in a memory store: how long the load takes.
async fn synthetic_top_level(shards: u32, pieces: u32) {
    use cairn_shared::manifest::{ShardEntry, Source};
    use cairn_shared::piece::RootRef;
    use cairn_shared::ring::PlacementSpec;
    let store = Store::open("memory://synthetic").unwrap();
    let version = cairn_shared::layout::new_version();
    let key = |i: u64| uuid::Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).to_string();
    let shard_bytes = (pieces as u64 * 400) << 10;
    let entries: Vec<ShardEntry> = (0..shards)
        .map(|s| ShardEntry {
            shard: s,
            path: cairn_shared::layout::shard_path("big", s, &version).to_string(),
            rows: pieces as u64 * 2800,
            bytes: shard_bytes,
            meta_bytes: 250_000,
            meta_checksum: "xxh3-64:0123456789abcdef".into(),
            min_key: Some(key(2 * s as u64)),
            max_key: Some(key(2 * s as u64 + 1)),
            checksum: "xxh3-64:0123456789abcdef".into(),
            pieces: vec![],
            root: Some(RootRef { offset: shard_bytes - 300_000, len: pieces * 56, checksum: 7, pieces }),
        })
        .collect();
    let m = Manifest {
        format: cairn_shared::manifest::FORMAT_VERSION,
        keyspace: "big".into(),
        version: version.clone(),
        created_at: cairn_shared::layout::now_rfc3339(),
        placement: PlacementSpec::jump(shards),
        replicas: vec![],
        source: Source { fingerprint: String::new(), files: vec![] },
        rows: shards as u64 * pieces as u64 * 2800,
        bytes: shards as u64 * shard_bytes,
        shards: entries,
        groups: vec![],
    };
    m.write(store.inner.as_ref()).await.unwrap();
    cairn_shared::pointer::switch(store.inner.as_ref(), "big", &version, None).await.unwrap();
    let top_level_bytes = store.inner.head(&m.path()).await.unwrap().size;
    let mut times = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let engine = Engine::new(store.clone(), EngineConfig::default());
        engine.keyspace("big").await.unwrap();
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{}",
        json!({"bench": "synthetic_top_level", "shards": shards, "pieces_per_shard": pieces, "rows": m.rows,
               "top_level_bytes": top_level_bytes, "load_ms_min": times[0], "load_ms_median": times[2], "load_ms_max": times[4]})
    );
}
