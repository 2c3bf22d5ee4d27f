//! Hot shards (issue 29, serving defects 1 and 2). A shard whose blocks keep being fetched is read whole and
//! kept decoded. The data cache used to refuse the whole shard at admission (moka's TinyLFU: an entry never
//! read under its own key loses to the blocks it would evict), so a hot shard under a full cache was read
//! whole again and again; and the whole-shard read ran on the request that triggered it, with no bound on
//! how many ran at once, hedged like a small read.

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cairn_shared::Engine;
use cairn_shared::config::EngineConfig;
use cairn_shared::format::ring::Placement;
use cairn_shared::stores::Store;
use cairn_shared::stores::replicated::FailoverConfig;
use cairn_tests::fault::{FaultyStore, LargeRead};

/// Largest read that is not a whole shard: blocks and index pieces are far smaller.
const SMALL_READ: u64 = 96 << 10;

struct Data {
    _dir: tempfile::TempDir,
    roots: Vec<Store>,
    keys: Vec<String>,
    placement: Placement,
}

/// 120,000 keys of ~150-byte values (~20 MB) on 48 shards of ~0.4 MB, under `roots` roots.
async fn data(roots: usize) -> Data {
    data_of(roots, 120_000, 48).await
}

/// `n` keys of ~150-byte values on `shards` shards, under `roots` roots.
async fn data_of(roots: usize, n: usize, shards: u32) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Store> =
        (0..roots).map(|i| Store::open(dir.path().join(format!("root{i}")).to_str().unwrap()).unwrap()).collect();
    let keys: Vec<String> = (0..n).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let input = dir.path().join("in.data");
    let body: String = keys.iter().enumerate().map(|(i, k)| format!("{k} {i:0>150}\n")).collect();
    std::fs::write(&input, body).unwrap();
    let mut opts = cairn_ingest::IngestOptions::new(&input, "hot", stores[0].clone());
    opts.replicas = stores[1..].to_vec();
    opts.shards = Some(shards);
    cairn_ingest::ingest(opts, Arc::new(cairn_ingest::NoProgress)).await.unwrap();
    let m = cairn_shared::format::manifest::Manifest::read(stores[0].inner.as_ref(), "hot", &{
        cairn_shared::versions::pointer::read(stores[0].inner.as_ref(), "hot").await.unwrap().unwrap().pointer.version
    })
    .await
    .unwrap();
    let placement = Placement::new(&m.placement).unwrap();
    Data { _dir: dir, roots: stores, keys, placement }
}

fn faulty(d: &Data) -> Vec<Arc<FaultyStore>> {
    d.roots.iter().map(|r| Arc::new(FaultyStore::new(r.inner.clone(), "\0never", usize::MAX))).collect()
}

/// An engine over `stores` (the first is the primary; the others resolve by URL).
fn engine(d: &Data, stores: &[Arc<FaultyStore>], config: EngineConfig) -> Engine {
    let wrapped: Vec<Store> =
        d.roots.iter().zip(stores).map(|(r, f)| Store { url: r.url.clone(), inner: f.clone() }).collect();
    let replicas = wrapped[1..].to_vec();
    let resolver: cairn_shared::query::RootOpener = Arc::new(move |url: &str| {
        replicas.iter().find(|r| r.url == url).cloned().ok_or_else(|| cairn_shared::Error::Config(url.into()))
    });
    Engine::new(wrapped[0].clone(), config).with_root_opener(resolver)
}

fn keys_of(d: &Data, shard: u32) -> Vec<String> {
    d.keys.iter().filter(|k| d.placement.shard_of(k.as_bytes()) == shard).cloned().collect()
}

async fn lookup_all(engine: &Engine, keys: &[String]) {
    for k in keys {
        let got = tokio::time::timeout(Duration::from_secs(60), engine.get("hot", k))
            .await
            .unwrap_or_else(|_| panic!("a lookup of {k} waited on a whole-shard read"));
        assert!(got.unwrap().is_some(), "{k}");
    }
}

