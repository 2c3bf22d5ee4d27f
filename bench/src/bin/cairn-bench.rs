//! In-process measurements, one JSON line per figure (scripts/bench.sh collects them into BENCHMARKS.md):
//! - warm lookups per second on one core, hits and misses, against a HashMap over the same keys in the
//!   same run (every key of the dataset: the map holds what cairn holds warm), returning the same owned `Bytes` (the ratio is what matters; absolute numbers depend on the
//!   machine); hits both as a lookup that returns the value and as one that then reads it;
//! - cold lookups: object-store GETs and bytes for the first lookup in a never-seen shard, and for the next
//!   lookup in the same index piece (piece cached, block not), and for 100 absent keys in that shard (its
//!   other pieces read on first use), counted by the engine.
//!
//! usage: cairn-bench STORE_DIR KEYSPACE DATA_FILE RUNS

use std::collections::HashMap;
use std::time::Instant;

use bytes::Bytes;
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use serde_json::json;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, ks, data, runs) = (&args[1], &args[2], &args[3], args[4].parse::<usize>().unwrap());
    let bytes = std::fs::read(data).expect("data file");
    let rows: Vec<(String, Bytes)> = bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let sp = l.iter().position(|&b| b == b' ').unwrap();
            (String::from_utf8_lossy(&l[..sp]).into_owned(), Bytes::copy_from_slice(&l[sp + 1..]))
        })
        .collect();
    let misses: Vec<String> = (0..rows.len()).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = Store::open(store_dir).unwrap();

    rt.block_on(async {
        let engine = Engine::new(store.clone(), EngineConfig { data_cache_bytes: 2 << 30, ..Default::default() });
        for (k, _) in &rows {
            engine.get(ks, k).await.unwrap(); // warm every page these keys touch
        }
        // The baseline returns what cairn returns: an owned `Bytes` (a reference count taken, nothing copied).
        let map: HashMap<&str, Bytes> = rows.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        // Probed in a shuffled order, from a list laid out in that order: the keys' own reads stay
        // sequential, while the HashMap's values (allocated in file order) are found as randomly as cairn's.
        let probes: Vec<(String, usize)> =
            shuffled(rows.len()).into_iter().map(|i| (rows[i].0.clone(), rows[i].1.len())).collect();
        for run in 0..runs {
            let hits = per_s(probes.len(), || async {
                for (k, len) in &probes {
                    assert_eq!(engine.get(ks, k).await.unwrap().unwrap().len(), *len);
                }
            })
            .await;
            let hits_read = per_s(probes.len(), || async {
                let mut sum = 0u64;
                for (k, len) in &probes {
                    sum += read_ends(&engine.get(ks, k).await.unwrap().unwrap(), *len);
                }
                std::hint::black_box(sum);
            })
            .await;
            let miss = per_s(misses.len(), || async {
                for k in &misses {
                    assert!(engine.get(ks, k).await.unwrap().is_none());
                }
            })
            .await;
            let base = per_s(probes.len(), || async {
                for (k, len) in &probes {
                    let v: Option<Bytes> = std::hint::black_box(map.get(k.as_str()).cloned());
                    assert_eq!(v.unwrap().len(), *len);
                }
            })
            .await;
            let base_read = per_s(probes.len(), || async {
                let mut sum = 0u64;
                for (k, len) in &probes {
                    let v: Option<Bytes> = std::hint::black_box(map.get(k.as_str()).cloned());
                    sum += read_ends(&v.unwrap(), *len);
                }
                std::hint::black_box(sum);
            })
            .await;
            println!(
                "{}",
                json!({"bench": "inproc", "run": run, "hits_per_s": hits, "hits_read_per_s": hits_read,
                       "misses_per_s": miss, "hashmap_per_s": base, "hashmap_read_per_s": base_read})
            );
        }
        // Cold: a fresh engine per run, first lookup of a key (shard never seen), then a second key of the
        // same shard (metadata cached).
        for run in 0..runs {
            let engine = Engine::new(store.clone(), EngineConfig::default());
            let ksd = engine.keyspace(ks).await.unwrap();
            let full =
                cairn_shared::format::manifest::Manifest::read(store.inner.as_ref(), ks, &ksd.manifest().version)
                    .await
                    .unwrap();
            let before = engine.counters();
            let (k1, _) = &rows[run * 7919 % rows.len()];
            engine.get(ks, k1).await.unwrap().unwrap();
            let first = engine.counters() - before;
            let shard = ksd.top().placement.shard_of(k1.as_bytes());
            let (k2, _) = rows
                .iter()
                .skip(run * 104_729 % rows.len())
                .find(|(k, _)| {
                    k != k1 && ksd.top().placement.shard_of(k.as_bytes()) == shard && same_piece(&full, shard, k1, k)
                })
                .unwrap();
            let before = engine.counters();
            engine.get(ks, k2).await.unwrap().unwrap();
            let second = engine.counters() - before;
            // 100 absent keys in the same (now open, not yet hot) shard: none costs a GET unless it falls in a
            // block's key range and that block's bloom filter lets it through (then its block: 1 GET).
            let absent: Vec<String> = std::iter::repeat_with(|| uuid::Uuid::new_v4().to_string())
                .filter(|k| ksd.top().placement.shard_of(k.as_bytes()) == shard)
                .take(ABSENT_PROBES)
                .collect();
            let before = engine.counters();
            for k in &absent {
                assert!(engine.get(ks, k).await.unwrap().is_none());
            }
            let miss = engine.counters() - before;
            println!(
                "{}",
                json!({"bench": "cold", "run": run, "first_gets": first.object_gets, "first_bytes": first.bytes_fetched,
                       "cached_meta_gets": second.object_gets, "cached_meta_bytes": second.bytes_fetched,
                       "absent_probes": ABSENT_PROBES, "miss_gets_after_open": miss.object_gets})
            );
        }
    });
}

/// Whether two keys of one shard fall in the same index piece (always, for shards indexed whole).
fn same_piece(m: &cairn_shared::format::manifest::Manifest, shard: u32, a: &str, b: &str) -> bool {
    let p = &m.shards[shard as usize].pieces;
    let at = |k: &str| cairn_shared::format::piece::locate(p, k.as_bytes());
    p.is_empty() || at(a) == at(b)
}

/// Absent keys probed per cold run, once the shard is open.
const ABSENT_PROBES: usize = 100;

/// Operations per second of `f`, which runs `n` of them.
async fn per_s<F: std::future::Future<Output = ()>>(n: usize, f: impl FnOnce() -> F) -> f64 {
    let t = Instant::now();
    f().await;
    n as f64 / t.elapsed().as_secs_f64()
}

/// Reads a value's first and last byte: a lookup that uses its value pays for reaching it (a lookup that
/// only hands out a `Bytes` need not touch the value's memory).
fn read_ends(v: &Bytes, len: usize) -> u64 {
    assert_eq!(v.len(), len);
    v.first().map_or(0, |&b| b as u64) + v.last().map_or(0, |&b| b as u64)
}

/// 0..n in a fixed pseudo-random order (xorshift Fisher-Yates), the same in every run.
fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}
