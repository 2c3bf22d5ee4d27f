//! A lost, corrupted or slow copy never costs an answer: with one copy's shards deleted or corrupted, or one
//! copy 500 ms slow, every
//! key of the reference dataset is still answered correctly (a corrupted copy is detected by checksums and
//! never served); with hedging, steady-state p99 with a slow copy
//! stays under 2× the healthy p99. Roots are local directories wrapped in a fault-injecting store that adds
//! 2–6 ms per read (a remote store's latency), so the hedging figures mean something.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::engine::Resolver;
use cairn_shared::store::Store;
use cairn_shared::{Engine, manifest, pointer};
use cairn_tests::fault::FaultyStore;
use cairn_tests::{example_data, first_copy, read_dataset};
use futures::StreamExt;
use object_store::ObjectStoreExt;

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Vec<Store>,
    shard_paths: Vec<String>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..3).map(|i| Store::open(dir.path().join(format!("root{i}")).to_str().unwrap()).unwrap()).collect();
    let mut opts = IngestOptions::new(example_data(), "default", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    opts.shards = Some(8);
    let report = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
    let m = manifest::Manifest::read(roots[0].inner.as_ref(), "default", &report.version).await.unwrap();
    Fixture { _dir: dir, shard_paths: m.shards.iter().map(|s| s.path.clone()).collect(), roots }
}

/// An engine whose roots are wrapped: every read 2–6 ms, plus `extra` per root URL.
fn engine(f: &Fixture, extra: HashMap<usize, Duration>, config: EngineConfig) -> Engine {
    let wrap = |i: usize, s: &Store| -> Store {
        let base = Duration::from_millis(2) + extra.get(&i).copied().unwrap_or_default();
        Store {
            url: s.url.clone(),
            inner: Arc::new(FaultyStore::slow(s.inner.clone(), base, Duration::from_millis(4))),
        }
    };
    let primary = wrap(0, &f.roots[0]);
    let by_url: HashMap<String, Store> =
        f.roots.iter().enumerate().skip(1).map(|(i, s)| (s.url.clone(), wrap(i, s))).collect();
    let resolver: Resolver = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    Engine::new(primary, config).with_resolver(resolver)
}

/// Page cache off, so every lookup reads from the store (the path failover protects).
fn uncached() -> EngineConfig {
    EngineConfig { page_cache_bytes: 0, ..Default::default() }
}