/// The measurement, smaller: a data cache filled by uniform lookups, then passes over a third of one
/// shard's keys. The shard must become hot once and then cost nothing per pass. The fill leaves that shard
/// alone, so its promotion rule starts counting with the passes (a window the fill opened could end in the
/// middle of a pass, and then the blocks, all read, would stay cached with no promotion to test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_shard_stays_hot_in_a_full_cache() {
    let d = data_of(1, 480_000, 192).await;
    let stores = faulty(&d);
    let e = engine(&d, &stores, EngineConfig { data_cache_bytes: 24 << 20, ..Default::default() });
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Delay(Duration::ZERO)));
    let shard = 7;
    // Uniform lookups fill the data cache with blocks of every other shard.
    let fill: Vec<String> =
        d.keys.iter().filter(|k| d.placement.shard_of(k.as_bytes()) != shard).take(60_000).cloned().collect();
    lookup_all(&e, &fill).await;
    // The fill's own promotions may still be running: while they hold the budget, the passes' fetches would
    // find no room to promote, and then (their blocks fitting) no reason to.
    cairn_tests::promotions_settled(&e).await;
    let read_whole = |shard: u32| {
        let name = format!("shard={shard:05}");
        let paths = stores[0].large_read_paths.lock().unwrap();
        paths.iter().filter(|p| p.split('/').any(|part| part == name)).count()
    };
    assert_eq!(read_whole(shard), 0);
    let hot = keys_of(&d, shard);
    let pass = &hot[..hot.len() / 3];
    let mut fetched = Vec::new();
    for _ in 0..40 {
        let before = e.counters().bytes_fetched;
        lookup_all(&e, pass).await;
        fetched.push(e.counters().bytes_fetched - before);
        if fetched.len() >= 4 && fetched[fetched.len() - 3..].iter().all(|b| *b == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // a promotion in the background may finish
    }
    let whole = read_whole(shard);
    assert!(fetched.ends_with(&[0, 0, 0]), "bytes fetched per pass over a third of a hot shard: {fetched:?}");
    assert_eq!(whole, 1, "shard {shard} was read whole {whole} times (bytes per pass: {fetched:?})");
}

/// A cache with room for every shard: a shard whose blocks are fetched only now and then is promoted after a
/// few fetches all the same. It used to wait for its fetches to come fast against the cache's turnover, and
/// other shards' promotions advance that clock by a whole shard each: under skewed lookups, the shards of
/// the tail stayed on the block path for tens of thousands of lookups (docs/benchmark-notes.md, latency
/// behind S3's timing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rarely_read_shard_is_promoted_while_the_cache_has_room() {
    let d = data(1).await;
    let stores = faulty(&d);
    let e = engine(&d, &stores, EngineConfig { data_cache_bytes: 64 << 20, ..Default::default() });
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Delay(Duration::ZERO)));
    let target = 47;
    let rare = fetched_rarely(&e, &d, target).await;
    assert!(e.telemetry().hot_shards >= 18, "the other shards were not promoted: the test proves nothing");
    let paths = stores[0].large_read_paths.lock().unwrap().clone();
    let name = format!("shard={target:05}");
    assert!(paths.iter().any(|p| p.split('/').any(|part| part == name)), "shard {target} was never read whole");
    let before = e.counters().bytes_fetched;
    lookup_all(&e, &rare).await;
    assert_eq!(e.counters().bytes_fetched - before, 0, "the whole of shard {target}, hot, fetched bytes");
}

/// Four lookups of `target`'s keys far apart (four blocks), with six other shards read through (and
/// promoted) between two of them; then until promotions settle. `target`'s keys, sorted.
async fn fetched_rarely(e: &Engine, d: &Data, target: u32) -> Vec<String> {
    let mut rare = keys_of(d, target);
    rare.sort();
    let picks: Vec<String> = (0..4).map(|q| rare[q * rare.len() / 4].clone()).collect();
    for (n, key) in picks.iter().enumerate() {
        lookup_all(e, std::slice::from_ref(key)).await;
        if n < 3 {
            for other in 6 * n as u32..6 * n as u32 + 6 {
                lookup_all(e, &keys_of(d, other)).await;
            }
            cairn_tests::promotions_settled(e).await;
        }
    }
    cairn_tests::promotions_settled(e).await;
    rare
}

/// A whole-shard read that never answers holds no request: promotion is not on the request path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_shard_read_never_holds_a_request() {
    let d = data(1).await;
    let stores = faulty(&d);
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Hang));
    let e = engine(&d, &stores, EngineConfig { data_cache_bytes: 64 << 20, ..Default::default() });
    lookup_all(&e, &keys_of(&d, 3)).await;
    assert!(stores[0].large_reads_asked.load(SeqCst) > 0, "no promotion was tried: the test proves nothing");
}

