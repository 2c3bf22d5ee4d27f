//! What a lookup costs as the keyspace grows (issue 18), one JSON line per figure, counted by the engine:
//! - cold: the first lookup in a never-seen shard, and the next one in another piece of the same shard
//!   (the shard's top level cached);
//! - a uniform random working set 10× the data cache: bytes and GETs per lookup, against the same lookups
//!   with no data cache (what they need: exactly their blocks);
//! - warm: 2,000 keys' working set in a 2 GiB data cache (after a warm-up): GETs per lookup and lookups/s;
//! - the top level a reader loads (pointer and manifest): its bytes and the time to load it.
//!
//! usage: cairn-scale STORE_DIR KEYSPACE DATA_FILE [LOOKUPS]
//!        cairn-scale --synthetic KEYS SHARDS   (a keyspace of KEYS keys in SHARDS shards whose metadata is
//!        real and whose shards all read as one template shard: template_store.rs)

use std::time::Instant;

use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use object_store::ObjectStoreExt;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    if args[1] == "--synthetic" {
        let (keys, shards) = (args[2].parse().unwrap(), args[3].parse().unwrap());
        rt.block_on(synthetic(keys, shards));
        return;
    }
    let (store_dir, ks, data) = (&args[1], &args[2], &args[3]);
    let lookups: usize = args.get(4).map_or(100_000, |n| n.parse().unwrap());
    let keys = sample_keys(data, 400_000);
    let store = Store::open(store_dir).unwrap();
    rt.block_on(measure(&store, ks, &keys, lookups));
}

/// Every figure for keyspace `ks` in `store`, looking up `keys` (all present).
async fn measure(store: &Store, ks: &str, keys: &[String], lookups: usize) {
    {
        let store = store.clone();
        let ptr = cairn_shared::versions::pointer::read(store.inner.as_ref(), ks).await.unwrap().unwrap();
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
            let shard = k.top().placement.shard_of(key.as_bytes());
            let other = keys.iter().skip(trial * 104_729 % keys.len()).find(|o| {
                *o != key && k.top().placement.shard_of(o.as_bytes()) == shard && !same_piece(&m, shard, key, o)
            });
            let before = engine.counters();
            if let Some(o) = other {
                engine.get(ks, o).await.unwrap().expect("a listed key");
            }
            let next = engine.counters() - before;
            // A never-seen shard of the group just loaded (grouped manifests; else any other shard).
            use cairn_shared::format::manifest::{GROUP_ABOVE, GROUP_SHARDS};
            let per_group = if m.shards.len() > GROUP_ABOVE { GROUP_SHARDS as u32 } else { m.shards.len() as u32 };
            let group = shard / per_group;
            let sibling = keys.iter().skip(trial * 15_485_863 % keys.len()).find(|o| {
                let s = k.top().placement.shard_of(o.as_bytes());
                s != shard && s / per_group == group
            });
            let before = engine.counters();
            if let Some(o) = sibling {
                engine.get(ks, o).await.unwrap().expect("a listed key");
            }
            let sib = engine.counters() - before;
            println!(
                "{}",
                json!({"bench": "scale_cold", "trial": trial, "first_gets": first.object_gets, "first_bytes": first.bytes_fetched,
                       "next_gets": next.object_gets, "next_bytes": next.bytes_fetched,
                       "sibling_found": sibling.is_some(), "sibling_gets": sib.object_gets, "sibling_bytes": sib.bytes_fetched})
            );
        }

        let uniform: Vec<&String> = choose(keys.len(), 2 * lookups, false).into_iter().map(|i| &keys[i]).collect();
        // Warm: a working set that fits (2,000 keys, at most 2,000 shards' worth), the same at every size.
        let hot: Vec<&String> =
            choose(keys.len().min(2_000), 2 * lookups, false).into_iter().map(|i| &keys[i]).collect();
        let (needed_gets, needed_bytes, _) =
            run(&store, ks, EngineConfig { data_cache_bytes: 0, ..Default::default() }, &uniform).await;
        // The blocks the sampled keys touch (each key one block, at most every block once), a tenth of it cached.
        let working_set = (keys.len() as f64 * needed_bytes).min(total as f64) as u64;
        let (gets, bytes, _) =
            run(&store, ks, EngineConfig { data_cache_bytes: working_set / 10, ..Default::default() }, &uniform).await;
        let (warm_gets, warm_bytes, warm_rate) =
            run(&store, ks, EngineConfig { data_cache_bytes: 2 << 30, ..Default::default() }, &hot).await;
        println!(
            "{}",
            json!({"bench": "scale_working_set", "working_set_bytes": working_set, "block_only_gets": needed_gets,
                   "block_only_bytes": needed_bytes, "tenfold_gets": gets, "tenfold_bytes": bytes,
                   "tenfold_ratio": bytes / needed_bytes, "warm_gets": warm_gets, "warm_bytes": warm_bytes,
                   "warm_lookups_per_s": warm_rate})
        );
    }
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
    let at = |k: &str| cairn_shared::format::piece::locate(p, k.as_bytes());
    !p.is_empty() && at(a) == at(b)
}

