//! A store decorator that runs a hook once, at one step of whoever uses the store: a writer landing between
//! a reader's steps, deterministically (no sleeps, no luck).

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use cairn_shared::format::layout::POINTER;

/// When the hook runs.
#[derive(Debug, Clone)]
pub enum When {
    /// Right after the first listing of this prefix has been read whole.
    Listed(Path),
    /// After the first pointer read that follows the first listing of this prefix (the reader gets the
    /// pointer as it was before the hook).
    PointerReadAfterListing(Path),
    /// Before the first conditional update of a pointer (which then meets what the hook wrote).
    PointerUpdate,
    /// After the first pointer read (the reader gets the pointer as it was before the hook).
    PointerRead,
}

pub struct Hooked {
    inner: Arc<dyn ObjectStore>,
    when: When,
    hook: Arc<Mutex<Option<BoxFuture<'static, ()>>>>,
    listed: Arc<AtomicBool>,
}

impl Hooked {
    pub fn new(inner: Arc<dyn ObjectStore>, when: When, hook: BoxFuture<'static, ()>) -> Hooked {
        Hooked { inner, when, hook: Arc::new(Mutex::new(Some(hook))), listed: Arc::default() }
    }

    async fn run(hook: &Mutex<Option<BoxFuture<'static, ()>>>) {
        let run = hook.lock().unwrap().take();
        if let Some(run) = run {
            run.await;
        }
    }
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

impl fmt::Display for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Hooked {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let update = matches!(opts.mode, PutMode::Update(_)) && location.filename() == Some(POINTER);
        if update && matches!(self.when, When::PointerUpdate) {
            Self::run(&self.hook).await;
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let got = self.inner.get_opts(location, options).await?;
        let armed = match self.when {
            When::PointerReadAfterListing(_) => self.listed.load(SeqCst),
            When::PointerRead => true,
            _ => false,
        };
        if !armed || location.filename() != Some(POINTER) {
            return Ok(got);
        }
        let (meta, range, attributes, extensions) =
            (got.meta.clone(), got.range.clone(), got.attributes.clone(), got.extensions.clone());
        let bytes = got.bytes().await?;
        Self::run(&self.hook).await;
        let payload = GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed());
        Ok(GetResult { payload, meta, range, attributes, extensions })
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let listing = self.inner.list(prefix);
        let (run_now, arm) = match &self.when {
            When::Listed(p) if prefix == Some(p) => (true, false),
            When::PointerReadAfterListing(p) if prefix == Some(p) => (false, true),
            _ => return listing,
        };
        let (hook, listed) = (self.hook.clone(), self.listed.clone());
        futures::stream::once(async move {
            let items: Vec<Result<ObjectMeta>> = listing.collect().await;
            if arm {
                listed.store(true, SeqCst);
            }
            if run_now {
                Self::run(&hook).await;
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
