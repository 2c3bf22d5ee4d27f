//! A keyspace deleted and rebuilt under the same name (issue 28, defect 2). A running reader never moves
//! back within one lineage of a keyspace (its pointer's `seq` only grows), but it must follow a new lineage:
//! the rebuilt keyspace's pointer starts again at seq 1, and the "never backwards" guard used to pin every
//! running reader to the deleted version for as long as it lived. Pointers written by older builds (no
//! lineage field) are judged by what they name.

use std::sync::Arc;
use std::time::Duration;

use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::{Engine, format::layout, versions::pointer};
use cairn_tests::fault::FaultyStore;
use object_store::{ObjectStoreExt, PutPayload};

fn write(dir: &std::path::Path, name: &str, keys: &[String], tag: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, keys.iter().map(|k| format!("{k} {tag}\n")).collect::<String>()).unwrap();
    path
}

fn engine(store: &Store) -> Arc<Engine> {
    // A TTL no test waits for: `refresh` stands for "the TTL passed".
    let config = EngineConfig { pointer_ttl: Duration::from_secs(3600), ..Default::default() };
    Arc::new(Engine::new(store.clone(), config))
}

#[tokio::test]
async fn a_reader_follows_a_keyspace_deleted_and_rebuilt_under_the_same_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("st");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..2_000).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let a = write(dir.path(), "a.data", &keys, "a");
    let b = write(dir.path(), "b.data", &keys, "b");

    cairn_tests::ingest(&a, "live", &store, Some(4)).await.unwrap();
    let reader = engine(&store);
    assert_eq!(reader.get("live", &keys[0]).await.unwrap().as_deref(), Some(&b"a"[..]));
    cairn_tests::ingest(&b, "live", &store, Some(4)).await.unwrap();
    reader.refresh();
    assert_eq!(reader.get("live", &keys[0]).await.unwrap().as_deref(), Some(&b"b"[..]), "the new version");

    // Deleted (`aws s3 rm --recursive`, or by hand) and rebuilt from a.data.
    std::fs::remove_dir_all(root.join("keyspace=live")).unwrap();
    let rebuilt = cairn_tests::ingest(&a, "live", &store, Some(4)).await.unwrap();
    reader.refresh();
    let ks = reader.keyspace("live").await.unwrap();
    assert_eq!(ks.manifest().version, rebuilt.version, "the running reader still serves the deleted keyspace");
    for k in keys.iter().step_by(97) {
        assert_eq!(reader.get("live", k).await.unwrap().as_deref(), Some(&b"a"[..]), "{k}");
    }
    // And within the new lineage it still moves forward.
    let again = cairn_tests::ingest(&b, "live", &store, Some(4)).await.unwrap();
    reader.refresh();
    assert_eq!(reader.keyspace("live").await.unwrap().manifest().version, again.version);
}

/// The same while the keyspace is only gone for a moment: a reader that saw "no such keyspace" in between
/// follows the rebuilt one too.
#[tokio::test]
async fn a_reader_that_saw_the_keyspace_gone_follows_its_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("st");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..300).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let a = write(dir.path(), "a.data", &keys, "a");
    let b = write(dir.path(), "b.data", &keys, "b");
    cairn_tests::ingest(&a, "live", &store, Some(2)).await.unwrap();
    cairn_tests::ingest(&b, "live", &store, Some(2)).await.unwrap();
    let reader = engine(&store);
    assert_eq!(reader.get("live", &keys[1]).await.unwrap().as_deref(), Some(&b"b"[..]));
    std::fs::remove_dir_all(root.join("keyspace=live")).unwrap();
    reader.refresh();
    let gone = reader.get("live", &keys[1]).await.expect_err("the keyspace is gone");
    assert!(matches!(gone.root(), cairn_shared::Error::KeyspaceNotFound(_)), "{gone}");
    cairn_tests::ingest(&a, "live", &store, Some(2)).await.unwrap();
    reader.refresh();
    assert_eq!(reader.get("live", &keys[1]).await.unwrap().as_deref(), Some(&b"a"[..]));
}

