//! What a publish, a cleanup or gc must never lose, in the ordinary accidents: the same ingest run twice at
//! once, a crash after the pointer switch followed by another publish, a pointer write whose response was
//! lost, a version replaced long after it was written, an abandoned checkpoint. Each test failed on the code
//! before the fix it names (docs/simulation.md has the randomized search that found the first ones).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use cairn_ingest::{IngestError, IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::format::manifest::Manifest;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_shared::{Engine, versions::pointer};
use cairn_tests::fault::FaultyStore;
use object_store::ObjectStoreExt;

fn dataset(dir: &Path, name: &str, n: usize) -> (std::path::PathBuf, Vec<(String, String)>) {
    let rows: Vec<(String, String)> =
        (0..n).map(|i| (uuid::Uuid::new_v4().to_string(), format!("{name}-{i}-{}", "x".repeat(i % 40)))).collect();
    let path = dir.join(format!("{name}.data"));
    std::fs::write(&path, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    (path, rows)
}

fn options(input: &Path, store: &Store) -> IngestOptions {
    let mut o = IngestOptions::new(input, "ks", store.clone());
    o.shards = Some(4);
    o.threads = 1;
    o
}

/// The version CURRENT names is whole and answers every key of `rows`.
async fn assert_current_serves(store: &Store, rows: &[(String, String)]) -> String {
    let cur = pointer::read(store.inner.as_ref(), "ks").await.unwrap().expect("a pointer");
    let m = Manifest::read(store.inner.as_ref(), "ks", &cur.pointer.version).await.expect("its manifest");
    for s in &m.shards {
        let meta = store.inner.head(&s.path.as_str().into()).await.expect("its shard");
        assert_eq!(meta.size, s.bytes, "{}", s.path);
    }
    let engine = Engine::new(store.clone(), EngineConfig::default());
    for (k, v) in rows.iter().step_by(7) {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }
    cur.pointer.version
}

/// The reproduction: `cairn ingest two.data & sleep 0.3; cairn ingest two.data`. The second run
/// found the first's checkpoint, took its version, lost the pointer race and deleted the winner's
/// manifest and shards. Now the second is told another run holds the checkpoint and touches nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_ingest_run_twice_at_once_publishes_once_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (input, rows) = dataset(dir.path(), "two", 150_000);
    let first = tokio::spawn(cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)));
    // Start the second once the first's checkpoint exists (its `sleep 0.3`).
    let ckpt_dir = dir.path().join("store/keyspace=ks/_ingest");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&ckpt_dir).map_or(true, |d| d.count() == 0) {
        assert!(std::time::Instant::now() < deadline, "the first run never wrote a checkpoint");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let second = cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)).await;
    let first = first.await.unwrap();
    let outcomes = [first.is_ok(), second.is_ok()];
    assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 1, "exactly one run publishes: {first:?} / {second:?}");
    if let Err(e) = &second {
        assert!(matches!(e, IngestError::Busy(_)), "the second run is told another one is in progress: {e}");
    }
    let published = first.as_ref().or(second.as_ref()).unwrap().version.clone();
    assert_eq!(assert_current_serves(&store, &rows).await, published);
}

/// A run crashed after its pointer switch, before removing its checkpoint; another version was published;
/// then the first command was rerun. It used to redo the ingest, lose the race against the newer version and
/// clean up: deleting the shards of the version now `previous`, the rollback target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_a_crash_past_the_switch_keeps_the_version_it_published() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (a, rows_a) = dataset(dir.path(), "a", 3_000);
    let (b, rows_b) = dataset(dir.path(), "b", 3_000);
    // The checkpoint cannot be deleted: the run ends right after its switch, as if killed there.
    let faulty = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX);
    faulty.refuse_deletes(Some("_ingest/"));
    let crashing = Store { url: healthy.url.clone(), inner: Arc::new(faulty) };
    let crashed = cairn_ingest::ingest(options(&a, &crashing), Arc::new(NoProgress)).await;
    // Published; the checkpoint stays behind, as after a kill between the switch and its removal.
    let v1 = crashed.expect("published, the checkpoint's removal only logged").version;
    assert!(std::fs::read_dir(dir.path().join("store/keyspace=ks/_ingest")).unwrap().next().is_some());
    assert_eq!(pointer::read(healthy.inner.as_ref(), "ks").await.unwrap().unwrap().pointer.version, v1);
    let v2 = cairn_ingest::ingest(options(&b, &healthy), Arc::new(NoProgress)).await.unwrap().version;

    let rerun = cairn_ingest::ingest(options(&a, &healthy), Arc::new(NoProgress)).await;
    assert_eq!(rerun.expect("the rerun reports the earlier publish").version, v1);
    assert_eq!(assert_current_serves(&healthy, &rows_b).await, v2, "the newer version stays current");
    // The previous version, the rollback target, is whole.
    let done =
        cairn_shared::versions::rollback::rollback(&healthy, "ks", None, &|u: &str| Store::open(u)).await.unwrap();
    assert_eq!(done.to, v1);
    assert_current_serves(&healthy, &rows_a).await;
}

