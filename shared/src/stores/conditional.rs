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

    async fn lock_root(&self) -> Result<std::fs::File> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let f = std::fs::File::open(&root)?;
            f.lock()?;
            Ok::<_, std::io::Error>(f)
        })
        .await
        .map_err(|e| generic(e.to_string()))?
        .map_err(|e| generic(format!("locking {}: {e}", self.root.display())))
    }
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
        let _lock = self.lock_root().await?; // released when the file is dropped
        let current = match self.inner.head(location).await {
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
        self.inner.put_opts(location, payload, opts).await
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

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
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
