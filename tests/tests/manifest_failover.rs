//! The manifest's top level is read like the shards (issue 28, defect 5): from another root when the
//! primary's copy is missing, corrupt or does not answer within the attempt timeout, and verified against
//! the checksum the pointer carries. It used to be read from one root with no timeout and no check: a
//! replicated keyspace whose primary lost `manifests/<v>.json` answered `data_loss` for every key while the
//! replica held it, a hung primary held every lookup, and a damaged manifest was served as it was.

use std::sync::Arc;
use std::time::Duration;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::query::RootOpener;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::layout};
use cairn_tests::fault::FaultyStore;
use object_store::{ObjectStoreExt, PutPayload};

struct Fixture {
    _dir: tempfile::TempDir,
    roots: Vec<Store>,
    version: String,
    rows: Vec<(String, String)>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..2).map(|i| Store::open(dir.path().join(format!("root{i}")).to_str().unwrap()).unwrap()).collect();
    let rows: Vec<(String, String)> = (0..3_000).map(|i| (uuid::Uuid::new_v4().to_string(), format!("v{i}"))).collect();
    let input = dir.path().join("in.data");
    std::fs::write(&input, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    let mut opts = IngestOptions::new(&input, "ks", roots[0].clone());
    opts.replicas = roots[1..].to_vec();
    opts.shards = Some(4);
    let version = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap().version;
    Fixture { _dir: dir, roots, version, rows }
}