/// A run published and could not remove its checkpoint; then the file at the same path got new content and
/// the same command ran. The checkpoint is named by the command (so a rerun over changed inputs can say what
/// changed), and it used to take the leftover checkpoint for this data's publish: "already published", the
/// new content never loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_left_by_a_publish_does_not_stand_for_new_content_at_the_same_path() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (a, _) = dataset(dir.path(), "a", 3_000);
    let faulty = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX);
    faulty.refuse_deletes(Some("_ingest/"));
    let leaky = Store { url: healthy.url.clone(), inner: Arc::new(faulty) };
    let v1 = cairn_ingest::ingest(options(&a, &leaky), Arc::new(NoProgress)).await.unwrap().version;
    assert!(std::fs::read_dir(dir.path().join("store/keyspace=ks/_ingest")).unwrap().next().is_some());
    let (b, rows_b) = dataset(dir.path(), "b", 3_000);
    std::fs::rename(&b, &a).unwrap();
    let v2 = cairn_ingest::ingest(options(&a, &healthy), Arc::new(NoProgress)).await.unwrap().version;
    assert_ne!(v2, v1, "new content is a new version");
    assert_eq!(assert_current_serves(&healthy, &rows_b).await, v2);
}

/// The pointer switch applied but its response was lost: answered as a timeout, or as the 412 a retried
/// conditional write gets. It was taken for a lost race, and the version CURRENT now named was deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_to_the_pointer_switch_is_not_a_lost_race() {
    for (first_publish, as_precondition) in [(true, true), (true, false), (false, true), (false, false)] {
        let dir = tempfile::tempdir().unwrap();
        let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
        if !first_publish {
            let (base, _) = dataset(dir.path(), "base", 500);
            cairn_ingest::ingest(options(&base, &healthy), Arc::new(NoProgress)).await.unwrap();
        }
        let (input, rows) = dataset(dir.path(), "new", 3_000);
        let faulty = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX).lose_responses(
            "CURRENT",
            1,
            as_precondition,
        );
        let store = Store { url: healthy.url.clone(), inner: Arc::new(faulty) };
        let case = format!("first publish {first_publish}, answered as 412 {as_precondition}");
        let report = cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)).await;
        let version = report.unwrap_or_else(|e| panic!("{case}: {e}")).version;
        assert_eq!(assert_current_serves(&healthy, &rows).await, version, "{case}");
    }
}

/// Sets the modification time of every file under `dir` whose name contains `needle`.
fn backdate(dir: &Path, needle: &str, by: Duration) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            backdate(&path, needle, by);
        } else if path.to_string_lossy().contains(needle) {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(SystemTime::now() - by).unwrap();
        }
    }
}

/// A week-old V1, then V2 and V3 published seconds apart: V1 stopped being current seconds ago, and readers
/// hold a replaced version for up to 2 × TTL. gc measured --min-age from V1's creation and deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_measures_min_age_from_when_a_version_was_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let mut versions = Vec::new();
    for name in ["v1", "v2", "v3"] {
        let (input, _) = dataset(dir.path(), name, 200);
        versions.push(cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)).await.unwrap().version);
        if name == "v1" {
            backdate(&root, &versions[0], Duration::from_secs(7 * 24 * 3600));
        }
    }
    let opts = GcOptions { keep: 0, min_age: Duration::from_secs(3600), dry_run: false };
    let report = collect(std::slice::from_ref(&store), "ks", &opts).await.unwrap();
    assert!(report.deleted_versions.is_empty(), "V1 was replaced seconds ago: {report:?}");
    Manifest::read(store.inner.as_ref(), "ks", &versions[0]).await.expect("V1 is kept");
    // Once it has been replaced for longer than --min-age, it goes.
    let report = collect(std::slice::from_ref(&store), "ks", &GcOptions { min_age: Duration::ZERO, ..opts }).await;
    assert_eq!(report.unwrap().deleted_versions, vec![versions[0].clone()]);
}

