//! What keeping a checkpoint costs (issue 28, defect 7). The heartbeat rewrote the whole checkpoint, every
//! finished shard in it (pretty-printed, every third of the lease, under the lock the writers need): ~50 MB a
//! heartbeat at 65,536 shards. Resume, abort, discard and gc sent their HEADs and DELETEs one at a time. Now
//! the lease is a small object of its own, and those requests go out together (bounded).

use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use cairn_ingest::{Build, IngestOptions, NoProgress};
use cairn_shared::format::ring::PlacementSpec;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_tests::fault::FaultyStore;
use object_store::ObjectStoreExt;

const SHARDS: u32 = 300;

fn input(dir: &std::path::Path, name: &str, n: usize) -> std::path::PathBuf {
    let path = dir.join(name);
    let body: String = (0..n).map(|i| format!("{} {name}-{i}\n", uuid::Uuid::new_v4())).collect();
    std::fs::write(&path, body).unwrap();
    path
}

fn options(input: &std::path::Path, store: &Store) -> IngestOptions {
    let mut o = IngestOptions::new(input, "cost", store.clone());
    o.shards = Some(SHARDS);
    o.threads = 2;
    // Heartbeats every 50 ms: many of them while the shards are written.
    o.lease = Duration::from_millis(150);
    o
}

fn faulty(name: &str) -> (Arc<FaultyStore>, Store) {
    let inner = Store::open(&format!("memory://checkpoint-cost-{name}-{}", uuid::Uuid::new_v4())).unwrap();
    let f = Arc::new(FaultyStore::new(inner.inner.clone(), "\0never", usize::MAX));
    (f.clone(), Store { url: inner.url, inner: f })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_write_a_small_lease_not_every_finished_shard() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, store) = faulty("heartbeat");
    // Each shard upload takes 10 ms: the ingest spans at least 1.5 s, some 30 heartbeats.
    faults.delay_writes("/shard=", Duration::from_millis(10));
    cairn_ingest::ingest(options(&input(dir.path(), "a", 30_000), &store), Arc::new(NoProgress)).await.unwrap();
    let writes: Vec<(String, usize)> =
        faults.written.lock().unwrap().iter().filter(|(p, _)| p.contains("/_ingest/")).cloned().collect();
    let large = writes.iter().filter(|(_, n)| *n > 2048).count();
    // Progress is saved after every 1% of the shards (and at the end): at most ~100 large writes.
    assert!(large <= 105, "{large} large checkpoint writes: the heartbeats rewrite the finished shards");
    // The heartbeats: many, each small.
    let leases: Vec<usize> = writes.iter().filter(|(p, _)| p.ends_with(".lease")).map(|(_, n)| *n).collect();
    assert!(leases.len() >= 10, "{} lease writes in all ({large} large checkpoint writes)", leases.len());
    assert!(leases.iter().all(|n| *n <= 2048), "lease writes of {leases:?} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_gc_and_abort_send_their_requests_together() {
    let dir = tempfile::tempdir().unwrap();
    let (faults, store) = faulty("together");
    faults.delay_writes("/shard=", Duration::from_millis(4));
    let a = input(dir.path(), "a", 30_000);

    // An ingest crashed (its future dropped) once its checkpoint lists 30 shards.
    let run = tokio::spawn(cairn_ingest::ingest(options(&a, &store), Arc::new(NoProgress)));
    let ckpt_dir = object_store::path::Path::from("keyspace=cost/_ingest");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = 0;
        let listed: Vec<_> = futures::TryStreamExt::try_collect(store.inner.list(Some(&ckpt_dir))).await.unwrap();
        for m in listed.iter().filter(|m| m.location.as_ref().ends_with(".json")) {
            let v: serde_json::Value =
                serde_json::from_slice(&store.inner.get(&m.location).await.unwrap().bytes().await.unwrap()).unwrap();
            done = done.max(v["done"].as_object().map_or(0, |d| d.len()));
        }
        if done >= 30 {
            break;
        }
        assert!(!run.is_finished(), "the ingest finished before it could be crashed");
        assert!(std::time::Instant::now() < deadline, "the checkpoint never listed 30 shards");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    run.abort();
    let _ = run.await;

    // The rerun checks every finished shard (a HEAD each) before resuming.
    faults.read_delay_us.store(3_000, SeqCst);
    faults.max_in_flight.store(0, SeqCst);
    let resumed = cairn_ingest::ingest(options(&a, &store), Arc::new(NoProgress)).await.unwrap();
    assert!(resumed.resumed_shards >= 30, "resumed {}", resumed.resumed_shards);
    let heads = faults.max_in_flight.load(SeqCst);
    assert!(heads >= 8, "at most {heads} reads in flight while resuming: the HEADs went one at a time");
    faults.read_delay_us.store(0, SeqCst);

    // gc of a replaced version deletes its shards together.
    for name in ["b", "c"] {
        cairn_ingest::ingest(options(&input(dir.path(), name, 3_000), &store), Arc::new(NoProgress)).await.unwrap();
    }
    *faults.delete_delay.lock().unwrap() = Duration::from_millis(3);
    let report =
        collect(std::slice::from_ref(&store), "cost", &GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false })
            .await
            .unwrap();
    assert_eq!(report.deleted_versions, vec![resumed.version.clone()], "{report:?}");
    let deletes = faults.max_deletes_in_flight.swap(0, SeqCst);
    assert!(deletes >= 8, "at most {deletes} deletes in flight in gc: one at a time");

    // An aborted external build deletes every shard path it may have written, together.
    let build =
        Build::begin("cost", vec![store.clone()], PlacementSpec::jump(SHARDS), Duration::from_secs(30)).await.unwrap();
    build.abort().await;
    let deletes = faults.max_deletes_in_flight.load(SeqCst);
    assert!(deletes >= 8, "at most {deletes} deletes in flight in an abort: one at a time");
}
