//! gc while versions are published: what it lists is older than the pointer it then reads. Found by review:
//! a publish landing between gc's listing and its read of the pointer failed gc with a false "data loss"
//! (the new current version was not in the listing), 16 of 150 runs beside ingests; and deciding on such a
//! listing could not know the layers the new versions stack on.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cairn_ingest::{IngestOptions, NoProgress};
use cairn_shared::config::EngineConfig;
use cairn_shared::stores::Store;
use cairn_shared::versions::gc::{GcOptions, collect};
use cairn_shared::{Engine, versions::pointer};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult, Result,
};

/// Runs a hook once: right after the first listing of a prefix has been read whole, or (`at_pointer`) after
/// the first read of a pointer that follows it. A writer that lands between a lister's steps.
struct AfterListing {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    hook: Arc<Mutex<Option<BoxFuture<'static, ()>>>>,
    at_pointer: bool,
    listed: Arc<std::sync::atomic::AtomicBool>,
}

impl AfterListing {
    fn new(inner: Arc<dyn ObjectStore>, hook: BoxFuture<'static, ()>, at_pointer: bool) -> AfterListing {
        let (prefix, hook) = (Path::from("keyspace=ks"), Arc::new(Mutex::new(Some(hook))));
        AfterListing { inner, prefix, hook, at_pointer, listed: Arc::default() }
    }
}

impl fmt::Debug for AfterListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AfterListing({})", self.inner)
    }
}

impl fmt::Display for AfterListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AfterListing({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for AfterListing {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let got = self.inner.get_opts(location, options).await?;
        let pointer = location.filename() == Some(cairn_shared::format::layout::POINTER);
        if pointer && self.listed.load(std::sync::atomic::Ordering::SeqCst) {
            // Read whole first: what the reader gets is the pointer before the hook's writes.
            let (meta, range, attributes) = (got.meta.clone(), got.range.clone(), got.attributes.clone());
            let extensions = got.extensions.clone();
            let bytes = got.bytes().await?;
            let run = self.hook.lock().unwrap().take();
            if let Some(run) = run {
                run.await;
            }
            let payload = object_store::GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed());
            return Ok(GetResult { payload, meta, range, attributes, extensions });
        }
        Ok(got)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        if prefix != Some(&self.prefix) {
            return listing;
        }
        let (hook, listed, at_pointer) = (self.hook.clone(), self.listed.clone(), self.at_pointer);
        futures::stream::once(async move {
            let items: Vec<Result<ObjectMeta>> = listing.collect().await;
            listed.store(at_pointer, std::sync::atomic::Ordering::SeqCst);
            let run = if at_pointer { None } else { hook.lock().unwrap().take() };
            if let Some(run) = run {
                run.await;
            }
            futures::stream::iter(items)
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

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
    let wrapped = AfterListing::new(plain.inner.clone(), hook, at_pointer);
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