/// An ingest abandoned for good kept its version forever: its checkpoint pinned it. A checkpoint past its
/// expiry is deleted (and reported) and its version collected; an unexpired one still pins its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_expires_abandoned_checkpoints_and_frees_their_versions() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(root.to_str().unwrap()).unwrap();
    let (input, _) = dataset(dir.path(), "live", 100);
    cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)).await.unwrap();
    let (abandoned, resumable) = ("20200101T000000000Z-00000000", "20200101T000000001Z-00000001");
    let now = SystemTime::now();
    let at = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    for (id, version, expires) in
        [("old", abandoned, now - Duration::from_secs(60)), ("new", resumable, now + Duration::from_secs(3600))]
    {
        let body = serde_json::json!({
            "ingest_id": id, "keyspace": "ks", "version": version, "base_version": null,
            "started_at": at(now - Duration::from_secs(30 * 24 * 3600)), "expires_at": at(expires), "done": {}
        });
        store.inner.put(&format!("keyspace=ks/_ingest/{id}.json").into(), body.to_string().into()).await.unwrap();
        store.inner.put(&format!("keyspace=ks/shard=00000/{version}.parquet").into(), "x".into()).await.unwrap();
    }
    backdate(&root, "2020", Duration::from_secs(30 * 24 * 3600));
    let opts = GcOptions { keep: 0, min_age: Duration::from_secs(3600), dry_run: false };
    let report = collect(std::slice::from_ref(&store), "ks", &opts).await.unwrap();
    assert_eq!(report.expired_checkpoints, vec!["old".to_string()], "{report:?}");
    assert_eq!(report.deleted_versions, vec![abandoned.to_string()], "{report:?}");
    assert!(root.join(format!("keyspace=ks/shard=00000/{resumable}.parquet")).exists(), "a live checkpoint pins");
    assert!(!root.join("keyspace=ks/_ingest/old.json").exists());
}

/// A gc that stopped part-way left a version marked; an interrupted ingest of that version, rerun, could
/// only fail (its switch refused) rerun after rerun. It starts a new version instead and publishes it whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_whose_version_gc_is_deleting_starts_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (base, _) = dataset(dir.path(), "base", 100);
    cairn_ingest::ingest(options(&base, &healthy), Arc::new(NoProgress)).await.unwrap();
    let (input, rows) = dataset(dir.path(), "new", 3_000);
    let crashing =
        Store { url: healthy.url.clone(), inner: Arc::new(FaultyStore::new(healthy.inner.clone(), "/shard=", 2)) };
    assert!(cairn_ingest::ingest(options(&input, &crashing), Arc::new(NoProgress)).await.is_err());
    let ckpt_dir = dir.path().join("store/keyspace=ks/_ingest");
    let ckpt: serde_json::Value = serde_json::from_slice(
        &std::fs::read(std::fs::read_dir(&ckpt_dir).unwrap().next().unwrap().unwrap().path()).unwrap(),
    )
    .unwrap();
    let interrupted = ckpt["version"].as_str().unwrap().to_string();
    // As a gc that marked it and stopped would leave it.
    let marked = pointer::mark_collecting(healthy.inner.as_ref(), "ks", |_| vec![interrupted.clone()]).await.unwrap();
    assert_eq!(marked, vec![interrupted.clone()]);
    let report = cairn_ingest::ingest(options(&input, &healthy), Arc::new(NoProgress)).await.unwrap();
    assert_ne!(report.version, interrupted, "a marked version is never published");
    assert_eq!(assert_current_serves(&healthy, &rows).await, report.version);
}

