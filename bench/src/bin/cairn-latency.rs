//! Lookup latency when the store has an object store's timing (s3_like.rs: first byte 20 ms median, 80 ms
//! p99, 90 MB/s per connection), one JSON line per figure: p50 / p99 / p99.9 for cold (the first lookups of
//! a fresh reader), mixed (the ones after, while pieces and blocks fill the caches) and warm (after a
//! warm-up) lookups, keys chosen uniformly or Zipf(0.99), hedging between the two copies on and off.
//! 16 lookups run at once.
//!
//! usage: cairn-latency STORE_DIR KEYSPACE DATA_FILE   (the keyspace ingested with one --replicas root)

use std::sync::Arc;
use std::time::Instant;

use cairn_bench::s3_like::S3Like;
use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use futures::StreamExt;
use serde_json::json;

const AT_ONCE: usize = 16;
const COLD: usize = 400;
const MIXED: usize = 3_600;
const WARMUP: usize = 12_000;
const WARM: usize = 4_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, ks, data) = (&args[1], &args[2], &args[3]);
    let keys = sample_keys(data, 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for zipf in [false, true] {
            for hedging in [true, false] {
                let seed = 7 + zipf as u64;
                let wrap = move |s: Store, i: u64| Store { url: s.url.clone(), inner: Arc::new(S3Like::typical(s.inner, seed * 31 + i)) };
                let primary = wrap(Store::open(store_dir).unwrap(), 0);
                let mut config = EngineConfig::default();
                config.failover.hedging = hedging;
                let resolver: cairn_shared::query::RootOpener = Arc::new(move |url: &str| Ok(wrap(Store::open(url)?, 1)));
                let engine = Engine::new(primary, config).with_root_opener(resolver);
                engine.keyspace(ks).await.unwrap();
                let stream = choose(keys.len(), COLD + MIXED + WARMUP + WARM, zipf);
                let mut at = 0;
                for (phase, n) in [("cold", COLD), ("mixed", MIXED), ("warmup", WARMUP), ("warm", WARM)] {
                    let picked = &stream[at..at + n];
                    at += n;
                    let mut lat: Vec<f64> = futures::stream::iter(picked)
                        .map(|&i| {
                            let (engine, key) = (&engine, &keys[i]);
                            async move {
                                let t = Instant::now();
                                engine.get(ks, key).await.unwrap().expect("a listed key");
                                t.elapsed().as_secs_f64() * 1e3
                            }
                        })
                        .buffer_unordered(AT_ONCE)
                        .collect()
                        .await;
                    if phase == "warmup" {
                        continue;
                    }
                    lat.sort_by(f64::total_cmp);
                    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
                    println!(
                        "{}",
                        json!({"bench": "latency", "phase": phase, "keys": if zipf { "zipf-0.99" } else { "uniform" },
                               "hedging": hedging, "lookups": n, "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999)})
                    );
                }
            }
        }
    });
}
