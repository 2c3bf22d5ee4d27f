//! Delta layers against a model: random sequences of full ingests, deltas (adds and overwrites), deletes,
//! compactions, rollbacks and gc, with a reader running throughout, answer exactly like a map that applies
//! the same operations in order. Also: compaction writes the shards a full ingest of the same data writes;
//! a delta's shard count fits the delta; too many layers is refused with a message to compact; a key
//! absent from a layer costs that layer no request.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn_ingest::{CompactOptions, IngestOptions, InputFormat, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_shared::versions::{pointer, rollback::rollback};
use cairn_shared::{Engine, ErrorKind};
use cairn_tests::sim::rng::Rng;
use object_store::ObjectStoreExt;

type Model = BTreeMap<String, String>;
const KS: &str = "ks";

fn key(i: u64) -> String {
    format!("{i:08x}-0000-4000-8000-{:012x}", i * 7919)
}

struct World {
    dir: tempfile::TempDir,
    store: Store,
    n: u64,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("root").to_str().unwrap()).unwrap();
        World { dir, store, n: 0 }
    }

    fn file(&mut self, body: String) -> std::path::PathBuf {
        self.n += 1;
        let p = self.dir.path().join(format!("in{}.txt", self.n));
        std::fs::write(&p, body).unwrap();
        p
    }

    fn opts(&mut self, body: String) -> IngestOptions {
        let input = self.file(body);
        let mut o = IngestOptions::new(input, KS, self.store.clone());
        o.threads = 2;
        o.memory_budget = 16 << 20;
        o
    }

    async fn full(&mut self, rows: &Model, shards: u32) -> String {
        let mut o = self.opts(rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect());
        o.shards = Some(shards);
        cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap().version
    }

    async fn delta(&mut self, rows: &[(String, String)]) -> Result<String, cairn_ingest::IngestError> {
        let mut o = self.opts(rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect());
        o.delta = true;
        cairn_ingest::ingest(o, Arc::new(NoProgress)).await.map(|r| r.version)
    }

    async fn delete(&mut self, keys: &[String]) -> Result<String, cairn_ingest::IngestError> {
        let mut o = self.opts(keys.iter().map(|k| format!("{k}\n")).collect());
        o.format = Some(InputFormat::Keys);
        o.delta = true;
        cairn_ingest::ingest(o, Arc::new(NoProgress)).await.map(|r| r.version)
    }

    async fn compact(&self) -> String {
        let mut o = CompactOptions::new(KS, self.store.clone());
        o.threads = 2;
        cairn_ingest::compact(o, Arc::new(NoProgress)).await.unwrap().version
    }

    async fn current(&self) -> String {
        pointer::read(self.store.inner.as_ref(), KS).await.unwrap().unwrap().pointer.version
    }
}

fn engine(store: &Store) -> Engine {
    Engine::new(store.clone(), EngineConfig { pointer_ttl: Duration::from_millis(20), ..Default::default() })
}

