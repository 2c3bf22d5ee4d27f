//! A lost, corrupted or stuck copy never costs an answer: with one copy's shards deleted or corrupted, or one
//! copy that never answers, every key of the reference dataset is still answered correctly (a corrupted copy
//! is detected by checksums and never served; a stuck one is hedged around or failed over). Roots are local
//! directories wrapped in a fault-injecting store that adds a few ms per read (a remote store's latency).
//! Nothing here judges time: latency under a slow copy is a benchmark's figure.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::query::RootOpener;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::manifest, versions::pointer};
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
    let resolver: RootOpener = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    Engine::new(primary, config).with_root_opener(resolver)
}

/// Page cache off, so every lookup reads from the store (the path failover protects).
fn uncached() -> EngineConfig {
    EngineConfig { data_cache_bytes: 0, ..Default::default() }
}

/// Looks every key up (16 in flight); returns how many answers were wrong.
async fn run(engine: &Engine, rows: &[(String, Vec<u8>)]) -> usize {
    futures::stream::iter(rows)
        .map(
            |(k, v)| async move { matches!(engine.get("default", k).await, Ok(Some(b)) if b.as_ref() == v.as_slice()) },
        )
        .buffer_unordered(16)
        .filter(|ok| std::future::ready(!ok))
        .count()
        .await
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
    let wrong = run(&e, &rows).await;
    assert_eq!(wrong, 0, "{wrong} of {} lookups wrong with one copy deleted", rows.len());
    let ks = e.keyspace("default").await.unwrap();
    let stats = ks.top().replicated.as_ref().unwrap().stats();
    assert!(stats.failovers > 0 && stats.failed_reads == 0, "{stats:?}");
    assert_eq!(e.get("default", "absent").await.unwrap(), None);

    // A second copy gone too: still answered from the last one.
    for p in &f.shard_paths {
        let _ = f.roots[(first_copy(3, p) + 1) % 3].inner.delete(&p.as_str().into()).await;
    }
    let e = engine(&f, HashMap::new(), uncached());
    assert_eq!(run(&e, &rows[..2000]).await, 0);
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
    let resolver: RootOpener = Arc::new(move |url: &str| {
        by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
    });
    let engine = |config: EngineConfig| {
        let store = Store { url: f.roots[0].url.clone(), inner: primary.clone() };
        Engine::new(store, config).with_root_opener(resolver.clone())
    };

    let warm = engine(uncached());
    assert_eq!(run(&warm, &rows[..500]).await, 0);
    primary.fail_reads.store(true, std::sync::atomic::Ordering::SeqCst);
    warm.refresh();
    assert_eq!(run(&warm, &rows[..2000]).await, 0, "warm engine, primary down");

    assert!(engine(uncached()).get("default", &rows[0].0).await.is_err(), "cold, no replica known: an error");
    let cold = engine(EngineConfig { replicas: vec![f.roots[2].url.clone()], ..uncached() });
    assert_eq!(run(&cold, &rows[..2000]).await, 0, "cold engine with CAIRN_REPLICAS, primary down");

    // A primary that never answers: the pointer and manifest come from a replica once the attempt times
    // out (without failover the lookup would wait for ever).
    primary.fail_reads.store(false, std::sync::atomic::Ordering::SeqCst);
    primary.hang_reads(Some("keyspace="));
    let failover = cairn_shared::stores::replicated::FailoverConfig {
        attempt_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let slow = engine(EngineConfig { replicas: vec![f.roots[1].url.clone()], failover, ..uncached() });
    let got = tokio::time::timeout(Duration::from_secs(120), slow.get("default", &rows[0].0))
        .await
        .expect("the lookup waited on the stuck primary");
    assert_eq!(got.unwrap().as_deref(), Some(rows[0].1.as_slice()));
}

/// A copy that never answers costs no answer. With hedging, a read whose first copy is the stuck one is
/// answered by a hedge to another copy; without, by the next copy once the attempt timeout passes. Counted,
/// not timed (a test on a loaded machine cannot judge latency): what hedging does to p99 is measured by the
/// benchmarks (docs/benchmark-notes.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_copy_is_hedged_around() {
    let f = fixture().await;
    let rows = read_dataset(&example_data());
    // Stick the root that is read first for the most shards, so the fault is certainly met.
    let mut firsts = [0usize; 3];
    for p in &f.shard_paths {
        firsts[first_copy(3, p)] += 1;
    }
    let stuck = (0..3).max_by_key(|&i| firsts[i]).unwrap();
    let engine_with = |failover: cairn_shared::stores::replicated::FailoverConfig| {
        let wrap = |i: usize, s: &Store| -> Store {
            let store = FaultyStore::slow(s.inner.clone(), Duration::from_millis(1), Duration::from_millis(2));
            if i == stuck {
                store.hang_reads(Some("/shard="));
            }
            Store { url: s.url.clone(), inner: Arc::new(store) }
        };
        let primary = wrap(0, &f.roots[0]);
        let by_url: HashMap<String, Store> =
            f.roots.iter().enumerate().skip(1).map(|(i, s)| (s.url.clone(), wrap(i, s))).collect();
        let resolver: RootOpener = Arc::new(move |url: &str| {
            by_url.get(url).cloned().ok_or_else(|| cairn_shared::Error::Config(format!("unknown root {url}")))
        });
        Engine::new(primary, EngineConfig { data_cache_bytes: 0, failover, ..Default::default() })
            .with_root_opener(resolver)
    };
    // Generous: a lookup that waits for the stuck copy takes the attempt timeout (2 s); none may take this.
    let bounded = |engine: Engine, rows: Vec<(String, Vec<u8>)>| async move {
        let wrong = tokio::time::timeout(Duration::from_secs(300), run(&engine, &rows))
            .await
            .expect("lookups waited on the stuck copy without end");
        let stats = engine.keyspace("default").await.unwrap().top().replicated.as_ref().unwrap().stats();
        (wrong, stats)
    };

    let hedging = cairn_shared::stores::replicated::FailoverConfig {
        hedge_after: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let (wrong, stats) = bounded(engine_with(hedging), rows[..3000].to_vec()).await;
    assert_eq!(wrong, 0, "lookups wrong with a stuck copy");
    assert!(stats.hedges > 0 && stats.hedge_wins > 0 && stats.failed_reads == 0, "{stats:?}");

    // Without hedging the stuck copy is left only when the attempt times out: the fault is real.
    let no_hedging = cairn_shared::stores::replicated::FailoverConfig {
        hedging: false,
        attempt_timeout: Duration::from_millis(200),
        ..Default::default()
    };
    let (wrong, stats) = bounded(engine_with(no_hedging), rows[..300].to_vec()).await;
    assert_eq!(wrong, 0);
    assert!(stats.hedges == 0 && stats.failovers > 0 && stats.failed_reads == 0, "{stats:?}");
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
    let wrong = run(&e, &rows).await;
    assert_eq!(wrong, 0, "{wrong} lookups answered wrongly or failed with the primary's copies corrupted");
    let stats = e.keyspace("default").await.unwrap().top().replicated.as_ref().unwrap().stats();
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
