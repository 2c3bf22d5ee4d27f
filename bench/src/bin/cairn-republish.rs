//! How fast a reader's hot set comes back after a full republish (BENCHMARKS.md, docs/benchmark-notes.md).
//! A reader serves Zipf(0.99) lookups until its data cache is full and evicting; the same rows are then
//! published again as a new version; the reader's next lookups are counted in chunks: how many objects it
//! read from the store, and how many shards it holds whole. One JSON line per chunk.
//!
//! usage: cairn-republish STORE_DIR KEYSPACE DATA_FILE DATA_CACHE_MIB

use std::sync::Arc;
use std::time::Duration;

use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use futures::StreamExt;
use serde_json::json;

const FILL: usize = 200_000;
const CHUNK: usize = 2_000;
const CHUNKS: usize = 40;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, ks, data) = (&args[1], args[2].clone(), &args[3]);
    let cache_mib: u64 = args[4].parse().expect("DATA_CACHE_MIB");
    let keys = sample_keys(data, 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let store = Store::open(store_dir).unwrap();
        let config = EngineConfig {
            data_cache_bytes: cache_mib << 20,
            pointer_ttl: Duration::from_secs(1),
            ..Default::default()
        };
        let engine = Engine::new(store.clone(), config);
        let stream = choose(keys.len(), FILL + CHUNK * CHUNKS, true);
        let run = |picked: &[usize]| {
            let (engine, keys, ks) = (&engine, &keys, &ks);
            futures::stream::iter(picked.to_vec()).for_each_concurrent(16, move |i| async move {
                engine.get(ks, &keys[i]).await.unwrap().expect("a listed key");
            })
        };
        run(&stream[..FILL]).await;
        let before = engine.keyspace(&ks).await.unwrap().manifest().version.clone();
        let opts = cairn_ingest::IngestOptions::new(data, &ks, store.clone());
        cairn_ingest::ingest(opts, Arc::new(cairn_ingest::NoProgress)).await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut at = FILL;
        for chunk in 0..CHUNKS {
            let gets = engine.counters().object_gets;
            run(&stream[at..at + CHUNK]).await;
            at += CHUNK;
            let version = engine.keyspace(&ks).await.unwrap().manifest().version.clone();
            let t = engine.telemetry();
            println!(
                "{}",
                json!({"bench": "republish", "chunk": chunk, "lookups": CHUNK, "switched": version != before,
                       "object_gets": engine.counters().object_gets - gets, "hot_shards": t.hot_shards})
            );
        }
    });
}