/// Promotions are bounded: lookups over every shard at once (each would promote its shard) run at most
/// a few whole-shard reads at a time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_shard_reads_are_bounded() {
    use futures::StreamExt;
    let d = data(1).await;
    let stores = faulty(&d);
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Delay(Duration::from_millis(300))));
    let e = engine(&d, &stores, EngineConfig { data_cache_bytes: 12 << 20, ..Default::default() });
    // The cache holds about half the data, so blocks keep being fetched and shards keep tripping the rule.
    // Passes until enough promotions were asked to tell (how many one pass starts depends on its speed).
    for _ in 0..50 {
        futures::stream::iter(&d.keys[..30_000])
            .for_each_concurrent(32, |k| {
                let e = &e;
                async move { assert!(e.get("hot", k).await.unwrap().is_some()) }
            })
            .await;
        if stores[0].large_reads_asked.load(SeqCst) > 4 {
            break;
        }
    }
    let most = stores[0].max_large_in_flight.load(SeqCst);
    let asked = stores[0].large_reads_asked.load(SeqCst);
    assert!(asked > 4, "too few promotions to tell: {asked}");
    assert!(most <= 2, "{most} whole-shard reads at once");
}

/// A whole-shard read is not hedged like a block read (it would always outlast the small reads' p95):
/// replicated, every promotion reads one copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_shard_reads_are_not_hedged() {
    let d = data(2).await;
    let stores = faulty(&d);
    for s in &stores {
        s.large_reads(SMALL_READ, Some(LargeRead::Delay(Duration::from_millis(200))));
    }
    let config = EngineConfig {
        data_cache_bytes: 64 << 20,
        failover: FailoverConfig { hedge_after: Some(Duration::from_millis(5)), ..Default::default() },
        ..Default::default()
    };
    let e = engine(&d, &stores, config);
    for shard in 0..6 {
        lookup_all(&e, &keys_of(&d, shard)).await;
    }
    // Promotions running in the background end before counting.
    cairn_tests::promotions_settled(&e).await;
    let mut paths: Vec<String> = stores.iter().flat_map(|s| s.large_read_paths.lock().unwrap().clone()).collect();
    assert!(!paths.is_empty(), "no promotion happened: the test proves nothing");
    paths.sort();
    let read_twice: Vec<_> = paths.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0].clone()).collect();
    assert!(read_twice.is_empty(), "whole-shard reads asked of more than one copy (hedged): {read_twice:?}");
}

/// Until `n` whole-shard reads were asked (they are started in the background).
async fn asked(store: &FaultyStore, n: u64) {
    for _ in 0..6000 {
        if store.large_reads_asked.load(SeqCst) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("only {} whole-shard reads were asked, expected {n}", store.large_reads_asked.load(SeqCst));
}

/// The first two shards' promotions, held at their reads: the budget is full until the test releases them.
async fn budget_held(d: &Data, stores: &[Arc<FaultyStore>], e: &Engine) {
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Held));
    lookup_all(e, &keys_of(d, 0)).await;
    lookup_all(e, &keys_of(d, 1)).await;
    asked(&stores[0], cairn_shared::query::PROMOTIONS_IN_FLIGHT as u64).await;
}

/// A shard the rule picks while every permit is taken waits for one, and is read whole then. It used to be
/// skipped, to be tried again on its next block fetch, which never comes once the lookups' blocks are all
/// cached: such a shard stayed on the slower block path for good (the Python reader's warm lookups ran at
/// half speed after an MGET had tripped many shards at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promotion_the_budget_had_no_room_for_runs_later() {
    let d = data(1).await;
    let stores = faulty(&d);
    let e = engine(&d, &stores, EngineConfig { data_cache_bytes: 64 << 20, ..Default::default() });
    budget_held(&d, &stores, &e).await;
    let third = keys_of(&d, 2);
    lookup_all(&e, &third).await;
    assert_eq!(stores[0].large_reads_asked.load(SeqCst), 2, "shard 2 was read whole while the budget was full");
    assert_eq!(e.promotions_in_flight(), 3, "shard 2's promotion is not waiting: the test proves nothing");
    stores[0].release_large_reads();
    cairn_tests::promotions_settled(&e).await;
    // Every block of shard 2 is cached now: these lookups fetch nothing, so they cannot ask again.
    lookup_all(&e, &third).await;
    cairn_tests::promotions_settled(&e).await;
    let paths = stores[0].large_read_paths.lock().unwrap().clone();
    assert!(paths.iter().any(|p| p.contains("shard=00002")), "shard 2 was never read whole: {paths:?}");
}

