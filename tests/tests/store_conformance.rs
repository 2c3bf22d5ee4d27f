//! The `ObjectStore` contract, held against every store cairn opens or wraps: object_store's own
//! integration suite (what its S3, local and memory stores are held to), run against a local root (the
//! directory missing at first, then present; conditional updates through its lock), S3 as cairn
//! configures it (LocalStack), each decorator of shared/ and of these tests over a local root, and the
//! in-memory store as the reference. A decorator that breaks the trait (a lost precondition, a range read
//! wrong, a listing that differs) fails here before any other test would notice. Not held: the bench
//! crate's stores (S3Like, TemplateStore), which serve benchmarks only.

use std::sync::Arc;

use cairn_shared::stores::Store;
use cairn_shared::stores::metered::{MeteredStore, RootMetrics};
use cairn_shared::stores::replicated::{FailoverConfig, ReplicatedStore};
use cairn_tests::chaos::{ChaosStore, FaultCounts, FaultRates};
use cairn_tests::fault::FaultyStore;
use cairn_tests::pointer_log::PointerLog;
use cairn_tests::s3;
use object_store::ObjectStore;
use object_store::integration::*;

/// What every store must do. `conditional_updates`: whether `PutMode::Update` is implemented.
async fn conforms(store: &dyn ObjectStore, conditional_updates: bool) {
    put_get_delete_list(store).await;
    get_opts(store).await;
    put_opts(store, conditional_updates).await;
    list_uses_directories_correctly(store).await;
    list_with_delimiter(store).await;
    list_with_offset_exclusivity(store).await;
    rename_and_copy(store).await;
    copy_if_not_exists(store).await;
    copy_rename_nonexistent_object(store).await;
    stream_get(store).await;
    assert!(get_nonexistent_object(store, None).await.is_err());
}

fn local(dir: &std::path::Path, name: &str) -> Arc<dyn ObjectStore> {
    Store::open(dir.join(name).to_str().unwrap()).unwrap().inner
}

#[tokio::test]
async fn the_in_memory_store() {
    conforms(Store::open("memory://conformance").unwrap().inner.as_ref(), true).await;
}

#[tokio::test]
async fn a_local_root_whose_directory_does_not_exist_yet() {
    let dir = tempfile::tempdir().unwrap();
    conforms(local(dir.path(), "not/yet").as_ref(), true).await;
}

#[tokio::test]
async fn a_local_root_whose_directory_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("there")).unwrap();
    conforms(local(dir.path(), "there").as_ref(), true).await;
}

#[tokio::test]
async fn the_metered_decorator() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(RootMetrics::default());
    conforms(&MeteredStore::new(local(dir.path(), "root"), metrics.clone()), true).await;
    assert!(metrics.snapshot("root").gets.iter().sum::<u64>() > 0, "the suite's reads were not counted");
}

/// Writes, lists and deletes go to the first root; reads fail over and hedge across all of them. With one
/// root the whole contract holds; with two, the reads of what the first holds.
#[tokio::test]
async fn the_replicated_decorator() {
    let dir = tempfile::tempdir().unwrap();
    let one = ReplicatedStore::new(vec![local(dir.path(), "a")], FailoverConfig::default());
    conforms(&one, true).await;
    let two = ReplicatedStore::new(vec![local(dir.path(), "b"), local(dir.path(), "c")], FailoverConfig::default());
    conforms(&two, true).await;
}

/// The S3 store exactly as `Store::open` configures it (retries, timeouts, conditional copies by multipart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_as_cairn_opens_it() {
    let bucket = s3::bucket("conformance").await;
    conforms(s3::store(&format!("s3://{bucket}")).inner.as_ref(), true).await;
    let prefixed = s3::bucket("conformance").await;
    conforms(s3::store(&format!("s3://{prefixed}/under/a/prefix")).inner.as_ref(), true).await;
}

/// The fault injectors of these tests, with no fault due: a pass-through must be exact, or a test that
/// uses one measures the injector, not cairn.
#[tokio::test]
async fn the_test_decorators_when_no_fault_is_due() {
    let dir = tempfile::tempdir().unwrap();
    conforms(&FaultyStore::new(local(dir.path(), "faulty"), "no write matches this", 0), true).await;
    let rates = FaultRates { error: 0, lost_response: 0, delay: 0, max_delay: std::time::Duration::ZERO };
    conforms(&ChaosStore::new(local(dir.path(), "chaos"), 7, rates, Arc::new(FaultCounts::default())), true).await;
    conforms(&PointerLog::new(local(dir.path(), "log")), true).await;
}