/// Looks every key up (16 in flight); returns sorted latencies and how many answers were wrong.
async fn run(engine: &Engine, rows: &[(String, Vec<u8>)]) -> (Vec<Duration>, usize) {
    let results: Vec<(Duration, bool)> = futures::stream::iter(rows)
        .map(|(k, v)| async move {
            let t = Instant::now();
            let got = engine.get("default", k).await;
            (t.elapsed(), matches!(&got, Ok(Some(b)) if b.as_ref() == v.as_slice()))
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let wrong = results.iter().filter(|(_, ok)| !ok).count();
    let mut lat: Vec<Duration> = results.into_iter().map(|(d, _)| d).collect();
    lat.sort();
    (lat, wrong)
}

fn pct(lat: &[Duration], p: f64) -> Duration {
    lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_answered_with_one_copy_deleted() {
    let f = fixture().await;
    let rows = read_dataset(&example_data());
    // Delete, for every shard, the copy that is read first: the data must come from the others.
    for p in &f.shard_paths {
        f.roots[first_copy(3, p)].inner.delete(&p.as_str().into()).await.unwrap();
    }
    let e = engine(&f, HashMap::new(), uncached());
    let (_, wrong) = run(&e, &rows).await;
    assert_eq!(wrong, 0, "{wrong} of {} lookups wrong with one copy deleted", rows.len());
    let ks = e.keyspace("default").await.unwrap();
    let stats = ks.replicated.as_ref().unwrap().stats();
    assert!(stats.failovers > 0 && stats.failed_reads == 0, "{stats:?}");
    assert_eq!(e.get("default", "absent").await.unwrap(), None);

    // A second copy gone too: still answered from the last one.
    for p in &f.shard_paths {
        let _ = f.roots[(first_copy(3, p) + 1) % 3].inner.delete(&p.as_str().into()).await;
    }
    let e = engine(&f, HashMap::new(), uncached());
    assert_eq!(run(&e, &rows[..2000]).await.1, 0);
    // All three gone: an error, never a wrong answer or a false "absent".
    for p in &f.shard_paths {
        for r in &f.roots {
            let _ = r.inner.delete(&p.as_str().into()).await;
        }
    }
    let e = engine(&f, HashMap::new(), uncached());
    assert!(e.get("default", &rows[0].0).await.is_err());
}

/// The primary root unreadable (every read fails): keyspaces load from a replica's pointer and manifest
/// copies, on a warm engine (replicas known from the manifest it read before) and on a cold one
/// (`CAIRN_REPLICAS`), and every key is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_root_down_keyspaces_load_from_a_replica() {
    let f = fixture().await;
    let rows = read_dataset(&example_data());
    let published = pointer::read(f.roots[0].inner.as_ref(), "default").await.unwrap().unwrap().pointer;
    for r in &f.roots[1..] {
        let copy = pointer::read(r.inner.as_ref(), "default").await.unwrap().map(|c| c.pointer);
        assert_eq!(copy.as_ref(), Some(&published), "ingest copies the pointer to {}", r.url);
    }
    let primary = Arc::new(FaultyStore::new(f.roots[0].inner.clone(), "\0never", usize::MAX));
    let by_url: HashMap<String, Store> = f.roots[1..].iter().map(|s| (s.url.clone(), s.clone())).collect();
    let resolver: Resolver = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    let engine = |config: EngineConfig| {
        let store = Store { url: f.roots[0].url.clone(), inner: primary.clone() };
        Engine::new(store, config).with_resolver(resolver.clone())
    };

    let warm = engine(uncached());
    assert_eq!(run(&warm, &rows[..500]).await.1, 0);
    primary.fail_reads.store(true, std::sync::atomic::Ordering::SeqCst);
    warm.refresh();
    assert_eq!(run(&warm, &rows[..2000]).await.1, 0, "warm engine, primary down");

    assert!(engine(uncached()).get("default", &rows[0].0).await.is_err(), "cold, no replica known: an error");
    let cold = engine(EngineConfig { replicas: vec![f.roots[2].url.clone()], ..uncached() });
    assert_eq!(run(&cold, &rows[..2000]).await.1, 0, "cold engine with CAIRN_REPLICAS, primary down");

    // A primary that answers, but only after a second: the pointer comes from a replica after the attempt
    // timeout instead.
    primary.fail_reads.store(false, std::sync::atomic::Ordering::SeqCst);
    primary.read_delay_us.store(1_000_000, std::sync::atomic::Ordering::SeqCst);
    let failover =
        cairn_shared::failover::FailoverConfig { attempt_timeout: Duration::from_millis(100), ..Default::default() };
    let slow = engine(EngineConfig { replicas: vec![f.roots[1].url.clone()], failover, ..uncached() });
    let t = Instant::now();
    assert_eq!(slow.get("default", &rows[0].0).await.unwrap().as_deref(), Some(rows[0].1.as_slice()));
    assert!(t.elapsed() < Duration::from_millis(900), "primary 1 s slow: answered in {:?}", t.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_copy_is_hedged_around() {
    let f = fixture().await;
    let rows = read_dataset(&example_data());
    let sample = &rows[..];

    let healthy = engine(&f, HashMap::new(), uncached());
    run(&healthy, &rows[5000..5300]).await; // warm-up: shard metadata cached, latency window filled
    let (h, wrong) = run(&healthy, sample).await;
    assert_eq!(wrong, 0);

    // Slow down the root that is read first for the most shards, so the fault is certainly met.
    let mut firsts = [0usize; 3];
    for p in &f.shard_paths {
        firsts[first_copy(3, p)] += 1;
    }
    let slow_root = (0..3).max_by_key(|&i| firsts[i]).unwrap();
    let slow = HashMap::from([(slow_root, Duration::from_millis(500))]);
    let hedged = engine(&f, slow.clone(), uncached());
    run(&hedged, &rows[5000..5300]).await;
    let (s, wrong) = run(&hedged, sample).await;
    assert_eq!(wrong, 0, "lookups wrong with a slow copy");

    let no_hedge_config = EngineConfig {
        page_cache_bytes: 0,
        failover: cairn_shared::failover::FailoverConfig { hedging: false, ..Default::default() },
        ..Default::default()
    };
    let unhedged = engine(&f, slow, no_hedge_config);
    let (u, wrong) = run(&unhedged, &sample[..1000]).await;
    assert_eq!(wrong, 0);

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let stats = hedged.keyspace("default").await.unwrap().replicated.as_ref().unwrap().stats();
    println!(
        "healthy p50 {:.1} ms p99 {:.1} ms | one copy +500 ms, hedged: p50 {:.1} ms p99 {:.1} ms ({} hedges, {} won, {} reads) | not hedged: p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        ms(pct(&h, 0.5)),
        ms(pct(&h, 0.99)),
        ms(pct(&s, 0.5)),
        ms(pct(&s, 0.99)),
        stats.hedges,
        stats.hedge_wins,
        stats.reads,
        ms(pct(&u, 0.5)),
        ms(pct(&u, 0.99)),
        ms(*u.last().unwrap())
    );
    assert!(pct(&s, 0.99) < 2 * pct(&h, 0.99), "hedged p99 {:?} vs healthy p99 {:?}", pct(&s, 0.99), pct(&h, 0.99));
    // Without hedging the slow copy shows (until it is demoted): the fault is real, and the test could fail.
    assert!(*u.last().unwrap() > Duration::from_millis(400), "unhedged max {:?}", u.last());
}

/// Flips one byte in every KiB of a file, keeping its size (what a bad disk or a bad copy looks like).
fn corrupt_file(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    for i in (0..bytes.len()).step_by(1024) {
        bytes[i] ^= 0x5a;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_copy_is_detected_and_never_served() {
    let f = fixture().await;
    let rows = read_dataset(&example_data());
    // For every shard, corrupt the copy that is read first.
    for p in &f.shard_paths {
        let root = f.roots[first_copy(3, p)].url.strip_prefix("file://").unwrap().to_string();
        corrupt_file(&std::path::Path::new(&root).join(p));
    }
    let e = engine(&f, HashMap::new(), uncached());
    let (_, wrong) = run(&e, &rows).await;
    assert_eq!(wrong, 0, "{wrong} lookups answered wrongly or failed with the primary's copies corrupted");
    let stats = e.keyspace("default").await.unwrap().replicated.as_ref().unwrap().stats();
    assert!(stats.corrupt_copies > 0, "{stats:?}");
    assert_eq!(stats.failed_reads, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_single_corrupted_copy_lookups_fail_rather_than_lie() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap()).unwrap();
    let report = cairn_tests::ingest(&example_data(), "default", &store, Some(2)).await.unwrap();
    let m = manifest::Manifest::read(store.inner.as_ref(), "default", &report.version).await.unwrap();
    // Corrupt only page bytes of shard 0 (its metadata stays intact), so lookups get as far as the pages.
    let path = dir.path().join(&m.shards[0].path);
    let mut bytes = std::fs::read(&path).unwrap();
    let data_end = bytes.len() - m.shards[0].meta_bytes as usize;
    for i in (64..data_end).step_by(512) {
        bytes[i] ^= 0x01;
    }
    std::fs::write(&path, bytes).unwrap();
    let e = Engine::new(store, uncached());
    let (mut errors, mut right) = (0, 0);
    for (k, v) in &read_dataset(&example_data()) {
        match e.get("default", k).await {
            Ok(Some(got)) => {
                assert_eq!(got.as_ref(), v.as_slice(), "a corrupted page was served for {k}");
                right += 1;
            }
            Ok(None) => panic!("{k} reported absent"),
            Err(err) => {
                assert_eq!(err.kind(), cairn_shared::ErrorKind::Corrupt, "{err}");
                errors += 1;
            }
        }
    }
    assert!(errors > 1000 && right > 1000, "errors {errors}, right {right}");
}
