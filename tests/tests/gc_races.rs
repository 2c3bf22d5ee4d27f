//! gc while versions are published: what it lists is older than the pointer it then reads. Found by review:
//! a publish landing between gc's listing and its read of the pointer failed gc with a false "data loss"
//! (the new current version was not in the listing), 16 of 150 runs beside ingests; and deciding on such a
//! listing could not know the layers the new versions stack on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_shared::{Engine, versions::pointer};
use cairn_tests::hooked::{Hooked, When};
use futures::future::BoxFuture;
use object_store::path::Path;

async fn publish(store: &Store, dir: &std::path::Path, name: &str, body: &str, delta: bool) -> String {
    let input = dir.join(name);
    std::fs::write(&input, body).unwrap();
    let mut opts = IngestOptions::new(&input, "ks", store.clone());
    opts.delta = delta;
    cairn_ingest::ingest(opts, Arc::new(NoProgress)).await.unwrap().version
}

/// Two deltas land while gc runs, with `--min-age 0s`: gc finishes (no false alarm), and every version the
/// new current one stacks on stays readable, as does the rollback target.
async fn publishes_landing_during_gc(at_pointer: bool) {
    let dir = tempfile::tempdir().unwrap();
    let plain = Store::open(dir.path().join("store").to_str().unwrap()).unwrap();
    publish(&plain, dir.path(), "v1.data", "a 1\nb 1\nc 1\n", false).await;
    let base = publish(&plain, dir.path(), "v2.data", "a 2\nb 2\nc 2\n", false).await;

    let (store, d) = (plain.clone(), dir.path().to_path_buf());
    let landed = Arc::new(Mutex::new(Vec::new()));
    let record = landed.clone();
    let hook: BoxFuture<'static, ()> = Box::pin(async move {
        let first = publish(&store, &d, "d1.data", "a 3\n", true).await;
        let second = publish(&store, &d, "d2.data", "b 4\n", true).await;
        record.lock().unwrap().extend([first, second]);
    });
    let ks_dir = Path::from("keyspace=ks");
    let when = if at_pointer { When::PointerReadAfterListing(ks_dir) } else { When::Listed(ks_dir) };
    let wrapped = Hooked::new(plain.inner.clone(), when, hook);
    let roots = [Store { url: plain.url.clone(), inner: Arc::new(wrapped) }];
    let opts = GcOptions { keep: 0, min_age: Duration::ZERO, dry_run: false };
    let report = collect(&roots, "ks", &opts).await.expect("gc failed while publishes landed");
    assert_eq!(landed.lock().unwrap().len(), 2, "the publishes ran during gc");

    let current = pointer::read(plain.inner.as_ref(), "ks").await.unwrap().unwrap().pointer;
    assert_eq!(Some(&current.version), landed.lock().unwrap().last());
    assert!(report.kept_versions.contains(&base), "the base the deltas stack on: {report:?}");
    let engine = Engine::new(plain.clone(), EngineConfig::default());
    for (k, v) in [("a", "3"), ("b", "4"), ("c", "2")] {
        assert_eq!(engine.get("ks", k).await.unwrap().as_deref(), Some(v.as_bytes()), "key {k}");
    }
    let out = cairn_shared::versions::rollback::rollback(&plain, "ks", None, &|u: &str| Store::open(u)).await.unwrap();
    assert_eq!(out.to, landed.lock().unwrap()[0]);
    let engine = Engine::new(plain.clone(), EngineConfig::default());
    assert_eq!(engine.get("ks", "c").await.unwrap().as_deref(), Some(&b"2"[..]));
}

/// Between gc's listing and its read of the pointer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_landing_after_gcs_listing_are_neither_an_alarm_nor_a_loss() {
    publishes_landing_during_gc(false).await;
}

/// Between gc's read of the pointer and the conditional write that marks what it deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_landing_before_gc_marks_its_versions_are_not_a_loss() {
    publishes_landing_during_gc(true).await;
}