/// gc stopped at the first object it could not delete, leaving every version marked and expired checkpoints
/// in place; now it deletes the rest, keeps only the failed version marked, and reports it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_goes_on_past_an_object_it_cannot_delete() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let mut versions = Vec::new();
    for name in ["g1", "g2", "g3", "g4"] {
        let (input, _) = dataset(dir.path(), name, 50);
        versions.push(cairn_ingest::ingest(options(&input, &healthy), Arc::new(NoProgress)).await.unwrap().version);
    }
    let faulty = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX);
    faulty.refuse_deletes(Some(&format!("shard=00001/{}", versions[0])));
    let roots = [Store { url: healthy.url.clone(), inner: Arc::new(faulty) }];
    let opts = GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false };
    let report = collect(&roots, "ks", &opts).await.unwrap();
    assert_eq!(report.deleted_versions, vec![versions[1].clone()], "{report:?}");
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert!(report.failed[0].starts_with(&versions[0]), "{report:?}");
    let cur = pointer::read(healthy.inner.as_ref(), "ks").await.unwrap().unwrap().pointer;
    assert_eq!(cur.collecting, vec![versions[0].clone()], "only the failed version stays marked");
    // Once the object can go, the next run finishes it and clears the mark.
    let report = collect(std::slice::from_ref(&healthy), "ks", &opts).await.unwrap();
    assert_eq!(report.deleted_versions, vec![versions[0].clone()], "{report:?}");
    assert!(pointer::read(healthy.inner.as_ref(), "ks").await.unwrap().unwrap().pointer.collecting.is_empty());
}

/// gc listed an abandoned version's objects, deleted its expired checkpoint and those objects, and unmarked
/// it; a run that had just taken the checkpoint over then wrote the version's manifest: a listed version with
/// no shards, which `cairn rollback --to` would switch to. The version now stays marked until a later run,
/// from a fresh listing, has deleted what appeared meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_expired_checkpoint_gc_deleted_stays_marked_until_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (input, _) = dataset(dir.path(), "live", 100);
    cairn_ingest::ingest(options(&input, &store), Arc::new(NoProgress)).await.unwrap();
    let v = "20200101T000000000Z-00000000";
    let at = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
    let now = SystemTime::now();
    let ckpt = serde_json::json!({"ingest_id": "old", "keyspace": "ks", "version": v, "base_version": null,
        "started_at": at(now - Duration::from_secs(30 * 24 * 3600)), "expires_at": at(now - Duration::from_secs(60)), "done": {}});
    store.inner.put(&"keyspace=ks/_ingest/old.json".into(), ckpt.to_string().into()).await.unwrap();
    store.inner.put(&format!("keyspace=ks/shard=00000/{v}.parquet").into(), "x".into()).await.unwrap();
    let opts = GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false };
    let first = collect(std::slice::from_ref(&store), "ks", &opts).await.unwrap();
    assert_eq!(first.deleted_versions, vec![v.to_string()]);
    let marked = || async { pointer::read(store.inner.as_ref(), "ks").await.unwrap().unwrap().pointer.collecting };
    assert_eq!(marked().await, vec![v.to_string()], "still marked after the run that expired its checkpoint");
    // The late writer's manifest: rollback refuses the version, the next gc deletes it and clears the mark.
    let cur = pointer::read(store.inner.as_ref(), "ks").await.unwrap().unwrap().pointer.version;
    let m = Manifest::read(store.inner.as_ref(), "ks", &cur).await.unwrap();
    Manifest { version: v.to_string(), ..m }.write(store.inner.as_ref()).await.unwrap();
    let refused = cairn_shared::versions::rollback::rollback(&store, "ks", Some(v), &|u: &str| Store::open(u)).await;
    assert!(matches!(refused, Err(cairn_shared::Error::Collecting { .. })), "{refused:?}");
    let second = collect(std::slice::from_ref(&store), "ks", &opts).await.unwrap();
    assert_eq!(second.deleted_versions, vec![v.to_string()], "{second:?}");
    assert!(marked().await.is_empty());
    assert!(Manifest::read(store.inner.as_ref(), "ks", v).await.is_err());
}

/// The checkpoint's lease cannot be written (the store refuses the write; nobody else holds the lease):
/// the ingest fails with the store's error, having changed nothing. It used to take each failure for a
/// rival's win, retry, and end with "the ingest's checkpoint keeps changing hands", a race that never was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_that_cannot_be_written_is_the_stores_error_not_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (a, _) = dataset(dir.path(), "a", 100);
    let refusing =
        Store { url: healthy.url.clone(), inner: Arc::new(FaultyStore::new(healthy.inner.clone(), ".lease", 0)) };
    let err = cairn_ingest::ingest(options(&a, &refusing), Arc::new(NoProgress)).await.expect_err("published");
    assert!(matches!(err, IngestError::Store(_)), "{err}");
    assert!(err.to_string().contains("injected fault"), "{err}");
    assert!(pointer::read(healthy.inner.as_ref(), "ks").await.unwrap().is_none());
}

