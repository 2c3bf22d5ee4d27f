//! A fleet of engines with and without the shared cache tier (scripts/bench-fleet.sh runs it against a
//! redis-server on 127.0.0.1; BENCHMARKS.md, "Shared cache tier"): 1, 2, 4 and 8 engines, each with memory
//! caches smaller than the working set (as concurrent Lambda environments are), lookups spread over them
//! round-robin, keys uniform or Zipf(0.99), the store with an object store's timing (s3_like.rs). Per
//! configuration: store GETs per lookup and lookup p50/p99; and the tier's own GET latency.
//!
//! Each engine is a process of its own (this binary run as `--worker`), as concurrent Lambda environments
//! are: what they share is the store's objects and the tier.
//!
//! Also: the same fleet without the tier but with requests routed by key hash (what key-hash routing saves);
//! one engine with a disk tier restarted on the same directory (store GETs for the keys it had read); and
//! lookup latency around a version switch under load, with warming on and off (the keyspace must have two
//! versions: the switch is a rollback between them).
//!
//! usage: cairn-fleet STORE_DIR KEYSPACE DATA_FILE REDIS_URL WORK_DIR [fleet|disk|switch]...  (default: all)

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_bench::s3_like::S3Like;
use cairn_bench::{choose, sample_keys};
use cairn_shared::Engine;
use cairn_shared::config::{DiskCacheConfig, EngineConfig, SharedCacheConfig};
use cairn_shared::stores::Store;
use futures::StreamExt;
use serde_json::json;

const AT_ONCE: usize = 32;
const LOOKUPS: usize = 8_000;
/// Distinct keys the version-switch run asks for (Zipf over them): a hot set the memory caches hold.
const HOT_SET: usize = 5_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        return worker(&args[2..]);
    }
    let (store_dir, ks, data, redis_url, work) = (&args[1], &args[2], &args[3], &args[4], &args[5]);
    let keys = sample_keys(data, 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let parts: Vec<&str> = args[6..].iter().map(String::as_str).collect();
    let run = |part: &str| parts.is_empty() || parts.contains(&part);
    rt.block_on(async {
        if run("disk") {
            disk_restart(store_dir, ks, &keys, work).await;
        }
        if run("switch") {
            for warm in [false, true] {
                switch_under_load(store_dir, ks, &keys, warm).await;
            }
        }
        if !run("fleet") {
            return;
        }
        tier_latency(redis_url).await;
        for zipf in [false, true] {
            for (tier, routing) in [(false, "round-robin"), (false, "key-hash"), (true, "round-robin")] {
                for engines in [1usize, 2, 4, 8] {
                    flush(redis_url).await;
                    let (gets, mut lat) = fleet_run(&args[1..5], engines, tier, zipf, routing);
                    lat.sort_by(f64::total_cmp);
                    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
                    println!(
                        "{}",
                        json!({"bench": "fleet", "engines": engines, "tier": tier, "routing": routing,
                               "processes": true, "keys": if zipf { "zipf-0.99" } else { "uniform" },
                               "lookups": LOOKUPS, "gets_per_lookup": gets as f64 / LOOKUPS as f64,
                               "p50_ms": q(0.5), "p99_ms": q(0.99)})
                    );
                }
            }
        }
    });
}

/// One configuration of the fleet: `engines` processes (this binary as `--worker`), started together, each
/// answering its share of one lookup stream (every `engines`-th lookup, or the keys that hash to it), with
/// 32 lookups at once in all. Returns the store GETs and every lookup's latency.
fn fleet_run(common: &[String], engines: usize, tier: bool, zipf: bool, routing: &str) -> (u64, Vec<f64>) {
    use std::io::{BufRead, BufReader, Write};
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..engines)
        .map(|i| {
            std::process::Command::new(&exe)
                .arg("--worker")
                .args(common)
                .args([i.to_string(), engines.to_string(), tier.to_string(), zipf.to_string(), routing.to_string()])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outs: Vec<_> = children.iter_mut().map(|c| BufReader::new(c.stdout.take().unwrap())).collect();
    let mut line = String::new();
    for out in &mut outs {
        line.clear();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "a worker did not start");
    }
    for c in &mut children {
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    }
    let (mut gets, mut lat) = (0, Vec::new());
    for (out, mut c) in outs.into_iter().zip(children) {
        let mut line = String::new();
        BufReader::new(out.into_inner()).read_line(&mut line).unwrap();
        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
        gets += r["gets"].as_u64().unwrap();
        lat.extend(r["lat"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()));
        assert!(c.wait().unwrap().success());
    }
    (gets, lat)
}

