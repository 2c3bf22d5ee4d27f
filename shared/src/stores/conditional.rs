//! Compare-and-swap on a local directory. object_store's `LocalFileSystem` implements `PutMode::Create`
//! (hard link) but not `PutMode::Update`; this decorator adds it by holding an exclusive `flock` on the
//! store's root directory across "check the ETag, then replace", so concurrent cairn processes on one
//! machine get the same one-winner semantics S3 gives with `If-Match`.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

#[derive(Debug)]
pub struct LocalConditional {
    inner: Arc<dyn ObjectStore>,
    root: PathBuf,
}

impl LocalConditional {
    pub fn new(inner: Arc<dyn ObjectStore>, root: PathBuf) -> Self {
        LocalConditional { inner, root }
    }
}

/// An exclusive `flock` on the root directory, released when the file is dropped.
async fn lock_root(root: PathBuf) -> Result<std::fs::File> {
    let shown = root.display().to_string();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&root)?;
        f.lock()?;
        Ok::<_, std::io::Error>(f)
    })
    .await
    .map_err(|e| generic(e.to_string()))?
    .map_err(|e| generic(format!("locking {shown}: {e}")))
}

fn generic(msg: String) -> object_store::Error {
    object_store::Error::Generic { store: "LocalConditional", source: msg.into() }
}

impl fmt::Display for LocalConditional {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LocalConditional({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for LocalConditional {
    async fn put_opts(&self, location: &Path, payload: PutPayload, mut opts: PutOptions) -> Result<PutResult> {
        let PutMode::Update(expected) = &opts.mode else {
            return self.inner.put_opts(location, payload, opts).await;
        };
        let expected = expected.e_tag.clone();
        let (inner, root, location) = (self.inner.clone(), self.root.clone(), location.clone());
        // Detached: the compare and the write complete under the lock even when the caller is dropped (the
        // local write runs on a blocking thread and lands anyway): released early, a delete could slip in
        // between and the write then bring back what it deleted.
        let update = tokio::spawn(async move {
            let _lock = lock_root(root).await?;
            let current = match inner.head(&location).await {
                Ok(meta) => meta.e_tag,
                Err(object_store::Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if current.is_none() || current != expected {
                return Err(object_store::Error::Precondition {
                    path: location.to_string(),
                    source: format!("ETag is {current:?}, expected {expected:?}").into(),
                });
            }
            opts.mode = PutMode::Overwrite;
            inner.put_opts(&location, payload, opts).await
        });
        update.await.map_err(|e| generic(format!("conditional update: {e}")))?
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    /// Each delete under the root lock: it never lands between a conditional update's compare and write.
    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        use futures::StreamExt;
        let (inner, root) = (self.inner.clone(), self.root.clone());
        locations
            .then(move |location| {
                let (inner, root) = (inner.clone(), root.clone());
                async move {
                    let location = location?;
                    let _lock = lock_root(root).await?;
                    inner.delete(&location).await.map(|()| location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}
