//! In-process measurements, one JSON line per figure (scripts/bench.sh collects them into BENCHMARKS.md):
//! - warm lookups per second on one core, hits and misses, against a HashMap over the same keys in the
//!   same run (the ratio is what matters; absolute numbers depend on the machine);
//! - cold lookups: object-store GETs and bytes for the first lookup in a never-seen shard, and for the next
//!   lookup in the same shard (footer cached, block not), counted by the engine.
//!
//! usage: cairn-bench STORE_DIR KEYSPACE DATA_FILE RUNS

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::store::Store;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, ks, data, runs) = (&args[1], &args[2], &args[3], args[4].parse::<usize>().unwrap());
    let bytes = std::fs::read(data).expect("data file");
    let rows: Vec<(String, Bytes)> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(200_000)
        .map(|l| {
            let sp = l.iter().position(|&b| b == b' ').unwrap();
            (String::from_utf8_lossy(&l[..sp]).into_owned(), Bytes::copy_from_slice(&l[sp + 1..]))
        })
        .collect();
    let misses: Vec<String> = (0..rows.len()).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Store::open(store_dir).unwrap();

    rt.block_on(async {
        let engine = Engine::new(store.clone(), EngineConfig { page_cache_bytes: 2 << 30, ..Default::default() });
        for (k, _) in &rows {
            engine.get(ks, k).await.unwrap(); // warm every page these keys touch
        }
        let map: HashMap<&str, &Bytes> = rows.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for run in 0..runs {
            let t = Instant::now();
            for (k, v) in &rows {
                let got = engine.get(ks, k).await.unwrap().unwrap();
                assert_eq!(got.len(), v.len());
            }
            let hits = rows.len() as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            for k in &misses {
                assert!(engine.get(ks, k).await.unwrap().is_none());
            }
            let miss = misses.len() as f64 / t.elapsed().as_secs_f64();
            let t = Instant::now();
            for (k, v) in &rows {
                assert_eq!(std::hint::black_box(map.get(k.as_str())).unwrap().len(), v.len());
            }
            let base = rows.len() as f64 / t.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"bench": "inproc", "run": run, "hits_per_s": hits, "misses_per_s": miss, "hashmap_per_s": base})
            );
        }
        // Cold: a fresh engine per run, first lookup of a key (shard never seen), then a second key of the
        // same shard (metadata cached).
        for run in 0..runs {
            let engine = Engine::new(store.clone(), EngineConfig::default());
            let ksd = engine.keyspace(ks).await.unwrap();
            let before = engine.counters();
            let (k1, _) = &rows[run * 7919 % rows.len()];
            engine.get(ks, k1).await.unwrap().unwrap();
            let first = engine.counters() - before;
            let shard = ksd.placement.shard_of(k1.as_bytes());
            let (k2, _) = rows
                .iter()
                .skip(run * 104_729 % rows.len())
                .find(|(k, _)| k != k1 && ksd.placement.shard_of(k.as_bytes()) == shard)
                .unwrap();
            let before = engine.counters();
            engine.get(ks, k2).await.unwrap().unwrap();
            let second = engine.counters() - before;
            // An absent key in the same (now open, not yet hot) shard: 0 GETs if it falls between blocks' key
            // ranges, else its block (1 GET).
            let absent = std::iter::repeat_with(|| uuid::Uuid::new_v4().to_string())
                .find(|k| ksd.placement.shard_of(k.as_bytes()) == shard)
                .unwrap();
            let before = engine.counters();
            assert!(engine.get(ks, &absent).await.unwrap().is_none());
            let miss = engine.counters() - before;
            println!(
                "{}",
                json!({"bench": "cold", "run": run, "first_gets": first.object_gets, "first_bytes": first.bytes_fetched,
                       "cached_meta_gets": second.object_gets, "cached_meta_bytes": second.bytes_fetched,
                       "miss_gets_after_open": miss.object_gets})
            );
        }
    });
}