/// `--worker STORE KS DATA REDIS I N TIER ZIPF ROUTING`: engine I of N, with memory caches smaller than the
/// working set; prints "ready", waits for a line on stdin, looks up its share, prints its GETs and latencies.
fn worker(args: &[String]) {
    let (store_dir, ks, data, redis_url) = (&args[0], &args[1], &args[2], &args[3]);
    let (i, n): (usize, usize) = (args[4].parse().unwrap(), args[5].parse().unwrap());
    let (tier, zipf, routing) = (args[6] == "true", args[7] == "true", args[8].as_str());
    let keys = sample_keys(data, 200_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let mut shared = SharedCacheConfig::new(redis_url.as_str());
        shared.timeout = Duration::from_millis(50);
        let config = EngineConfig {
            data_cache_bytes: 8 << 20,
            metadata_cache_bytes: 4 << 20,
            shared_cache: tier.then_some(shared),
            ..Default::default()
        };
        let e = Engine::new(s3_like(store_dir, 17 + i as u64), config);
        e.keyspace(ks).await.unwrap();
        e.get(ks, &keys[0]).await.unwrap(); // connects to the tier
        tokio::time::sleep(Duration::from_millis(300)).await;
        println!("ready");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        let before = e.counters().object_gets;
        let stream = choose(keys.len(), LOOKUPS, zipf);
        let mine = stream.iter().enumerate().filter(|&(k, &idx)| {
            let at = match routing {
                "key-hash" => xxhash_rust::xxh3::xxh3_64(keys[idx].as_bytes()) as usize,
                _ => k,
            };
            at % n == i
        });
        let e = &e;
        let lat: Vec<f64> = futures::stream::iter(mine)
            .map(|(_, &idx)| {
                let key = &keys[idx];
                async move {
                    let t = Instant::now();
                    e.get(ks, key).await.unwrap().expect("a listed key");
                    t.elapsed().as_secs_f64() * 1e3
                }
            })
            .buffer_unordered((AT_ONCE / n).max(1))
            .collect()
            .await;
        println!("{}", json!({"gets": e.counters().object_gets - before, "lat": lat}));
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

fn s3_like(store_dir: &str, seed: u64) -> Store {
    let primary = Store::open(store_dir).unwrap();
    Store { url: primary.url.clone(), inner: Arc::new(S3Like::typical(primary.inner.clone(), seed)) }
}

/// One engine with a disk tier reads 8,000 Zipf keys, stops, and a new engine on the same directory reads
/// them again: store GETs of each run.
async fn disk_restart(store_dir: &str, ks: &str, keys: &[String], work: &str) {
    let dir = std::path::Path::new(work).join("fleet-disk-cache");
    let _ = std::fs::remove_dir_all(&dir);
    let stream = choose(keys.len(), LOOKUPS, true);
    let mut gets = Vec::new();
    for run in 0..2 {
        let config = EngineConfig {
            data_cache_bytes: 8 << 20,
            metadata_cache_bytes: 4 << 20,
            disk_cache: Some(DiskCacheConfig { path: dir.clone(), size: None }),
            ..Default::default()
        };
        let e = Engine::new(s3_like(store_dir, 5 + run), config);
        let t = Instant::now();
        futures::stream::iter(&stream)
            .map(|&i| {
                let e = &e;
                async move { e.get(ks, &keys[i]).await.unwrap().expect("a listed key") }
            })
            .buffer_unordered(AT_ONCE)
            .for_each(|_| async {})
            .await;
        let secs = t.elapsed().as_secs_f64();
        while e.stats().disk_tier.unwrap().writing > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let s = e.stats().disk_tier.unwrap();
        let c = e.counters();
        gets.push(
            json!({"store_gets": c.object_gets, "store_bytes": c.bytes_fetched, "seconds": secs, "disk_hits": s.hits,
                         "disk_bytes": s.bytes}),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("{}", json!({"bench": "disk_restart", "lookups": LOOKUPS, "first": gets[0], "restarted": gets[1]}));
}

/// Zipf lookups over a hot set of 5,000 keys for 20 s on one engine whose memory holds them all, 32 clients
/// each asking one key every millisecond (an open load of up to ~32k lookups/s: a closed loop of memory-speed
/// lookups would bury a miss storm in millions of hits); 8 s in, the keyspace is switched to its other
/// version (a rollback: to readers the same as a publish). Latency in the 4 s before the switch (the hot
/// set cached by then) and in the 9 s after it (the default pointer TTL, 5 s, so readers move within that
/// window), and how many lookups took over 5 ms (a store read).
async fn switch_under_load(store_dir: &str, ks: &str, keys: &[String], warm: bool) {
    let store = Store::open(store_dir).unwrap();
    let versions = cairn_shared::format::manifest::list_versions(store.inner.as_ref(), ks).await.unwrap();
    let [from, to] = [&versions[versions.len() - 2], &versions[versions.len() - 1]];
    let open = |url: &str| Store::open(url);
    cairn_shared::versions::rollback::rollback(&store, ks, Some(from), &open).await.unwrap();
    let config = EngineConfig {
        data_cache_bytes: 256 << 20,
        metadata_cache_bytes: 64 << 20,
        warm_switch_bytes: if warm { 64 << 20 } else { 0 },
        ..Default::default()
    };
    let e = Arc::new(Engine::new(s3_like(store_dir, 99), config));
    let keys = Arc::new(keys[..HOT_SET.min(keys.len())].to_vec());
    let stream = Arc::new(choose(keys.len(), 2_000_000, true));
    let start = Instant::now();
    let run = Duration::from_secs(20);
    let workers: Vec<_> = (0..AT_ONCE)
        .map(|w| {
            let (e, stream, keys, ks) = (e.clone(), stream.clone(), keys.clone(), ks.to_string());
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut n = w;
                let mut tick = tokio::time::interval(Duration::from_millis(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while start.elapsed() < run {
                    tick.tick().await;
                    let t = Instant::now();
                    e.get(&ks, &keys[stream[n % stream.len()]]).await.unwrap().expect("a listed key");
                    out.push((t.duration_since(start).as_secs_f64(), t.elapsed().as_secs_f64() * 1e3));
                    n += AT_ONCE;
                }
                out
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let switched_at = start.elapsed().as_secs_f64();
    cairn_shared::versions::rollback::rollback(&store, ks, Some(to), &open).await.unwrap();
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    let window = |a: f64, b: f64| {
        let mut v: Vec<f64> = lat.iter().filter(|(t, _)| *t >= a && *t < b).map(|(_, l)| *l).collect();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).copied().unwrap_or(0.0);
        let slow = v.iter().filter(|l| **l > 5.0).count();
        json!({"lookups": v.len(), "p50_ms": q(0.5), "p99_ms": q(0.99), "p999_ms": q(0.999), "over_5ms": slow,
               "max_ms": v.last().copied().unwrap_or(0.0)})
    };
    println!(
        "{}",
        json!({"bench": "switch", "warm": warm, "hot_keys": keys.len(), "before": window(switched_at - 4.0, switched_at),
               "after": window(switched_at, switched_at + 9.0), "switches": e.stats().switches})
    );
}