/// The primary's pointer is the commit point: a keyspace rebuilt by a host whose clock is behind (its lineage
/// sorts lower than the deleted one's), or restored from a backup, is still followed.
#[tokio::test]
async fn a_rebuilt_keyspace_with_an_older_looking_lineage_is_followed_from_the_primary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("st");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let keys: Vec<String> = (0..300).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let a = write(dir.path(), "a.data", &keys, "a");
    let b = write(dir.path(), "b.data", &keys, "b");
    cairn_tests::ingest(&a, "skew", &store, Some(2)).await.unwrap();
    let reader = engine(&store);
    assert_eq!(reader.get("skew", &keys[1]).await.unwrap().as_deref(), Some(&b"a"[..]));
    std::fs::remove_dir_all(root.join("keyspace=skew")).unwrap();
    cairn_tests::ingest(&b, "skew", &store, Some(2)).await.unwrap();
    // As a host with a slow clock would have written it.
    let path = layout::pointer_path("skew");
    let mut p: serde_json::Value =
        serde_json::from_slice(&store.inner.get(&path).await.unwrap().bytes().await.unwrap()).unwrap();
    p["lineage"] = "19700101T000000000Z-00000000".into();
    store.inner.put(&path, PutPayload::from(serde_json::to_vec(&p).unwrap())).await.unwrap();
    reader.refresh();
    assert_eq!(reader.get("skew", &keys[1]).await.unwrap().as_deref(), Some(&b"b"[..]), "pinned to the deleted one");
}

/// Pointers written by older builds carry no lineage. A replica's copy that lags (a version the served
/// pointer's history lists) is not taken when the primary is down; a keyspace rebuilt by an older build
/// (seq 1 again) is followed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pointers_of_older_builds_never_move_back_and_follow_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let roots: Vec<Store> =
        (0..2).map(|i| Store::open(dir.path().join(format!("root{i}")).to_str().unwrap()).unwrap()).collect();
    let keys: Vec<String> = (0..200).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let ingest = |name: &str| {
        let f = write(dir.path(), &format!("{name}.data"), &keys, name);
        let mut opts = cairn_ingest::IngestOptions::new(f, "old", roots[0].clone());
        opts.replicas = vec![roots[1].clone()];
        opts.shards = Some(2);
        async move { cairn_ingest::ingest(opts, Arc::new(cairn_ingest::NoProgress)).await.unwrap().version }
    };
    let mut versions = Vec::new();
    for tag in ["one", "two", "three"] {
        versions.push(ingest(tag).await);
    }
    // CURRENT as an older build wrote it: seq and history, no lineage (nor manifest checksum).
    let legacy = |version: &str, seq: u64, history: &[&str]| {
        let history: Vec<serde_json::Value> = history
            .iter()
            .map(|v| serde_json::json!({"version": v, "replaced_at": "2026-11-01T00:00:00.000Z"}))
            .collect();
        serde_json::json!({
            "version": version, "previous": history.first().map(|h| h["version"].clone()),
            "updated_at": "2026-11-01T00:00:00.000Z", "seq": seq, "history": history,
        })
    };
    let put = |root: usize, p: serde_json::Value| {
        let store = roots[root].clone();
        async move {
            let body = serde_json::to_vec(&p).unwrap();
            store.inner.put(&layout::pointer_path("old"), PutPayload::from(body)).await.unwrap();
        }
    };
    let current = legacy(&versions[2], 5, &[&versions[1], &versions[0]]);
    put(0, current.clone()).await;
    put(1, current).await;
    let primary = Arc::new(FaultyStore::new(roots[0].inner.clone(), "\0never", usize::MAX));
    let config = EngineConfig {
        pointer_ttl: Duration::from_secs(3600),
        replicas: vec![roots[1].url.clone()],
        ..Default::default()
    };
    let reader = Engine::new(Store { url: roots[0].url.clone(), inner: primary.clone() }, config);
    assert_eq!(reader.get("old", &keys[0]).await.unwrap().as_deref(), Some(&b"three"[..]));
    // The primary down, the replica's copy lagging: seq 4, naming a version the history lists. Not taken.
    primary.fail_reads.store(true, std::sync::atomic::Ordering::SeqCst);
    put(1, legacy(&versions[1], 4, &[&versions[0]])).await;
    reader.refresh();
    assert_eq!(reader.get("old", &keys[0]).await.unwrap().as_deref(), Some(&b"three"[..]), "moved back");
    // The primary back, and the keyspace rebuilt by an older build: seq 1, a version created after all.
    primary.fail_reads.store(false, std::sync::atomic::Ordering::SeqCst);
    let four = ingest("four").await;
    put(0, legacy(&four, 1, &[])).await;
    reader.refresh();
    assert_eq!(reader.get("old", &keys[0]).await.unwrap().as_deref(), Some(&b"four"[..]), "rebuild not followed");
    assert!(pointer::read(roots[0].inner.as_ref(), "old").await.unwrap().is_some());
}
