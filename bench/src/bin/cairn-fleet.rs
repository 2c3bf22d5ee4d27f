//! A fleet of engines with and without the shared cache tier (scripts/bench-fleet.sh runs it against a
//! redis-server on 127.0.0.1; BENCHMARKS.md, "Shared cache tier"): 1, 2, 4 and 8 engines, each with memory
//! caches smaller than the working set (as concurrent Lambda environments are), lookups spread over them
//! round-robin, keys uniform or Zipf(0.99), the store with an object store's timing (s3_like.rs). Per
//! configuration: store GETs per lookup and lookup p50/p99; and the tier's own GET latency.
//!
//! The engines are in one process (each its own caches and connection to the tier): what they share is
//! the store and the tier, as separate processes would.
//!
//! usage: cairn-fleet STORE_DIR KEYSPACE DATA_FILE REDIS_URL

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_bench::s3_like::S3Like;
use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::{EngineConfig, SharedCacheConfig};
use cairn_shared::stores::Store;
use futures::StreamExt;
use serde_json::json;

const AT_ONCE: usize = 32;
const LOOKUPS: usize = 8_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (store_dir, ks, data, redis_url) = (&args[1], &args[2], &args[3], &args[4]);
    let keys = sample_keys(data, 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        tier_latency(redis_url).await;
        for zipf in [false, true] {
            for tier in [false, true] {
                for engines in [1usize, 2, 4, 8] {
                    flush(redis_url).await;
                    let primary = Store::open(store_dir).unwrap();
                    let fleet: Vec<Engine> = (0..engines)
                        .map(|i| {
                            let store = Store {
                                url: primary.url.clone(),
                                inner: Arc::new(S3Like::typical(primary.inner.clone(), 17 + i as u64)),
                            };
                            let mut shared = SharedCacheConfig::new(redis_url.as_str());
                            shared.timeout = Duration::from_millis(50);
                            let config = EngineConfig {
                                data_cache_bytes: 8 << 20,
                                metadata_cache_bytes: 4 << 20,
                                shared_cache: tier.then_some(shared),
                                ..Default::default()
                            };
                            Engine::new(store, config)
                        })
                        .collect();
                    for e in &fleet {
                        e.keyspace(ks).await.unwrap();
                        e.get(ks, &keys[0]).await.unwrap(); // connects to the tier
                    }
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    let before: u64 = fleet.iter().map(|e| e.counters().object_gets).sum();
                    let stream = choose(keys.len(), LOOKUPS, zipf);
                    let fleet = &fleet;
                    let mut lat: Vec<f64> = futures::stream::iter(stream.iter().enumerate())
                        .map(|(n, &i)| {
                            let (e, key) = (&fleet[n % fleet.len()], &keys[i]);
                            async move {
                                let t = Instant::now();
                                e.get(ks, key).await.unwrap().expect("a listed key");
                                t.elapsed().as_secs_f64() * 1e3
                            }
                        })
                        .buffer_unordered(AT_ONCE)
                        .collect()
                        .await;
                    let gets: u64 = fleet.iter().map(|e| e.counters().object_gets).sum::<u64>() - before;
                    lat.sort_by(f64::total_cmp);
                    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
                    println!(
                        "{}",
                        json!({"bench": "fleet", "engines": engines, "tier": tier,
                               "keys": if zipf { "zipf-0.99" } else { "uniform" }, "lookups": LOOKUPS,
                               "gets_per_lookup": gets as f64 / LOOKUPS as f64, "p50_ms": q(0.5), "p99_ms": q(0.99)})
                    );
                }
            }
        }
    });
}

async fn flush(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
}

/// The tier's own GET latency for a block-sized entry (16 KiB), one at a time.
async fn tier_latency(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET").arg("cairn:bench").arg(vec![7u8; 16 << 10]).query_async(&mut c).await.unwrap();
    let mut lat = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        let v: Vec<u8> = redis::cmd("GET").arg("cairn:bench").query_async(&mut c).await.unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(v.len(), 16 << 10);
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{}",
        json!({"bench": "tier_get", "bytes": 16 << 10, "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999)})
    );
}