/// A reader configured with the replica (`CAIRN_REPLICAS`), its primary wrapped in `primary`.
fn reader(f: &Fixture, primary: Arc<FaultyStore>) -> Engine {
    let config = EngineConfig {
        replicas: vec![f.roots[1].url.clone()],
        failover: cairn_shared::stores::replicated::FailoverConfig {
            attempt_timeout: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    };
    let replica = f.roots[1].clone();
    let resolver: RootOpener = Arc::new(move |url: &str| {
        (url == replica.url).then(|| replica.clone()).ok_or_else(|| cairn_shared::Error::Config(url.into()))
    });
    Engine::new(Store { url: f.roots[0].url.clone(), inner: primary }, config).with_root_opener(resolver)
}

async fn answers_every_key(engine: &Engine, f: &Fixture) {
    for (k, v) in f.rows.iter().step_by(11) {
        let got = tokio::time::timeout(Duration::from_secs(60), engine.get("ks", k))
            .await
            .expect("a lookup hung on the manifest")
            .unwrap_or_else(|e| panic!("{k}: {e}"));
        assert_eq!(got.as_deref(), Some(v.as_bytes()), "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_missing_from_the_primary_is_read_from_a_replica() {
    let f = fixture().await;
    f.roots[0].inner.delete(&layout::manifest_path("ks", &f.version)).await.unwrap();
    let engine = reader(&f, Arc::new(FaultyStore::new(f.roots[0].inner.clone(), "\0never", usize::MAX)));
    answers_every_key(&engine, &f).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_whose_manifest_read_hangs_is_failed_over() {
    let f = fixture().await;
    let primary = Arc::new(FaultyStore::new(f.roots[0].inner.clone(), "\0never", usize::MAX));
    primary.hang_reads(Some("/manifests/"));
    let engine = reader(&f, primary);
    answers_every_key(&engine, &f).await;
}

/// A manifest whose bytes changed (still valid JSON: here it claims one more key) is not the one the
/// pointer named: never served. With a replica the intact copy is read; without, lookups fail as corrupt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_manifest_is_detected_and_not_served() {
    let f = fixture().await;
    let path = layout::manifest_path("ks", &f.version);
    let body = f.roots[0].inner.get(&path).await.unwrap().bytes().await.unwrap();
    let mut m: serde_json::Value = serde_json::from_slice(&body).unwrap();
    m["rows"] = (f.rows.len() as u64 + 1).into();
    f.roots[0].inner.put(&path, PutPayload::from(serde_json::to_vec(&m).unwrap())).await.unwrap();

    let engine = reader(&f, Arc::new(FaultyStore::new(f.roots[0].inner.clone(), "\0never", usize::MAX)));
    answers_every_key(&engine, &f).await;
    let info = engine.info("ks").await.unwrap();
    assert_eq!(info["keys"], f.rows.len() as u64, "the damaged manifest was served: {info}");

    let alone = Engine::new(f.roots[0].clone(), EngineConfig::default());
    let err = alone.get("ks", &f.rows[0].0).await.expect_err("a damaged manifest was served");
    assert_eq!(err.kind(), cairn_shared::ErrorKind::Corrupt, "{err}");
}

/// `cairn health` checks every root's copy of the manifest against what the pointer vouches for, and
/// `repair` gives every root an intact copy, byte for byte; with no intact copy anywhere both say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_repair_cover_the_manifest_copies() {
    use cairn_shared::versions::health::{Status, check};
    let f = fixture().await;
    let path = layout::manifest_path("ks", &f.version);
    let m = cairn_shared::format::manifest::Manifest::read(f.roots[1].inner.as_ref(), "ks", &f.version).await.unwrap();
    assert_eq!(check(&f.roots, &m, false).await.status, Status::Green);
    let intact = f.roots[1].inner.get(&path).await.unwrap().bytes().await.unwrap();
    let mut damaged: serde_json::Value = serde_json::from_slice(&intact).unwrap();
    damaged["rows"] = 1.into();
    let damaged = serde_json::to_vec(&damaged).unwrap();

    f.roots[0].inner.put(&path, PutPayload::from(damaged.clone())).await.unwrap();
    let report = check(&f.roots, &m, false).await;
    assert_eq!(report.status, Status::Yellow, "{:?}", report.manifest);
    let repaired = cairn_shared::versions::repair::repair(&f.roots, &m).await.unwrap();
    assert!(!repaired.manifest_unrecoverable && repaired.metadata_copied >= 1, "{repaired:?}");
    assert_eq!(f.roots[0].inner.get(&path).await.unwrap().bytes().await.unwrap(), intact);
    assert_eq!(check(&f.roots, &m, false).await.status, Status::Green);

    for root in &f.roots {
        root.inner.put(&path, PutPayload::from(damaged.clone())).await.unwrap();
    }
    assert_eq!(check(&f.roots, &m, false).await.status, Status::Red);
    assert!(cairn_shared::versions::repair::repair(&f.roots, &m).await.unwrap().manifest_unrecoverable);
}

/// The top level every reader loads stays small however many inputs a version was built from (issue 30):
/// past 16 files the whole list lies in its own object, which `Manifest::read` (the admin tools) loads and
/// verifies, gc deletes with the version, and repair copies to a root that lost it.
#[tokio::test]
async fn many_inputs_are_listed_outside_the_top_level() {
    use cairn_shared::format::manifest::SOURCE_FILES_INLINE;
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("inputs");
    std::fs::create_dir(&inputs).unwrap();
    for i in 0..300 {
        std::fs::write(inputs.join(format!("part-{i:05}.data")), format!("{:032x} v{i}\n", i as u128 * 7919)).unwrap();
    }
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let store = Store::open(a.to_str().unwrap()).unwrap();
    let mut opts = IngestOptions::new(&inputs, "many", store.clone());
    opts.replicas = vec![Store::open(b.to_str().unwrap()).unwrap()];
    let report = cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap();
    let top_path = layout::manifest_path("many", &report.version);
    let top_bytes = store.inner.get(&top_path).await.unwrap().bytes().await.unwrap();
    let top = Manifest::parse(&top_path, &top_bytes).unwrap();
    assert_eq!(top.source.files.len(), SOURCE_FILES_INLINE);
    assert_eq!(top.source.listing.as_ref().map(|l| l.count), Some(300));
    assert!(top_bytes.len() < 8 << 10, "top level of {} bytes", top_bytes.len());
    let whole = Manifest::read(store.inner.as_ref(), "many", &report.version).await.unwrap();
    assert_eq!(whole.source.files.len(), 300);
    assert!(whole.source.files[299].ends_with("part-00299.data"), "{:?}", whole.source.files.last());
    // Readers never need the listing: the keyspace answers without it.
    let listing = layout::sources_path("many", &report.version);
    let saved = store.inner.get(&listing).await.unwrap().bytes().await.unwrap();
    store.inner.delete(&listing).await.unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default());
    assert_eq!(engine.get("many", &format!("{:032x}", 7919u128 * 5)).await.unwrap().as_deref(), Some(&b"v5"[..]));
    // The admin read refuses a missing or damaged listing; repair restores it from the replica.
    assert!(Manifest::read(store.inner.as_ref(), "many", &report.version).await.is_err());
    let mut bad = saved.to_vec();
    bad[3] ^= 1;
    store.inner.put(&listing, PutPayload::from(bad)).await.unwrap();
    let err = Manifest::read(store.inner.as_ref(), "many", &report.version).await.unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    let roots = [store.clone(), Store::open(b.to_str().unwrap()).unwrap()];
    let repaired = cairn_shared::versions::repair::repair(&roots, &whole).await.unwrap();
    assert!(!repaired.manifest_unrecoverable && repaired.metadata_copied >= 1, "{repaired:?}");
    assert_eq!(store.inner.get(&listing).await.unwrap().bytes().await.unwrap(), saved);
    assert_eq!(Manifest::read(store.inner.as_ref(), "many", &report.version).await.unwrap(), whole);
}