/// A keyspace of `keys` keys in `shards` shards whose metadata is real and whose shards all read as one
/// template shard of `keys / shards` example-shaped rows (template_store.rs): the manifest and its groups
/// list every shard, each entry names the template's pieces or root, and lookups of the template's keys
/// land on the shards the placement names, reading what such a keyspace would read there.
async fn synthetic(keys: u64, shards: u32) {
    use cairn_bench::template_store::TemplateStore;
    use cairn_shared::format::manifest::{ShardEntry, Source};
    use cairn_shared::format::ring::PlacementSpec;
    use cairn_shared::format::shard_writer::{ShardFormat, ShardWriter};
    let per_shard = keys / shards as u64;
    let mut rows: Vec<(String, Vec<u8>)> = (0..per_shard)
        .map(|i| {
            let key = uuid::Uuid::from_u128(xxhash_rust::xxh3::xxh3_128(&i.to_le_bytes())).to_string();
            (key, format!("{i:>width$}", width = 20 + (i % 101) as usize).into_bytes())
        })
        .collect();
    rows.sort();
    let mut buf = Vec::new();
    let mut w = ShardWriter::new(&mut buf, &ShardFormat::default(), vec![]).unwrap();
    for (k, v) in &rows {
        w.append(k, v).unwrap();
    }
    let sum = w.finish().unwrap();
    let memory = Store::open("memory://synthetic").unwrap();
    let template = object_store::path::Path::from("template.parquet");
    memory.inner.put(&template, buf.clone().into()).await.unwrap();
    let version = cairn_shared::format::layout::new_version();
    let checksum = cairn_shared::format::manifest::checksum_of(&buf);
    let entries: Vec<ShardEntry> = (0..shards)
        .map(|s| {
            sum.clone().entry(
                s,
                cairn_shared::format::layout::shard_path("synthetic", s, &version).to_string(),
                checksum.clone(),
            )
        })
        .collect();
    let m = Manifest {
        format: cairn_shared::format::manifest::FORMAT_VERSION,
        keyspace: "synthetic".into(),
        version: version.clone(),
        created_at: cairn_shared::format::layout::now_rfc3339(),
        placement: PlacementSpec::jump(shards),
        replicas: vec![],
        primary: None,
        source: Source::new(String::new(), vec![]),
        rows: sum.rows * shards as u64,
        bytes: sum.bytes * shards as u64,
        shards: entries,
        groups: vec![],
        delta: None,
        layers: vec![],
    };
    m.write(memory.inner.as_ref()).await.unwrap();
    cairn_shared::versions::pointer::switch(memory.inner.as_ref(), "synthetic", &version, None, None).await.unwrap();
    let store = Store {
        url: memory.url.clone(),
        inner: std::sync::Arc::new(TemplateStore::new(memory.inner.clone(), template)),
    };
    let keys: Vec<String> = rows.into_iter().map(|(k, _)| k).collect();
    measure(&store, "synthetic", &keys, 100_000).await;
}