/// A promotion waiting for its turn when its version stops being served gives up: a publish must not leave
/// a queue of whole-shard reads of the version it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_promotion_of_a_replaced_version_gives_up() {
    let d = data(1).await;
    let stores = faulty(&d);
    let config = EngineConfig { data_cache_bytes: 64 << 20, warm_switch_bytes: 0, ..Default::default() };
    let e = engine(&d, &stores, config);
    budget_held(&d, &stores, &e).await;
    let old = e.keyspace("hot").await.unwrap().manifest().version.clone();
    lookup_all(&e, &keys_of(&d, 2)).await; // queued behind the two
    assert_eq!(e.promotions_in_flight(), 3, "shard 2's promotion is not waiting: the test proves nothing");
    // A new version of the same rows is published and served.
    let mut opts = cairn_ingest::IngestOptions::new(d._dir.path().join("in.data"), "hot", d.roots[0].clone());
    opts.shards = Some(48);
    cairn_ingest::ingest(opts, Arc::new(cairn_ingest::NoProgress)).await.unwrap();
    e.refresh();
    assert_ne!(e.keyspace("hot").await.unwrap().manifest().version, old, "the new version is not served");
    stores[0].release_large_reads();
    cairn_tests::promotions_settled(&e).await;
    let paths = stores[0].large_read_paths.lock().unwrap().clone();
    let stale: Vec<_> = paths.iter().filter(|p| p.contains("shard=00002") && p.contains(old.as_str())).collect();
    assert!(stale.is_empty(), "the replaced version's shard 2 was read whole after the switch: {paths:?}");
}

/// After a publish, the replaced version's blocks and hot shards leave the data cache (in the background),
/// so the new version's shards are promoted as in a cache that is filling. They used to stay until evicted:
/// the cache stayed full and evicting, and the new version's rarely read shards waited for their fetches to
/// come fast, as under a working set larger than the cache, after every publish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_versions_shards_are_promoted_in_the_room_the_old_one_leaves() {
    let d = data(1).await;
    let stores = faulty(&d);
    let config = EngineConfig { data_cache_bytes: 24 << 20, warm_switch_bytes: 0, ..Default::default() };
    let e = engine(&d, &stores, config);
    stores[0].large_reads(SMALL_READ, Some(LargeRead::Delay(Duration::ZERO)));
    // The old version fills the cache: every shard read through and most promoted, until it evicts.
    for _ in 0..2 {
        lookup_all(&e, &d.keys).await;
        cairn_tests::promotions_settled(&e).await;
    }
    e.sync_caches().await;
    assert!(e.telemetry().hot_shards > 0, "the old version has no hot shard: the test proves nothing");
    let data_cache = |e: &Engine| e.stats().caches.into_iter().find(|c| c.name == "data").unwrap();
    assert!(data_cache(&e).evictions > 0, "the old version never filled the cache: the test proves nothing");
    let old = e.keyspace("hot").await.unwrap().manifest().version.clone();
    // A new version of the same rows is published and served.
    let mut opts = cairn_ingest::IngestOptions::new(d._dir.path().join("in.data"), "hot", d.roots[0].clone());
    opts.shards = Some(48);
    cairn_ingest::ingest(opts, Arc::new(cairn_ingest::NoProgress)).await.unwrap();
    e.refresh();
    let new = e.keyspace("hot").await.unwrap().manifest().version.clone();
    assert_ne!(new, old, "the new version is not served");
    e.retired_removed().await; // the old version's entries, removed in the background
    assert_eq!(e.telemetry().hot_shards, 0, "the replaced version's hot shards are still held");
    let target = 47;
    fetched_rarely(&e, &d, target).await;
    let name = format!("shard={target:05}");
    let paths = stores[0].large_read_paths.lock().unwrap().clone();
    let whole = |v: &str| paths.iter().any(|p| p.contains(v) && p.split('/').any(|part| part == name));
    assert!(whole(&old), "the old version's shard {target} was never hot: the test proves nothing");
    assert!(whole(&new), "the new version's shard {target} was not promoted: {} evictions", data_cache(&e).evictions);
}