/// Every key of the universe answers as `model` says, in the version the pointer names now. A running engine
/// may serve the previous version for up to 2 × its pointer TTL after a switch (a pointer read that was in
/// flight when it was told to refresh lands after it), so the check waits, bounded, until it serves the
/// current one, then reads that version.
async fn check(engine: &Engine, model: &Model, universe: u64, what: &str) {
    let store = engine.store().clone();
    let want = pointer::read(store.inner.as_ref(), KS).await.unwrap().unwrap().pointer.version;
    let mut v = None;
    for _ in 0..500 {
        engine.refresh();
        let served = engine.keyspace(KS).await.unwrap();
        if served.manifest().version == want {
            v = Some(served);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let v = v.unwrap_or_else(|| panic!("{what}: the engine never served {want}"));
    for i in 0..universe {
        let k = key(i);
        let got = engine.lookup(&v, &k).await.unwrap_or_else(|e| panic!("{what}: {k}: {e}"));
        assert_eq!(got, model.get(&k).map(|v| Bytes::from(v.clone())), "{what}: key {k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_answer_like_a_map_through_deltas_deletes_compactions_rollbacks_and_gc() {
    for seed in [1u64, 2, 3] {
        model_run(seed, 36).await;
    }
}

async fn model_run(seed: u64, steps: usize) {
    const UNIVERSE: u64 = 160;
    let mut rng = Rng::new(seed, 0);
    let mut w = World::new();
    let mut model: Model = (0..UNIVERSE / 2).map(|i| (key(i * 2), format!("base-{i}"))).collect();
    // version → what it answers (versions gc deleted are removed).
    let states: Arc<Mutex<HashMap<String, Model>>> = Arc::default();
    let v = w.full(&model, 4).await;
    states.lock().unwrap().insert(v, model.clone());
    let engine = Arc::new(engine(&w.store));

    // A reader throughout: whatever version it reads, its answer is that version's.
    let stop = Arc::new(AtomicBool::new(false));
    let checked = Arc::new(AtomicU64::new(0));
    let reader = {
        let (engine, states, stop, checked) = (engine.clone(), states.clone(), stop.clone(), checked.clone());
        tokio::spawn(async move {
            let mut rng = Rng::new(seed, 1);
            while !stop.load(Ordering::Relaxed) {
                let Ok(v) = engine.keyspace(KS).await else { continue };
                let k = key(rng.below(UNIVERSE));
                let want = states.lock().unwrap().get(&v.manifest().version).map(|m| m.get(&k).cloned());
                match (engine.lookup(&v, &k).await, want) {
                    (Ok(got), Some(want)) => {
                        assert_eq!(got, want.map(Bytes::from), "reader: {k} in {}", v.manifest().version);
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                    // A version gc deleted under a reader that still held it (gc here keeps no --min-age).
                    (Err(e), _) if matches!(e.kind(), ErrorKind::DataLoss | ErrorKind::NotFound) => {}
                    (Err(e), Some(_)) => panic!("reader: {k} in {}: {e}", v.manifest().version),
                    (_, None) => {} // published, not yet recorded by the writer
                }
                tokio::task::yield_now().await;
            }
        })
    };

    for step in 0..steps {
        let what = format!("seed {seed} step {step}");
        let roll = rng.below(100);
        let before = w.current().await;
        if roll < 40 {
            let n = 1 + rng.below(25);
            let mut rows: BTreeMap<String, String> = BTreeMap::new();
            for _ in 0..n {
                let value = if rng.chance(100) { String::new() } else { format!("d{step}-{}", rng.below(1000)) };
                rows.insert(key(rng.below(UNIVERSE)), value);
            }
            let rows: Vec<(String, String)> = rows.into_iter().collect();
            let layers = Manifest::read_top(w.store.inner.as_ref(), KS, &before).await.unwrap().layers.len() + 1;
            match w.delta(&rows).await {
                Ok(v) => {
                    model.extend(rows);
                    states.lock().unwrap().insert(v, model.clone());
                }
                Err(e) => {
                    assert_eq!(layers, 8, "{what}: only a full stack refuses a delta: {e}");
                    assert!(e.to_string().contains("cairn compact"), "{e}");
                    assert_eq!(w.current().await, before);
                }
            }
        } else if roll < 60 {
            let keys: Vec<String> = (0..1 + rng.below(12)).map(|_| key(rng.below(UNIVERSE))).collect();
            let mut keys = keys;
            keys.sort();
            keys.dedup();
            if let Ok(v) = w.delete(&keys).await {
                for k in &keys {
                    model.remove(k);
                }
                states.lock().unwrap().insert(v, model.clone());
            }
        } else if roll < 72 {
            let v = w.compact().await;
            let m = Manifest::read(w.store.inner.as_ref(), KS, &v).await.unwrap();
            assert!(!m.is_layered(), "{what}: compaction publishes one layer");
            assert_eq!(m.rows, model.len() as u64, "{what}: tombstones dropped");
            states.lock().unwrap().insert(v, model.clone());
        } else if roll < 84 {
            // Back to any version still kept.
            let known: Vec<String> = {
                let s = states.lock().unwrap();
                let mut v: Vec<String> = s.keys().filter(|v| **v != before).cloned().collect();
                v.sort();
                v
            };
            if known.is_empty() {
                continue;
            }
            let to = rng.pick(&known).clone();
            rollback(&w.store, KS, Some(&to), &|u: &str| Store::open(u)).await.unwrap();
            model = states.lock().unwrap()[&to].clone();
        } else {
            let opts = GcOptions { keep: rng.below(3) as usize, min_age: Duration::ZERO, dry_run: false };
            let report = collect(std::slice::from_ref(&w.store), KS, &opts).await.unwrap();
            let kept: Vec<String> = {
                let mut s = states.lock().unwrap();
                for v in &report.deleted_versions {
                    s.remove(v);
                }
                s.keys().cloned().collect()
            };
            // Every version still listed is whole: its layers are all there.
            for v in &kept {
                let m = Manifest::read(w.store.inner.as_ref(), KS, v).await;
                let m = m.unwrap_or_else(|e| panic!("{what}: kept version {v}: {e}"));
                for l in &m.layers {
                    Manifest::read(w.store.inner.as_ref(), KS, &l.version)
                        .await
                        .unwrap_or_else(|e| panic!("{what}: layer {} of kept {v}: {e}", l.version));
                }
            }
        }
        check(&engine, &model, UNIVERSE, &what).await;
        // A fresh reader (no caches) agrees.
        check(&engine_fresh(&w.store), &model, UNIVERSE, &format!("{what}, fresh reader")).await;
    }
    stop.store(true, Ordering::Relaxed);
    reader.await.unwrap();
    assert!(checked.load(Ordering::Relaxed) > 0, "the reader checked answers");
}

fn engine_fresh(store: &Store) -> Engine {
    engine(store)
}

/// Shard objects of a compaction are those a full ingest of the same data with as many shards writes:
/// byte for byte up to the Parquet footer, which names the version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_writes_the_shards_a_full_ingest_writes() {
    let mut w = World::new();
    let mut model: Model = (0..3000).map(|i| (key(i), format!("value-{i}"))).collect();
    w.full(&model, 5).await;
    let changes: Vec<(String, String)> = (0..3000).step_by(7).map(|i| (key(i), format!("new-{i}"))).collect();
    w.delta(&changes).await.unwrap();
    model.extend(changes);
    let added: Vec<(String, String)> = (5000..5100).map(|i| (key(i), format!("added-{i}"))).collect();
    w.delta(&added).await.unwrap();
    model.extend(added);
    let gone: Vec<String> = (0..3000).step_by(11).map(key).collect();
    w.delete(&gone).await.unwrap();
    for k in &gone {
        model.remove(k);
    }
    let compacted = Manifest::read(w.store.inner.as_ref(), KS, &w.compact().await).await.unwrap();

    let other = World::new();
    let mut o =
        IngestOptions::new(w.file(model.iter().map(|(k, v)| format!("{k} {v}\n")).collect()), KS, other.store.clone());
    o.shards = Some(5);
    let full = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap();
    let full = Manifest::read(other.store.inner.as_ref(), KS, &full.version).await.unwrap();
    assert_eq!(compacted.placement, full.placement);
    assert_eq!(compacted.rows, model.len() as u64);
    for (a, b) in compacted.shards.iter().zip(&full.shards) {
        assert_eq!((a.rows, &a.min_key, &a.max_key, &a.pieces), (b.rows, &b.min_key, &b.max_key, &b.pieces));
        let read = |s: &Store, p: &str| {
            let (s, p) = (s.clone(), object_store::path::Path::from(p));
            async move { s.inner.get(&p).await.unwrap().bytes().await.unwrap() }
        };
        let (x, y) = (read(&w.store, &a.path).await, read(&other.store, &b.path).await);
        let data =
            |o: &Bytes, e: &cairn_shared::format::manifest::ShardEntry| o.slice(..(e.bytes - e.meta_bytes) as usize);
        assert_eq!(data(&x, a), data(&y, b), "shard {}: blocks and index pieces differ", a.shard);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_fits_its_size_and_absent_keys_cost_it_nothing() {
    let mut w = World::new();
    let model: Model = (0..20_000).map(|i| (key(i), format!("value-{i}-{}", "x".repeat(200)))).collect();
    w.full(&model, 64).await;
    let small: Vec<(String, String)> = (0..50).map(|i| (key(i), "changed".into())).collect();
    let v = w.delta(&small).await.unwrap();
    let m = Manifest::read(w.store.inner.as_ref(), KS, &v).await.unwrap();
    assert_eq!(m.placement.shards(), 1, "a 50-key delta over 64 shards writes one shard");
    assert_eq!(m.layers.len(), 1);

    // Warm the base's index pieces and blocks for keys the delta does not hold, then count requests.
    let engine = engine(&w.store);
    let probe: Vec<String> = (1000..1400).map(key).collect();
    for k in &probe {
        engine.get(KS, k).await.unwrap();
    }
    let ((), cost) = cairn_shared::cost::measure(async {
        for k in &probe {
            assert_eq!(engine.get(KS, k).await.unwrap().unwrap(), model[k].as_bytes());
        }
    })
    .await;
    let gets = cost.object_gets;
    // The delta's filter rules nearly every key out: its pieces and blocks are (almost) never read.
    assert!(gets <= 4, "{gets} requests for 400 warm lookups of keys absent from the delta");
    assert_eq!(engine.get(KS, &key(3)).await.unwrap().unwrap(), "changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_past_max_layers_is_refused_and_a_delete_of_nothing_is_harmless() {
    let mut w = World::new();
    let model: Model = (0..100).map(|i| (key(i), format!("v{i}"))).collect();
    w.full(&model, 2).await;
    for i in 0..7 {
        w.delta(&[(key(i), format!("d{i}"))]).await.unwrap();
    }
    let e = w.delta(&[(key(99), "x".into())]).await.unwrap_err();
    assert!(e.to_string().contains("8 layers") && e.to_string().contains("cairn compact"), "{e}");
    let v = w.compact().await;
    assert_eq!(w.current().await, v);
    // Deleting keys no layer holds publishes tombstones that answer what was answered before.
    w.delete(&[key(500), key(501)]).await.unwrap();
    let engine = engine(&w.store);
    assert_eq!(engine.get(KS, &key(500)).await.unwrap(), None);
    assert_eq!(engine.get(KS, &key(0)).await.unwrap().unwrap(), "d0");
    assert_eq!(engine.get(KS, &key(50)).await.unwrap().unwrap(), "v50");
}

/// The ordinary accidents of a compaction: the same command twice at once, and a crash at a random moment
/// followed by a rerun. Answers never change, and one compacted version at most is published per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_twice_at_once_or_crashed_then_rerun_answers_the_same() {
    let mut w = World::new();
    let mut model: Model = (0..4000).map(|i| (key(i), format!("value-{i}"))).collect();
    w.full(&model, 40).await;
    let changes: Vec<(String, String)> = (0..4000).step_by(3).map(|i| (key(i), format!("new-{i}"))).collect();
    w.delta(&changes).await.unwrap();
    model.extend(changes);
    let gone: Vec<String> = (0..4000).step_by(5).map(key).collect();
    w.delete(&gone).await.unwrap();
    for k in &gone {
        model.remove(k);
    }
    let layered = w.current().await;
    let engine = engine(&w.store);
    check(&engine, &model, 4100, "before").await;

    let (a, b) = tokio::join!(w.compact_result(), w.compact_result());
    let published: Vec<String> = [&a, &b].iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
    assert!(!published.is_empty(), "one of two compactions at once succeeds: {a:?} {b:?}");
    let now = w.current().await;
    assert!(published.iter().all(|v| *v == now), "both report the one version published: {published:?} vs {now}");
    check(&engine, &model, 4100, "after two at once").await;

    // Back to the layered version, then crash compactions at random moments; a rerun finishes.
    rollback(&w.store, KS, Some(&layered), &|u: &str| Store::open(u)).await.unwrap();
    for after_ms in [1u64, 5, 20, 60] {
        let _ = tokio::time::timeout(Duration::from_millis(after_ms), w.compact_result()).await;
        check(&engine, &model, 4100, &format!("crashed after {after_ms} ms")).await;
    }
    let v = w.compact_result().await.unwrap();
    assert_eq!(w.current().await, v);
    let m = Manifest::read(w.store.inner.as_ref(), KS, &v).await.unwrap();
    assert!(!m.is_layered());
    check(&engine, &model, 4100, "after the rerun").await;
}

impl World {
    async fn compact_result(&self) -> Result<String, cairn_ingest::IngestError> {
        let mut o = CompactOptions::new(KS, self.store.clone());
        o.threads = 2;
        o.lease = Duration::from_secs(2);
        cairn_ingest::compact(o, Arc::new(NoProgress)).await.map(|r| r.version)
    }
}

/// A delta goes where its layers are (a replica root included, by default), and readers still answer when
/// a delta's key filter object is lost (it only saves requests); gc keeps the layers of a version whose
/// manifest survives only on a replica; a keys file without --delta is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deltas_follow_their_layers_roots_and_survive_a_lost_filter() {
    let mut w = World::new();
    let replica = Store::open(w.dir.path().join("replica").to_str().unwrap()).unwrap();
    let model: Model = (0..500).map(|i| (key(i), format!("v{i}"))).collect();
    let mut o = w.opts(model.iter().map(|(k, v)| format!("{k} {v}\n")).collect());
    o.replicas = vec![replica.clone()];
    o.shards = Some(4);
    let base = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap().version;

    let v = w.delete(&[key(1), key(2)]).await.unwrap();
    let m = Manifest::read(replica.inner.as_ref(), KS, &v).await.expect("the delta's manifest is on the replica");
    assert_eq!(m.replicas, vec![replica.url.clone()]);
    for s in &m.shards {
        replica.inner.head(&s.path.as_str().into()).await.expect("and its shards");
    }
    let mut o = w.opts(format!("{} x\n", key(3)));
    o.delta = true;
    o.replicas = vec![Store::open(w.dir.path().join("elsewhere").to_str().unwrap()).unwrap()];
    let e = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap_err();
    assert!(e.to_string().contains("roots of the layers under it"), "{e}");

    // The filter object lost everywhere: answers stay right.
    let filter = cairn_shared::format::layout::filter_path(KS, &v);
    for s in [&w.store, &replica] {
        s.inner.delete(&filter).await.unwrap();
    }
    let engine = engine(&w.store);
    assert_eq!(engine.get(KS, &key(1)).await.unwrap(), None);
    assert_eq!(engine.get(KS, &key(5)).await.unwrap().unwrap(), "v5");

    // The current manifest gone from the primary (repairable from the replica): gc keeps its base.
    w.store.inner.delete(&cairn_shared::format::layout::manifest_path(KS, &v)).await.unwrap();
    let roots = [w.store.clone(), replica.clone()];
    let _ = collect(&roots, KS, &GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false }).await;
    Manifest::read(replica.inner.as_ref(), KS, &base).await.expect("the base layer survives gc");
    Manifest::read(w.store.inner.as_ref(), KS, &base).await.expect("under every root");

    let mut o = w.opts(format!("{}\n", key(4)));
    o.format = Some(InputFormat::Keys);
    let e = cairn_ingest::ingest(o, Arc::new(NoProgress)).await.unwrap_err();
    assert!(e.to_string().contains("--delta"), "{e}");
}