/// As above, when the lease is an abandoned one being taken over: a rerun's lease writes all fail in the
/// store. The lease it reads back is the one it read before (nobody else acted), so it is the store's error,
/// after a few tries; it used to be "keeps changing hands".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_lease_the_store_will_not_write_is_the_stores_error_not_a_race() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (a, _) = dataset(dir.path(), "a", 100);
    // A run that publishes but cannot remove its lease: it stays behind, abandoned once the run ends.
    let keeping = FaultyStore::new(healthy.inner.clone(), "\0never", usize::MAX);
    keeping.refuse_deletes(Some(".lease"));
    let keeping = Store { url: healthy.url.clone(), inner: Arc::new(keeping) };
    cairn_ingest::ingest(options(&a, &keeping), Arc::new(NoProgress)).await.unwrap();
    let leases: Vec<_> = std::fs::read_dir(dir.path().join("store/keyspace=ks/_ingest"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".lease"))
        .collect();
    assert_eq!(leases.len(), 1, "the abandoned lease");

    let refusing = FaultyStore::new(healthy.inner.clone(), ".lease", 0);
    let refusing = Store { url: healthy.url.clone(), inner: Arc::new(refusing) };
    let err = cairn_ingest::ingest(options(&a, &refusing), Arc::new(NoProgress)).await.expect_err("took the lease");
    assert!(matches!(err, IngestError::Store(_)), "{err}");
    assert!(err.to_string().contains("injected fault"), "{err}");
}

/// A checkpoint is bytes in the store, not this code's memory: an entry naming an object outside its own
/// version (a copied or hand-edited `_ingest/*.json`, a bug of another build) was trusted on resume, and the
/// published manifest then served another version's shard, and would lose it to gc of that version. Such an
/// entry is now written again like a lost one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_entry_naming_another_versions_object_is_rewritten_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let healthy = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    let (base, old_rows) = dataset(dir.path(), "base", 400);
    let old = cairn_ingest::ingest(options(&base, &healthy), Arc::new(NoProgress)).await.unwrap().version;
    let old_manifest = Manifest::read(healthy.inner.as_ref(), "ks", &old).await.unwrap();
    // The same keys with new values.
    let rows: Vec<(String, String)> = old_rows.iter().map(|(k, v)| (k.clone(), format!("new {v}"))).collect();
    let input = dir.path().join("new.data");
    std::fs::write(&input, rows.iter().map(|(k, v)| format!("{k} {v}\n")).collect::<String>()).unwrap();
    let crashing =
        Store { url: healthy.url.clone(), inner: Arc::new(FaultyStore::new(healthy.inner.clone(), "/shard=", 2)) };
    assert!(cairn_ingest::ingest(options(&input, &crashing), Arc::new(NoProgress)).await.is_err());

    let file = std::fs::read_dir(dir.path().join("store/keyspace=ks/_ingest"))
        .unwrap()
        .flatten()
        .find(|f| f.file_name().to_string_lossy().ends_with(".json"))
        .unwrap()
        .path();
    let mut ckpt: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let done = ckpt["done"].as_object_mut().unwrap();
    assert!(!done.is_empty(), "the crashed run finished a shard: {done:?}");
    for (shard, entry) in done.iter_mut() {
        let s: usize = shard.parse().unwrap();
        *entry = serde_json::to_value(&old_manifest.shards[s]).unwrap();
    }
    // And one entry filed under the wrong shard: shard 3's object listed as shard 2's.
    done.insert("2".into(), serde_json::to_value(&old_manifest.shards[3]).unwrap());
    std::fs::write(&file, serde_json::to_vec(&ckpt).unwrap()).unwrap();

    let report = cairn_ingest::ingest(options(&input, &healthy), Arc::new(NoProgress)).await.unwrap();
    let m = Manifest::read(healthy.inner.as_ref(), "ks", &report.version).await.unwrap();
    for e in &m.shards {
        assert_eq!(e.path, cairn_shared::format::layout::shard_path("ks", e.shard, &report.version).as_ref());
    }
    let engine = Engine::new(healthy.clone(), EngineConfig::default());
    for (k, v) in &rows {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }
}
